"""Property-based test (hypothesis) over dtypes, shapes, strides, storage offsets, parameters
and entry points: a fill gives every element the value of its logical index (the values a
contiguous tensor of the same shape gets), and writes nothing else; a fill that raises
leaves the tensor, the rest of its storage and the generator as they were (docs/spec.md §4, §5)."""
import math

import pytest
import torch

# scripts/setup_env.sh installs hypothesis; a GPU machine without a network may lack it.
pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import nspl_filler  # noqa: E402
from nspl_filler import Generator, fill_, fill_many_, symmetric_power_law_  # noqa: E402

ops = torch.ops.nspl_filler
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
SENTINEL = -7.0


@st.composite
def layouts(draw):
    """A view of a storage filled with SENTINEL: a strided block at a storage offset, cut by
    slices with steps and permuted, or (sometimes) an overlapping layout."""
    dtype = draw(st.sampled_from(DTYPES))
    sizes = draw(st.lists(st.integers(1, 6), min_size=0, max_size=4))
    offset = draw(st.integers(0, 5))
    numel = math.prod(sizes)
    storage = torch.full((offset + numel + 3,), SENTINEL, dtype=dtype)
    view = storage[offset:offset + numel].view(sizes)
    for d in range(len(sizes)):
        start = draw(st.integers(0, sizes[d] - 1))
        step = draw(st.integers(1, 3))
        view = view.narrow(d, start, sizes[d] - start)[(slice(None),) * d + (slice(None, None, step),)]
    view = view.permute(draw(st.permutations(range(len(sizes)))))
    overlapping = draw(st.integers(0, 5)) == 0
    if overlapping:
        # A dimension of stride 0 (expand), or overlapping windows (unfold, as_strided).
        if draw(st.booleans()):
            view = view.unsqueeze(0).expand(2, *view.shape)
        else:
            view = storage.as_strided((3, 2), (1, 1), offset)
    return storage, view, overlapping


def reals(low, high):
    """Mostly values in [low, high], sometimes a value outside every domain."""
    return st.one_of(
        st.floats(low, high, allow_nan=False),
        st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 1e300]),
    )


@st.composite
def fills(draw):
    """(description, fill(tensor, generator)) for one entry point and its parameters."""
    kind = draw(st.sampled_from(["fill_", "symmetric_power_law_", "fill_many_", "Filler", "normal_", "uniform_"]))
    fans = dict(fan_in=draw(st.floats(1.0, 64.0)), fan_out=draw(st.floats(1.0, 64.0)))
    if kind == "fill_":
        kwargs = dict(mode=draw(st.sampled_from(["fan_in", "fan_out", "average"])),
                      alpha=draw(reals(-4.0, 6.0)), ratio=draw(reals(1.001, 1e4)), gain=draw(reals(0.01, 4.0)))
        kwargs.update(fans)
        return kind, lambda t, g: fill_(t, generator=g, **kwargs)
    if kind == "symmetric_power_law_":
        alpha, low = draw(reals(-4.0, 6.0)), draw(reals(1e-3, 1.0))
        high = draw(st.one_of(st.floats(1.0, 1e4), reals(0.0, 10.0)))
        return kind, lambda t, g: symmetric_power_law_(t, alpha, low, high, generator=g)
    if kind == "fill_many_":
        alpha, gain = draw(reals(-2.0, 4.0)), draw(reals(0.01, 4.0))

        def many(t, g):
            # The tensor gets the fans of its shape: only for >= 2 dims.
            fill_many_([torch.empty(3, 5, dtype=torch.float64), t], alpha=alpha, gain=gain, generator=g)
        return kind, many
    if kind == "Filler":
        param = dict(type=draw(st.sampled_from(["nspl", "xavier", "msra", "symmetric_power_law"])),
                     variance_norm=draw(st.sampled_from(["fan_in", "fan_out", "average"])),
                     alpha=draw(reals(-3.0, 5.0)), min=0.01, seed=draw(st.integers(-(2**63), 2**64 - 1)))
        # A Caffe filler is a stream of its own: a fresh one per fill, same seed.
        return kind, lambda t, g: nspl_filler.get_filler(nspl_filler.FillerParameter(**param)).fill(t)
    width = draw(reals(1e-3, 10.0))
    op = ops.normal_ if kind == "normal_" else ops.symmetric_uniform_

    def raw(t, g):
        seed, offset = g.get_state()
        op(t, width, seed=seed - 2**64 if seed >= 2**63 else seed, offset=offset)
    return kind, raw


def attempt(fill, tensor, generator):
    """The type of the error the fill raised, or None; every message, from Python or from
    C++, is one line in the library's style: "nspl_filler: " once, at the start."""
    try:
        fill(tensor, generator)
    except (TypeError, ValueError) as error:
        message = str(error)
        assert message.startswith("nspl_filler: ") and message.count("nspl_filler:") == 1, message
        assert "\n" not in message, message
        return type(error)
    return None


# The number of examples comes from the loaded profile (tests/conftest.py): 1000 by default.
@settings(deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layout=layouts(), fill=fills(), seed=st.integers(0, 2**64 - 1), offset=st.integers(0, 2**40))
def test_values_follow_logical_indices_and_errors_change_nothing(layout, fill, seed, offset):
    storage, view, overlapping = layout
    kind, run = fill
    before = storage.clone()
    contiguous = torch.full(view.shape, SENTINEL, dtype=view.dtype)

    reference_generator = Generator(seed, offset)
    expected_error = attempt(run, contiguous, reference_generator)
    g = Generator(seed, offset)
    error = attempt(run, view, g)

    event(f"{kind}: {'overlapping' if overlapping else 'refused' if error else 'filled'}")
    if overlapping:
        assert error is ValueError, "a tensor whose elements share memory was filled"
    else:
        assert error is expected_error, "the view and a contiguous tensor of its shape differ in their errors"
    if error is not None:
        assert torch.equal(storage, before), "a fill that raised wrote"
        assert g.get_state() == (seed, offset), "a fill that raised moved the generator"
        return
    assert torch.equal(view, contiguous), "the view's values differ from those of its logical indices"
    assert g.get_state() == reference_generator.get_state()
    written = torch.zeros(storage.shape, dtype=torch.bool)
    written.as_strided(view.shape, view.stride(), view.storage_offset()).fill_(True)
    assert torch.equal(storage[~written], before[~written]), "a fill wrote outside its tensor"
