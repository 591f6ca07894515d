"""The registered operators: schemas, opcheck, torch.compile and the Caffe-style layer."""
import pytest
import torch

import nspl_filler

ops = torch.ops.nspl_filler


def test_schemas_mutate_self_and_return_nothing():
    for name in ("nspl_", "symmetric_power_law_", "symmetric_uniform_", "normal_", "trunc_normal_"):
        schema = getattr(ops, name).default._schema
        assert schema.arguments[0].alias_info.is_write, name
        assert len(schema.returns) == 0, name


OPCHECK_CASES = [
    (ops.nspl_.default, (), dict(variance_norm="fan_in", alpha=1.0, ratio=100.0, gain=1.0, seed=3)),
    (ops.nspl_.default, (), dict(variance_norm="average", alpha=2.5, ratio=10.0, gain=2.0, seed=3, offset=7)),
    (ops.symmetric_power_law_.default, (2.0, 0.1, 1.0), dict(seed=1)),
    (ops.symmetric_uniform_.default, (0.5,), dict(seed=1)),
    (ops.normal_.default, (0.5,), dict(seed=1)),
    (ops.trunc_normal_.default, (), dict(seed=1)),
    (ops.trunc_normal_.default, (0.1, 0.02, 0.1 + 3 * 0.02, float("inf")), dict(seed=1, offset=5)),
]


@pytest.mark.parametrize("op,args,kwargs", OPCHECK_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_opcheck(op, args, kwargs, dtype):
    t = torch.empty(6, 10, dtype=dtype)
    torch.library.opcheck(op, (t, *args), kwargs)


def test_opcheck_strided_and_sharded():
    t = torch.empty(10, 6).t()
    torch.library.opcheck(ops.nspl_.default, (t,), dict(seed=1))
    local = torch.empty(3, 4)
    torch.library.opcheck(ops.nspl_.default, (local,), dict(seed=1, global_shape=[8, 4], global_start=[2, 0]))


def test_meta_kernel_checks_arguments():
    with pytest.raises(ValueError, match="alpha"):
        ops.nspl_(torch.empty(3, 3, device="meta"), alpha=float("nan"))


def test_compile_fullgraph_matches_eager():
    def init(w):
        return nspl_filler.fill_(w, "fan_out", alpha=1.5, seed=11)

    compiled = torch.compile(init, fullgraph=True, backend="aot_eager")
    got = compiled(torch.empty(16, 8))
    assert torch.equal(got, init(torch.empty(16, 8)))


def test_compile_fullgraph_inductor():
    def step(w, b):
        nspl_filler.fill_(w, seed=2)
        return w.sum() + b

    compiled = torch.compile(step, fullgraph=True)
    w = torch.empty(32, 4)
    out = compiled(w, torch.tensor(1.0))
    want = nspl_filler.fill_(torch.empty(32, 4), seed=2)
    assert torch.equal(w, want)
    assert torch.allclose(out, want.sum() + 1)


# ------------------------------------------------------------------ Caffe-style layer
def test_filler_parameter_defaults_and_repr():
    p = nspl_filler.FillerParameter()
    assert (p.type, p.variance_norm, p.alpha, p.ratio, p.seed) == ("nspl", "fan_in", 1.0, 100.0, None)
    p.variance_norm = nspl_filler.VarianceNorm.AVERAGE
    assert p.variance_norm == "average"
    assert "average" in repr(p)
    with pytest.raises(ValueError, match="mode"):
        p.variance_norm = "sideways"


def test_caffe_fans_for_one_d_blobs():
    # Caffe: a 1-D blob of n has fan_in = 1 and fan_out = n.
    for norm, n in (("fan_in", 1), ("fan_out", 50), ("average", 25.5)):
        f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="msra", variance_norm=norm, seed=1))
        t = f.fill(torch.empty(50, dtype=torch.float64))
        want = nspl_filler.get_filler(nspl_filler.FillerParameter(type="msra", seed=1)).fill(
            torch.empty(50, 1, dtype=torch.float64)
        )
        # Same stream, std sqrt(2 / n) against std sqrt(2 / 1).
        assert torch.allclose(t, want.view(-1) / n**0.5, rtol=1e-12)


def test_nspl_filler_equals_python_fill():
    param = nspl_filler.FillerParameter(type="nspl", variance_norm="fan_out", alpha=2.0, ratio=30.0, gain=1.0, seed=4)
    f = nspl_filler.get_filler(param)
    a = f.fill(torch.empty(12, 7, 3))
    b = nspl_filler.fill_(torch.empty(12, 7, 3), "fan_out", alpha=2.0, ratio=30.0, gain=1.0, seed=4)
    assert torch.equal(a, b)
    # A seeded filler is a stream: the next fill continues where the last one stopped.
    c = f.fill(torch.empty(12, 7, 3))
    g = nspl_filler.Generator(4, offset=f.offset - 63)
    d = nspl_filler.fill_(torch.empty(12, 7, 3), "fan_out", alpha=2.0, ratio=30.0, gain=1.0, generator=g)
    assert torch.equal(c, d)


def test_symmetric_power_law_filler():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="symmetric_power_law", alpha=3.0, min=0.2, max=2.0, seed=8))
    t = f.fill(torch.empty(1000))
    assert t.abs().min() >= 0.2 and t.abs().max() <= 2.0
    assert torch.equal(t, nspl_filler.symmetric_power_law_(torch.empty(1000), 3.0, 0.2, 2.0, seed=8))


def test_unseeded_filler_follows_torch_manual_seed():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="xavier"))
    torch.manual_seed(0)
    a = f.fill(torch.empty(5, 5))
    torch.manual_seed(0)
    assert torch.equal(a, f.fill(torch.empty(5, 5)))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(type="gaussianish"), "unknown filler type"),
        (dict(type="nspl", alpha=float("nan")), "alpha"),
        (dict(type="nspl", ratio=1.0), "ratio"),
        (dict(type="nspl", gain=0.0), "gain"),
        (dict(type="symmetric_power_law", min=1.0, max=0.5), "min < max"),
        (dict(type="symmetric_power_law"), "min < max"),  # Caffe's default min = 0 is no |w| bound
    ],
)
def test_get_filler_rejects_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nspl_filler.get_filler(nspl_filler.FillerParameter(**kwargs))


def test_filler_error_leaves_blob_and_stream_unchanged():
    f = nspl_filler.get_filler(nspl_filler.FillerParameter(type="nspl", seed=1))
    t = torch.zeros(3, 3, dtype=torch.int32)
    with pytest.raises(TypeError):
        f.fill(t)
    assert f.offset == 0 and t.eq(0).all()


def test_the_op_table_makes_every_layer_of_every_op():
    """csrc/op_table.h lists the single-tensor ops; from it come the schemas, each backend's
    kernel, the in-place and autograd kernels, the check bindings and the fake kernels. Each
    op of the library, found in the dispatcher rather than in the table, has every layer."""
    from torch._library.simple_registry import singleton

    registered = {name.split("::")[1].split(".")[0] for name in torch._C._dispatch_get_all_op_names()
                  if name.startswith("nspl_filler::")}
    assert registered == set(nspl_filler._C.OPS) | {"nspl_many_"}
    assert set(nspl_filler._C.OPS) == {"nspl_", "symmetric_power_law_", "symmetric_uniform_", "normal_",
                                       "trunc_normal_"}
    for name in registered:
        qualified = f"nspl_filler::{name}"
        for key in ("CPU", "ADInplaceOrView", "Autograd"):
            assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, key), (name, key)
        assert singleton.find(qualified).fake_impl.kernel is not None, name
        schema = getattr(torch.ops.nspl_filler, name).default._schema
        assert schema.returns == [] and schema.arguments[0].alias_info.is_write, name
    for name in nspl_filler._C.OPS:
        names = [a.name for a in getattr(torch.ops.nspl_filler, name).default._schema.arguments]
        assert names[0] == "self"
        assert names[-5:] == ["seed", "offset", "generator", "global_shape", "global_start"]
        assert callable(getattr(nspl_filler._C, "check_" + name[:-1]))


@pytest.mark.parametrize("name, args, kwargs", [
    ("nspl_", (), {"seed": 3}),
    ("nspl_", ("FAN_AVG", 2.0, 10.0), {"gain": 0.5, "seed": 3, "offset": 7}),
    ("symmetric_power_law_", (1.5, 0.01, 1.0), {"seed": 3}),
    ("symmetric_uniform_", (0.25,), {"seed": 3, "global_shape": [8, 6], "global_start": [2, 0]}),
    ("normal_", (), {"std": 0.1, "seed": 3}),
    ("trunc_normal_", (), {"seed": 3}),
    ("trunc_normal_", (0.5,), {"b": 3.0, "std": 2.0, "seed": 3, "offset": 2}),
])
def test_a_fake_kernel_takes_its_arguments_as_the_op_does(name, args, kwargs):
    """The fake kernels bind arguments by the op's schema: positional, keyword and defaulted
    arguments check on meta tensors as the eager op does, and a bad one is refused alike."""
    op = getattr(torch.ops.nspl_filler, name)
    op(torch.empty(4, 6, device="meta"), *args, **kwargs)  # accepted as eager accepts it
    eager = torch.empty(4, 6)
    op(eager, *args, **kwargs)
    assert eager.abs().max() > 0
    with pytest.raises(ValueError) as on_meta:
        op(torch.empty(4, 6, device="meta"), *args, **{**kwargs, "offset": -1})
    with pytest.raises(ValueError) as on_cpu:
        op(torch.empty(4, 6), *args, **{**kwargs, "offset": -1})
    assert str(on_meta.value) == str(on_cpu.value)
