// The dispatch from a call's run-time choices (pooling mode and weights, table type, index and
// offset types) to a pooling kernel's templates, written once for every instruction set.
//
// Included inside a kernel's namespace (generic, avx2 through embedding_kernel.hpp; avx512),
// after that namespace's Kind, its row types Float32Rows, Float16Rows and Int8RowwiseRows, each
// built from {data, dim}, and its pool_run<Kind, Rows, Index, Offset>(rows, pooling, run). It
// defines the namespace's pool_bags, declared in embedding_internal.hpp. No include guard: each
// kernel's file includes it once, in its own namespace. No standard-library template either
// (see embedding_kernel.hpp).

template <class Rows, class Index, class Offset>
void pool_rows(const Rows& rows, const Pooling& pooling, const BagRun& run) {
  if (pooling.mode == PoolingMode::kMax) {
    pool_run<Kind::kMax, Rows, Index, Offset>(rows, pooling, run);
  } else if (run.weights != nullptr) {
    pool_run<Kind::kWeightedSum, Rows, Index, Offset>(rows, pooling, run);
  } else {
    pool_run<Kind::kSum, Rows, Index, Offset>(rows, pooling, run);
  }
}

template <class Index, class Offset>
void pool_typed(const TableView& table, const Pooling& pooling, const BagRun& run) {
  const auto dim = static_cast<std::size_t>(table.dim);
  switch (table.type) {
    case TableType::kFloat32:
      pool_rows<Float32Rows, Index, Offset>({static_cast<const float*>(table.data), dim}, pooling,
                                            run);
      return;
    case TableType::kFloat16:
      pool_rows<Float16Rows, Index, Offset>({static_cast<const std::uint16_t*>(table.data), dim},
                                            pooling, run);
      return;
    case TableType::kInt8Rowwise:
      pool_rows<Int8RowwiseRows, Index, Offset>({static_cast<const std::uint8_t*>(table.data), dim},
                                                pooling, run);
      return;
  }
}

void pool_bags(const TableView& table, const Pooling& pooling, const BagRun& run) {
  if (run.bag_begin >= run.bag_end) return;
  if (run.index_type == IndexType::kInt32) {
    if (run.offsets_int64) {
      pool_typed<std::int32_t, std::int64_t>(table, pooling, run);
    } else {
      pool_typed<std::int32_t, std::int32_t>(table, pooling, run);
    }
  } else {
    pool_typed<std::int64_t, std::int64_t>(table, pooling, run);
  }
}
