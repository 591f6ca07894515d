// The ops are in-place ops like torch's own (docs/spec.md §5), for every backend at once: the
// ADInplaceOrView kernel advances the version counter of every tensor an op writes, so
// autograd refuses a backward through a graph that saved one, and applies torch's rule for
// inference tensors; the Autograd kernel refuses leaves that require grad, as torch's
// in-place ops do, and gives a filled non-leaf a backward whose gradient is zero (the new
// values do not depend on the old ones).
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "op_table.h"

namespace nspl {
namespace {

using torch::autograd::Node;
using torch::autograd::variable_list;

// The tensors an op writes: the arguments its schema marks (a!), single or in a list, read
// from the stack before the redispatch consumes them.
std::vector<at::Tensor> written_tensors(const c10::OperatorHandle& op, const torch::jit::Stack& stack) {
  const auto& schema = op.schema();
  const size_t n = schema.arguments().size();
  const size_t first = stack.size() - n;
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < n; ++i) {
    if (!schema.is_mutable({c10::SchemaArgType::input, i})) continue;
    const c10::IValue& value = stack[first + i];
    if (value.isTensor()) {
      written.push_back(value.toTensor());
    } else if (value.isTensorList()) {
      for (const at::Tensor& t : value.toTensorList()) written.push_back(t);
    }
  }
  return written;
}

void inplace_or_view_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const std::vector<at::Tensor> written = written_tensors(op, *stack);
  // torch's own in-place kernels find an inference tensor when they bump its version, after
  // writing; the contract wants every refusal before the first write.
  for (const at::Tensor& t : written) check_inplace_allowed(t);
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) torch::autograd::increment_version(t);
}

// Backward of a fill: the values written do not depend on those they replace, so the
// gradient that reaches the old values is zero (torch's fills, e.g. zero_ and normal_, give
// zeros_like(grad) too).
struct FillBackward final : Node {
  variable_list apply(variable_list&& grads) override {
    return {grads[0].defined() ? at::zeros_like(grads[0]) : at::Tensor()};
  }
  std::string name() const override { return "nspl_filler::FillBackward"; }
};

// The graph holds its nodes by std::shared_ptr in older torch releases and by
// c10::intrusive_ptr in newer ones; Edge::function has the type of the torch compiled against.
using NodePtr = decltype(torch::autograd::Edge::function);

template <typename Ptr>
Ptr make_fill_backward(const at::Tensor& filled) {
  // Spelled through Ptr so that only the branch of this torch is compiled.
  using Backward = std::conditional_t<true, FillBackward, Ptr>;
  Ptr node;
  if constexpr (std::is_same_v<Ptr, std::shared_ptr<Node>>) {
    node = std::make_shared<Backward>();
  } else {
    node = c10::make_intrusive<Backward>();
  }
  node->set_next_edges(torch::autograd::collect_next_edges(filled));
  return node;
}

// Makes `node` the history of `filled`, as torch's in-place kernels do with theirs.
void rebase_onto(const at::Tensor& filled, NodePtr node) {
  node->add_input_metadata(filled);
  torch::autograd::impl::rebase_history(filled, torch::autograd::Edge(std::move(node), 0));
}

void autograd_kernel(const c10::OperatorHandle& op, c10::DispatchKeySet keys, torch::jit::Stack* stack) {
  const std::vector<at::Tensor> written = written_tensors(op, *stack);
  std::vector<NodePtr> backward(written.size());
  for (size_t k = 0; k < written.size(); ++k) {
    const at::Tensor& t = written[k];
    const bool requires_grad = torch::autograd::compute_requires_grad(t);
    torch::autograd::check_inplace(t, requires_grad);
    if (requires_grad) backward[k] = make_fill_backward<NodePtr>(t);
  }
  {
    at::AutoDispatchBelowAutograd guard;
    op.redispatchBoxed(keys & c10::after_autograd_keyset, stack);
  }
  for (size_t k = 0; k < written.size(); ++k) {
    if (backward[k]) rebase_onto(written[k], std::move(backward[k]));
  }
}

// Registers `kernel` for every op of schemas.cpp: the op table's and the bulk op;
// tests/test_inplace.py checks that each has both kernels.
template <c10::BoxedKernel::BoxedKernelFunction_withDispatchKeys* kernel>
void register_for_every_op(torch::Library& m) {
  for_each_op([&](auto op) { m.impl(decltype(op)::name, torch::CppFunction::makeFromBoxedFunction<kernel>()); });
  m.impl(kBulkOp, torch::CppFunction::makeFromBoxedFunction<kernel>());
}

}  // namespace
}  // namespace nspl

TORCH_LIBRARY_IMPL(nspl_filler, ADInplaceOrView, m) {
  ::nspl::register_for_every_op<&::nspl::inplace_or_view_kernel>(m);
}

TORCH_LIBRARY_IMPL(nspl_filler, Autograd, m) { ::nspl::register_for_every_op<&::nspl::autograd_kernel>(m); }
