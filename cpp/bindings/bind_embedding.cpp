#include "module.hpp"

namespace adrank::bindings {

void bind_embedding(pybind11::module_& /*m*/) {}

}  // namespace adrank::bindings
