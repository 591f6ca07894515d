"""The fills are in-place ops like torch's own (docs/spec.md §5): every entry point advances the
version counter of what it writes, so autograd refuses a backward through a graph that saved
a filled tensor, and inference tensors follow torch's rules."""
import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler import Generator, fill_, fill_many_, init_module_, symmetric_power_law_

ops = torch.ops.nspl_filler

# Every way to write a (4, 8) float32 tensor, each returning nothing.
ENTRY_POINTS = {
    "fill_": lambda t: fill_(t, seed=1),
    "symmetric_power_law_": lambda t: symmetric_power_law_(t, 2.0, 0.1, 1.0, seed=1),
    "fill_many_": lambda t: fill_many_([t], seed=1),
    "fill_many_ two tensors": lambda t: fill_many_([t, torch.empty(3, 3)], seed=1),
    "Filler.fill": lambda t: nspl_filler.get_filler(nspl_filler.FillerParameter(seed=1)).fill(t),
    "Filler.fill xavier": lambda t: nspl_filler.get_filler(nspl_filler.FillerParameter(type="xavier", seed=1)).fill(t),
    "ops.nspl_": lambda t: ops.nspl_(t, seed=1),
    "ops.symmetric_power_law_": lambda t: ops.symmetric_power_law_(t, 2.0, 0.1, 1.0, seed=1),
    "ops.symmetric_uniform_": lambda t: ops.symmetric_uniform_(t, 0.5, seed=1),
    "ops.normal_": lambda t: ops.normal_(t, 0.5, seed=1),
    "ops.nspl_many_": lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], 1, [0]),
}


def test_every_op_has_the_in_place_kernels():
    for name in ("nspl_", "symmetric_power_law_", "symmetric_uniform_", "normal_", "nspl_many_"):
        for key in ("ADInplaceOrView", "Autograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(f"nspl_filler::{name}", key), (name, key)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version_counter_advances(entry):
    t = torch.empty(4, 8)
    before = t._version
    with torch.no_grad():
        ENTRY_POINTS[entry](t)
    assert t._version > before


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_backward_through_a_graph_that_saved_the_tensor_raises(entry):
    # The example: (w * w) saves w; filling w afterwards must invalidate the graph.
    w = nn.Parameter(torch.ones(4, 8))
    out = (w * w).sum()
    with torch.no_grad():
        ENTRY_POINTS[entry](w)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()


def test_init_module_bumps_every_parameter_it_writes():
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    model[2].weight.requires_grad_(False)
    rules = {"2.weight": "normal", "2.bias": 0.5, "0.bias": "zeros", nn.LayerNorm: "ones"}
    versions = {name: p._version for name, p in model.named_parameters()}
    out = model(torch.ones(3, 4)).sum()
    init_module_(model, seed=0, rules=rules)
    for name, p in model.named_parameters():
        assert p._version > versions[name], name
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.backward()
    # What the defaults keep is not written at all.
    versions = {name: p._version for name, p in model.named_parameters()}
    init_module_(model, seed=0)
    assert [name for name, p in model.named_parameters() if p._version > versions[name]] == ["0.weight", "2.weight"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_inference_tensors_follow_torchs_rules(entry):
    with torch.inference_mode():
        t = torch.zeros(4, 8)
        ENTRY_POINTS[entry](t)  # inside InferenceMode: allowed
        assert t.abs().min() > 0
    # Outside, torch refuses an in-place op on it, and so must every fill, before writing.
    with pytest.raises(RuntimeError, match="inference tensor outside InferenceMode"):
        t.normal_()
    before = t.clone()
    with pytest.raises(RuntimeError, match="inference tensor outside InferenceMode"):
        ENTRY_POINTS[entry](t)
    assert torch.equal(t, before), "the inference tensor was written before the error"


def test_a_normal_tensor_filled_in_inference_mode_has_its_version_bumped():
    t = torch.empty(4, 8)
    before = t._version
    with torch.inference_mode():
        fill_(t, seed=1)
    assert t._version > before


def test_raw_ops_refuse_a_leaf_that_requires_grad_like_torch():
    w = nn.Parameter(torch.ones(4, 8))
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.normal_()
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        ops.nspl_(w, seed=1)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        ops.nspl_many_([w], "fan_in", 1.0, 100.0, [1.0], 1, [0])
    assert torch.equal(w.detach(), torch.ones(4, 8))


def test_a_filled_non_leaf_passes_no_gradient_to_what_it_replaced():
    # Like torch's fills (zero_, normal_): the new values do not depend on the old ones.
    a = torch.ones(4, 8, requires_grad=True)
    b = a * 2
    ops.nspl_(b, seed=1)
    assert b.grad_fn is not None and b.requires_grad
    (b * 3).sum().backward()
    assert torch.equal(a.grad, torch.zeros(4, 8))


def test_python_api_and_filler_fill_parameters_in_grad_mode():
    # They run without recording autograd, as torch.nn.init does.
    p = nn.Parameter(torch.zeros(4, 8))
    assert torch.is_grad_enabled()
    fill_(p, seed=1)
    nspl_filler.get_filler(nspl_filler.FillerParameter(seed=1)).fill(p)
    fill_many_([p], generator=Generator(1))
    assert p.is_leaf and p.grad_fn is None and p.requires_grad
