// The pooling kernel, written once over GCC vector extensions and compiled once per instruction
// set: embedding_generic.cpp (the build's baseline, SSE2 on x86-64) and embedding_avx2.cpp
// (AVX2 + FMA + F16C, chosen at run time). Each includes this file with ADRANK_EMBEDDING_TARGET set
// to its namespace and its own load_half8/load_byte8/fmadd definitions.
//
// No standard-library template is used below: under `#pragma GCC target` its instantiations
// would be compiled for AVX2 and could be picked by the linker for the baseline build. The
// dispatch from a call's types to these templates is embedding_dispatch.hpp, shared with the
// AVX-512 kernel (embedding_avx512.cpp).
#ifndef ADRANK_EMBEDDING_TARGET
#error "define ADRANK_EMBEDDING_TARGET before including embedding_kernel.hpp"
#endif

namespace adrank::embedding_internal::ADRANK_EMBEDDING_TARGET {

// Ids ahead of the current one whose rows are prefetched: enough rows in flight to cover the
// DRAM latency of random reads.
constexpr std::size_t kPrefetchDistance = 16;
constexpr std::size_t kLanes = 8;
constexpr std::size_t kMaxVecs = 8;  // columns per pass: 64 floats fit 8 registers

ADRANK_VEC_INLINE Vec load_float8(const float* p) {
  Vec v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

ADRANK_VEC_INLINE void store8(float* p, const Vec& v) { __builtin_memcpy(p, &v, sizeof(v)); }

ADRANK_VEC_INLINE Vec splat(float x) { return Vec{x, x, x, x, x, x, x, x}; }

ADRANK_VEC_INLINE Vec vmax(const Vec& a, const Vec& b) { return b > a ? b : a; }

inline float read_float(const std::uint8_t* p) {
  float x;
  __builtin_memcpy(&x, p, sizeof(x));
  return x;
}

// One table type: a row pointer for an id, a scale and bias per row (int8 only), loads.
struct Float32Rows {
  const float* base;
  std::size_t dim;
  const float* row(std::int64_t r) const { return base + static_cast<std::size_t>(r) * dim; }
  static float scale(const float*, std::size_t) { return 1.0f; }
  static float bias(const float*, std::size_t) { return 0.0f; }
  ADRANK_VEC_INLINE static Vec load(const float* row, std::size_t c) {
    return load_float8(row + c);
  }
  static float value(const float* row, std::size_t c) { return row[c]; }
  static constexpr bool kAffine = false;
};

struct Float16Rows {
  const std::uint16_t* base;
  std::size_t dim;
  const std::uint16_t* row(std::int64_t r) const {
    return base + static_cast<std::size_t>(r) * dim;
  }
  static float scale(const std::uint16_t*, std::size_t) { return 1.0f; }
  static float bias(const std::uint16_t*, std::size_t) { return 0.0f; }
  ADRANK_VEC_INLINE static Vec load(const std::uint16_t* row, std::size_t c) {
    return load_half8(row + c);
  }
  static float value(const std::uint16_t* row, std::size_t c) { return half_to_float(row[c]); }
  static constexpr bool kAffine = false;
};

struct Int8RowwiseRows {
  const std::uint8_t* base;
  std::size_t dim;
  const std::uint8_t* row(std::int64_t r) const {
    return base + static_cast<std::size_t>(r) * (dim + kRowwiseTrailerBytes);
  }
  static float scale(const std::uint8_t* row, std::size_t dim) { return read_float(row + dim); }
  static float bias(const std::uint8_t* row, std::size_t dim) { return read_float(row + dim + 4); }
  ADRANK_VEC_INLINE static Vec load(const std::uint8_t* row, std::size_t c) {
    return load_byte8(row + c);
  }
  static float value(const std::uint8_t* row, std::size_t c) { return row[c]; }
  static constexpr bool kAffine = true;
};

enum class Kind { kSum, kWeightedSum, kMax };

template <class Rows>
inline void prefetch_row(const Rows& rows, std::int64_t r, std::size_t row_bytes) {
  const char* p = reinterpret_cast<const char*>(rows.row(r));
  for (std::size_t b = 0; b < row_bytes; b += 64) __builtin_prefetch(p + b, 0, 3);
}

// Pools columns [col, col + kVecs * 8) of one bag. The codes of an int8 row are affine in the
// value, so sums take scale into the multiply and add the biases once at the end. Narrow rows
// alternate between two sets of accumulators: one chain of dependent adds would otherwise
// bound a bag to one row per add latency.
template <Kind K, int kVecs, class Rows, class Index>
inline void pool_columns(const Rows& rows, const Index* indices, const float* weights,
                         std::size_t begin, std::size_t end, std::int64_t padding_idx,
                         std::size_t col, bool mean, std::size_t prefetch_end,
                         std::size_t row_bytes, float* out) {
  constexpr int kSets = kVecs <= 4 ? 2 : 1;
  Vec acc[kSets][kVecs];
  const float start = K == Kind::kMax ? -__builtin_inff() : 0.0f;
  for (int s = 0; s < kSets; ++s) {
    for (int v = 0; v < kVecs; ++v) acc[s][v] = splat(start);
  }
  float bias_sum = 0.0f;
  std::size_t count = 0;
  auto step = [&](std::size_t p, Vec* into) __attribute__((always_inline)) {
    if (col == 0 && p + kPrefetchDistance < prefetch_end) {
      prefetch_row(rows, static_cast<std::int64_t>(indices[p + kPrefetchDistance]), row_bytes);
    }
    const auto r = static_cast<std::int64_t>(indices[p]);
    if (r == padding_idx) return;
    ++count;
    const auto* row = rows.row(r);
    const float w = K == Kind::kWeightedSum ? weights[p] : 1.0f;
    const float scale = Rows::scale(row, rows.dim);
    const float bias = Rows::bias(row, rows.dim);
    if (K == Kind::kMax) {
      for (int v = 0; v < kVecs; ++v) {
        Vec x = Rows::load(row, col + v * kLanes);
        if (Rows::kAffine) x = fmadd(x, splat(scale), splat(bias));
        into[v] = vmax(into[v], x);
      }
    } else if (K == Kind::kSum && !Rows::kAffine) {
      for (int v = 0; v < kVecs; ++v) into[v] += Rows::load(row, col + v * kLanes);
    } else {
      const Vec factor = splat(w * scale);
      for (int v = 0; v < kVecs; ++v) {
        into[v] = fmadd(Rows::load(row, col + v * kLanes), factor, into[v]);
      }
      if (Rows::kAffine) bias_sum += w * bias;
    }
  };
  std::size_t p = begin;
  for (; p + kSets <= end; p += kSets) {
    for (int s = 0; s < kSets; ++s) step(p + s, acc[s]);
  }
  for (; p < end; ++p) step(p, acc[0]);
  if (count == 0) {
    for (int v = 0; v < kVecs; ++v) store8(out + col + v * kLanes, splat(0.0f));
    return;
  }
  for (int v = 0; v < kVecs; ++v) {
    Vec x = acc[0][v];
    if (kSets == 2) x = K == Kind::kMax ? vmax(x, acc[kSets - 1][v]) : x + acc[kSets - 1][v];
    if (K != Kind::kMax) {
      if (Rows::kAffine) x += splat(bias_sum);
      if (mean) x /= splat(static_cast<float>(count));
    }
    store8(out + col + v * kLanes, x);
  }
}

// Columns [col, dim) where fewer than 8 remain: plain scalar code.
template <Kind K, class Rows, class Index>
inline void pool_tail(const Rows& rows, const Index* indices, const float* weights,
                      std::size_t begin, std::size_t end, std::int64_t padding_idx, std::size_t col,
                      bool mean, float* out) {
  float acc[kLanes];
  const std::size_t width = rows.dim - col;
  for (std::size_t c = 0; c < width; ++c) acc[c] = K == Kind::kMax ? -__builtin_inff() : 0.0f;
  std::size_t count = 0;
  for (std::size_t p = begin; p < end; ++p) {
    const auto r = static_cast<std::int64_t>(indices[p]);
    if (r == padding_idx) continue;
    ++count;
    const auto* row = rows.row(r);
    const float w = K == Kind::kWeightedSum ? weights[p] : 1.0f;
    const float scale = Rows::scale(row, rows.dim);
    const float bias = Rows::bias(row, rows.dim);
    for (std::size_t c = 0; c < width; ++c) {
      const float x = Rows::value(row, col + c) * scale + bias;
      acc[c] = K == Kind::kMax ? (x > acc[c] ? x : acc[c]) : acc[c] + w * x;
    }
  }
  for (std::size_t c = 0; c < width; ++c) {
    float x = count == 0 ? 0.0f : acc[c];
    if (K != Kind::kMax && mean && count > 0) x /= static_cast<float>(count);
    out[col + c] = x;
  }
}

template <Kind K, class Rows, class Index, class Offset>
void pool_run(const Rows& rows, const Pooling& pooling, const BagRun& run) {
  const auto* indices = static_cast<const Index*>(run.indices);
  const auto* offsets = static_cast<const Offset*>(run.offsets);
  const bool mean = pooling.mode == PoolingMode::kMean;
  const std::size_t row_bytes = run.row_bytes;
  const std::int64_t* lengths = run.lengths;
  const std::size_t prefetch_end = lengths != nullptr ? run.prefetch_end
                                   : run.bag_end < run.num_offsets
                                       ? static_cast<std::size_t>(offsets[run.bag_end])
                                       : run.num_indices;
  std::size_t next_begin =
      lengths != nullptr ? run.first_index : static_cast<std::size_t>(offsets[run.bag_begin]);
  for (std::size_t b = run.bag_begin; b < run.bag_end; ++b) {
    const std::size_t begin = next_begin;
    const std::size_t end = lengths != nullptr        ? begin + static_cast<std::size_t>(lengths[b])
                            : b + 1 < run.num_offsets ? static_cast<std::size_t>(offsets[b + 1])
                                                      : run.num_indices;
    next_begin = end;
    float* out = run.out + b * run.out_row_stride;
    std::size_t col = 0;
    for (; col + kMaxVecs * kLanes <= rows.dim; col += kMaxVecs * kLanes) {
      pool_columns<K, 8>(rows, indices, run.weights, begin, end, pooling.padding_idx, col, mean,
                         prefetch_end, row_bytes, out);
    }
    const std::size_t left = (rows.dim - col) / kLanes;
    if (left >= 4) {
      pool_columns<K, 4>(rows, indices, run.weights, begin, end, pooling.padding_idx, col, mean,
                         prefetch_end, row_bytes, out);
      col += 4 * kLanes;
    }
    if ((rows.dim - col) / kLanes >= 2) {
      pool_columns<K, 2>(rows, indices, run.weights, begin, end, pooling.padding_idx, col, mean,
                         prefetch_end, row_bytes, out);
      col += 2 * kLanes;
    }
    if ((rows.dim - col) / kLanes >= 1) {
      pool_columns<K, 1>(rows, indices, run.weights, begin, end, pooling.padding_idx, col, mean,
                         prefetch_end, row_bytes, out);
      col += kLanes;
    }
    if (col < rows.dim) {
      pool_tail<K>(rows, indices, run.weights, begin, end, pooling.padding_idx, col, mean, out);
    }
  }
}

#include "embedding_dispatch.hpp"

}  // namespace adrank::embedding_internal::ADRANK_EMBEDDING_TARGET
