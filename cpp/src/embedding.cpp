#include "adrank/embedding.hpp"

#include <algorithm>
#include <cstddef>
#include <limits>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif
#include <ostream>

#include "adrank/check.hpp"
#include "adrank/parallel.hpp"
#include "adrank/simd.hpp"
#include "embedding_internal.hpp"

namespace adrank {
namespace {

using embedding_internal::BagRun;

// Bytes of rows a chunk of work should read before a second thread is worth waking.
constexpr std::size_t kChunkBytes = 256 * 1024;

// The AVX-512 twin also needs BW and VL (masked 8- and 16-bit loads), beyond the level's F + DQ.
bool cpu_has_avx512_bw_vl() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  static const bool has =
      __builtin_cpu_supports("avx512bw") != 0 && __builtin_cpu_supports("avx512vl") != 0;
  return has;
#else
  return false;
#endif
}

void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run) {
  const SimdLevel level = simd_level();
  if (level >= SimdLevel::kAvx512 && cpu_has_avx512_bw_vl()) {
    embedding_internal::avx512::pool_bags(table, pooling, run);
  } else if (level >= SimdLevel::kAvx2) {
    embedding_internal::avx2::pool_bags(table, pooling, run);
  } else {
    embedding_internal::generic::pool_bags(table, pooling, run);
  }
}

template <class Index>
Index at(const void* values, std::size_t i) {
  return static_cast<const Index*>(values)[i];
}

std::int64_t index_at(IndexType type, const void* values, std::size_t i) {
  return type == IndexType::kInt32 ? at<std::int32_t>(values, i) : at<std::int64_t>(values, i);
}

// Throws IndexError for the first id in values[begin, end) outside [0, num_rows). The scan is
// branch-free so that the common, valid case vectorizes.
// " (field f)" at the end of a message about one field of a collection, nothing for a single
// table. Streamed only when a check fails: a call builds no string while its checks pass.
struct FieldNote {
  std::ptrdiff_t field = -1;
};

std::ostream& operator<<(std::ostream& os, FieldNote note) {
  if (note.field >= 0) os << " (field " << note.field << ")";
  return os;
}

// Whether any id in values[begin, end) is outside [0, num_rows): a signed compare each side,
// which AVX2 does 4 (int64) or 8 (int32) lanes at a time; the baseline build has no 64-bit
// compare, so this is most of a small table's call there.
template <class Index>
bool any_out_of_range(const Index* values, std::size_t begin, std::size_t end,
                      std::int64_t num_rows) {
  const auto limit = static_cast<Index>(
      num_rows > std::numeric_limits<Index>::max() ? std::numeric_limits<Index>::max() : num_rows);
  const bool all_fit = num_rows > std::numeric_limits<Index>::max();
  bool bad = false;
  for (std::size_t p = begin; p < end; ++p) {
    bad |= (values[p] < 0) | (!all_fit & (values[p] >= limit));
  }
  return bad;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The same with AVX2 intrinsics: GCC does not vectorize the flag reduction above by itself.
__attribute__((target("avx2"))) bool any_out_of_range_avx2(const std::int64_t* values,
                                                           std::size_t begin, std::size_t end,
                                                           std::int64_t num_rows) {
  const __m256i limit = _mm256_set1_epi64x(num_rows - 1);
  const __m256i zero = _mm256_setzero_si256();
  __m256i bad = zero;
  std::size_t p = begin;
  for (; p + 4 <= end; p += 4) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + p));
    bad = _mm256_or_si256(
        bad, _mm256_or_si256(_mm256_cmpgt_epi64(v, limit), _mm256_cmpgt_epi64(zero, v)));
  }
  return !_mm256_testz_si256(bad, bad) || any_out_of_range(values, p, end, num_rows);
}

__attribute__((target("avx2"))) bool any_out_of_range_avx2(const std::int32_t* values,
                                                           std::size_t begin, std::size_t end,
                                                           std::int64_t num_rows) {
  if (num_rows > std::numeric_limits<std::int32_t>::max()) {
    return any_out_of_range(values, begin, end, num_rows);  // only negatives can be out
  }
  const __m256i limit = _mm256_set1_epi32(static_cast<std::int32_t>(num_rows - 1));
  const __m256i zero = _mm256_setzero_si256();
  __m256i bad = zero;
  std::size_t p = begin;
  for (; p + 8 <= end; p += 8) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + p));
    bad = _mm256_or_si256(
        bad, _mm256_or_si256(_mm256_cmpgt_epi32(v, limit), _mm256_cmpgt_epi32(zero, v)));
  }
  return !_mm256_testz_si256(bad, bad) || any_out_of_range(values, p, end, num_rows);
}

// int64 ids with AVX-512 F: one unsigned compare finds both negative and too large ids.
__attribute__((target("avx512f"))) bool any_out_of_range_avx512(const std::int64_t* values,
                                                                std::size_t begin, std::size_t end,
                                                                std::int64_t num_rows) {
  const __m512i limit = _mm512_set1_epi64(num_rows);
  __mmask8 bad = 0;
  std::size_t p = begin;
  for (; p + 16 <= end; p += 16) {
    bad |= _mm512_cmpge_epu64_mask(_mm512_loadu_si512(values + p), limit) |
           _mm512_cmpge_epu64_mask(_mm512_loadu_si512(values + p + 8), limit);
  }
  return bad != 0 || any_out_of_range(values, p, end, num_rows);
}
#endif

template <class Index>
void check_ids_typed(const Index* values, std::size_t begin, std::size_t end, std::int64_t num_rows,
                     const char* name, FieldNote where) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  bool bad;
  if constexpr (sizeof(Index) == 8) {
    const SimdLevel level = simd_level();
    bad = level >= SimdLevel::kAvx512 ? any_out_of_range_avx512(values, begin, end, num_rows)
          : level >= SimdLevel::kAvx2 ? any_out_of_range_avx2(values, begin, end, num_rows)
                                      : any_out_of_range(values, begin, end, num_rows);
  } else {
    bad = simd_level() >= SimdLevel::kAvx2 ? any_out_of_range_avx2(values, begin, end, num_rows)
                                           : any_out_of_range(values, begin, end, num_rows);
  }
#else
  const bool bad = any_out_of_range(values, begin, end, num_rows);
#endif
  if (!bad) return;
  for (std::size_t p = begin; p < end; ++p) {
    const auto id = static_cast<std::int64_t>(values[p]);
    ADRANK_CHECK_INDEX(id >= 0 && id < num_rows, name, "[", p, "] = ", id, " is out of range [0, ",
                       num_rows, ")", where);
  }
}

void check_ids(IndexType type, const void* values, std::size_t begin, std::size_t end,
               std::int64_t num_rows, const char* name, FieldNote where = {}) {
  if (type == IndexType::kInt32) {
    check_ids_typed(static_cast<const std::int32_t*>(values), begin, end, num_rows, name, where);
  } else {
    check_ids_typed(static_cast<const std::int64_t*>(values), begin, end, num_rows, name, where);
  }
}

// Whether offsets never decrease and none exceeds n: one flag, no branch per offset, so that
// 4,096 bags cost a few microseconds; the caller finds the first bad offset for its message.
template <class Offset>
bool offsets_in_order(const Offset* offsets, std::size_t count, std::size_t n) {
  bool bad = false;
  for (std::size_t b = 1; b < count; ++b) {
    bad |= (offsets[b] < offsets[b - 1]) |
           (static_cast<std::uint64_t>(static_cast<std::int64_t>(offsets[b])) > n);
  }
  return !bad;
}

void check_pooling(const TableView& table, const Pooling& pooling, bool weighted, FieldNote where) {
  const int mode = static_cast<int>(pooling.mode);
  ADRANK_CHECK_VALUE(mode >= 0 && mode <= 2, "mode must be sum, mean or max, got ", mode, where);
  ADRANK_CHECK_VALUE(pooling.padding_idx >= -1 && pooling.padding_idx < table.num_rows,
                     "padding_idx must be -1 (none) or in [0, ", table.num_rows, "), got ",
                     pooling.padding_idx, where);
  ADRANK_CHECK_VALUE(!weighted || pooling.mode == PoolingMode::kSum,
                     "per_sample_weights is only supported with mode='sum'", where);
}

// Chunk size in bags so that a chunk reads about kChunkBytes of rows.
std::size_t bag_grain(std::size_t num_bags, std::size_t num_ids, std::size_t row_bytes) {
  const std::size_t total = std::max<std::size_t>(1, (num_ids + num_bags) * row_bytes);
  return std::max<std::size_t>(1, num_bags * kChunkBytes / total);
}

}  // namespace

std::size_t TableView::row_bytes() const {
  const auto d = static_cast<std::size_t>(dim);
  switch (type) {
    case TableType::kFloat32:
      return d * 4;
    case TableType::kFloat16:
      return d * 2;
    case TableType::kInt8Rowwise:
      return d + kRowwiseTrailerBytes;
  }
  return 0;
}

void validate_table(const TableView& table) {
  const int type = static_cast<int>(table.type);
  ADRANK_CHECK_VALUE(type >= 0 && type <= 2,
                     "table type must be 0 (float32), 1 (float16) or 2 (int8), got ", type);
  ADRANK_CHECK_VALUE(table.num_rows >= 0, "table must have >= 0 rows, got ", table.num_rows);
  ADRANK_CHECK_VALUE(table.dim >= 1, "table dim must be >= 1, got ", table.dim);
  ADRANK_CHECK_VALUE(table.data != nullptr || table.num_rows == 0, "table has no data");
}

void validate_embedding_bag(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                            const PooledOutput& out) {
  validate_table(table);
  check_pooling(table, pooling, bags.per_sample_weights != nullptr, FieldNote{});
  const std::size_t n = bags.num_indices;
  const std::size_t num_offsets = bags.num_bags + (bags.include_last_offset ? 1 : 0);
  ADRANK_CHECK_VALUE(num_offsets > 0 || n == 0, "offsets is empty but indices holds ", n,
                     " ids: offsets[0] must be 0");
  if (num_offsets > 0) {
    const std::int64_t first = index_at(bags.index_type, bags.offsets, 0);
    ADRANK_CHECK_VALUE(first == 0, "offsets[0] must be 0, got ", first);
  }
  const bool offsets_ok =
      bags.index_type == IndexType::kInt32
          ? offsets_in_order(static_cast<const std::int32_t*>(bags.offsets), num_offsets, n)
          : offsets_in_order(static_cast<const std::int64_t*>(bags.offsets), num_offsets, n);
  for (std::size_t b = 1; !offsets_ok && b < num_offsets; ++b) {  // finds what is wrong
    const std::int64_t previous = index_at(bags.index_type, bags.offsets, b - 1);
    const std::int64_t current = index_at(bags.index_type, bags.offsets, b);
    ADRANK_CHECK_VALUE(current >= previous, "offsets must not decrease: offsets[", b,
                       "] = ", current, " < offsets[", b - 1, "] = ", previous);
    ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(current) <= n, "offsets[", b, "] = ", current,
                       " exceeds len(indices) = ", n);
  }
  if (bags.include_last_offset) {
    const std::int64_t last = index_at(bags.index_type, bags.offsets, num_offsets - 1);
    ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(last) == n,
                       "with include_last_offset=True the last offset must equal len(indices) = ",
                       n, ", got ", last);
  }
  check_ids(bags.index_type, bags.indices, 0, n, table.num_rows, "indices");
  ADRANK_CHECK_VALUE(out.data != nullptr || bags.num_bags == 0, "out has no data");
  ADRANK_CHECK_VALUE(out.row_stride >= static_cast<std::size_t>(table.dim),
                     "out rows must hold at least dim = ", table.dim, " floats, got ",
                     out.row_stride);
}

void embedding_bag_unchecked(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                             const PooledOutput& out) {
  BagRun base;
  base.index_type = bags.index_type;
  base.offsets_int64 = bags.index_type == IndexType::kInt64;
  base.indices = bags.indices;
  base.num_indices = bags.num_indices;
  base.offsets = bags.offsets;
  base.num_offsets = bags.num_bags + (bags.include_last_offset ? 1 : 0);
  base.weights = bags.per_sample_weights;
  base.out = out.data;
  base.out_row_stride = out.row_stride;
  base.row_bytes = table.row_bytes();
  const std::size_t grain = bag_grain(bags.num_bags, bags.num_indices, base.row_bytes);
  parallel_for(bags.num_bags, grain, [&](std::size_t begin, std::size_t end) {
    BagRun run = base;
    run.bag_begin = begin;
    run.bag_end = end;
    pool_bags(table, pooling, run);
  });
}

void embedding_bag(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                   const PooledOutput& out) {
  validate_embedding_bag(table, bags, pooling, out);
  embedding_bag_unchecked(table, bags, pooling, out);
}

std::size_t collection_width(const std::vector<PooledField>& fields) {
  std::size_t width = 0;
  for (const auto& field : fields) width += static_cast<std::size_t>(field.table.dim);
  return width;
}

std::vector<std::int64_t> validate_collection(const std::vector<PooledField>& fields,
                                              const KeyedBatch& batch, const PooledOutput& out) {
  std::vector<std::int64_t> offsets;
  validate_collection(fields, batch, out, offsets);
  return offsets;
}

void validate_collection(const std::vector<PooledField>& fields, const KeyedBatch& batch,
                         const PooledOutput& out, std::vector<std::int64_t>& offsets) {
  const std::size_t num_fields = fields.size();
  const std::size_t batch_size = batch.batch_size;
  for (std::size_t f = 0; f < num_fields; ++f) {
    const FieldNote where{static_cast<std::ptrdiff_t>(f)};
    validate_table(fields[f].table);
    check_pooling(fields[f].table, fields[f].pooling, batch.per_sample_weights != nullptr, where);
  }
  // Per field, the sum of its lengths and one flag for a negative or too long length: a
  // reduction the compiler vectorizes, no running sum per bag (26,000 bags at the serving
  // shape). Each length is at most num_values, so a field's sum cannot wrap while
  // batch_size * num_values fits 64 bits; otherwise, or on any flag, the serial check below
  // finds the first bad length for its message.
  const std::uint64_t num_values = batch.num_values;
  bool bad = batch_size != 0 && num_values != 0 &&
             batch_size > std::numeric_limits<std::uint64_t>::max() / num_values;
  offsets.resize(num_fields + 1);
  offsets[0] = 0;
  std::uint64_t total = 0;
  for (std::size_t f = 0; f < num_fields && !bad; ++f) {
    const std::int64_t* lengths = batch.lengths + f * batch_size;
    std::uint64_t sum = 0;
    std::uint64_t too_long = 0;
    for (std::size_t b = 0; b < batch_size; ++b) {
      const auto length = static_cast<std::uint64_t>(lengths[b]);  // negative: huge
      sum += length;
      too_long |= static_cast<std::uint64_t>(length > num_values);
    }
    total += sum;
    bad |= too_long != 0 || sum > num_values || total > num_values;
    offsets[f + 1] = static_cast<std::int64_t>(total);
  }
  if (bad) {  // one length at a time: the first bad one, or exact sums where they could wrap
    std::int64_t running = 0;
    for (std::size_t f = 0; f < num_fields; ++f) {
      for (std::size_t i = f * batch_size; i < (f + 1) * batch_size; ++i) {
        const std::int64_t length = batch.lengths[i];
        ADRANK_CHECK_VALUE(length >= 0, "lengths must be >= 0, got lengths[", i, "] = ", length);
        running += length;  // both at most num_values: no overflow
        ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(running) <= num_values,
                           "lengths sum to more than len(values) = ", num_values);
      }
      offsets[f + 1] = running;
    }
  }
  ADRANK_CHECK_VALUE(static_cast<std::uint64_t>(offsets.back()) == num_values, "lengths sum to ",
                     offsets.back(), " but values has ", num_values, " entries");
  for (std::size_t f = 0; f < num_fields; ++f) {
    const FieldNote where{static_cast<std::ptrdiff_t>(f)};
    check_ids(batch.index_type, batch.values, static_cast<std::size_t>(offsets[f]),
              static_cast<std::size_t>(offsets[f + 1]), fields[f].table.num_rows, "values", where);
  }
  const std::size_t width = collection_width(fields);
  ADRANK_CHECK_VALUE(out.data != nullptr || width * batch_size == 0, "out has no data");
  ADRANK_CHECK_VALUE(out.row_stride >= width, "out rows must hold at least ", width,
                     " floats, got ", out.row_stride);
}

void embedding_bag_collection_unchecked(const std::vector<PooledField>& fields,
                                        const KeyedBatch& batch,
                                        const std::vector<std::int64_t>& field_starts,
                                        const PooledOutput& out) {
  const std::size_t batch_size = batch.batch_size;
  const std::size_t num_bags = fields.size() * batch_size;
  if (num_bags == 0) return;
  std::vector<std::size_t> columns(fields.size());
  std::size_t bytes = 0;
  for (std::size_t f = 0, column = 0; f < fields.size(); ++f) {
    columns[f] = column;
    column += static_cast<std::size_t>(fields[f].table.dim);
    bytes += fields[f].table.row_bytes();
  }
  const std::size_t grain = bag_grain(num_bags, batch.num_values, bytes / fields.size());
  // One dispatch over every (field, sample) bag; a chunk may span several fields.
  parallel_for(num_bags, grain, [&](std::size_t begin, std::size_t end) {
    for (std::size_t f = begin / batch_size; f * batch_size < end; ++f) {
      BagRun run;
      run.index_type = batch.index_type;
      run.indices = batch.values;
      run.num_indices = batch.num_values;
      run.lengths = batch.lengths + f * batch_size;
      run.bag_begin = std::max(begin, f * batch_size) - f * batch_size;
      run.bag_end = std::min(end, (f + 1) * batch_size) - f * batch_size;
      // A chunk that starts inside the field sums the lengths before it (threads only).
      std::size_t first = static_cast<std::size_t>(field_starts[f]);
      for (std::size_t b = 0; b < run.bag_begin; ++b) {
        first += static_cast<std::size_t>(run.lengths[b]);
      }
      run.first_index = first;
      run.prefetch_end = static_cast<std::size_t>(field_starts[f + 1]);
      run.weights = batch.per_sample_weights;
      run.out = out.data + columns[f];
      run.out_row_stride = out.row_stride;
      run.row_bytes = fields[f].table.row_bytes();
      pool_bags(fields[f].table, fields[f].pooling, run);
    }
  });
}

void embedding_bag_collection(const std::vector<PooledField>& fields, const KeyedBatch& batch,
                              const PooledOutput& out) {
  const std::vector<std::int64_t> offsets = validate_collection(fields, batch, out);
  embedding_bag_collection_unchecked(fields, batch, offsets, out);
}

}  // namespace adrank
