// The Python module nspl_filler._C: the bindings of the library libnspl_filler.so, which it
// links, so importing it loads the library and with it the ops (schemas.cpp and the backend
// files register them). Exposes the Caffe-style filler API and the shared math (fans, second
// moment, scale), so Python computes nothing of its own.
#include <ATen/Dispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/extension.h>

#include <array>

#include "checks.h"
#include "op_table.h"
#include "cpu/cpu_capability.h"
#include "cpu/fill_cpu_simd.h"
#include "fill.h"
#include "fill_many.h"
#include "module_walk.h"
#include "name_keys.h"
#include "nspl_filler/filler.h"

namespace py = pybind11;

namespace {

nspl::VarianceNorm to_norm(const std::string& mode) { return nspl::parse_variance_norm(mode); }

// A seed by the rule of every Python entry point (nspl_filler.generator._check_seed: an int,
// numpy's included, not bool, in [-2**63, 2**64)), carried as the int64 of its 64-bit key.
std::optional<int64_t> optional_seed(py::handle seed) {
  if (seed.is_none()) return std::nullopt;
  const py::object key = py::module_::import("nspl_filler.generator").attr("_check_seed")(seed);
  return static_cast<int64_t>(key.cast<uint64_t>());
}

py::object seed_object(const std::optional<int64_t>& seed) {
  if (!seed) return py::none();
  return py::int_(static_cast<uint64_t>(*seed));
}

using OptionalShape = std::optional<std::vector<int64_t>>;

at::OptionalIntArrayRef shape_ref(const OptionalShape& shape) {
  if (!shape) return std::nullopt;
  return at::IntArrayRef(*shape);
}

// An element function of nspl_math.h (exp2_to_normal, log_normal, normal_quantile_lower)
// element-wise over a float32 or float64 tensor, by the portable code or one instruction
// set's kernels: the tests compare them and measure their accuracy.
template <typename T>
void portable_math(nspl::MathFunction function, const T* in, T* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = nspl::math_function(function, in[i]);
}

nspl::cpu::Capability capability_named(const std::string& name) {
  for (auto c : {nspl::cpu::Capability::Scalar, nspl::cpu::Capability::Avx2, nspl::cpu::Capability::Avx512}) {
    if (name == nspl::cpu::capability_name(c)) return c;
  }
  TORCH_CHECK_VALUE(false, "nspl_filler: capability must be 'scalar', 'avx2' or 'avx512', got '", name, "'");
}

at::Tensor own_math(const std::string& name, const at::Tensor& x, const std::string& capability_name) {
  TORCH_CHECK_VALUE(name == "exp2" || name == "log" || name == "normal_quantile",
                    "nspl_filler: function must be 'exp2', 'log' or 'normal_quantile', got '", name, "'");
  TORCH_CHECK_TYPE((x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble) && x.device().is_cpu(),
                   "nspl_filler: expected a CPU float32 or float64 tensor");
  const nspl::cpu::Capability capability = capability_named(capability_name);
  TORCH_CHECK_VALUE(nspl::cpu::supported(capability), "nspl_filler: this CPU or build cannot run the ",
                    capability_name, " kernels");
  const at::Tensor in = x.contiguous();
  at::Tensor out = at::empty_like(in);
  const nspl::MathFunction function = name == "exp2" ? nspl::MathFunction::Exp2
                                      : name == "log"  ? nspl::MathFunction::Log
                                                       : nspl::MathFunction::NormalQuantile;
  AT_DISPATCH_FLOATING_TYPES(in.scalar_type(), "nspl_filler_math", [&] {
    const scalar_t* src = in.data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    switch (capability) {
#if NSPL_HAVE_SIMD_KERNELS
      case nspl::cpu::Capability::Avx512:
        nspl::avx512::math(function, src, dst, in.numel());
        return;
      case nspl::cpu::Capability::Avx2:
        nspl::avx2::math(function, src, dst, in.numel());
        return;
#endif
      default:
        portable_math(function, src, dst, in.numel());
    }
  });
  return out;
}

// The power law's sampler applied to given random bits, by the portable code (which every
// backend matches bit for bit): int32 bits give float32 values (the arithmetic of 16- and
// 32-bit outputs), int64 bits float64 values. The tests feed it the first and last words
// of the range, which no seed reaches on demand.
at::Tensor power_law_of_bits(const at::Tensor& bits, double alpha, double low, double high) {
  TORCH_CHECK_TYPE((bits.scalar_type() == at::kInt || bits.scalar_type() == at::kLong) && bits.device().is_cpu(),
                   "nspl_filler: bits must be a CPU int32 or int64 tensor, got ", bits.scalar_type(), " on ",
                   bits.device());
  const nspl::PowerLawSpec spec = nspl::power_law_spec(alpha, low, high);
  const bool wide = bits.scalar_type() == at::kLong;
  const c10::ScalarType dtype = wide ? at::kDouble : at::kFloat;
  nspl::check_range(spec, dtype);
  const at::Tensor in = bits.contiguous();
  at::Tensor out = at::empty(in.sizes(), in.options().dtype(dtype));
  const auto apply = [&](auto acc, const auto* src) {
    using acc_t = decltype(acc);
    acc_t* dst = out.data_ptr<acc_t>();
    nspl::visit_sampler<acc_t>(spec, dtype, [&](const auto& sampler) {
      for (int64_t i = 0; i < in.numel(); ++i) dst[i] = sampler.draw(src[i]);
    });
  };
  if (wide) {
    apply(0.0, in.data_ptr<int64_t>());
  } else {
    apply(0.0f, in.data_ptr<int32_t>());
  }
  return out;
}

// Binds op Op's check function as _C.check_<name less its trailing '_'>(self, params..., seed, offset,
// has_generator, global_shape, global_start): the op's arguments in schema order, with
// whether a torch generator was given in place of the generator.
template <typename Op, typename... Params>
void bind_check(py::module_& m, std::tuple<Params...>*) {
  std::string name = std::string("check_") + Op::name;
  name.pop_back();  // every op name ends in '_'
  m.def(name.c_str(),
        [](const at::Tensor& self, Params... params, std::optional<int64_t> seed, int64_t offset, bool has_generator,
           OptionalShape global_shape, OptionalShape global_start) {
          Op::check(self, params..., {seed, offset, has_generator}, shape_ref(global_shape), shape_ref(global_start));
        });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "nspl_filler compiled core: ops are under torch.ops.nspl_filler";

  py::class_<nspl::FillerParameter>(m, "FillerParameter",
                                    "Caffe's filler settings (type, value, min, max, mean, std, sparse, "
                                    "variance_norm) with Caffe's defaults, and nspl_filler's (alpha, ratio, "
                                    "gain, seed); type defaults to 'nspl'.")
      .def(py::init([](const std::string& type, double value, double min, double max, double mean, double std,
                       int64_t sparse, const std::string& variance_norm, double alpha, double ratio, double gain,
                       py::object seed) {
             nspl::FillerParameter p;
             p.type = type;
             p.value = value;
             p.min = min;
             p.max = max;
             p.mean = mean;
             p.std = std;
             p.sparse = sparse;
             p.variance_norm = to_norm(variance_norm);
             p.alpha = alpha;
             p.ratio = ratio;
             p.gain = gain;
             p.seed = optional_seed(seed);
             return p;
           }),
           py::arg("type") = "nspl", py::arg("value") = 0.0, py::arg("min") = 0.0, py::arg("max") = 1.0,
           py::arg("mean") = 0.0, py::arg("std") = 1.0, py::arg("sparse") = -1, py::arg("variance_norm") = "fan_in",
           py::arg("alpha") = nspl::kDefaultAlpha, py::arg("ratio") = nspl::kDefaultRatio,
           py::arg("gain") = nspl::kDefaultGain, py::arg("seed") = py::none())
      .def_readwrite("type", &nspl::FillerParameter::type)
      .def_readwrite("value", &nspl::FillerParameter::value)
      .def_readwrite("min", &nspl::FillerParameter::min)
      .def_readwrite("max", &nspl::FillerParameter::max)
      .def_readwrite("mean", &nspl::FillerParameter::mean)
      .def_readwrite("std", &nspl::FillerParameter::std)
      .def_readwrite("sparse", &nspl::FillerParameter::sparse)
      .def_property(
          "variance_norm",
          [](const nspl::FillerParameter& p) { return std::string(nspl::variance_norm_name(p.variance_norm)); },
          [](nspl::FillerParameter& p, const std::string& mode) { p.variance_norm = to_norm(mode); })
      .def_readwrite("alpha", &nspl::FillerParameter::alpha)
      .def_readwrite("ratio", &nspl::FillerParameter::ratio)
      .def_readwrite("gain", &nspl::FillerParameter::gain)
      .def_property(
          "seed", [](const nspl::FillerParameter& p) { return seed_object(p.seed); },
          [](nspl::FillerParameter& p, py::object seed) { p.seed = optional_seed(seed); },
          "The stream's key: an int in [-2**63, 2**64), read back modulo 2**64; None for torch's "
          "default generator.")
      .def("__repr__", [](const nspl::FillerParameter& p) {
        return "FillerParameter(type='" + p.type + "', value=" + py::repr(py::float_(p.value)).cast<std::string>() +
               ", min=" + py::repr(py::float_(p.min)).cast<std::string>() +
               ", max=" + py::repr(py::float_(p.max)).cast<std::string>() +
               ", mean=" + py::repr(py::float_(p.mean)).cast<std::string>() +
               ", std=" + py::repr(py::float_(p.std)).cast<std::string>() + ", sparse=" + std::to_string(p.sparse) +
               ", variance_norm='" + nspl::variance_norm_name(p.variance_norm) +
               "', alpha=" + py::repr(py::float_(p.alpha)).cast<std::string>() +
               ", ratio=" + py::repr(py::float_(p.ratio)).cast<std::string>() +
               ", gain=" + py::repr(py::float_(p.gain)).cast<std::string>() + ", seed=" +
               (p.seed ? std::to_string(static_cast<uint64_t>(*p.seed)) : std::string("None")) + ")";
      });

  py::class_<nspl::Filler>(m, "Filler", "A Caffe-style filler; fill(tensor) fills in place.")
      .def(
          "fill",
          [](nspl::Filler& f, const at::Tensor& t) {
            py::gil_scoped_release no_gil;
            f.Fill(t);
            return t;
          },
          py::arg("tensor"), "Fills tensor in place and returns it.")
      .def_property_readonly("param", &nspl::Filler::filler_param)
      .def_property_readonly("offset", &nspl::Filler::offset,
                             "Philox blocks consumed so far by a seeded filler.")
      .def("blocks_for", &nspl::Filler::BlocksFor, py::arg("tensor"),
           "Philox blocks one fill of tensor consumes (0 for constant and bilinear).");

  m.def("get_filler", &nspl::GetFiller, py::arg("param"),
        "The filler named by param.type: 'nspl', 'symmetric_power_law', 'trunc_normal', 'constant', 'uniform', 'gaussian', "
        "'positive_unitball', 'xavier', 'msra' or 'bilinear'.");

  m.def(
      "compute_fans",
      [](std::vector<int64_t> sizes, std::optional<double> fan_in, std::optional<double> fan_out,
         const std::string& mode, bool caffe_1d) {
        const auto fans = nspl::compute_fans(sizes, fan_in, fan_out, to_norm(mode), caffe_1d);
        return py::make_tuple(fans.fan_in, fans.fan_out);
      },
      py::arg("sizes"), py::arg("fan_in") = py::none(), py::arg("fan_out") = py::none(),
      py::arg("mode") = "fan_in", py::arg("caffe_1d") = false);
  // The check function of each op (checks.h), for the fake kernels and for bulk calls that
  // check everything before their first write. `has_generator`: a torch generator was given.
  nspl::for_each_op([&](auto op) { bind_check<decltype(op)>(m, static_cast<typename decltype(op)::Params*>(nullptr)); });
  py::list op_names;  // the op table's names, for the fake kernels
  nspl::for_each_op([&](auto op) { op_names.append(decltype(op)::name); });
  m.attr("OPS") = py::tuple(op_names);
  m.def(
      "check_nspl_many",
      [](const std::vector<at::Tensor>& tensors, const std::string& variance_norm, double alpha, double ratio,
         const std::vector<double>& gains, bool has_seed, const std::vector<int64_t>& offsets, bool has_generator,
         OptionalShape global_shapes, OptionalShape global_starts, bool check_memory, OptionalShape keys) {
        nspl::check_nspl_many(tensors, variance_norm, alpha, ratio, gains, has_seed, offsets, has_generator,
                              shape_ref(global_shapes), shape_ref(global_starts), shape_ref(keys), check_memory);
      },
      py::arg("tensors"), py::arg("variance_norm"), py::arg("alpha"), py::arg("ratio"), py::arg("gains"),
      py::arg("has_seed"), py::arg("offsets"), py::arg("has_generator"), py::arg("global_shapes"),
      py::arg("global_starts"), py::arg("check_memory"), py::arg("keys") = py::none());
  m.def("check_inplace_allowed", &nspl::check_inplace_allowed, py::arg("tensor"),
        "torch's rule for in-place writes to inference tensors, as the ops apply it.");
  // fill_'s common case as one call: the nspl_ op through the dispatcher (so every key the
  // op has, autograd and in-place ones included, runs as from torch.ops), under no_grad,
  // without the Python-side argument parsing of torch.ops.
  m.def(
      "nspl_fill_",
      [](const at::Tensor& tensor, const std::string& variance_norm, double alpha, double ratio, double gain,
         std::optional<double> fan_in, std::optional<double> fan_out, std::optional<int64_t> seed) {
        static const auto op =
            c10::Dispatcher::singleton()
                .findSchemaOrThrow("nspl_filler::nspl_", "")
                .typed<void(const at::Tensor&, c10::string_view, double, double, double, std::optional<double>,
                            std::optional<double>, std::optional<int64_t>, int64_t, std::optional<at::Generator>,
                            at::OptionalIntArrayRef, at::OptionalIntArrayRef)>();
        const at::NoGradGuard no_grad;
        op.call(tensor, variance_norm, alpha, ratio, gain, fan_in, fan_out, seed, 0, std::nullopt, std::nullopt,
                std::nullopt);
      },
      py::arg("tensor"), py::arg("variance_norm"), py::arg("alpha"), py::arg("ratio"), py::arg("gain"),
      py::arg("fan_in"), py::arg("fan_out"), py::arg("seed"), py::call_guard<py::gil_scoped_release>());
  m.def("power_law_second_moment", &nspl::power_law_second_moment, py::arg("alpha"), py::arg("ratio"));
  m.def("power_law_log_second_moment", &nspl::power_law_log_second_moment, py::arg("alpha"), py::arg("ratio"));
  m.def("normalised_scale", &nspl::normalised_scale, py::arg("alpha"), py::arg("ratio"), py::arg("gain"),
        py::arg("n"));
  m.def(
      "philox4x32_10",
      [](std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key) {
        const auto x = nspl::philox4x32_10(counter[0], counter[1], counter[2], counter[3], key[0], key[1]);
        return std::array<uint32_t, 4>{x.w[0], x.w[1], x.w[2], x.w[3]};
      },
      py::arg("counter"), py::arg("key"),
      "The engine itself: Philox4x32-10 of a 4-word counter and 2-word key (for known-answer tests).");
  m.def("cuda_built", []() {
#ifdef NSPL_WITH_CUDA
    return true;
#else
    return false;
#endif
  });
  m.attr("torch_version") = py::str(NSPL_TORCH_VERSION);
  m.attr("STREAM_VERSION") = nspl::kStreamVersion;
  // The rules Python applies before it calls an op, read from here so that they are written once.
  m.attr("DEFAULT_ALPHA") = nspl::kDefaultAlpha;
  m.attr("DEFAULT_RATIO") = nspl::kDefaultRatio;
  m.attr("DEFAULT_GAIN") = nspl::kDefaultGain;
  py::dict mode_aliases;  // every name variance_norm takes (lower case) -> the norm's own name
  for (const auto& entry : nspl::kVarianceNormNames) mode_aliases[entry.name] = nspl::variance_norm_name(entry.norm);
  m.attr("MODE_ALIASES") = mode_aliases;
  m.def(
      "canonical_mode",
      [](const std::string& mode) { return std::string(nspl::variance_norm_name(nspl::parse_variance_norm(mode))); },
      py::arg("mode"), "The norm's own name for `mode`, any case; the ValueError of an op for no name of MODE_ALIASES.");
  m.def("walk_modules", &nspl::walk_modules, py::arg("root"), py::arg("attributes"), py::arg("plain_types"),
        py::arg("collect"),
        "One pass over the module tree for init_module_'s planner (module_walk.h): its parameters as columns, "
        "each with the kind that decides its role and fans.");
  m.def("plan_records", &nspl::plan_records, py::arg("cls"), py::arg("fields"), py::arg("names"), py::arg("tensors"),
        py::arg("decisions"), py::arg("aliases"), py::arg("special"), py::arg("common_of"), py::arg("special_record"),
        py::arg("measure"), py::arg("plain_types"),
        "The rows of init_plan's report (module_walk.h), an instance of `cls` per parameter made without "
        "its __init__, and the rows whose own std was measured.");
  m.def("tensor_facts", &nspl::tensor_facts, py::arg("tensors"), py::arg("plain_types"),
        "(block counts, indices of inference tensors, whether all share one device) of a list of tensors, "
        "in one pass (module_walk.h); None if one's type is not in plain_types.");
  m.def("name_keys", &nspl::name_keys, py::arg("seed"), py::arg("names"),
        "The Philox key of each name under `seed` by streams by name (docs/spec.md §4b; name_keys.h).");
  m.def("elements_per_block", &nspl::elements_per_block, py::arg("dtype"),
        "Elements of `dtype` one Philox block fills (stream.h): 2 for float64, else 4.");

  // Test and benchmark hooks for the CPU kernels (see cpu/cpu_capability.h).
  m.def(
      "_set_cpu_capability", [](const std::string& name) { nspl::cpu::set_capability(name); },
      py::arg("name"), "Use the 'scalar', 'avx2' or 'avx512' CPU kernels, or 'auto' (the widest this CPU runs).");
  m.def(
      "_cpu_capability", []() { return std::string(nspl::cpu::capability_name(nspl::cpu::capability())); },
      "The CPU kernels fills use now: 'scalar', 'avx2' or 'avx512'.");
  m.def(
      "_cpu_supported", [](const std::string& name) { return nspl::cpu::supported(capability_named(name)); },
      py::arg("name"), "Whether this CPU, its OS and this build run the 'scalar', 'avx2' or 'avx512' kernels.");
  m.def("_power_law_of_bits", &power_law_of_bits, py::arg("bits"), py::arg("alpha"), py::arg("low"),
        py::arg("high"),
        "The raw power law's values (|w| in [low, high]) for the given random bits of elements: int32 bits "
        "give float32 values, int64 bits float64 (the portable code).");
  m.def("_math", &own_math, py::arg("function"), py::arg("x"), py::arg("capability"),
        "nspl_filler's own exp2 (for normal results), log (of positive normal numbers) or normal_quantile "
        "(the standard normal's lower-tail quantile, of positive normal numbers up to 1/2), element-wise, "
        "by the 'scalar', 'avx2' or 'avx512' code.");
}
