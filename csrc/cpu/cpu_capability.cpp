#include "cpu_capability.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>
#include <optional>
#include <string>

#include "fill_cpu_avx2.h"

namespace nspl {
namespace cpu {
namespace {

constexpr const char* kEnvVar = "NSPL_FILLER_CPU_CAPABILITY";

Capability best() { return avx2_supported() ? Capability::Avx2 : Capability::Scalar; }

// The capability a name asks for, or nullopt for an unknown name. "avx2" is returned
// whether or not this CPU has it: the callers differ in what they do then.
std::optional<Capability> parse(const std::string& name) {
  if (name == "auto") return best();
  if (name == "scalar") return Capability::Scalar;
  if (name == "avx2") return Capability::Avx2;
  return std::nullopt;
}

// The environment's choice. A bad value must not make every fill fail, so it warns and
// falls back to auto.
Capability from_environment() {
  const char* value = std::getenv(kEnvVar);
  if (value == nullptr || *value == '\0') return best();
  const std::optional<Capability> chosen = parse(value);
  if (!chosen) {
    TORCH_WARN("nspl_filler: ignoring ", kEnvVar, "='", value, "' (expected scalar, avx2 or auto)");
    return best();
  }
  if (*chosen == Capability::Avx2 && !avx2_supported()) {
    TORCH_WARN("nspl_filler: ", kEnvVar, "=avx2 but this CPU or build has no AVX2 kernels; using scalar");
    return Capability::Scalar;
  }
  return *chosen;
}

std::atomic<Capability>& current() {
  static std::atomic<Capability> value{from_environment()};
  return value;
}

}  // namespace

bool avx2_supported() {
#if NSPL_HAVE_AVX2_KERNELS
  // The kernels use AVX2 and F16C (float16 stores). GCC's and clang's checks include
  // the OS's support for the 256-bit registers.
  static const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
  return supported;
#else
  return false;
#endif
}

Capability capability() { return current().load(std::memory_order_relaxed); }

void set_capability(c10::string_view name) {
  const std::string requested(name.data(), name.size());
  const std::optional<Capability> chosen = parse(requested);
  TORCH_CHECK_VALUE(chosen.has_value(), "nspl_filler: CPU capability must be 'scalar', 'avx2' or 'auto', got '",
                    requested, "'");
  TORCH_CHECK_VALUE(*chosen != Capability::Avx2 || avx2_supported(),
                    "nspl_filler: this CPU or build has no AVX2 kernels");
  current().store(*chosen, std::memory_order_relaxed);
}

const char* capability_name(Capability capability) {
  return capability == Capability::Avx2 ? "avx2" : "scalar";
}

}  // namespace cpu
}  // namespace nspl
