// adrank._native: the only module that knows Python. Kernels live in cpp/src.
#include <pybind11/pybind11.h>

#include "adrank/check.hpp"
#include "adrank/parallel.hpp"
#include "adrank/simd.hpp"
#include "module.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_native, m) {
  m.doc() = "adrank's C++ kernels. Use adrank.ops; this module is private.";

  // std::invalid_argument and std::out_of_range already map to ValueError and IndexError.
  py::register_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const adrank::type_error& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });

  m.def("set_num_threads", &adrank::set_num_threads, py::arg("num_threads"));
  m.def("get_num_threads", &adrank::get_num_threads);
  m.def("set_simd", &adrank::set_simd, py::arg("level"),
        "Run every kernel family at 'auto', 'avx2' or 'generic' from the next call on.");
  m.def("get_simd", &adrank::simd_name,
        "The instruction set kernels run with: 'avx2' or 'generic'.");

  adrank::bindings::bind_hashing(m);
  adrank::bindings::bind_embedding(m);
  adrank::bindings::bind_topk(m);
  adrank::bindings::bind_auction(m);
  adrank::bindings::bind_dynamic_table(m);
}
