// Bindings for the embedding lookup kernels (cpp/include/adrank/embedding.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "adrank/check.hpp"
#include "adrank/embedding.hpp"
#include "arrays.hpp"
#include "module.hpp"

namespace adrank::bindings {
namespace {

// A table's view plus the array that owns its memory, so the rows outlive every lookup that
// reads them, with the GIL released or not.
struct PyTable {
  TableView view;
  py::object owner;
};

bool is_float16(const py::array& a) { return a.dtype().kind() == 'f' && a.dtype().itemsize() == 2; }

PyTable make_table(const py::array& data, TableType type) {
  ADRANK_CHECK_VALUE(data.ndim() == 2, "data must be 2-D, got ", data.ndim(), "-D");
  ADRANK_CHECK_VALUE(data.flags() & py::array::c_style, "data must be C-contiguous");
  PyTable table;
  table.owner = data;
  table.view.data = data.data();
  table.view.num_rows = data.shape(0);
  table.view.dim = data.shape(1);
  table.view.type = type;
  switch (table.view.type) {
    case TableType::kFloat32:
      checked_data<float>(data, "data", 2);
      break;
    case TableType::kFloat16:
      ADRANK_CHECK_TYPE(is_float16(data), "data must have dtype float16, got ", dtype_name(data));
      break;
    case TableType::kInt8Rowwise:
      checked_data<std::uint8_t>(data, "data", 2);
      ADRANK_CHECK_VALUE(data.shape(1) > static_cast<py::ssize_t>(kRowwiseTrailerBytes),
                         "int8 rowwise data must have more than ", kRowwiseTrailerBytes,
                         " columns (codes, then fp32 scale and bias), got ", data.shape(1));
      table.view.dim = data.shape(1) - static_cast<py::ssize_t>(kRowwiseTrailerBytes);
      break;
    default:
      break;  // validate_table names the type
  }
  validate_table(table.view);
  return table;
}

IndexType index_type_of(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<std::int64_t>())) {
    checked_data<std::int64_t>(a, name);
    return IndexType::kInt64;
  }
  ADRANK_CHECK_TYPE(a.dtype().is(py::dtype::of<std::int32_t>()), name,
                    " must have dtype int32 or int64, got ", dtype_name(a));
  checked_data<std::int32_t>(a, name);
  return IndexType::kInt32;
}

const float* optional_weights(const py::object& weights, std::size_t n) {
  if (weights.is_none()) return nullptr;
  const auto array = weights.cast<py::array>();
  const auto* data = checked_data<float>(array, "per_sample_weights");
  ADRANK_CHECK_VALUE(static_cast<std::size_t>(array.size()) == n,
                     "per_sample_weights must have one weight per id (", n, "), got ",
                     array.size());
  return data;
}

float* checked_rows(py::array& out, std::size_t rows, std::size_t width) {
  ADRANK_CHECK_VALUE(out.ndim() >= 2, "out must be at least 2-D, got ", out.ndim(), "-D");
  ADRANK_CHECK_VALUE(static_cast<std::size_t>(out.shape(0)) == rows, "out must have ", rows,
                     " rows, got ", out.shape(0));
  return checked_output<float>(out, "out", rows * width);
}

// A collection's fields prepared once: each call then converts no Python list (26 fields cost
// about 2 us to convert, more than the lookup of a request's few rows).
struct PyCollection {
  std::vector<PooledField> fields;
  std::vector<py::object> tables;  // the Table objects, which own the fields' rows
  std::size_t width = 0;

  PyCollection(const std::vector<py::object>& table_objects, const std::vector<PoolingMode>& modes,
               const std::vector<std::int64_t>& padding_idx)
      : fields(table_objects.size()), tables(table_objects) {
    const std::size_t num_fields = tables.size();
    ADRANK_CHECK_VALUE(num_fields >= 1, "tables must name at least one field");
    ADRANK_CHECK_VALUE(modes.size() == num_fields && padding_idx.size() == num_fields,
                       "modes and padding_idx must have one entry per table (", num_fields,
                       "), got ", modes.size(), " and ", padding_idx.size());
    for (std::size_t f = 0; f < num_fields; ++f) {
      ADRANK_CHECK_TYPE(py::isinstance<PyTable>(tables[f]), "tables[", f, "] must be a Table, got ",
                        Py_TYPE(tables[f].ptr())->tp_name);
      fields[f].table = tables[f].cast<const PyTable&>().view;
      fields[f].pooling = {modes[f], padding_idx[f]};
    }
    width = collection_width(fields);
  }

  void pool(const py::array& values, const py::array& lengths, const py::object& weights,
            py::array& out) const {
    const std::size_t num_fields = fields.size();
    KeyedBatch batch;
    batch.index_type = index_type_of(values, "values");
    batch.values = values.data();
    batch.num_values = static_cast<std::size_t>(values.size());
    batch.lengths = checked_data<std::int64_t>(lengths, "lengths");
    const auto num_lengths = static_cast<std::size_t>(lengths.size());
    ADRANK_CHECK_VALUE(num_lengths % num_fields == 0, "lengths must hold a multiple of ",
                       num_fields, " entries (one per field and sample), got ", num_lengths);
    batch.batch_size = num_lengths / num_fields;
    batch.per_sample_weights = optional_weights(weights, batch.num_values);
    const PooledOutput pooled{checked_rows(out, batch.batch_size, width), width};
    // Kept per thread from call to call: its capacity is mapped once (see validate_collection).
    thread_local std::vector<std::int64_t> offsets;
    validate_collection(fields, batch, pooled, offsets);
    py::gil_scoped_release release;
    embedding_bag_collection_unchecked(fields, batch, offsets, pooled);
  }
};

}  // namespace

void bind_embedding(py::module_& m) {
  // The names are the strings users pass and table files store: Python maps them through
  // __members__, so each code is written here once.
  py::enum_<TableType>(m, "TableType", "How a table stores its rows.")
      .value("float32", TableType::kFloat32)
      .value("float16", TableType::kFloat16)
      .value("int8_rowwise", TableType::kInt8Rowwise);
  py::enum_<PoolingMode>(m, "PoolingMode", "How a bag's rows are pooled.")
      .value("sum", PoolingMode::kSum)
      .value("mean", PoolingMode::kMean)
      .value("max", PoolingMode::kMax);

  py::class_<PyTable>(m, "Table")
      .def(py::init(&make_table), py::arg("data").noconvert(), py::arg("type"))
      .def_property_readonly("num_rows", [](const PyTable& t) { return t.view.num_rows; })
      .def_property_readonly("dim", [](const PyTable& t) { return t.view.dim; })
      .def_property_readonly("type", [](const PyTable& t) { return t.view.type; })
      .def_property_readonly("data", [](const PyTable& t) { return t.owner; });

  m.def(
      "embedding_bag",
      [](const PyTable& table, const py::array& indices, const py::array& offsets, PoolingMode mode,
         const py::object& per_sample_weights, bool include_last_offset, std::int64_t padding_idx,
         py::array& out) {
        BagBatch bags;
        bags.index_type = index_type_of(indices, "indices");
        ADRANK_CHECK_TYPE(offsets.dtype().is(indices.dtype()),
                          "offsets must have the dtype of indices (", dtype_name(indices),
                          "), got ", dtype_name(offsets));
        index_type_of(offsets, "offsets");
        bags.indices = indices.data();
        bags.num_indices = static_cast<std::size_t>(indices.size());
        bags.offsets = offsets.data();
        bags.include_last_offset = include_last_offset;
        const auto num_offsets = static_cast<std::size_t>(offsets.size());
        ADRANK_CHECK_VALUE(!include_last_offset || num_offsets >= 1,
                           "offsets must hold at least one entry with include_last_offset=True");
        bags.num_bags = include_last_offset ? num_offsets - 1 : num_offsets;
        bags.per_sample_weights = optional_weights(per_sample_weights, bags.num_indices);
        const Pooling pooling{mode, padding_idx};
        const auto dim = static_cast<std::size_t>(table.view.dim);
        const PooledOutput pooled{checked_rows(out, bags.num_bags, dim), dim};
        validate_embedding_bag(table.view, bags, pooling, pooled);
        py::gil_scoped_release release;
        embedding_bag_unchecked(table.view, bags, pooling, pooled);
      },
      py::arg("table"), py::arg("indices").noconvert(), py::arg("offsets").noconvert(),
      py::arg("mode"), py::arg("per_sample_weights").none(true), py::arg("include_last_offset"),
      py::arg("padding_idx"), py::arg("out").noconvert());

  py::class_<PyCollection>(m, "Collection")
      .def(py::init<const std::vector<py::object>&, const std::vector<PoolingMode>&,
                    const std::vector<std::int64_t>&>(),
           py::arg("tables"), py::arg("modes"), py::arg("padding_idx"))
      .def_property_readonly("width", [](const PyCollection& c) { return c.width; })
      .def("__call__", &PyCollection::pool, py::arg("values").noconvert(),
           py::arg("lengths").noconvert(), py::arg("per_sample_weights").none(true),
           py::arg("out").noconvert());

  m.def(
      "embedding_bag_collection",
      [](const std::vector<py::object>& tables, const std::vector<PoolingMode>& modes,
         const std::vector<std::int64_t>& padding_idx, const py::array& values,
         const py::array& lengths, const py::object& per_sample_weights, py::array& out) {
        PyCollection(tables, modes, padding_idx).pool(values, lengths, per_sample_weights, out);
      },
      py::arg("tables"), py::arg("modes"), py::arg("padding_idx"), py::arg("values").noconvert(),
      py::arg("lengths").noconvert(), py::arg("per_sample_weights").none(true),
      py::arg("out").noconvert());
}

}  // namespace adrank::bindings
