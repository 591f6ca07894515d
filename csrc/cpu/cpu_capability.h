// Which CPU kernels the fills use: the scalar ones (any CPU) or the AVX2 ones
// (fill_cpu_avx2.cpp). Both give the same values bit for bit; AVX2 is only faster.
//
// The initial choice is NSPL_FILLER_CPU_CAPABILITY = scalar | avx2 | auto (default auto:
// AVX2 when the CPU has it); set_capability changes it at run time, for tests and
// benchmarks that compare the paths in one process.
#pragma once

#include <c10/util/string_view.h>

namespace nspl {
namespace cpu {

enum class Capability { Scalar, Avx2 };

// Whether this build has AVX2 kernels and this CPU (and OS) runs them.
bool avx2_supported();

// The kernels that fills started now will use.
Capability capability();

// "scalar", "avx2" or "auto" (the best the CPU supports). ValueError for an unknown name
// or for "avx2" on a CPU without it.
void set_capability(c10::string_view name);

const char* capability_name(Capability capability);

}  // namespace cpu
}  // namespace nspl
