#include "module.hpp"

namespace adrank::bindings {

void bind_topk(pybind11::module_& /*m*/) {}

}  // namespace adrank::bindings
