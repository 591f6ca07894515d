"""The fake (meta) kernels make the same checks as the eager kernels, through the same C++
function per op (docs/spec.md §6): a meta tensor, a FakeTensor or a traced program is refused
exactly where eager is, with the same error."""
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import nspl_filler
from nspl_filler import Generator, fill_

ops = torch.ops.nspl_filler


def expanded(dtype=torch.float32, device="cpu"):
    return torch.zeros(1, 6, dtype=dtype, device=device).expand(4, 6)


# (tensor maker taking a device, op call) pairs that eager refuses.
REFUSED = {
    "int32": (lambda d: torch.zeros(4, 6, dtype=torch.int32, device=d), lambda t: ops.nspl_(t, seed=1)),
    "bool power law": (lambda d: torch.zeros(4, 6, dtype=torch.bool, device=d),
                       lambda t: ops.symmetric_power_law_(t, 1.0, 0.1, 1.0, seed=1)),
    "expanded": (lambda d: expanded(device=d), lambda t: ops.nspl_(t, seed=1)),
    "unfolded normal": (lambda d: torch.zeros(20, device=d).unfold(0, 4, 2), lambda t: ops.normal_(t, 1.0, seed=1)),
    "float16 overflow nspl": (lambda d: torch.zeros(4, 6, dtype=torch.float16, device=d),
                              lambda t: ops.nspl_(t, gain=1e6, seed=1)),
    "float16 overflow uniform": (lambda d: torch.zeros(4, 6, dtype=torch.float16, device=d),
                                 lambda t: ops.symmetric_uniform_(t, 1e5, seed=1)),
    "bfloat16 overflow power law": (lambda d: torch.zeros(4, 6, dtype=torch.bfloat16, device=d),
                                    lambda t: ops.symmetric_power_law_(t, 1.0, 1e30, 1e39, seed=1)),
    "1-D without fans": (lambda d: torch.zeros(6, device=d), lambda t: ops.nspl_(t, seed=1)),
    "unknown mode": (lambda d: torch.zeros(4, 6, device=d), lambda t: ops.nspl_(t, "sideways", seed=1)),
    "zero fan": (lambda d: torch.zeros(4, 6, device=d), lambda t: ops.nspl_(t, fan_in=0.0, seed=1)),
    "outside its global tensor": (lambda d: torch.zeros(4, 6, device=d),
                                  lambda t: ops.nspl_(t, seed=1, global_shape=[5, 6], global_start=[2, 0])),
    "past the end of the stream": (lambda d: torch.zeros(4, 6, device=d),
                                   lambda t: ops.nspl_(t, seed=1, offset=2**63 - 3)),
    "seed and generator": (lambda d: torch.zeros(4, 6, device=d),
                           lambda t: ops.normal_(t, 1.0, seed=1, generator=torch.Generator())),
    "bulk int32": (lambda d: torch.zeros(4, 6, dtype=torch.int64, device=d),
                   lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], 1, [0])),
    "bulk overflow": (lambda d: torch.zeros(4, 6, dtype=torch.float16, device=d),
                      lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1e6], 1, [0])),
    "bulk expanded": (lambda d: expanded(device=d), lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], 1, [0])),
    "bulk past the end of the stream": (lambda d: torch.zeros(4, 6, device=d),
                                        lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], 1, [2**63 - 2])),
    "bulk keys and seed": (lambda d: torch.zeros(4, 6, device=d),
                           lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], 1, [0], keys=[5])),
    "bulk keys and generator": (lambda d: torch.zeros(4, 6, device=d),
                                lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], None, [0], torch.Generator(),
                                                         keys=[5])),
    "bulk a key short": (lambda d: torch.zeros(4, 6, device=d),
                         lambda t: ops.nspl_many_([t, t[:0]], "fan_in", 1.0, 100.0, [1.0] * 2, None, [0] * 2, keys=[5])),
    "bulk keys past the end of the stream": (
        lambda d: torch.zeros(4, 6, device=d),
        lambda t: ops.nspl_many_([t], "fan_in", 1.0, 100.0, [1.0], None, [2**63 - 2], keys=[-1])),
}


def raised(call, tensor):
    try:
        call(tensor)
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    return None


@pytest.mark.parametrize("case", REFUSED)
def test_meta_refuses_what_eager_refuses_with_the_same_error(case):
    make, call = REFUSED[case]
    eager = raised(call, make("cpu"))
    assert eager is not None, "eager accepted it"
    assert raised(call, make("meta")) == eager


@pytest.mark.parametrize("case", REFUSED)
def test_fake_tensors_refuse_what_eager_refuses(case):
    make, call = REFUSED[case]
    eager = raised(call, make("cpu"))
    with FakeTensorMode():
        fake = raised(call, make("cpu"))
    assert fake is not None and fake[0] is eager[0]


def test_meta_accepts_what_eager_accepts_and_advances_a_generator_alike():
    g_meta, g_cpu = Generator(3), Generator(3)
    for shape, dtype in [((4, 6), torch.float16), ((5, 3, 3), torch.float64), ((7, 2), torch.bfloat16)]:
        fill_(torch.empty(shape, dtype=dtype, device="meta"), generator=g_meta)
        fill_(torch.empty(shape, dtype=dtype), generator=g_cpu)
    assert g_meta.get_state() == g_cpu.get_state()


class OverflowingInit(torch.nn.Module):
    def forward(self, w):
        fill_(w, gain=1e6, seed=1)  # c·r overflows float16
        return w


@pytest.mark.parametrize("strict", [False, True])
def test_tracing_refuses_what_eager_refuses(strict):
    # export traces with fake tensors and runs no kernel: only the fake kernel can refuse.
    w = torch.zeros(8, 4, dtype=torch.float16)
    with pytest.raises(Exception, match="overflows|fake tensor") as info:
        torch.export.export(OverflowingInit(), (w,), strict=strict)
    if not strict:
        assert info.type is ValueError
    assert w.eq(0).all()


def test_compile_with_dynamic_shapes_matches_eager():
    def init(w):
        return fill_(w, alpha=1.5, seed=4, fan_in=8)

    compiled = torch.compile(init, fullgraph=True, backend="aot_eager", dynamic=True)
    for rows in (5, 9):
        assert torch.equal(compiled(torch.empty(rows, 8)), init(torch.empty(rows, 8)))


def test_filler_on_meta_makes_the_ops_checks():
    filler = nspl_filler.get_filler(nspl_filler.FillerParameter(seed=1))
    with pytest.raises(TypeError, match="dtype"):
        filler.fill(torch.empty(4, 4, dtype=torch.int32, device="meta"))
    with pytest.raises(ValueError, match="share memory"):
        filler.fill(expanded(device="meta"))
    assert filler.offset == 0
    filler.fill(torch.empty(4, 4, device="meta"))
    assert filler.offset == 4
