// Which CPU kernels the fills use: the portable ones (any CPU), or the AVX2 or AVX-512
// ones (fill_cpu_simd.h). All give the same values bit for bit; SIMD is only faster.
//
// The initial choice is NSPL_FILLER_CPU_CAPABILITY = scalar | avx2 | avx512 | auto
// (default auto: the widest this CPU and its OS run); set_capability changes it at run
// time, for tests and benchmarks that compare the paths in one process.
#pragma once

#include <c10/util/string_view.h>

namespace nspl {
namespace cpu {

enum class Capability { Scalar, Avx2, Avx512 };

// Whether this build has the kernels and this CPU and OS run them: the instructions in
// CPUID, and the register state enabled by the OS in XCR0.
bool supported(Capability capability);

// The kernels that fills started now will use.
Capability capability();

// "scalar", "avx2", "avx512" or "auto". ValueError for an unknown name or for a
// capability this CPU or build lacks.
void set_capability(c10::string_view name);

const char* capability_name(Capability capability);

}  // namespace cpu
}  // namespace nspl
