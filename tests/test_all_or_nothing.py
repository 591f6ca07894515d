"""Bulk calls are all or nothing (docs/spec.md §5): init_module_ and fill_many_ check every rule, every
parameter and every group (per (mode, alpha, ratio) and per device) with the ops' own checks
before the first write."""
import math

import pytest
import torch
from torch import nn

from nspl_filler import Generator, fill_many_, init_module_


def model(dtype=torch.float32):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Linear(5, 3)).to(dtype)


def snapshot(m):
    return {name: p.detach().clone() for name, p in m.named_parameters()}


BAD_RULES = {
    "negative std on a later parameter": ({"2.weight": {"init": "normal", "std": -1.0}}, ValueError, "std"),
    "zero bound on a later parameter": ({"3.weight": {"init": "uniform", "bound": 0.0}}, ValueError, "bound"),
    "NaN alpha in a rule": ({"3.weight": {"alpha": math.nan}}, ValueError, "alpha"),
    "ratio 1 in a rule": ({"2.weight": {"ratio": 1.0}}, ValueError, "ratio"),
    "infinite gain in a rule": ({"3.weight": {"init": "normal", "gain": math.inf}}, ValueError, "gain"),
    "huge int alpha in a rule": ({"3.weight": {"alpha": 10**400}}, ValueError, "alpha"),
}


@pytest.mark.parametrize("case", BAD_RULES)
def test_init_module_writes_nothing_when_a_rule_is_bad(case):
    rules, error, match = BAD_RULES[case]
    m = model()
    before = snapshot(m)
    g = Generator(5)
    with pytest.raises(error, match=match):
        init_module_(m, generator=g, rules=rules)
    for name, p in m.named_parameters():
        assert torch.equal(p, before[name]), f"{name} was written before the error"
    assert g.get_state() == (5, 0)


def test_init_module_error_names_the_parameter():
    with pytest.raises(ValueError, match="'2.weight'"):
        init_module_(model(), seed=0, rules={"2.weight": {"init": "normal", "std": -1.0}})
    with pytest.raises(ValueError, match="'3.weight'"):
        init_module_(model(), seed=0, rules={"3.weight": {"alpha": math.nan}})


def test_init_module_writes_nothing_when_a_later_group_overflows_float16():
    # Group 1: the default NSPL (fits float16); group 2: alpha 3 with a gain whose range
    # overflows float16's 65504.
    m = model(torch.float16)
    before = snapshot(m)
    with pytest.raises(ValueError, match="overflows"):
        init_module_(m, seed=0, rules={"3.weight": {"alpha": 3.0, "gain": 1e5}})
    for name, p in m.named_parameters():
        assert torch.equal(p, before[name]), name


def test_init_module_writes_nothing_when_a_constant_target_is_an_inference_tensor():
    m = model()
    with torch.inference_mode():
        m[3].bias = nn.Parameter(torch.zeros(3))
    before = snapshot(m)
    with pytest.raises(RuntimeError, match="inference tensor"):
        init_module_(m, seed=0, rules={"*.bias": "zeros"})
    for name, p in m.named_parameters():
        assert torch.equal(p, before[name]), name


def test_fill_many_over_devices_checks_every_device_first():
    # cpu and meta are two devices: each gets its own op call. The meta tensor's error must
    # stop the call before the CPU tensor is written.
    cpu = torch.zeros(4, 4)
    for bad, error, match in [
        (torch.empty(3, 3, dtype=torch.int32, device="meta"), TypeError, "dtype"),
        (torch.empty(1, 3, device="meta").expand(4, 3), ValueError, "share memory"),
        (torch.empty(3, 3, dtype=torch.float16, device="meta"), ValueError, "overflows"),
    ]:
        g = Generator(2)
        with pytest.raises(error, match=match):
            fill_many_([cpu, bad], gain=[1.0, 1e6], generator=g)
        assert cpu.eq(0).all(), "the CPU tensor was written before the meta tensor's error"
        assert g.offset == 0


def test_fill_many_over_devices_still_fills_every_device():
    cpu = torch.zeros(4, 4)
    meta = torch.empty(3, 3, device="meta")
    g = Generator(2)
    fill_many_([meta, cpu], generator=g)
    expected = fill_many_([torch.empty(3, 3), torch.empty(4, 4)], seed=2)[1]
    assert torch.equal(cpu, expected)
    assert g.offset == 3 + 4


def test_an_error_of_the_only_op_call_names_the_parameter():
    m = model()
    before = snapshot(m)
    with pytest.raises(ValueError, match=r"gain must be finite and > 0, got -1 \(parameter '2.weight'\)"):
        init_module_(m, seed=0, rules={"2.weight": {"gain": -1.0}})
    half = model()
    half[3].half()
    with pytest.raises(ValueError, match=r"overflows Half .*\(parameter '3.weight'\)"):
        init_module_(half, seed=0, rules={"3.weight": {"gain": 1e6}})
    assert all(torch.equal(p, before[name]) for name, p in m.named_parameters())


@pytest.mark.parametrize("value, match", [(math.nan, "a constant must be finite, got nan"),
                                          (math.inf, "a constant must be finite, got inf"),
                                          (10**400, "a constant must be finite"),
                                          (1e300, r"parameter '3.bias' .*overflows torch.float16")])
def test_constants_that_are_not_values_of_the_dtype_are_refused_before_anything_is_written(value, match):
    m = model()
    m[3].half()
    before = snapshot(m)
    with pytest.raises(ValueError, match=match):
        init_module_(m, seed=0, rules={"0.bias": 0.5, "3.bias": value})
    assert all(torch.equal(p, before[name]) for name, p in m.named_parameters())


@pytest.mark.skipif(not hasattr(torch, "float4_e2m1fn_x2"), reason="this torch has no float4_e2m1fn_x2")
def test_a_constant_on_a_dtype_without_a_range_writes_nothing():
    # torch.finfo has no range for a packed float4 pair: the constant's check refuses it
    # before the random rules write anything.
    m = model()
    m.add_module("q", nn.Module())
    m.q.scale = nn.Parameter(torch.zeros(4, 2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2), requires_grad=False)
    before = snapshot(m)
    with pytest.raises(NotImplementedError):
        init_module_(m, seed=0, rules={"q.scale": 0.5})
    for name, p in m.named_parameters():
        if p.dtype != torch.float4_e2m1fn_x2:
            assert torch.equal(p, before[name]), name
