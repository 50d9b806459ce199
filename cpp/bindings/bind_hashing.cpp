// Bindings for the feature-hashing kernels (cpp/include/adrank/hashing.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "adrank/check.hpp"
#include "adrank/hashing.hpp"
#include "arrays.hpp"
#include "module.hpp"

namespace adrank::bindings {
namespace {

// A StringColumn plus whatever keeps its memory alive: the Python objects or the buffers.
struct PyStringColumn {
  StringColumn column;
  py::object owner;
  std::vector<const char*> view_data;
  std::vector<std::int64_t> view_lengths;

  // str is hashed as UTF-8 (CPython caches the encoding on the object), bytes as they are;
  // None and float NaN are missing. A tuple snapshot holds a reference to every value, so the
  // pointers stay valid with the GIL released even if the caller's list changes meanwhile.
  static PyStringColumn from_objects(const py::handle& values) {
    PyStringColumn out;
    out.owner = py::reinterpret_steal<py::object>(PySequence_Tuple(values.ptr()));
    if (!out.owner) throw py::error_already_set();
    const Py_ssize_t n = PyTuple_GET_SIZE(out.owner.ptr());
    out.view_data.resize(static_cast<std::size_t>(n));
    out.view_lengths.resize(static_cast<std::size_t>(n));
    for (Py_ssize_t i = 0; i < n; ++i) {
      PyObject* item = PyTuple_GET_ITEM(out.owner.ptr(), i);
      const char* data = nullptr;
      Py_ssize_t length = 0;
      if (PyUnicode_Check(item)) {
        data = PyUnicode_AsUTF8AndSize(item, &length);
        if (data == nullptr) {
          PyErr_Clear();
          ADRANK_CHECK_VALUE(false, "values[", i, "] is not valid Unicode (it has no UTF-8 form)");
        }
      } else if (PyBytes_Check(item)) {
        data = PyBytes_AS_STRING(item);
        length = PyBytes_GET_SIZE(item);
      } else if (item != Py_None && !(PyFloat_Check(item) && std::isnan(PyFloat_AS_DOUBLE(item)))) {
        ADRANK_CHECK_TYPE(false, "values[", i, "] must be str, bytes or None, got ",
                          Py_TYPE(item)->tp_name);
      }
      out.view_data[static_cast<std::size_t>(i)] = data;
      out.view_lengths[static_cast<std::size_t>(i)] = length;
    }
    out.column.layout = StringColumn::Layout::kViews;
    out.column.size = static_cast<std::size_t>(n);
    out.column.view_data = out.view_data.data();
    out.column.view_lengths = out.view_lengths.data();
    return out;
  }

  // Arrow's three buffers: `offsets` already sliced to the array (size + 1 entries).
  static PyStringColumn from_arrow(const py::array& data, const py::array& offsets,
                                   const py::object& validity, std::int64_t validity_offset) {
    PyStringColumn out;
    out.owner = py::make_tuple(data, offsets, validity);
    const auto* bytes = checked_data<std::uint8_t>(data, "data");
    ADRANK_CHECK_VALUE(offsets.ndim() == 1 && offsets.size() >= 1,
                       "offsets must be 1-D with at least one entry");
    const bool wide = offsets.dtype().is(py::dtype::of<std::int64_t>());
    out.column.layout = wide ? StringColumn::Layout::kArrow64 : StringColumn::Layout::kArrow32;
    out.column.offsets =
        wide ? static_cast<const void*>(checked_data<std::int64_t>(offsets, "offsets"))
             : static_cast<const void*>(checked_data<std::int32_t>(offsets, "offsets"));
    out.column.size = static_cast<std::size_t>(offsets.size() - 1);
    out.column.data = bytes;
    out.column.data_size = static_cast<std::size_t>(data.size());
    if (!validity.is_none()) {
      const auto bitmap = validity.cast<py::array>();
      out.column.validity = checked_data<std::uint8_t>(bitmap, "validity");
      ADRANK_CHECK_VALUE(validity_offset >= 0, "validity_offset must be >= 0");
      const auto bits_needed = static_cast<std::size_t>(validity_offset) + out.column.size;
      ADRANK_CHECK_VALUE(static_cast<std::size_t>(bitmap.size()) * 8 >= bits_needed,
                         "validity holds ", bitmap.size() * 8, " bits, ", bits_needed, " needed");
      out.column.validity_offset = validity_offset;
    }
    return out;
  }

  // numpy "S" (ucs4=false) or "U" (ucs4=true) items, as raw bytes.
  static PyStringColumn from_fixed(const py::array& data, std::size_t itemsize, bool ucs4) {
    PyStringColumn out;
    out.owner = data;
    ADRANK_CHECK_VALUE(itemsize >= 1 && (!ucs4 || itemsize % 4 == 0),
                       "itemsize must be positive (a multiple of 4 for UCS-4), got ", itemsize);
    out.column.data = checked_data<std::uint8_t>(data, "data");
    ADRANK_CHECK_VALUE(static_cast<std::size_t>(data.size()) % itemsize == 0, "data holds ",
                       data.size(), " bytes, not a multiple of itemsize ", itemsize);
    out.column.layout = ucs4 ? StringColumn::Layout::kFixedUcs4 : StringColumn::Layout::kFixedBytes;
    out.column.itemsize = itemsize;
    out.column.data_size = static_cast<std::size_t>(data.size());
    out.column.size = static_cast<std::size_t>(data.size()) / itemsize;
    return out;
  }
};

// key_offsets (K + 1), slots (K), num_buckets (K): the arrays must outlive the spec.
KeyedHashSpec keyed_spec(const py::array& key_offsets, const py::array& slots,
                         const py::array& num_buckets, std::uint64_t seed) {
  KeyedHashSpec spec;
  spec.key_offsets = checked_data<std::int64_t>(key_offsets, "key_offsets");
  spec.slots = checked_data<std::int64_t>(slots, "slots");
  spec.num_buckets = checked_data<std::int64_t>(num_buckets, "num_buckets");
  spec.num_keys = static_cast<std::size_t>(slots.size());
  ADRANK_CHECK_VALUE(key_offsets.size() == slots.size() + 1,
                     "key_offsets must have len(slots) + 1 entries, got ", key_offsets.size());
  ADRANK_CHECK_VALUE(num_buckets.size() == slots.size(),
                     "num_buckets must have one entry per slot, got ", num_buckets.size(), " for ",
                     slots.size(), " slots");
  spec.seed = seed;
  return spec;
}

}  // namespace

void bind_hashing(py::module_& m) {
  py::class_<PyStringColumn>(m, "StringColumn")
      .def_static("from_objects", &PyStringColumn::from_objects, py::arg("values"))
      .def_static("from_arrow", &PyStringColumn::from_arrow, py::arg("data").noconvert(),
                  py::arg("offsets").noconvert(), py::arg("validity").none(true),
                  py::arg("validity_offset"))
      .def_static("from_fixed", &PyStringColumn::from_fixed, py::arg("data").noconvert(),
                  py::arg("itemsize"), py::arg("ucs4"))
      .def("__len__", [](const PyStringColumn& c) { return c.column.size; });

  m.def(
      "hash_strings",
      [](const PyStringColumn& values, const py::array& key_offsets, const py::array& slots,
         const py::array& num_buckets, std::uint64_t seed, py::array& out) {
        const KeyedHashSpec spec = keyed_spec(key_offsets, slots, num_buckets, seed);
        auto* result = checked_output<std::int64_t>(out, "out", values.column.size);
        py::gil_scoped_release release;
        hash_strings(values.column, spec, result);
      },
      py::arg("values"), py::arg("key_offsets").noconvert(), py::arg("slots").noconvert(),
      py::arg("num_buckets").noconvert(), py::arg("seed"), py::arg("out").noconvert());

  m.def(
      "hash_ids",
      [](const py::array& ids, const py::object& validity, std::int64_t validity_offset,
         const py::array& key_offsets, const py::array& slots, const py::array& num_buckets,
         std::uint64_t seed, py::array& out) {
        const auto* values = checked_data<std::int64_t>(ids, "ids");
        const auto n = static_cast<std::size_t>(ids.size());
        const std::uint8_t* bitmap = nullptr;
        if (!validity.is_none()) {
          const auto array = validity.cast<py::array>();
          bitmap = checked_data<std::uint8_t>(array, "validity");
          ADRANK_CHECK_VALUE(validity_offset >= 0, "validity_offset must be >= 0");
          ADRANK_CHECK_VALUE(static_cast<std::size_t>(array.size()) * 8 >=
                                 static_cast<std::size_t>(validity_offset) + n,
                             "validity holds too few bits for ", n, " ids");
        }
        const KeyedHashSpec spec = keyed_spec(key_offsets, slots, num_buckets, seed);
        auto* result = checked_output<std::int64_t>(out, "out", n);
        py::gil_scoped_release release;
        hash_ids(values, bitmap, validity_offset, n, spec, result);
      },
      py::arg("ids").noconvert(), py::arg("validity").none(true), py::arg("validity_offset"),
      py::arg("key_offsets").noconvert(), py::arg("slots").noconvert(),
      py::arg("num_buckets").noconvert(), py::arg("seed"), py::arg("out").noconvert());

  m.def(
      "hash_cross",
      [](const std::vector<py::array>& columns, std::int64_t slot, std::int64_t num_buckets,
         std::uint64_t seed, py::array& out) {
        std::vector<const std::int64_t*> pointers;
        const std::size_t n = columns.empty() ? 0 : static_cast<std::size_t>(columns[0].size());
        for (std::size_t j = 0; j < columns.size(); ++j) {
          const std::string name = "columns[" + std::to_string(j) + "]";
          pointers.push_back(checked_data<std::int64_t>(columns[j], name.c_str()));
          ADRANK_CHECK_VALUE(static_cast<std::size_t>(columns[j].size()) == n,
                             "columns must have equal lengths: columns[0] has ", n, ", ", name,
                             " has ", columns[j].size());
        }
        auto* result = checked_output<std::int64_t>(out, "out", n);
        py::gil_scoped_release release;
        hash_cross(pointers.data(), pointers.size(), n, slot, num_buckets, seed, result);
      },
      py::arg("columns"), py::arg("slot"), py::arg("num_buckets"), py::arg("seed"),
      py::arg("out").noconvert());

  m.def(
      "bucketize",
      [](const py::array& values, const py::array& boundaries, py::array& out) {
        const auto* edges = checked_data<double>(boundaries, "boundaries");
        const auto num_edges = static_cast<std::size_t>(boundaries.size());
        const auto n = static_cast<std::size_t>(values.size());
        auto* result = checked_output<std::int64_t>(out, "out", n);
        if (values.dtype().is(py::dtype::of<float>())) {
          const auto* data = checked_data<float>(values, "values");
          py::gil_scoped_release release;
          bucketize(data, n, edges, num_edges, result);
        } else {
          const auto* data = checked_data<double>(values, "values");
          py::gil_scoped_release release;
          bucketize(data, n, edges, num_edges, result);
        }
      },
      py::arg("values").noconvert(), py::arg("boundaries").noconvert(), py::arg("out").noconvert());

  m.def(
      "hash_sklearn",
      [](const PyStringColumn& values, std::int64_t n_features, bool alternate_sign,
         py::array& indices, py::array& signs) {
        auto* index_out = checked_output<std::int64_t>(indices, "indices", values.column.size);
        auto* sign_out = checked_output<std::int8_t>(signs, "signs", values.column.size);
        py::gil_scoped_release release;
        hash_sklearn(values.column, n_features, alternate_sign, index_out, sign_out);
      },
      py::arg("values"), py::arg("n_features"), py::arg("alternate_sign"),
      py::arg("indices").noconvert(), py::arg("signs").noconvert());
}

}  // namespace adrank::bindings
