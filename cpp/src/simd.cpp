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

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

SimdLevel best_level() {
  if (cpu_has_avx512()) return SimdLevel::kAvx512;
  return cpu_has_avx2() ? SimdLevel::kAvx2 : SimdLevel::kGeneric;
}

// ADRANK_SIMD at load; a bad value must not stop the module from loading, so it means "auto",
// and a level the CPU lacks means the best it has below it.
SimdLevel level_from_environment() {
  const char* name = std::getenv("ADRANK_SIMD");
  const SimdLevel best = best_level();
  if (name == nullptr) return best;
  if (std::strcmp(name, "generic") == 0 || std::strcmp(name, "scalar") == 0) {
    return SimdLevel::kGeneric;
  }
  if (std::strcmp(name, "avx2") == 0 && best >= SimdLevel::kAvx2) return SimdLevel::kAvx2;
  return best;
}

std::atomic<int>& current() {
  static std::atomic<int> level{static_cast<int>(level_from_environment())};
  return level;
}

}  // namespace

SimdLevel simd_level() { return static_cast<SimdLevel>(current().load(std::memory_order_relaxed)); }

const char* simd_name() {
  switch (simd_level()) {
    case SimdLevel::kAvx512:
      return "avx512";
    case SimdLevel::kAvx2:
      return "avx2";
    default:
      return "generic";
  }
}

void set_simd(const std::string& name) {
  SimdLevel level = SimdLevel::kGeneric;
  if (name == "avx512") {
    ADRANK_CHECK_VALUE(cpu_has_avx512(),
                       "simd 'avx512' needs AVX-512 F and DQ besides AVX2, which this CPU lacks");
    level = SimdLevel::kAvx512;
  } else if (name == "avx2") {
    ADRANK_CHECK_VALUE(cpu_has_avx2(),
                       "simd 'avx2' needs AVX2, FMA and F16C, which this CPU lacks");
    level = SimdLevel::kAvx2;
  } else if (name == "auto") {
    level = best_level();
  } else {
    ADRANK_CHECK_VALUE(name == "generic",
                       "simd must be 'auto', 'avx512', 'avx2' or 'generic', got '", name, "'");
  }
  current().store(static_cast<int>(level));
}

}  // namespace adrank
