// The nspl_filler ops through the dispatcher, as torch.ops.nspl_filler.* are reached from
// Python: linking the library registers them, and this program names none of its symbols.
//
//   dispatch
//
// Prints the 8 values of normal_(std = 0.02, seed = 11) as hexadecimal floats, one a line.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/empty.h>

#include <cstdio>
#include <optional>

int main() {
  const auto normal =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("nspl_filler::normal_", "")
          .typed<void(const at::Tensor&, double, std::optional<int64_t>, int64_t, std::optional<at::Generator>,
                      at::OptionalIntArrayRef, at::OptionalIntArrayRef)>();
  const at::Tensor t = at::empty({8}, at::kFloat);
  normal.call(t, 0.02, /*seed=*/11, /*offset=*/0, std::nullopt, std::nullopt, std::nullopt);
  for (int64_t i = 0; i < t.numel(); ++i) std::printf("%a\n", static_cast<double>(t.data_ptr<float>()[i]));
  return 0;
}
