// The high half of an unsigned product, written once for its two users: Philox's rounds
// (nspl_math.h, 32-bit) and the CUDA kernels' division by an invariant divisor
// (cuda/index_map.h, 32- and 64-bit). On the device it is the multiply-high instruction
// (__umulhi, __umul64hi); on the host the product in the twice-wide type, shifted.
//
// Standalone, with no torch and no kernel header, so that index_map.h stays compilable by
// plain g++ (tests/index_map_model.cpp).
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NSPL_MUL_HIGH_HD __host__ __device__ __forceinline__
#else
#define NSPL_MUL_HIGH_HD inline __attribute__((always_inline))
#endif

namespace nspl {
// A translation unit that compiles the element math for one CPU instruction set
// (NSPL_MATH_ISA, see nspl_math.h) gets its own copies here too, so that the linker never
// takes them for the portable ones.
#ifdef NSPL_MATH_ISA
inline namespace NSPL_MATH_ISA {
#endif

NSPL_MUL_HIGH_HD uint32_t mul_high(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __umulhi(a, b);
#else
  return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
}

NSPL_MUL_HIGH_HD uint64_t mul_high(uint64_t a, uint64_t b) {
#if defined(__CUDA_ARCH__)
  return __umul64hi(a, b);
#else
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
#endif
}

#ifdef NSPL_MATH_ISA
}  // inline namespace NSPL_MATH_ISA
#endif
}  // namespace nspl
