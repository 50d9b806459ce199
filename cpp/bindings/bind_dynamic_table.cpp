// Bindings for the dynamic embedding table (cpp/include/adrank/dynamic_table.hpp). Every call
// validates while it holds the GIL and releases it to run, so readers and a writer in different
// Python threads run at once.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>

#include "adrank/check.hpp"
#include "adrank/dynamic_table.hpp"
#include "arrays.hpp"
#include "module.hpp"

namespace adrank::bindings {
namespace {

std::size_t dim_of(const DynamicTable& t) { return static_cast<std::size_t>(t.config().dim); }

const std::int64_t* checked_ids(const py::array& ids, const char* name) {
  return checked_data<std::int64_t>(ids, name);
}

// A 2-D float32 array of n rows of the table's dim.
const float* checked_matrix(const py::array& a, const char* name, std::size_t n, std::size_t dim) {
  const float* data = checked_data<float>(a, name, 2);
  ADRANK_CHECK_VALUE(
      static_cast<std::size_t>(a.shape(0)) == n && static_cast<std::size_t>(a.shape(1)) == dim,
      name, " must have shape (", n, ", ", dim, "), got (", a.shape(0), ", ", a.shape(1), ")");
  return data;
}

float* checked_out_matrix(py::array& a, const char* name, std::size_t n, std::size_t dim) {
  checked_matrix(a, name, n, dim);
  ADRANK_CHECK_VALUE(a.writeable(), name, " must be writable");
  return static_cast<float*>(a.mutable_data());
}

std::uint8_t* optional_flags(const py::object& flags, const char* name, std::size_t n) {
  if (flags.is_none()) return nullptr;
  auto array = flags.cast<py::array>();
  return checked_output<std::uint8_t>(array, name, n);
}

py::dict config_dict(const DynamicTableConfig& c) {
  py::dict d;
  d["dim"] = c.dim;
  d["memory_limit_bytes"] = c.memory_limit_bytes;
  d["admit_threshold"] = c.admit_threshold;
  d["admit_probability"] = c.admit_probability;
  d["sketch_width"] = c.sketch_width;
  d["sketch_depth"] = c.sketch_depth;
  d["ttl"] = c.ttl;
  d["rare_ttl"] = c.rare_ttl;
  d["rare_count"] = c.rare_count;
  d["init_scale"] = c.init_scale;
  d["seed"] = c.seed;
  return d;
}

std::unique_ptr<DynamicTable> make_table(std::int64_t dim, std::size_t memory_limit_bytes,
                                         std::int64_t admit_threshold, double admit_probability,
                                         std::int64_t sketch_width, std::int64_t sketch_depth,
                                         std::int64_t ttl, std::int64_t rare_ttl,
                                         std::int64_t rare_count, float init_scale,
                                         std::uint64_t seed) {
  DynamicTableConfig c;
  c.dim = dim;
  c.memory_limit_bytes = memory_limit_bytes;
  c.admit_threshold = admit_threshold;
  c.admit_probability = admit_probability;
  c.sketch_width = sketch_width;
  c.sketch_depth = sketch_depth;
  c.ttl = ttl;
  c.rare_ttl = rare_ttl;
  c.rare_count = rare_count;
  c.init_scale = init_scale;
  c.seed = seed;
  return std::make_unique<DynamicTable>(c);
}

}  // namespace

void bind_dynamic_table(py::module_& m) {
  using Table = DynamicTable;
  py::class_<Table>(m, "DynamicTable")
      .def(py::init(&make_table), py::kw_only(), py::arg("dim"), py::arg("memory_limit_bytes"),
           py::arg("admit_threshold"), py::arg("admit_probability"), py::arg("sketch_width"),
           py::arg("sketch_depth"), py::arg("ttl"), py::arg("rare_ttl"), py::arg("rare_count"),
           py::arg("init_scale"), py::arg("seed"))
      .def_property_readonly("config", [](const Table& t) { return config_dict(t.config()); })
      .def_property_readonly("max_rows", &Table::max_rows)
      .def_property_readonly("memory_bytes", &Table::memory_bytes)
      .def_property_readonly("peak_memory_bytes", &Table::peak_memory_bytes)
      .def("__len__", &Table::size)
      .def("__contains__", &Table::contains, py::arg("id"))
      .def("stats",
           [](const Table& t) {
             const DynamicTableStats s = t.stats();
             py::dict d;
             d["rows"] = s.rows;
             d["max_rows"] = s.max_rows;
             d["index_capacity"] = s.index_capacity;
             d["admitted"] = s.admitted;
             d["rejected"] = s.rejected;
             d["evicted"] = s.evicted;
             d["expired"] = s.expired;
             d["rebuilds"] = s.rebuilds;
             return d;
           })
      .def(
          "observe",
          [](Table& t, const py::array& ids, std::int64_t now, py::array& admitted) {
            const auto* p = checked_ids(ids, "ids");
            const auto n = static_cast<std::size_t>(ids.size());
            auto* flags = checked_output<std::uint8_t>(admitted, "admitted", n);
            py::gil_scoped_release release;
            t.observe(p, n, now, flags);
          },
          py::arg("ids").noconvert(), py::arg("now"), py::arg("admitted").noconvert())
      .def(
          "upsert",
          [](Table& t, const py::array& ids, const py::array& values, std::int64_t now) {
            const auto* p = checked_ids(ids, "ids");
            const auto n = static_cast<std::size_t>(ids.size());
            const float* v = checked_matrix(values, "values", n, dim_of(t));
            py::gil_scoped_release release;
            t.upsert(p, n, v, now);
          },
          py::arg("ids").noconvert(), py::arg("values").noconvert(), py::arg("now"))
      .def(
          "remove",
          [](Table& t, const py::array& ids) {
            const auto* p = checked_ids(ids, "ids");
            py::gil_scoped_release release;
            return t.remove(p, static_cast<std::size_t>(ids.size()));
          },
          py::arg("ids").noconvert())
      .def("expire", &Table::expire, py::arg("now"), py::call_guard<py::gil_scoped_release>())
      .def(
          "apply_adagrad",
          [](Table& t, const py::array& ids, const py::array& grads, float lr, float eps,
             std::int64_t now) {
            const auto* p = checked_ids(ids, "ids");
            const auto n = static_cast<std::size_t>(ids.size());
            const float* g = checked_matrix(grads, "grads", n, dim_of(t));
            ADRANK_CHECK_VALUE(lr > 0.0f && std::isfinite(lr), "lr must be finite and > 0, got ",
                               lr);
            ADRANK_CHECK_VALUE(eps > 0.0f && std::isfinite(eps), "eps must be finite and > 0, got ",
                               eps);
            py::gil_scoped_release release;
            return t.apply_adagrad(p, n, g, lr, eps, now);
          },
          py::arg("ids").noconvert(), py::arg("grads").noconvert(), py::arg("lr"), py::arg("eps"),
          py::arg("now"))
      .def(
          "set_default_row",
          [](Table& t, const py::object& values) {
            if (values.is_none()) return t.set_default_row(nullptr);
            const auto array = values.cast<py::array>();
            const float* v = checked_data<float>(array, "values");
            ADRANK_CHECK_VALUE(static_cast<std::size_t>(array.size()) == dim_of(t),
                               "values must hold dim (", dim_of(t), ") floats, got ", array.size());
            t.set_default_row(v);
          },
          py::arg("values").none(true))
      .def(
          "lookup",
          [](const Table& t, const py::array& ids, py::array& out, const py::object& found) {
            const auto* p = checked_ids(ids, "ids");
            const auto n = static_cast<std::size_t>(ids.size());
            float* o = checked_out_matrix(out, "out", n, dim_of(t));
            std::uint8_t* f = optional_flags(found, "found", n);
            py::gil_scoped_release release;
            return t.lookup(p, n, o, f);
          },
          py::arg("ids").noconvert(), py::arg("out").noconvert(), py::arg("found").none(true))
      .def(
          "embedding_bag",
          [](const Table& t, const py::array& indices, const py::array& offsets, PoolingMode mode,
             const py::object& per_sample_weights, bool include_last_offset,
             std::int64_t padding_idx, py::array& out) {
            BagBatch bags;
            bags.indices = checked_ids(indices, "indices");
            bags.offsets = checked_ids(offsets, "offsets");
            bags.num_indices = static_cast<std::size_t>(indices.size());
            bags.include_last_offset = include_last_offset;
            const auto num_offsets = static_cast<std::size_t>(offsets.size());
            ADRANK_CHECK_VALUE(!include_last_offset || num_offsets >= 1,
                               "offsets must hold at least one entry with "
                               "include_last_offset=True");
            bags.num_bags = include_last_offset ? num_offsets - 1 : num_offsets;
            if (!per_sample_weights.is_none()) {
              const auto w = per_sample_weights.cast<py::array>();
              bags.per_sample_weights = checked_data<float>(w, "per_sample_weights");
              ADRANK_CHECK_VALUE(static_cast<std::size_t>(w.size()) == bags.num_indices,
                                 "per_sample_weights must have one weight per id (",
                                 bags.num_indices, "), got ", w.size());
            }
            const PooledOutput pooled{checked_out_matrix(out, "out", bags.num_bags, dim_of(t)),
                                      dim_of(t)};
            const Pooling pooling{mode, padding_idx};
            py::gil_scoped_release release;
            return t.embedding_bag(bags, pooling, pooled);
          },
          py::arg("indices").noconvert(), py::arg("offsets").noconvert(), py::arg("mode"),
          py::arg("per_sample_weights").none(true), py::arg("include_last_offset"),
          py::arg("padding_idx"), py::arg("out").noconvert())
      .def("save", &Table::save, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def_static("load", &Table::load, py::arg("path"), py::arg("memory_limit_bytes"),
                  py::call_guard<py::gil_scoped_release>())
      .def(
          "export_delta",
          [](Table& t, const std::string& path) {
            bool full = false;
            std::int64_t rows;
            {
              py::gil_scoped_release release;
              rows = t.export_delta(path, &full);
            }
            return py::make_tuple(rows, full);
          },
          py::arg("path"))
      .def("apply_delta", &Table::apply_delta, py::arg("path"),
           py::call_guard<py::gil_scoped_release>())
      .def("ids",
           [](Table& t) {
             std::vector<std::int64_t> ids;
             {
               py::gil_scoped_release release;
               ids = t.ids();
             }
             return py::array_t<std::int64_t>(static_cast<py::ssize_t>(ids.size()), ids.data());
           })
      .def(
          "row_meta",
          [](Table& t, std::int64_t id) -> py::object {
            std::int64_t count = 0, last_seen = 0;
            float state = 0.0f;
            if (!t.row_meta(id, &count, &last_seen, &state)) return py::none();
            return py::make_tuple(count, last_seen, state);
          },
          py::arg("id"));
}

}  // namespace adrank::bindings
