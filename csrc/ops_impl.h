// The bodies of the nspl_filler ops, one template per op, instantiated by each backend
// with its FillFn: checks, fans and scale are written once, here and in ops.cpp.
// Schemas are in ops.cpp; `Tensor(a!) self ... -> ()`: the ops mutate and return nothing.
#pragma once

#include "fill.h"

namespace nspl {

template <FillFn fill>
void nspl_op(const at::Tensor& self, c10::string_view variance_norm, double alpha, double ratio,
             double gain, std::optional<double> fan_in, std::optional<double> fan_out,
             std::optional<int64_t> seed, int64_t offset, std::optional<at::Generator> generator,
             at::OptionalIntArrayRef global_shape, at::OptionalIntArrayRef global_start) {
  check_fillable(self);
  const ShardView view = ShardView::make(self, global_shape, global_start);
  const SampleSpec spec =
      nspl_spec(view.global_sizes, variance_norm, alpha, ratio, gain, fan_in, fan_out, /*caffe_1d=*/false);
  run_fill(fill, self, spec, seed, offset, generator, view);
}

template <FillFn fill>
void symmetric_power_law_op(const at::Tensor& self, double alpha, double low, double high,
                            std::optional<int64_t> seed, int64_t offset,
                            std::optional<at::Generator> generator,
                            at::OptionalIntArrayRef global_shape,
                            at::OptionalIntArrayRef global_start) {
  check_fillable(self);
  const ShardView view = ShardView::make(self, global_shape, global_start);
  run_fill(fill, self, power_law_spec(alpha, low, high), seed, offset, generator, view);
}

template <FillFn fill>
void symmetric_uniform_op(const at::Tensor& self, double bound, std::optional<int64_t> seed,
                          int64_t offset, std::optional<at::Generator> generator,
                          at::OptionalIntArrayRef global_shape,
                          at::OptionalIntArrayRef global_start) {
  check_fillable(self);
  const ShardView view = ShardView::make(self, global_shape, global_start);
  run_fill(fill, self, uniform_spec(bound), seed, offset, generator, view);
}

template <FillFn fill>
void normal_op(const at::Tensor& self, double std, std::optional<int64_t> seed, int64_t offset,
               std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shape,
               at::OptionalIntArrayRef global_start) {
  check_fillable(self);
  const ShardView view = ShardView::make(self, global_shape, global_start);
  run_fill(fill, self, normal_spec(std), seed, offset, generator, view);
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
