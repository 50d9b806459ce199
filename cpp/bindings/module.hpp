// The pieces of adrank._native, one binding file per kernel family.
#pragma once

#include <pybind11/pybind11.h>

namespace adrank::bindings {

void bind_hashing(pybind11::module_& m);
void bind_embedding(pybind11::module_& m);
void bind_topk(pybind11::module_& m);
void bind_auction(pybind11::module_& m);
void bind_dynamic_table(pybind11::module_& m);

}  // namespace adrank::bindings
