// The bodies of the nspl_filler ops, one template per op, instantiated by each backend
// with its FillFn: the op's check function (checks.h), then the fill. Checks, fans and scale
// are written once, in checks.cpp and fill.cpp. Schemas are in schemas.cpp;
// `Tensor(a!) self ... -> ()`: the ops mutate and return nothing.
#pragma once

#include "checks.h"
#include "fill.h"

namespace nspl {

// The stream arguments as the checks take them.
inline StreamArgs stream_args(std::optional<int64_t> seed, int64_t offset,
                              const std::optional<at::Generator>& generator) {
  return StreamArgs{seed, offset, generator.has_value() && generator->defined()};
}

// Fills with what the op's check function found; the check runs on concrete tensors here, so
// it always returns a value.
inline void fill_checked(FillFn fill, const at::Tensor& self, const std::optional<CheckedFill>& checked,
                         std::optional<int64_t> seed, int64_t offset,
                         const std::optional<at::Generator>& generator) {
  TORCH_INTERNAL_ASSERT(checked.has_value(), "nspl_filler: an eager kernel got a tensor with symbolic sizes");
  run_fill(fill, self, checked->spec, seed, offset, generator, checked->view);
}

template <FillFn fill>
void nspl_op(const at::Tensor& self, c10::string_view variance_norm, double alpha, double ratio,
             double gain, std::optional<double> fan_in, std::optional<double> fan_out,
             std::optional<int64_t> seed, int64_t offset, std::optional<at::Generator> generator,
             at::OptionalIntArrayRef global_shape, at::OptionalIntArrayRef global_start) {
  fill_checked(fill, self,
               check_nspl(self, variance_norm, alpha, ratio, gain, fan_in, fan_out,
                          stream_args(seed, offset, generator), global_shape, global_start),
               seed, offset, generator);
}

template <FillFn fill>
void symmetric_power_law_op(const at::Tensor& self, double alpha, double low, double high,
                            std::optional<int64_t> seed, int64_t offset,
                            std::optional<at::Generator> generator,
                            at::OptionalIntArrayRef global_shape,
                            at::OptionalIntArrayRef global_start) {
  fill_checked(fill, self,
               check_symmetric_power_law(self, alpha, low, high, stream_args(seed, offset, generator),
                                         global_shape, global_start),
               seed, offset, generator);
}

template <FillFn fill>
void symmetric_uniform_op(const at::Tensor& self, double bound, std::optional<int64_t> seed,
                          int64_t offset, std::optional<at::Generator> generator,
                          at::OptionalIntArrayRef global_shape,
                          at::OptionalIntArrayRef global_start) {
  fill_checked(fill, self,
               check_symmetric_uniform(self, bound, stream_args(seed, offset, generator), global_shape,
                                       global_start),
               seed, offset, generator);
}

template <FillFn fill>
void normal_op(const at::Tensor& self, double std, std::optional<int64_t> seed, int64_t offset,
               std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shape,
               at::OptionalIntArrayRef global_start) {
  fill_checked(fill, self,
               check_normal(self, std, stream_args(seed, offset, generator), global_shape, global_start),
               seed, offset, generator);
}

// Registers every op of the library for one backend.
#define NSPL_REGISTER_BACKEND(m, fill_fn)                                  \
  do {                                                                     \
    (m).impl("nspl_", &::nspl::nspl_op<fill_fn>);                          \
    (m).impl("symmetric_power_law_", &::nspl::symmetric_power_law_op<fill_fn>); \
    (m).impl("symmetric_uniform_", &::nspl::symmetric_uniform_op<fill_fn>); \
    (m).impl("normal_", &::nspl::normal_op<fill_fn>);                      \
  } while (0)

}  // namespace nspl
