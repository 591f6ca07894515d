"""Tensor semantics, seeding and errors of the Python API (docs/spec.md §3-§5)."""
import math

import pytest
import torch

import nspl_filler


# ------------------------------------------------------------------ seeding
def test_same_values_for_any_thread_count():
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = nspl_filler.fill_(torch.empty(300, 1000), seed=17)
        torch.set_num_threads(2)
        b = nspl_filler.fill_(torch.empty(300, 1000), seed=17)
        c = nspl_filler.fill_(torch.empty(1000, 300).t(), seed=17, fan_in=1000, fan_out=300)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(a, b)
    assert torch.equal(a, c)


def test_manual_seed_reproduces_and_consecutive_fills_differ():
    torch.manual_seed(123)
    a = nspl_filler.fill_(torch.empty(32, 32))
    b = nspl_filler.fill_(torch.empty(32, 32))
    torch.manual_seed(123)
    c = nspl_filler.fill_(torch.empty(32, 32))
    assert torch.equal(a, c)
    assert not torch.equal(a, b)


def test_torch_generator_reproduces_and_advances():
    g = torch.Generator().manual_seed(5)
    a = nspl_filler.fill_(torch.empty(16, 16), generator=g)
    b = nspl_filler.fill_(torch.empty(16, 16), generator=g)
    g.manual_seed(5)
    assert torch.equal(a, nspl_filler.fill_(torch.empty(16, 16), generator=g))
    assert not torch.equal(a, b)


def test_nspl_generator_state_round_trip():
    g = nspl_filler.Generator(2024)
    nspl_filler.fill_(torch.empty(10, 10), generator=g)
    state = g.get_state()
    a = nspl_filler.fill_(torch.empty(7, 9), generator=g)
    g.set_state(state)
    b = nspl_filler.fill_(torch.empty(7, 9), generator=g)
    assert torch.equal(a, b)
    assert state == (2024, 25)
    assert g.offset == 25 + math.ceil(63 / 4)


def test_generator_stream_equals_seed_plus_offset():
    # Two fills from one Generator are the two halves of one longer fill.
    g = nspl_filler.Generator(9)
    a = nspl_filler.symmetric_power_law_(torch.empty(8), 2.0, 1.0, 10.0, generator=g)
    b = nspl_filler.symmetric_power_law_(torch.empty(8), 2.0, 1.0, 10.0, generator=g)
    whole = nspl_filler.symmetric_power_law_(torch.empty(16), 2.0, 1.0, 10.0, seed=9)
    assert torch.equal(torch.cat([a, b]), whole)


def test_seed_and_generator_together_is_an_error():
    with pytest.raises(ValueError, match="seed or generator"):
        nspl_filler.fill_(torch.empty(3, 3), seed=1, generator=nspl_filler.Generator(1))


@pytest.mark.parametrize("bad", ["7", 1.5, True, [1]])
def test_seed_type_errors(bad):
    with pytest.raises(TypeError, match="seed"):
        nspl_filler.fill_(torch.empty(3, 3), seed=bad)


def test_generator_type_error():
    with pytest.raises(TypeError, match="generator"):
        nspl_filler.fill_(torch.empty(3, 3), generator=42)


# ------------------------------------------------------------------ tensor semantics
def test_returns_the_same_tensor_and_works_on_parameters():
    p = torch.nn.Parameter(torch.zeros(8, 4))
    out = nspl_filler.fill_(p, seed=1)
    assert out is p
    assert p.requires_grad and p.grad_fn is None and p.is_leaf
    assert p.abs().min() > 0
    layer = torch.nn.Linear(4, 8)
    nspl_filler.fill_(layer.weight, seed=1)
    assert torch.equal(layer.weight, p)


def test_zero_element_and_meta_are_no_ops():
    e = torch.empty(0, 5)
    assert nspl_filler.fill_(e, seed=1) is e
    m = torch.empty(4, 5, device="meta")
    assert nspl_filler.fill_(m, seed=1) is m
    g = nspl_filler.Generator(0)
    nspl_filler.fill_(torch.empty(8, 8, device="meta"), generator=g)
    assert g.offset == 16  # positions in the stream depend on shapes, not devices


def test_scalar_tensor_needs_explicit_fans():
    s = torch.zeros(())
    with pytest.raises(ValueError, match="fan_in"):
        nspl_filler.fill_(s, seed=1)
    nspl_filler.fill_(s, seed=1, fan_in=1)
    assert s.item() != 0


def test_one_d_with_explicit_fans():
    t = torch.zeros(1000, dtype=torch.float64)
    nspl_filler.fill_(t, "average", fan_in=10, fan_out=30, seed=2)
    assert t.abs().min() > 0
    with pytest.raises(ValueError, match="fan_in= and fan_out="):
        nspl_filler.fill_(torch.zeros(5), "average", fan_in=10)


class Recording(torch.Tensor):
    calls = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(func)
        return super().__torch_function__(func, types, args, kwargs or {})


def test_torch_function_overrides_are_honoured():
    Recording.calls.clear()
    t = torch.zeros(4, 4).as_subclass(Recording)
    nspl_filler.fill_(t, seed=1)
    assert nspl_filler.fill_ in Recording.calls
    Recording.calls.clear()
    nspl_filler.symmetric_power_law_(t, 2.0, 0.1, 1.0, seed=1)
    assert nspl_filler.symmetric_power_law_ in Recording.calls


# ------------------------------------------------------------------ errors
def assert_rejected(exc, match, tensor, fn):
    before = tensor.clone()
    with pytest.raises(exc, match=match):
        fn(tensor)
    assert torch.equal(tensor, before), "the tensor was written before the error"


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8, torch.complex64])
def test_non_float_dtypes_are_type_errors(dtype):
    t = torch.zeros(4, 4, dtype=dtype)
    assert_rejected(TypeError, "dtype", t, lambda x: nspl_filler.fill_(x, seed=1))
    assert_rejected(TypeError, "dtype", t, lambda x: nspl_filler.symmetric_power_law_(x, 1.0, 0.1, 1.0, seed=1))


def test_sparse_and_quantized_are_type_errors():
    with pytest.raises(TypeError, match="layout"):
        nspl_filler.fill_(torch.zeros(4, 4).to_sparse(), seed=1)
    q = torch.quantize_per_tensor(torch.zeros(4, 4), 0.1, 0, torch.qint8)
    with pytest.raises(TypeError, match="quantized|layout"):
        nspl_filler.fill_(q, seed=1)


def test_not_a_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="torch.Tensor"):
        nspl_filler.fill_([1.0, 2.0], seed=1)


def test_overlapping_memory_is_rejected():
    base = torch.zeros(1, 4)
    t = base.expand(3, 4)
    assert_rejected(ValueError, "share memory", t, lambda x: nspl_filler.fill_(x, seed=1))


BAD_FILL_ARGS = [
    (dict(alpha=float("nan")), "alpha"),
    (dict(alpha=float("inf")), "alpha"),
    (dict(ratio=1.0), "ratio"),
    (dict(ratio=0.5), "ratio"),
    (dict(ratio=float("inf")), "ratio"),
    (dict(gain=0.0), "gain"),
    (dict(gain=-1.0), "gain"),
    (dict(gain=float("nan")), "gain"),
    (dict(mode="fan_middle"), "mode"),
    (dict(nonlinearity="swishy"), "nonlinearity|Unsupported"),
    (dict(fan_in=0), "fan_in"),
    (dict(fan_out=-3), "fan_out"),
    (dict(gain=1e6), "overflows"),  # c·r = 1e6 > 65504, the float16 maximum
]


@pytest.mark.parametrize("kwargs,match", BAD_FILL_ARGS)
def test_bad_fill_arguments_are_value_errors_before_writing(kwargs, match):
    t = torch.full((8, 8), 7.0, dtype=torch.float16)
    kwargs = dict(kwargs)
    mode = kwargs.pop("mode", "fan_in")
    assert_rejected(ValueError, match, t, lambda x: nspl_filler.fill_(x, mode, seed=1, **kwargs))


@pytest.mark.parametrize(
    "args,match",
    [
        ((float("nan"), 0.1, 1.0), "alpha"),
        ((1.0, 0.0, 1.0), "low"),
        ((1.0, -1.0, 1.0), "low"),
        ((1.0, 1.0, 1.0), "high"),
        ((1.0, 2.0, 1.0), "high"),
        ((1.0, 0.1, float("inf")), "high"),
        ((1.0, 1.0, 1e6), "overflows"),  # float16 max is 65504
    ],
)
def test_bad_power_law_arguments_are_value_errors_before_writing(args, match):
    t = torch.full((8, 8), 7.0, dtype=torch.float16)
    assert_rejected(ValueError, match, t, lambda x: nspl_filler.symmetric_power_law_(x, *args, seed=1))


@pytest.mark.parametrize("kwargs", [dict(alpha="1"), dict(ratio=None), dict(gain="2"), dict(alpha=True)])
def test_argument_types(kwargs):
    with pytest.raises(TypeError):
        nspl_filler.fill_(torch.empty(3, 3), seed=1, **kwargs)


def test_a_rejected_generator_fill_consumes_nothing():
    g = nspl_filler.Generator(1)
    with pytest.raises(ValueError):
        nspl_filler.fill_(torch.empty(4, 4), alpha=float("nan"), generator=g)
    assert g.offset == 0


def test_mode_is_case_insensitive_and_accepts_the_enum():
    a = nspl_filler.fill_(torch.empty(6, 5), "FAN_OUT", seed=1)
    b = nspl_filler.fill_(torch.empty(6, 5), nspl_filler.VarianceNorm.FAN_OUT, seed=1)
    c = nspl_filler.fill_(torch.empty(6, 5), "fan_in", seed=1)
    assert torch.equal(a, b)
    assert torch.allclose(a / c, torch.full_like(a, math.sqrt(5 / 6)))


def test_compute_fans():
    assert nspl_filler.compute_fans(torch.empty(3, 4, 5, 5)) == (100, 75)
    assert nspl_filler.compute_fans((6, 2)) == (2, 6)
    assert nspl_filler.compute_fans((7,), fan_in=3) == (3, 0)
    with pytest.raises(ValueError, match="fewer|dimension"):
        nspl_filler.compute_fans((7,))
    w = torch.empty(8, 3, 2, 2)
    assert nspl_filler.compute_fans(w) == torch.nn.init._calculate_fan_in_and_fan_out(w)


def test_modes_see_every_fill():
    # The common case skips torch.ops' Python layer; torch function modes still see fill_,
    # and dispatch modes the op, as they would through torch.ops.
    from torch.utils._python_dispatch import TorchDispatchMode

    functions, ops_seen = [], []

    class FunctionRecord(torch.overrides.TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            functions.append(func)
            return func(*args, **(kwargs or {}))

    class DispatchRecord(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            ops_seen.append(func)
            return func(*args, **(kwargs or {}))

    want = nspl_filler.fill_(torch.empty(4, 4), seed=1)
    t = torch.empty(4, 4)
    with FunctionRecord():
        nspl_filler.fill_(t, seed=1)
    assert nspl_filler.fill_ in functions and torch.equal(t, want)
    t = torch.empty(4, 4)
    with DispatchRecord():
        nspl_filler.fill_(t, seed=1)
    assert torch.ops.nspl_filler.nspl_.default in ops_seen and torch.equal(t, want)


# ------------------------------------------------------------------ one source for the rules
def test_defaults_are_the_cores_in_every_layer():
    """alpha 1, ratio 100, gain sqrt(2) (docs/spec.md §2, §3): the C++ constants, the op
    schema's defaults, the Python defaults and an op called without them all agree."""
    assert (nspl_filler._C.DEFAULT_ALPHA, nspl_filler._C.DEFAULT_RATIO) == (1.0, 100.0)
    assert nspl_filler._C.DEFAULT_GAIN == math.sqrt(2.0)
    assert (nspl_filler.DEFAULT_ALPHA, nspl_filler.DEFAULT_RATIO) == (1.0, 100.0)
    schema = {a.name: a.default_value for a in torch.ops.nspl_filler.nspl_.default._schema.arguments}
    assert schema["variance_norm"] == "fan_in"
    assert (schema["alpha"], schema["ratio"], schema["gain"]) == (1.0, 100.0, math.sqrt(2.0))
    bare = torch.empty(64, 48)
    torch.ops.nspl_filler.nspl_(bare, seed=3)
    spelled = torch.empty(64, 48)
    torch.ops.nspl_filler.nspl_(spelled, "fan_in", 1.0, 100.0, math.sqrt(2.0), seed=3)
    assert torch.equal(bare, spelled)
    assert torch.equal(bare, nspl_filler.fill_(torch.empty(64, 48), seed=3))


@pytest.mark.parametrize("spelling, norm", [("fan_in", "fan_in"), ("FAN_OUT", "fan_out"), ("Average", "average"),
                                            ("fan_avg", "average"), ("FAN_AVG", "average")])
def test_every_mode_spelling_means_the_same_in_python_and_the_op(spelling, norm):
    assert nspl_filler._C.MODE_ALIASES == {"fan_in": "fan_in", "fan_out": "fan_out", "average": "average",
                                           "fan_avg": "average"}
    python = nspl_filler.fill_(torch.empty(30, 70), mode=spelling, seed=9)
    op = torch.empty(30, 70)
    torch.ops.nspl_filler.nspl_(op, spelling, seed=9)
    canonical = nspl_filler.fill_(torch.empty(30, 70), mode=norm, seed=9)
    assert torch.equal(python, op) and torch.equal(python, canonical)


@pytest.mark.parametrize("bad", ["fan-in", "fanin", "avg", "", "fan_in ", "ＦＡＮ_ＩＮ"])
def test_an_unknown_mode_gets_the_same_error_from_python_and_the_op(bad):
    with pytest.raises(ValueError) as python:
        nspl_filler.fill_(torch.empty(4, 4), mode=bad, seed=1)
    with pytest.raises(ValueError) as op:
        torch.ops.nspl_filler.nspl_(torch.empty(4, 4), bad, seed=1)
    assert str(python.value) == str(op.value)
    assert repr(bad) in str(python.value) or bad in str(python.value)


def test_blocks_per_fill_follow_the_cores_rule_for_every_dtype():
    """A fill consumes ceil(numel / 4) Philox blocks, float64 ceil(numel / 2) (docs/spec.md §4):
    Python's count, the core's, and the offset at which a following fill continues the stream."""
    from nspl_filler.stream import blocks

    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        per = 2 if dtype == torch.float64 else 4
        assert nspl_filler._C.elements_per_block(dtype) == per
        for numel in (0, 1, per - 1, per, per + 1, 1001):
            assert blocks(torch.empty(numel, dtype=dtype)) == -(-numel // per)
        g = nspl_filler.Generator(seed=11)
        first = nspl_filler.fill_(torch.empty(7, 3, dtype=dtype), generator=g)
        second = nspl_filler.fill_(torch.empty(5, 4, dtype=dtype), generator=g)
        assert torch.equal(first, nspl_filler.fill_(torch.empty(7, 3, dtype=dtype), seed=11))
        continued = torch.empty(5, 4, dtype=dtype)
        torch.ops.nspl_filler.nspl_(continued, seed=11, offset=-(-21 // per))
        assert torch.equal(second, continued)
