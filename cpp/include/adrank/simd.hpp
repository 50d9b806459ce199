// One switch for the instruction set of every kernel family that has a SIMD twin (embedding
// pooling, the top-k scan). Each keeps a portable twin of every SIMD path, as xxHash and
// Highway do, so that tests cover both and a user can rule a suspect path out.
//
// Levels, each including the ones above it:
//   "generic"  the build's baseline (what the compiler vectorizes portably; SSE2 on x86-64)
//   "avx2"     AVX2 + FMA + F16C, where the CPU has all three (embedding pooling, top-k scan)
//   "avx512"   AVX2's, plus AVX-512 F and DQ (int64 id hashing; embedding pooling where the CPU
//              also has BW and VL; the top-k scan and bucket maxima, AVX-512 F only)
//   "auto"     the best this CPU has (the default)
//
// The level is read once, at load, from the environment variable ADRANK_SIMD (unset or an
// unknown value: "auto"; "scalar" is an older name of "generic"), and set_simd changes it at
// run time for every call that starts afterwards.
#pragma once

#include <string>

namespace adrank {

enum class SimdLevel : int { kGeneric = 0, kAvx2 = 1, kAvx512 = 2 };

// The level kernels run with now: one relaxed atomic load, cheap enough for every call.
SimdLevel simd_level();

// "avx512", "avx2" or "generic".
const char* simd_name();

// Selects "auto", "avx512", "avx2" or "generic" (ValueError for anything else, or for a level
// this CPU lacks).
void set_simd(const std::string& name);

}  // namespace adrank
