// Array checks shared by the binding files. Arrays cross the boundary with .noconvert(): the
// Python wrappers convert on purpose, so a hot path never copies by accident. Every check names
// the argument and says what was expected and what came.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <string>

#include "adrank/check.hpp"

namespace adrank::bindings {

namespace py = pybind11;

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

// Checks dtype (TypeError), C-contiguity and dimensionality (ValueError); returns the data.
template <class T>
const T* checked_data(const py::array& a, const char* name, int ndim = 1) {
  ADRANK_CHECK_TYPE(a.dtype().is(py::dtype::of<T>()), name, " must have dtype ",
                    py::str(py::dtype::of<T>()).cast<std::string>(), ", got ", dtype_name(a));
  ADRANK_CHECK_VALUE(a.ndim() == ndim, name, " must be ", ndim, "-D, got ", a.ndim(), "-D");
  ADRANK_CHECK_VALUE(a.flags() & py::array::c_style, name, " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

// Same checks for an output buffer, which must also be writable and hold `size` items.
template <class T>
T* checked_output(py::array& a, const char* name, std::size_t size) {
  checked_data<T>(a, name, a.ndim());
  ADRANK_CHECK_VALUE(a.writeable(), name, " must be writable");
  ADRANK_CHECK_VALUE(static_cast<std::size_t>(a.size()) == size, name, " must hold ", size,
                     " items, got ", a.size());
  return static_cast<T*>(a.mutable_data());
}

}  // namespace adrank::bindings
