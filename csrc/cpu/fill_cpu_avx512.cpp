// The AVX-512 (F, DQ, BW, VL) kernels of the CPU backend (fill_cpu_simd.h).
//
// Everything from outside the library is included first, for the default target; then
// the element math, the lane types and the kernel are compiled for avx512 under a target
// pragma, the math in a namespace of its own (NSPL_MATH_ISA). No build flag changes, so
// the library still loads on any x86-64.
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fill_cpu_simd.h"

#if NSPL_HAVE_SIMD_KERNELS

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")
#endif

#define NSPL_MATH_ISA isa_avx512
#include "lanes_avx512.h"
#define NSPL_SIMD_ISA Avx512
#define NSPL_SIMD_NAMESPACE avx512
#include "simd_kernels.h"

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif  // NSPL_HAVE_SIMD_KERNELS
