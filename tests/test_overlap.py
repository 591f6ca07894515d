"""Tensors whose elements may share memory are refused before anything is written, by every
entry point and on meta tensors; every slice, step, transpose, permute and channels_last
view is accepted, and gets the values of its logical indices (docs/spec.md §5)."""
import itertools

import pytest
import torch

import nspl_filler
from nspl_filler import fill_, fill_many_, symmetric_power_law_

ops = torch.ops.nspl_filler


def overlapping(device="cpu"):
    """Layouts in which two elements share memory."""
    base = torch.zeros(64, device=device)
    return {
        "expand": torch.zeros(1, 8, device=device).expand(4, 8),
        "unfold": base[:20].unfold(0, 4, 2),
        "as_strided rows overlap": base.as_strided((4, 8), (4, 1)),
        "as_strided equal strides": base.as_strided((3, 3), (2, 2)),
        "as_strided inner beyond outer": base.as_strided((5, 3), (1, 2)),
        "as_strided 3d": base.as_strided((2, 3, 4), (12, 4, 2)),
        "stride 0 among others": base.as_strided((2, 3, 2), (6, 0, 1)),
    }


def distinct(device="cpu"):
    """Views that slicing, stepping, transposing, permuting and channels_last make."""
    base = torch.zeros(6, 10, 8, device=device)
    conv = torch.zeros(4, 3, 5, 5, device=device)
    return {
        "contiguous": base,
        "slice": base[1:5, 2:9],
        "step": base[::2, 1::3, ::3],
        "transpose": base.transpose(0, 2),
        "permute": base.permute(2, 0, 1),
        "permute of a step": base[:, ::4].permute(1, 2, 0),
        "channels_last": conv.to(memory_format=torch.channels_last),
        "channels_last slice": conv.to(memory_format=torch.channels_last)[1:, :, 1:4, ::2],
        "storage offset": torch.zeros(100, device=device)[37:37 + 24].view(4, 6),
        "column": torch.zeros(7, 9, device=device)[:, 4:5],
        "size-one dims with any stride": torch.zeros(5, device=device).as_strided((1, 5, 1), (0, 1, 7)),
        "narrow inner step": torch.zeros(4, 10, device=device)[:, ::9],
        "last of a step": torch.zeros(3, 4, 4, device=device)[:, ::3, ::3],
    }


def one_fill(t):
    fill_(t, seed=3, fan_in=4, fan_out=4)


ENTRY_POINTS = {
    "fill_": one_fill,
    "symmetric_power_law_": lambda t: symmetric_power_law_(t, 1.5, 0.1, 1.0, seed=3),
    "fill_many_": lambda t: fill_many_([t], seed=3),
    "Filler.fill": lambda t: nspl_filler.get_filler(nspl_filler.FillerParameter(type="msra", seed=3)).fill(t),
    "ops.normal_": lambda t: ops.normal_(t, 1.0, seed=3),
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("layout", list(overlapping()))
def test_overlapping_layouts_are_refused_before_writing(layout, entry):
    t = overlapping()[layout]
    base = t.as_strided((t.untyped_storage().nbytes() // 4,), (1,), 0)
    before = base.clone()
    with pytest.raises(ValueError, match="share memory"):
        ENTRY_POINTS[entry](t)
    assert torch.equal(base, before), "memory was written before the error"


@pytest.mark.parametrize("layout", list(overlapping("meta")))
def test_overlapping_meta_tensors_are_refused(layout):
    with pytest.raises(ValueError, match="share memory"):
        one_fill(overlapping("meta")[layout])


@pytest.mark.parametrize("layout", list(distinct()))
def test_views_get_the_values_of_their_logical_indices(layout):
    t = distinct()[layout]
    assert t.numel() > 0
    want = fill_(torch.empty(t.shape), seed=3, fan_in=4, fan_out=4)
    one_fill(t)
    assert torch.equal(t, want)
    fill_many_([t], seed=5)
    assert torch.equal(t, fill_many_([torch.empty(t.shape)], seed=5)[0])


@pytest.mark.parametrize("layout", list(distinct("meta")))
def test_views_are_accepted_on_meta(layout):
    one_fill(distinct("meta")[layout])


def test_every_permutation_and_step_of_a_dense_tensor_is_accepted():
    # Exhaustive over small shapes: the documented sufficient test never refuses these.
    base = torch.zeros(3, 4, 5)
    for perm in itertools.permutations(range(3)):
        for steps in itertools.product((1, 2, 3), repeat=3):
            for starts in ((0, 0, 0), (1, 1, 2)):
                view = base[starts[0]::steps[0], starts[1]::steps[1], starts[2]::steps[2]].permute(perm)
                fill_(view, seed=1, fan_in=1, fan_out=1)
