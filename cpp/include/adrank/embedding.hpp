// Embedding lookup: pooled bags of table rows, with torch.nn.functional.embedding_bag semantics.
//
// Glossary: R rows in a table, D columns (the dim), N ids, B bags, F fields (keys).
//
// A table row r, as fp32:
//   kFloat32      data[r * D + c]
//   kFloat16      float(data[r * D + c])                         (IEEE binary16)
//   kInt8Rowwise  q[c] * scale + bias, where the row is D uint8 q, then fp32 scale, fp32 bias
//                 (D + 8 bytes a row: FBGEMM's and torch.ops.quantized' "byte rowwise" layout)
//
// embedding_bag, per bag b (ids at positions [offsets[b], offsets[b + 1]), the last bag ending
// at N):
//   kept = [p in the bag if indices[p] != padding_idx]
//   kSum   out[b] = sum over kept of w[p] * row(indices[p])      (w = 1 without weights)
//   kMean  out[b] = (sum over kept of row(indices[p])) / len(kept)
//   kMax   out[b] = elementwise max over kept of row(indices[p])
//   a bag with nothing kept is a row of zeros. Output is fp32.
//
// Strict where torch is lenient: offsets[0] == 0, offsets never decrease, no offset exceeds N,
// and with include_last_offset the last offset equals N. Every id is in [0, R).
//
// The pooling loop has a generic, an AVX2 and an AVX-512 (F, BW, VL, DQ) twin; simd.hpp picks
// one (ADRANK_SIMD, set_simd).
//
// All functions validate first and throw (check.hpp) before writing anything; the *_unchecked
// kernels skip validation so that a caller (the Python binding) can validate while it holds
// the GIL and compute after releasing it. Tables are only read: one table may serve any number
// of concurrent calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace adrank {

enum class TableType : int { kFloat32 = 0, kFloat16 = 1, kInt8Rowwise = 2 };
enum class PoolingMode : int { kSum = 0, kMean = 1, kMax = 2 };
enum class IndexType : int { kInt32 = 0, kInt64 = 1 };

// Bytes a kInt8Rowwise row carries after its D codes: fp32 scale, fp32 bias.
constexpr std::size_t kRowwiseTrailerBytes = 8;

struct TableView {
  const void* data = nullptr;  // R rows of row_bytes(), contiguous
  TableType type = TableType::kFloat32;
  std::int64_t num_rows = 0;
  std::int64_t dim = 0;

  std::size_t row_bytes() const;
};

// Bags over one table. indices and offsets share index_type. offsets holds num_bags entries,
// plus one more (== num_indices) when include_last_offset.
struct BagBatch {
  IndexType index_type = IndexType::kInt64;
  const void* indices = nullptr;
  std::size_t num_indices = 0;
  const void* offsets = nullptr;
  std::size_t num_bags = 0;
  bool include_last_offset = false;
  const float* per_sample_weights = nullptr;  // num_indices weights, or nullptr (kSum only)
};

struct Pooling {
  PoolingMode mode = PoolingMode::kSum;
  std::int64_t padding_idx = -1;  // an id in [0, R) to skip, or -1 for none
};

// Where pooled rows go: row b is D floats at data + b * row_stride.
struct PooledOutput {
  float* data = nullptr;
  std::size_t row_stride = 0;
};

void validate_table(const TableView& table);
void validate_embedding_bag(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                            const PooledOutput& out);
void embedding_bag_unchecked(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                             const PooledOutput& out);
void embedding_bag(const TableView& table, const BagBatch& bags, const Pooling& pooling,
                   const PooledOutput& out);

// A keyed jagged batch (torchrec's KeyedJaggedTensor): values are key-major; lengths[f * B + b]
// ids belong to sample b of field f. Field f is pooled over fields[f].table with its own mode,
// into columns [column_f, column_f + D_f) of out, where column_f = D_0 + ... + D_{f-1}: out is
// [B, sum of D_f], which is [B, F, D] when every D_f is D. Several fields may share a table.
struct PooledField {
  TableView table;
  Pooling pooling;
};

struct KeyedBatch {
  IndexType index_type = IndexType::kInt64;
  const void* values = nullptr;
  std::size_t num_values = 0;
  const std::int64_t* lengths = nullptr;  // F * B entries
  std::size_t batch_size = 0;             // B
  const float* per_sample_weights = nullptr;
};

// Validates everything and returns where each field's values start (F + 1 entries, the last
// N), which the kernel then uses: lengths are summed once, per field, with no per-bag offsets.
std::vector<std::int64_t> validate_collection(const std::vector<PooledField>& fields,
                                              const KeyedBatch& batch, const PooledOutput& out);
// The same into a caller's vector, whose capacity is reused from call to call.
void validate_collection(const std::vector<PooledField>& fields, const KeyedBatch& batch,
                         const PooledOutput& out, std::vector<std::int64_t>& field_starts);
void embedding_bag_collection_unchecked(const std::vector<PooledField>& fields,
                                        const KeyedBatch& batch,
                                        const std::vector<std::int64_t>& field_starts,
                                        const PooledOutput& out);
void embedding_bag_collection(const std::vector<PooledField>& fields, const KeyedBatch& batch,
                              const PooledOutput& out);

// Total output columns of a collection: sum of D_f.
std::size_t collection_width(const std::vector<PooledField>& fields);

}  // namespace adrank
