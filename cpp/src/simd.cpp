#include "adrank/simd.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "adrank/check.hpp"

namespace adrank {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

SimdLevel best_level() { return cpu_has_avx2() ? SimdLevel::kAvx2 : SimdLevel::kGeneric; }

// ADRANK_SIMD at load; a bad value must not stop the module from loading, so it means "auto".
SimdLevel level_from_environment() {
  const char* name = std::getenv("ADRANK_SIMD");
  if (name != nullptr && (std::strcmp(name, "generic") == 0 || std::strcmp(name, "scalar") == 0)) {
    return SimdLevel::kGeneric;
  }
  return best_level();
}

std::atomic<int>& current() {
  static std::atomic<int> level{static_cast<int>(level_from_environment())};
  return level;
}

}  // namespace

SimdLevel simd_level() { return static_cast<SimdLevel>(current().load(std::memory_order_relaxed)); }

const char* simd_name() { return simd_level() == SimdLevel::kAvx2 ? "avx2" : "generic"; }

void set_simd(const std::string& name) {
  SimdLevel level = SimdLevel::kGeneric;
  if (name == "avx2") {
    ADRANK_CHECK_VALUE(cpu_has_avx2(),
                       "simd 'avx2' needs AVX2, FMA and F16C, which this CPU lacks");
    level = SimdLevel::kAvx2;
  } else if (name == "auto") {
    level = best_level();
  } else {
    ADRANK_CHECK_VALUE(name == "generic", "simd must be 'auto', 'avx2' or 'generic', got '", name,
                       "'");
  }
  current().store(static_cast<int>(level));
}

}  // namespace adrank
