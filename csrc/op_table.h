// The table of the library's single-tensor ops: one struct per op, listed in SingleTensorOps.
// Every layer is made from it: schemas.cpp defines each schema, register_backend() below makes
// each op's body and registers it for a backend, inplace.cpp gives each its version-counter and
// autograd kernels, bindings.cpp binds each check function as _C.check_<name> and lists the
// names in _C.OPS, from which nspl_filler/_extension.py registers the fake kernels.
//
// An op struct holds:
//   name        the op (torch.ops.nspl_filler.<name>), ending in '_' as in-place ops do
//   Params      its own parameters, as a std::tuple of their C++ types
//   parameters  the same parameters in torch's schema language, defaults included
//   check       its check function (checks.h; LawCheck<spec builder, Params>::check where the
//               parameters give the law alone): (self, params..., StreamArgs, global_shape,
//               global_start) -> the fill it allows
// Each op takes `Tensor(a!) self` first and the stream arguments (kStreamParameters) last,
// and returns nothing. The bulk op nspl_many_ has a shape of its own (fill_many.h); it is
// only listed here (kBulkOp) so that the in-place and autograd kernels cover it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/OptionalArrayRef.h>
#include <torch/library.h>

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "checks.h"
#include "nspl_filler/init.h"

namespace nspl {

// The stream arguments every single-tensor op ends with, as its schema states them.
constexpr const char* kStreamParameters =
    "int? seed=None, int offset=0, Generator? generator=None, int[]? global_shape=None, "
    "int[]? global_start=None";

// The bulk op, defined in schemas.cpp and registered by each backend's bulk kernel.
constexpr const char* kBulkOp = "nspl_many_";

// A float default in a schema: the shortest decimal that reads back as `value`, with a point.
inline std::string schema_float(double value) {
  char digits[32];
  const auto result = std::to_chars(digits, digits + sizeof digits, value);
  std::string text(digits, result.ptr);
  if (text.find_first_of(".e") == std::string::npos) text += ".0";
  return text;
}

struct NsplOp {
  static constexpr const char* name = "nspl_";
  using Params = std::tuple<c10::string_view, double, double, double, std::optional<double>,
                            std::optional<double>>;
  // The defaults are NsplOptions' (nspl_filler/init.h), which Python reads from _C too.
  static std::string parameters() {
    const NsplOptions defaults;
    return std::string("str variance_norm=\"") + variance_norm_name(defaults.mode) +
           "\", float alpha=" + schema_float(defaults.alpha) + ", float ratio=" + schema_float(defaults.ratio) +
           ", float gain=" + schema_float(defaults.gain) + ", float? fan_in=None, float? fan_out=None";
  }
  static constexpr auto check = &check_nspl;
};

struct SymmetricPowerLawOp {
  static constexpr const char* name = "symmetric_power_law_";
  using Params = std::tuple<double, double, double>;
  static std::string parameters() { return "float alpha, float low, float high"; }
  static constexpr auto check = &LawCheck<&power_law_spec, Params>::check;
};

struct SymmetricUniformOp {
  static constexpr const char* name = "symmetric_uniform_";
  using Params = std::tuple<double>;
  static std::string parameters() { return "float bound"; }
  static constexpr auto check = &LawCheck<&uniform_spec, Params>::check;
};

struct NormalOp {
  static constexpr const char* name = "normal_";
  using Params = std::tuple<double>;
  static std::string parameters() { return "float std"; }
  static constexpr auto check = &LawCheck<&normal_spec, Params>::check;
};

struct TruncNormalOp {
  static constexpr const char* name = "trunc_normal_";
  using Params = std::tuple<double, double, double, double>;
  // torch.nn.init.trunc_normal_'s parameters and defaults (nspl_filler/init.h).
  static std::string parameters() {
    const TruncNormalOptions defaults;
    return "float mean=" + schema_float(defaults.mean) + ", float std=" + schema_float(defaults.std) +
           ", float a=" + schema_float(defaults.a) + ", float b=" + schema_float(defaults.b);
  }
  static constexpr auto check = &LawCheck<&trunc_normal_spec, Params>::check;
};

using SingleTensorOps = std::tuple<NsplOp, SymmetricPowerLawOp, SymmetricUniformOp, NormalOp, TruncNormalOp>;

// Calls f(Op{}) for every op of SingleTensorOps, in order.
template <typename F>
void for_each_op(F&& f) {
  std::apply([&](auto... op) { (f(op), ...); }, SingleTensorOps{});
}

// The schema of `Op`.
template <typename Op>
std::string op_schema() {
  return std::string(Op::name) + "(Tensor(a!) self, " + Op::parameters() + ", " + kStreamParameters + ") -> ()";
}

// The stream arguments as the checks take them.
inline StreamArgs stream_args(std::optional<int64_t> seed, int64_t offset,
                              const std::optional<at::Generator>& generator) {
  return StreamArgs{seed, offset, generator.has_value() && generator->defined()};
}

// The body of op `Op` for a backend's FillFn, with the op's parameter types spelled out so
// that the dispatcher infers its signature (and checks it against the schema): the check,
// then the fill.
template <typename Op, FillFn fill, typename Params = typename Op::Params>
struct OpKernel;

template <typename Op, FillFn fill, typename... Params>
struct OpKernel<Op, fill, std::tuple<Params...>> {
  static void call(const at::Tensor& self, Params... params, std::optional<int64_t> seed, int64_t offset,
                   std::optional<at::Generator> generator, at::OptionalIntArrayRef global_shape,
                   at::OptionalIntArrayRef global_start) {
    const std::optional<CheckedFill> checked =
        Op::check(self, params..., stream_args(seed, offset, generator), global_shape, global_start);
    TORCH_INTERNAL_ASSERT(checked.has_value(), "nspl_filler: an eager kernel got a tensor with symbolic sizes");
    run_fill(fill, self, checked->spec, seed, offset, generator, checked->view);
  }
};

// Registers every single-tensor op for one backend, in its TORCH_LIBRARY_IMPL block:
//   TORCH_LIBRARY_IMPL(nspl_filler, CPU, m) { nspl::register_backend<nspl::fill_cpu>(m); }
template <FillFn fill>
void register_backend(torch::Library& m) {
  for_each_op([&](auto op) {
    using Op = decltype(op);
    m.impl(Op::name, &OpKernel<Op, fill>::call);
  });
}

}  // namespace nspl
