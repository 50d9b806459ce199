// The pooling kernel with AVX-512 (F, BW, VL, DQ): 16 floats a register, any dim through masked
// loads (no scalar tail), a bag's up to 128 columns held in registers for the whole bag and
// written once. embedding.cpp calls it at the "avx512" level where the CPU also has BW and VL.
//
// Latency of random reads is hidden by prefetching the rows of the id a fixed distance ahead
// in the run's ids, across bag ends, so the next bags' rows are in flight while this one is
// summed; the distance shrinks as rows grow (about the same bytes in flight whatever the row).
// The dispatch from a call's types to these templates is embedding_dispatch.hpp, shared with the
// other instruction sets. Standard headers come before the target pragma so that none of their
// inline code is compiled for AVX-512.
#include <cstddef>
#include <cstdint>

#include "embedding_internal.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include <immintrin.h>

namespace adrank::embedding_internal::avx512 {
namespace {

constexpr std::size_t kLanes = 16;
constexpr int kMaxVecs = 8;  // columns per pass: 128 floats in 8 registers

inline float read_float(const std::uint8_t* p) {
  float x;
  __builtin_memcpy(&x, p, sizeof(x));
  return x;
}

// One table type: the row of an id, its scale and bias (int8 only), 16 columns as floats.
struct Float32Rows {
  const float* base;
  std::size_t dim;
  const float* row(std::int64_t r) const { return base + static_cast<std::size_t>(r) * dim; }
  static float scale(const float*, std::size_t) { return 1.0f; }
  static float bias(const float*, std::size_t) { return 0.0f; }
  static constexpr std::size_t kVecBytes = 64;
  static __m512 load(const float* row, std::size_t c) { return _mm512_loadu_ps(row + c); }
  static __m512 load(const float* row, std::size_t c, __mmask16 mask) {
    return _mm512_maskz_loadu_ps(mask, row + c);
  }
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
  static constexpr std::size_t kVecBytes = 32;
  static __m512 load(const std::uint16_t* row, std::size_t c) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + c)));
  }
  static __m512 load(const std::uint16_t* row, std::size_t c, __mmask16 mask) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mask, row + c));
  }
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
  static constexpr std::size_t kVecBytes = 16;
  static __m512 load(const std::uint8_t* row, std::size_t c) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + c))));
  }
  static __m512 load(const std::uint8_t* row, std::size_t c, __mmask16 mask) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mask, row + c)));
  }
  static constexpr bool kAffine = true;
};

enum class Kind { kSum, kWeightedSum, kMax };

// Where and how far ahead rows are prefetched: ids [.., end) of the run; every cache line of
// the row `distance` ids ahead.
struct Prefetch {
  std::size_t end;
  std::size_t distance;
  std::size_t row_bytes;
  bool straddles;  // whether a row can touch one line more than row_bytes / 64 rounded up
};

// The row `distance` ids ahead of p, or p's own row near the run's end (no branch).
template <class Rows, class Index>
[[gnu::always_inline]] inline const char* row_ahead(Rows rows, const Index* indices, std::size_t p,
                                                    Prefetch ahead) {
  const std::size_t q = p + ahead.distance < ahead.end ? p + ahead.distance : p;
  return reinterpret_cast<const char*>(rows.row(static_cast<std::int64_t>(indices[q])));
}

// Every line of a row: a fixed number of prefetches per row, the last on its last byte (a row
// that straddles one more line than its size needs): a trip count that varied with the row's
// alignment would be a mispredicted branch on every other id.
[[gnu::always_inline]] inline void prefetch_row(const char* row, Prefetch ahead) {
  for (std::size_t b = 0; b < ahead.row_bytes; b += 64) _mm_prefetch(row + b, _MM_HINT_T0);
  if (ahead.straddles) _mm_prefetch(row + ahead.row_bytes - 1, _MM_HINT_T0);
}

// Pools columns [col, col + kVecs * 16) of one bag, the last register masked by `tail`, and
// writes them once. An int8 row's codes are affine in the value, so a sum takes the scale
// into the multiply and adds the biases once at the end. Narrow rows alternate two sets of
// accumulators so that the adds of consecutive ids do not wait on each other.
// kWholeRow: the pass covers the whole row, so the prefetch of the row ahead is interleaved
// with the loads, a line per register's worth of bytes (as FBGEMM's kernels do).
template <Kind K, int kVecs, bool kMasked, bool kWholeRow, class Rows, class Index>
[[gnu::always_inline]] inline void pool_columns(const Rows rows, const Index* indices,
                                                const float* weights, std::size_t begin,
                                                std::size_t end, std::int64_t padding_idx,
                                                std::size_t col, __mmask16 tail, bool mean,
                                                bool prefetch, const Prefetch ahead, float* out) {
  constexpr int kSets = kVecs <= 2 ? 2 : 1;
  constexpr bool kInterleaved = kWholeRow;
  // The registers' lines end here; an int8 row's scale and bias may need one line more.
  constexpr std::size_t kVecLineBytes = (kVecs * Rows::kVecBytes + 63) / 64 * 64;
  const bool line_after = kInterleaved && Rows::kAffine && ahead.row_bytes > kVecLineBytes;
  __m512 acc[kSets][kVecs];
  const __m512 start = K == Kind::kMax ? _mm512_set1_ps(-__builtin_inff()) : _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int s = 0; s < kSets; ++s) {
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) acc[s][v] = start;
  }
  float bias_sums[2] = {0.0f, 0.0f};  // one per set: no chain of dependent scalar adds
  std::size_t skipped = 0;
  auto step = [&](std::size_t p, __m512* into, float& bias_sum) __attribute__((always_inline)) {
    const char* next = nullptr;
    if (kInterleaved || prefetch) next = row_ahead(rows, indices, p, ahead);
    if (!kInterleaved && prefetch) prefetch_row(next, ahead);
    const auto r = static_cast<std::int64_t>(indices[p]);
    if (r == padding_idx) {
      ++skipped;
      return;
    }
    const auto* row = rows.row(r);
    const auto* columns = row + col;
    const float w = K == Kind::kWeightedSum ? weights[p] : 1.0f;
#pragma GCC unroll 8
    for (int v = 0; v < kVecs; ++v) {
      const __m512 x = kMasked && v == kVecs - 1 ? Rows::load(columns, v * kLanes, tail)
                                                 : Rows::load(columns, v * kLanes);
      if (kInterleaved && v * Rows::kVecBytes % 64 == 0) {
        _mm_prefetch(next + v * Rows::kVecBytes, _MM_HINT_T0);
      }
      if (K == Kind::kMax) {
        const __m512 value = Rows::kAffine
                                 ? _mm512_fmadd_ps(x, _mm512_set1_ps(Rows::scale(row, rows.dim)),
                                                   _mm512_set1_ps(Rows::bias(row, rows.dim)))
                                 : x;
        into[v] = _mm512_max_ps(into[v], value);
      } else if (K == Kind::kSum && !Rows::kAffine) {
        into[v] = _mm512_add_ps(into[v], x);
      } else {
        into[v] = _mm512_fmadd_ps(x, _mm512_set1_ps(w * Rows::scale(row, rows.dim)), into[v]);
      }
    }
    if (line_after) _mm_prefetch(next + kVecLineBytes, _MM_HINT_T0);
    if (kInterleaved && ahead.straddles) _mm_prefetch(next + ahead.row_bytes - 1, _MM_HINT_T0);
    if (K != Kind::kMax && Rows::kAffine) bias_sum += w * Rows::bias(row, rows.dim);
  };
  std::size_t p = begin;
  if (kSets == 2) {
    for (; p + 2 <= end; p += 2) {
      step(p, acc[0], bias_sums[0]);
      step(p + 1, acc[kSets - 1], bias_sums[1]);
    }
  }
  for (; p < end; ++p) step(p, acc[0], bias_sums[0]);
  const std::size_t count = end - begin - skipped;
  __m512 divisor = _mm512_set1_ps(static_cast<float>(count));
#pragma GCC unroll 8
  for (int v = 0; v < kVecs; ++v) {
    const __mmask16 mask = kMasked && v == kVecs - 1 ? tail : __mmask16(0xFFFF);
    __m512 x = acc[0][v];
    if (kSets == 2) {
      x = K == Kind::kMax ? _mm512_max_ps(x, acc[kSets - 1][v])
                          : _mm512_add_ps(x, acc[kSets - 1][v]);
    }
    if (K != Kind::kMax) {
      if (Rows::kAffine) x = _mm512_add_ps(x, _mm512_set1_ps(bias_sums[0] + bias_sums[1]));
      if (mean) x = _mm512_div_ps(x, divisor);
    }
    if (count == 0) x = _mm512_setzero_ps();
    _mm512_mask_storeu_ps(out + col + v * kLanes, mask, x);
  }
}

// Rows up to 128 columns in one pass of kVecs registers; wider rows in passes of 128.
template <Kind K, int kVecs, bool kMasked, class Rows, class Index, class Offset>
void pool_run_vecs(const Rows rows, const Pooling& pooling, const BagRun& run,
                   const Prefetch ahead) {
  const auto* indices = static_cast<const Index*>(run.indices);
  const auto* offsets = static_cast<const Offset*>(run.offsets);
  const bool mean = pooling.mode == PoolingMode::kMean;
  const std::int64_t padding_idx = pooling.padding_idx;
  const float* weights = run.weights;
  const std::size_t num_offsets = run.num_offsets;
  const std::size_t num_indices = run.num_indices;
  const std::size_t dim = rows.dim;
  const std::size_t full_passes = dim > kMaxVecs * kLanes ? (dim - 1) / (kMaxVecs * kLanes) : 0;
  const std::size_t last_col = full_passes * kMaxVecs * kLanes;
  const std::size_t left = dim - last_col;  // in (0, 128]
  const auto tail = static_cast<__mmask16>((1u << (left - (left - 1) / kLanes * kLanes)) - 1u);
  const auto full = static_cast<__mmask16>(0xFFFF);
  const std::int64_t* lengths = run.lengths;
  std::size_t begin =
      lengths != nullptr ? run.first_index : static_cast<std::size_t>(offsets[run.bag_begin]);
  float* out = run.out + run.bag_begin * run.out_row_stride;
  if (full_passes == 0) {  // the common case: the whole row in one pass, prefetch interleaved
    for (std::size_t b = run.bag_begin; b < run.bag_end; ++b, out += run.out_row_stride) {
      const std::size_t end = lengths != nullptr    ? begin + static_cast<std::size_t>(lengths[b])
                              : b + 1 < num_offsets ? static_cast<std::size_t>(offsets[b + 1])
                                                    : num_indices;
      pool_columns<K, kVecs, kMasked, true>(rows, indices, weights, begin, end, padding_idx, 0,
                                            tail, mean, true, ahead, out);
      begin = end;
    }
    return;
  }
  for (std::size_t b = run.bag_begin; b < run.bag_end; ++b, out += run.out_row_stride) {
    const std::size_t end = lengths != nullptr    ? begin + static_cast<std::size_t>(lengths[b])
                            : b + 1 < num_offsets ? static_cast<std::size_t>(offsets[b + 1])
                                                  : num_indices;
    for (std::size_t pass = 0; pass < full_passes; ++pass) {
      pool_columns<K, kMaxVecs, false, false>(rows, indices, weights, begin, end, padding_idx,
                                              pass * kMaxVecs * kLanes, full, mean, pass == 0,
                                              ahead, out);
    }
    pool_columns<K, kVecs, kMasked, false>(rows, indices, weights, begin, end, padding_idx,
                                           last_col, tail, mean, false, ahead, out);
    begin = end;
  }
}

// pool_run_vecs for a last pass of kVecs registers, its last one masked or not.
template <Kind K, int kVecs, class Rows, class Index, class Offset>
void pool_run_width(bool masked, const Rows rows, const Pooling& pooling, const BagRun& run,
                    const Prefetch ahead) {
  if (masked) return pool_run_vecs<K, kVecs, true, Rows, Index, Offset>(rows, pooling, run, ahead);
  pool_run_vecs<K, kVecs, false, Rows, Index, Offset>(rows, pooling, run, ahead);
}

// How many ids ahead rows are prefetched. Measured on Zen 4 (1e6-row tables, bags of 1-50 ids):
// rows of up to 3 lines gain up to 64 ids ahead (int8 D=128: 0.94 -> 0.51 ms from 16 to 64),
// wider rows are best near 32; FBGEMM's fixed 16 is short for both here.
std::size_t prefetch_distance(std::size_t row_bytes) {
  return row_bytes <= 192 ? 64 : row_bytes <= 256 ? 32 : 16;
}

template <Kind K, class Rows, class Index, class Offset>
void pool_run(const Rows rows, const Pooling& pooling, const BagRun& run) {
  const auto* offsets = static_cast<const Offset*>(run.offsets);
  Prefetch ahead;
  ahead.end = run.lengths != nullptr          ? run.prefetch_end
              : run.bag_end < run.num_offsets ? static_cast<std::size_t>(offsets[run.bag_end])
                                              : run.num_indices;
  ahead.distance = prefetch_distance(run.row_bytes);
  ahead.row_bytes = run.row_bytes;
  ahead.straddles =
      run.row_bytes % 64 != 0 || reinterpret_cast<std::uintptr_t>(rows.base) % 64 != 0;
  const std::size_t last = rows.dim > kMaxVecs * kLanes
                               ? rows.dim - (rows.dim - 1) / (kMaxVecs * kLanes) * kMaxVecs * kLanes
                               : rows.dim;
  const bool masked = last % kLanes != 0;
  switch ((last + kLanes - 1) / kLanes) {
    case 1:
      return pool_run_width<K, 1, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 2:
      return pool_run_width<K, 2, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 3:
      return pool_run_width<K, 3, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 4:
      return pool_run_width<K, 4, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 5:
      return pool_run_width<K, 5, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 6:
      return pool_run_width<K, 6, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    case 7:
      return pool_run_width<K, 7, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
    default:
      return pool_run_width<K, 8, Rows, Index, Offset>(masked, rows, pooling, run, ahead);
  }
}

}  // namespace

#include "embedding_dispatch.hpp"

}  // namespace adrank::embedding_internal::avx512

#pragma GCC pop_options

#else

namespace adrank::embedding_internal::avx512 {
// Never selected off x86: embedding.cpp runs the AVX-512 twin only where the CPU has it.
void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run) {
  generic::pool_bags(table, pooling, run);
}
}  // namespace adrank::embedding_internal::avx512

#endif
