#include "cpu_capability.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "fill_cpu_simd.h"

#if NSPL_HAVE_SIMD_KERNELS
#include <cpuid.h>
#endif

namespace nspl {
namespace cpu {
namespace {

constexpr const char* kEnvVar = "NSPL_FILLER_CPU_CAPABILITY";

#if NSPL_HAVE_SIMD_KERNELS
struct CpuFeatures {
  bool avx2 = false;
  bool avx512 = false;
};

uint64_t read_xcr0() {
  uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// CPUID for the instructions; XCR0 for the OS saving the registers they use (YMM state
// for AVX2; opmask, ZMM0-15 upper halves and ZMM16-31 for AVX-512), without which the
// instructions fault.
CpuFeatures detect() {
  CpuFeatures f;
  uint32_t eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1, fma = (ecx >> 12) & 1, f16c = (ecx >> 29) & 1;
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = read_xcr0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;
  const bool zmm_state = (xcr0 & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx2 = (ebx >> 5) & 1;
  const bool avx512 = ((ebx >> 16) & 1) && ((ebx >> 17) & 1) && ((ebx >> 30) & 1) && ((ebx >> 31) & 1);  // F DQ BW VL
  f.avx2 = ymm_state && avx2 && fma && f16c;
  f.avx512 = f.avx2 && zmm_state && avx512;
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}
#endif

Capability best() {
  if (supported(Capability::Avx512)) return Capability::Avx512;
  if (supported(Capability::Avx2)) return Capability::Avx2;
  return Capability::Scalar;
}

// The capability a name asks for, or nullopt for an unknown name; whether this CPU has
// it is the callers' question, who answer it differently.
std::optional<Capability> parse(const std::string& name) {
  if (name == "auto") return best();
  if (name == "scalar") return Capability::Scalar;
  if (name == "avx2") return Capability::Avx2;
  if (name == "avx512") return Capability::Avx512;
  return std::nullopt;
}

// The environment's choice. A bad value must not make every fill fail, so it warns and
// falls back to auto.
Capability from_environment() {
  const char* value = std::getenv(kEnvVar);
  if (value == nullptr || *value == '\0') return best();
  const std::optional<Capability> chosen = parse(value);
  if (!chosen) {
    TORCH_WARN("nspl_filler: ignoring ", kEnvVar, "='", value, "' (expected scalar, avx2, avx512 or auto)");
    return best();
  }
  if (!supported(*chosen)) {
    TORCH_WARN("nspl_filler: ", kEnvVar, "=", value, " but this CPU or build lacks it; using ",
               capability_name(best()));
    return best();
  }
  return *chosen;
}

std::atomic<Capability>& current() {
  static std::atomic<Capability> value{from_environment()};
  return value;
}

}  // namespace

bool supported(Capability capability) {
#if NSPL_HAVE_SIMD_KERNELS
  switch (capability) {
    case Capability::Scalar:
      return true;
    case Capability::Avx2:
      return features().avx2;
    case Capability::Avx512:
      return features().avx512;
  }
  return false;
#else
  return capability == Capability::Scalar;
#endif
}

Capability capability() { return current().load(std::memory_order_relaxed); }

void set_capability(c10::string_view name) {
  const std::string requested(name.data(), name.size());
  const std::optional<Capability> chosen = parse(requested);
  TORCH_CHECK_VALUE(chosen.has_value(), "nspl_filler: CPU capability must be 'scalar', 'avx2', 'avx512' or 'auto', got '",
                    requested, "'");
  TORCH_CHECK_VALUE(supported(*chosen), "nspl_filler: this CPU or build cannot run the ", requested, " kernels");
  current().store(*chosen, std::memory_order_relaxed);
}

const char* capability_name(Capability capability) {
  switch (capability) {
    case Capability::Avx512:
      return "avx512";
    case Capability::Avx2:
      return "avx2";
    case Capability::Scalar:
      return "scalar";
  }
  return "scalar";
}

}  // namespace cpu
}  // namespace nspl
