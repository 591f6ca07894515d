"""fill_many_ and the bulk op nspl_many_: equal to filling one by one, checked whole before
writing, and the same on CUDA as on the CPU for explicit seeds."""
import math

import pytest
import torch

import nspl_filler
from nspl_filler import Generator, fill_, fill_many_

ops = torch.ops.nspl_filler
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def mixed_tensors(device="cpu"):
    """Shapes, dtypes and layouts that exercise every path: all four dtypes, odd sizes
    (blocks that straddle tensors), a transposed view, channels_last, an empty tensor."""
    return [
        torch.empty(3, 5, device=device),
        torch.empty(7, 2, 3, dtype=torch.float64, device=device),
        torch.empty(65, 33, dtype=torch.bfloat16, device=device),
        torch.empty(300, 41, device=device).t(),
        torch.empty(8, 3, 5, 5, device=device).to(memory_format=torch.channels_last),
        torch.empty(0, 4, device=device),
        torch.empty(9, 11, dtype=torch.float16, device=device),
        torch.empty(5, 3, dtype=torch.float64, device=device),
    ]


def one_by_one(tensors, gains, generator, **kw):
    out = [torch.empty_like(t) for t in tensors]
    for t, g in zip(out, gains):
        fill_(t, gain=g, generator=generator, **kw)
    return out


def assert_same(actual, expected):
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype and a.shape == e.shape
        assert torch.equal(a, e)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "average"])
def test_seed_equals_one_by_one_from_a_generator(mode):
    tensors = mixed_tensors()
    result = fill_many_(tensors, mode, alpha=1.3, ratio=50.0, seed=1234)
    assert result == tensors and all(r is t for r, t in zip(result, tensors))
    gain = math.sqrt(2.0)
    expected = one_by_one(tensors, [gain] * len(tensors), Generator(1234), mode=mode, alpha=1.3, ratio=50.0)
    assert_same(tensors, expected)


def test_generator_offsets_and_per_tensor_gains():
    tensors = mixed_tensors()
    gains = [0.5 + k for k in range(len(tensors))]
    g = Generator(99, offset=17)
    fill_many_(tensors, gain=gains, generator=g)
    reference = Generator(99, offset=17)
    expected = one_by_one(tensors, gains, reference)
    assert_same(tensors, expected)
    assert g.get_state() == reference.get_state()
    assert g.offset == 17 + sum(-(-t.numel() // (2 if t.dtype == torch.float64 else 4)) for t in tensors)


def test_gain_from_nonlinearity_and_variance():
    tensors = [torch.empty(256, 512), torch.empty(128, 64, 3, 3)]
    fill_many_(tensors, nonlinearity="tanh", seed=5)
    expected = one_by_one(tensors, [torch.nn.init.calculate_gain("tanh")] * 2, Generator(5))
    assert_same(tensors, expected)
    std = 5.0 / 3.0 / math.sqrt(512)
    assert tensors[0].std().item() == pytest.approx(std, rel=0.03)


def test_same_values_for_any_thread_count():
    tensors = [torch.empty(s, 37) for s in (1, 3, 300, 2000, 9000)]
    copies = [torch.empty_like(t) for t in tensors]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        fill_many_(tensors, seed=3)
        torch.set_num_threads(max(2, threads))
        fill_many_(copies, seed=3)
    finally:
        torch.set_num_threads(threads)
    assert_same(copies, tensors)


def test_torch_generator_single_tensor_matches_fill_and_is_reproducible():
    a, b = torch.empty(31, 17), torch.empty(31, 17)
    torch.manual_seed(7)
    fill_many_([a])
    torch.manual_seed(7)
    fill_(b)
    assert torch.equal(a, b)
    tensors = mixed_tensors()
    again = [torch.empty_like(t) for t in tensors]
    g = torch.Generator().manual_seed(11)
    fill_many_(tensors, generator=g)
    g.manual_seed(11)
    fill_many_(again, generator=g)
    assert_same(again, tensors)


def test_meta_tensors_are_skipped_but_keep_their_place_in_the_stream():
    cpu = [torch.empty(4, 6), torch.empty(5, 3)]
    meta = torch.empty(10, 10, device="meta")
    fill_many_([cpu[0], meta, cpu[1]], seed=8)
    g = Generator(8)
    expected = one_by_one([cpu[0], torch.empty(10, 10), cpu[1]], [math.sqrt(2.0)] * 3, g)
    assert torch.equal(cpu[0], expected[0]) and torch.equal(cpu[1], expected[2])


def test_parameters_with_grad_and_empty_list():
    p = torch.nn.Parameter(torch.zeros(6, 4))
    fill_many_([p], seed=0)
    assert p.requires_grad and p.grad_fn is None and p.abs().min() > 0
    assert fill_many_([], seed=0) == []


def snapshot(tensors):
    return [t.clone() for t in tensors]


@pytest.mark.parametrize(
    "bad, error",
    [
        (torch.zeros(4, 4, dtype=torch.int32), TypeError),  # dtype
        (torch.zeros(8), ValueError),  # fans of a 1-D tensor
        (torch.zeros(1, 4).expand(3, 4), ValueError),  # overlapping elements
        (torch.zeros(2, 2, dtype=torch.float16), ValueError),  # range overflows float16 (gain below)
    ],
)
def test_error_in_any_tensor_leaves_every_tensor_unchanged(bad, error):
    tensors = [torch.zeros(5, 5), torch.zeros(3, 7, dtype=torch.float64), bad, torch.zeros(4, 4)]
    before = snapshot(tensors)
    g = Generator(1, offset=3)
    gains = [1.0, 1.0, 1e5 if bad.dtype == torch.float16 else 1.0, 1.0]
    with pytest.raises(error):
        fill_many_(tensors, gain=gains, generator=g)
    assert_same(tensors, before)
    assert g.get_state() == (1, 3)


def test_tensors_sharing_memory_are_rejected():
    w = torch.zeros(6, 6)
    with pytest.raises(ValueError, match="share memory"):
        fill_many_([w, w[2:]], seed=0)
    with pytest.raises(ValueError, match="share memory"):
        fill_many_([w, w], seed=0)
    assert w.abs().sum() == 0
    fill_many_([w[:3], w[3:]], seed=0)  # disjoint halves of one storage are fine
    assert w.abs().min() > 0


def test_argument_errors():
    t = [torch.empty(3, 3), torch.empty(2, 2)]
    with pytest.raises(ValueError, match="2 entries|entries"):
        fill_many_(t, gain=[1.0], seed=0)
    with pytest.raises(TypeError, match=r"tensors\[1\]"):
        fill_many_([t[0], 3.0], seed=0)
    with pytest.raises(ValueError, match="not both"):
        fill_many_(t, seed=0, generator=Generator(0))
    with pytest.raises(ValueError, match="ratio"):
        fill_many_(t, ratio=1.0, seed=0)
    with pytest.raises(ValueError, match="mode"):
        fill_many_(t, "fan_sideways", seed=0)
    with pytest.raises(TypeError, match="generator"):
        fill_many_(t, generator=3)


def test_op_checks_list_lengths_and_offsets():
    t = [torch.empty(3, 3), torch.empty(2, 2)]
    with pytest.raises(ValueError, match="one gain and one offset"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0], 0, [0, 3])
    with pytest.raises(ValueError, match="offset of tensor 1"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0, 1.0], 0, [0, -1])
    with pytest.raises(ValueError, match="global_shapes"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0, 1.0], 0, [0, 3], None, [3, 3, 2])


def test_op_places_tensors_in_global_tensors():
    """global_shapes / global_starts: each tensor gets the values of its block of a larger
    tensor, as nspl_ gives them (the path DTensor shards take)."""
    full = [torch.empty(6, 8), torch.empty(5, 4, 3, dtype=torch.float64)]
    fill_many_(full, seed=21)
    parts = [torch.empty(6, 3), torch.empty(2, 4, 3, dtype=torch.float64)]
    offsets = [0, -(-48 // 4)]
    ops.nspl_many_(parts, "fan_in", 1.0, 100.0, [math.sqrt(2.0)] * 2, 21, offsets, None,
                   [6, 8, 5, 4, 3], [0, 5, 3, 0, 0])
    assert torch.equal(parts[0], full[0][:, 5:])
    assert torch.equal(parts[1], full[1][3:])


def test_op_takes_one_key_per_tensor():
    tensors = [torch.empty(6, 8), torch.empty(5, 3, dtype=torch.float64), torch.empty(300, 41).t()]
    keys = [3, -5, 2**63 - 1]
    offsets = [0, 7, 2]
    ops.nspl_many_(tensors, "fan_in", 1.0, 100.0, [1.0, 2.0, 3.0], None, offsets, keys=keys)
    for t, key, offset, gain in zip(tensors, keys, offsets, [1.0, 2.0, 3.0]):
        assert torch.equal(t, fill_(torch.empty_like(t), gain=gain, generator=Generator(key, offset)))
    torch.library.opcheck(ops.nspl_many_, (tensors, "fan_in", 1.0, 100.0, [1.0, 2.0, 3.0], None, offsets),
                          {"keys": keys})


def test_op_refuses_keys_with_a_seed_a_generator_or_the_wrong_count():
    t = [torch.zeros(3, 3), torch.zeros(2, 2)]
    with pytest.raises(ValueError, match="without seed"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0, 1.0], 1, [0, 0], keys=[1, 2])
    with pytest.raises(ValueError, match="without generator"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0, 1.0], None, [0, 0], torch.Generator(), keys=[1, 2])
    with pytest.raises(ValueError, match="one key each, got 1"):
        ops.nspl_many_(t, "fan_in", 1.0, 100.0, [1.0, 1.0], None, [0, 0], keys=[1])
    assert all(x.abs().sum() == 0 for x in t)


def test_opcheck():
    tensors = [torch.empty(4, 6), torch.empty(3, 5, dtype=torch.float64)]
    torch.library.opcheck(ops.nspl_many_, (tensors, "fan_in", 1.0, 100.0, [1.0, 2.0], 3, [0, 6]))


def test_torch_function_override_is_honoured():
    calls = []

    class Logged(torch.Tensor):
        @classmethod
        def __torch_function__(cls, func, types, args=(), kwargs=None):
            calls.append(func)
            return "intercepted"

    t = torch.empty(3, 3).as_subclass(Logged)
    assert fill_many_([torch.empty(2, 2), t], seed=0) == "intercepted"
    assert calls == [fill_many_]


def test_exported():
    assert nspl_filler.fill_many_ is fill_many_
    assert "fill_many_" in nspl_filler.__all__ and "init_module_" in nspl_filler.__all__


# ---------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)
# ---------------------------------------------------------------------------------------
def assert_close_to_cpu(cuda_tensors, cpu_tensors):
    """docs/spec.md §4: float32 within 4 ulp, signs equal; 16-bit outputs within one ulp of their own
    format (the float32 values they round from may sit either side of a rounding boundary)."""
    ulp = {torch.float32: 2.0 ** -23, torch.float64: 2.0 ** -50, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}
    for g, c in zip(cuda_tensors, cpu_tensors):
        g = g.cpu()
        assert g.dtype == c.dtype and g.shape == c.shape
        assert torch.equal(torch.signbit(g), torch.signbit(c))
        rel = 4 * ulp[c.dtype] if c.dtype in (torch.float32, torch.float64) else ulp[c.dtype]
        torch.testing.assert_close(g.double(), c.double(), rtol=rel, atol=0)


@requires_cuda
def test_cuda_equals_cpu_for_explicit_seeds():
    # More tensors than one launch's table holds, and one tensor larger than a whole launch.
    cpu = mixed_tensors() + [torch.empty(13, 29) for _ in range(40)] + [torch.empty(2100, 2100)]
    cuda = [torch.full_like(t, float("nan"), device="cuda") for t in cpu]
    gains = [0.3 + 0.01 * k for k in range(len(cpu))]
    fill_many_(cpu, gain=gains, alpha=1.7, ratio=300.0, seed=77)
    fill_many_(cuda, gain=gains, alpha=1.7, ratio=300.0, seed=77)
    assert_close_to_cpu(cuda, cpu)
    g_cpu, g_cuda = Generator(5, offset=1000), Generator(5, offset=1000)
    fill_many_(cpu, alpha=0.4, generator=g_cpu)
    fill_many_(cuda, alpha=0.4, generator=g_cuda)
    assert_close_to_cpu(cuda, cpu)
    assert g_cpu.get_state() == g_cuda.get_state()


@requires_cuda
def test_cuda_global_placement_and_errors():
    full = [torch.empty(6, 8), torch.empty(5, 4, 3, dtype=torch.float64), torch.empty(4, 6, 5)]
    fill_many_(full, seed=21)
    nan = float("nan")
    parts = [torch.full((6, 3), nan, device="cuda"), torch.full((2, 4, 3), nan, dtype=torch.float64, device="cuda"),
             torch.full((2, 6, 2), nan, device="cuda")]
    blocks = [12, 30]
    ops.nspl_many_(parts, "fan_in", 1.0, 100.0, [math.sqrt(2.0)] * 3, 21, [0, blocks[0], sum(blocks)], None,
                   [6, 8, 5, 4, 3, 4, 6, 5], [0, 5, 3, 0, 0, 2, 0, 3])
    assert_close_to_cpu(parts, [full[0][:, 5:], full[1][3:], full[2][2:, :, 3:]])
    good = torch.zeros(4, 4, device="cuda")
    with pytest.raises(TypeError):
        fill_many_([good, torch.zeros(3, 3, dtype=torch.int64, device="cuda")], seed=0)
    assert good.abs().sum() == 0


@requires_cuda
def test_cuda_torch_generator_is_reproducible():
    nan = float("nan")
    tensors = [torch.full((100, 30), nan, device="cuda"), torch.full((7, 9), nan, dtype=torch.bfloat16, device="cuda")]
    again = [torch.full_like(t, nan) for t in tensors]
    torch.cuda.manual_seed(4)
    fill_many_(tensors)
    torch.cuda.manual_seed(4)
    fill_many_(again)
    assert_same(again, tensors)
    fill_many_(again)
    assert not torch.equal(again[0], tensors[0])


def test_runs_of_like_tensors_get_what_each_gets_alone():
    # The bulk op works a tensor's law out once per run of tensors of one shape, gain and
    # dtype: every change in the run (gain, dtype, shape) must give that tensor its own law.
    shapes = [(8, 4)] * 3 + [(4, 8)] * 2 + [(8, 4)]
    dtypes = [torch.float32, torch.float32, torch.float64, torch.float64, torch.float32, torch.float32]
    gains = [1.0, 2.0, 2.0, 2.0, 2.0, 0.5]
    tensors = [torch.empty(s, dtype=d) for s, d in zip(shapes, dtypes)]
    fill_many_(tensors, seed=7, gain=gains)
    g = Generator(7)
    for t, s, d, gain in zip(tensors, shapes, dtypes, gains):
        assert torch.equal(t, fill_(torch.empty(s, dtype=d), generator=g, gain=gain))


def test_a_dtype_change_in_a_run_of_like_tensors_is_range_checked():
    # Same shape and gain: the float32 tensor's law fits, the float16 one's overflows it.
    tensors = [torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.float16)]
    with pytest.raises(ValueError, match="overflows Half"):
        fill_many_(tensors, seed=0, gain=1e6)
    assert all(not t.any() for t in tensors)
