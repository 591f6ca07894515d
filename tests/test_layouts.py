"""Layouts: which parameters are layer weights and which of their dims count inputs and
outputs; the built-in ones, a layer registered by the user, and a class recognised by name."""
import math

import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler import Generator, Layout, fill_, init_module_, init_plan, layout_of, register_layout

SQRT2 = math.sqrt(2.0)


class Conv1D(nn.Module):
    """A layer stored (in, out), named like transformers' GPT-2 Conv1D: recognised by its name."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.02)
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        return torch.addmm(self.bias, x, self.weight)


class Gated(nn.Module):
    """A user layer with two weights stored (out, in, k): registered below."""

    def __init__(self):
        super().__init__()
        self.w_gate = nn.Parameter(torch.randn(6, 4, 3))
        self.w_up = nn.Parameter(torch.randn(6, 4, 3))
        self.offset = nn.Parameter(torch.randn(6, 4, 3))  # not a weight: kept


def records(module, **kwargs):
    return {r.name: r for r in init_plan(module, **kwargs)}


def test_a_conv1d_weight_gets_its_true_fans():
    net = nn.Sequential(Conv1D(96, 32), Conv1D(32, 128))  # c_attn-like (32 -> 96), c_proj-like (128 -> 32)
    by_name = records(net)
    assert (by_name["0.weight"].fan, by_name["0.weight"].role) == (32, "layer")
    assert by_name["1.weight"].fan == 128 and by_name["1.weight"].std == SQRT2 / math.sqrt(128)
    assert by_name["0.bias"].rule == "keep"
    assert records(net, mode="fan_out")["0.weight"].fan == 96
    init_module_(net, seed=0)
    assert net[1].weight.std().item() == pytest.approx(SQRT2 / math.sqrt(128), rel=0.1)
    # The values are those of NSPL with the layout's fans at the parameter's place in the stream.
    first = fill_(torch.empty(32, 96), fan_in=32, generator=Generator(0))
    assert torch.allclose(net[0].weight, first, rtol=1e-6, atol=0)


def test_transposed_convolutions_take_in_and_out_from_dims_0_and_1():
    for layer, receptive in [(nn.ConvTranspose1d(4, 6, 3), 3), (nn.ConvTranspose2d(4, 6, 3), 9),
                             (nn.ConvTranspose3d(4, 6, 2), 8)]:
        weight = records(layer)["weight"]
        assert (weight.fan, weight.role) == (4 * receptive, "layer"), type(layer).__name__
        assert records(layer, mode="fan_out")["weight"].fan == 6 * receptive
    assert layout_of(nn.ConvTranspose2d(4, 6, 3)) == Layout(in_dim=0, out_dim=1, grouped_in=True)
    assert layout_of(nn.Conv2d(4, 6, 3)) == Layout()


def test_built_in_roles():
    lstm, mha, bilinear = nn.LSTM(4, 5, num_layers=2, proj_size=3), nn.MultiheadAttention(8, 2, kdim=6, vdim=4), \
        nn.Bilinear(3, 4, 5)
    by_name = records(nn.ModuleDict({"lstm": lstm, "mha": mha, "bilinear": bilinear, "cell": nn.GRUCell(3, 4),
                                     "bag": nn.EmbeddingBag(10, 4), "prelu": nn.PReLU()}))
    roles = {name: (r.role, r.rule) for name, r in by_name.items()}
    for name in ["lstm.weight_ih_l0", "lstm.weight_hh_l1", "lstm.weight_hr_l0", "mha.q_proj_weight",
                 "mha.k_proj_weight", "mha.v_proj_weight", "mha.out_proj.weight", "bilinear.weight",
                 "cell.weight_ih", "cell.weight_hh"]:
        assert roles[name] == ("layer", "nspl"), name
    for name in ["lstm.bias_ih_l0", "mha.in_proj_bias", "mha.out_proj.bias", "bilinear.bias", "cell.bias_hh",
                 "prelu.weight"]:
        assert roles[name] == ("other", "keep"), name
    assert roles["bag.weight"] == ("embedding", "nspl(gain=1.0, mode='fan_in')")
    assert by_name["mha.k_proj_weight"].fan == 6 and by_name["bilinear.weight"].fan == 12


def test_register_layout_for_a_user_layer():
    assert init_plan(Gated())[0].role == "other"
    layout = register_layout(Gated, params=("w_*",), in_dim=1, out_dim=0)
    assert layout_of(Gated()) is layout and layout.fans((6, 4, 3)) == (12, 18)
    by_name = records(Gated())
    assert (by_name["w_gate"].role, by_name["w_gate"].fan) == ("layer", 12)
    assert by_name["w_up"].rule == "nspl" and by_name["offset"].rule == "keep"
    register_layout("Gated", params="w_up", in_dim=-1, out_dim=0)  # by name; the type's own still wins
    assert records(Gated())["w_gate"].role == "layer"


def test_register_layout_refuses_bad_arguments():
    with pytest.raises(TypeError, match="module_type"):
        register_layout(torch.Tensor)
    with pytest.raises(TypeError, match="in_dim"):
        register_layout(Gated, in_dim=1.0)
    with pytest.raises(ValueError, match="differ"):
        register_layout(Gated, in_dim=1, out_dim=1)
    with pytest.raises(ValueError, match="params"):
        register_layout(Gated, params=())
    with pytest.raises(ValueError, match="role"):
        register_layout(Gated, role="head")
    with pytest.raises(ValueError, match="module_type"):
        register_layout("")


def test_a_layout_that_does_not_fit_its_weight_is_named():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(3, 3))

    register_layout(Odd, in_dim=2)
    with pytest.raises(ValueError, match=r"'weight'.*in_dim=2"):
        init_plan(Odd())
    register_layout(Odd, in_dim=0, out_dim=-2)
    with pytest.raises(ValueError, match="same dim"):
        init_plan(Odd())


def test_exported():
    assert nspl_filler.register_layout is register_layout and nspl_filler.layout_of is layout_of


def test_a_conv1d_subclass_of_torchs_conv1d_keeps_the_convolutions_layout():
    class Conv1D(nn.Conv1d):  # named like transformers' layer, but a torch convolution
        pass

    assert layout_of(Conv1D(4, 6, 3)) == Layout()
    assert records(Conv1D(4, 6, 3))["weight"].fan == 12


def test_a_tied_weight_takes_the_role_any_of_its_names_gives():
    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 6))  # a raw parameter: no layout here
            self.out = nn.Linear(6, 10, bias=False)
            self.out.weight = self.table

    record = records(Head())["table"]
    assert (record.role, record.rule, record.fan, record.aliases) == ("layer", "nspl", 6, ("out.weight",))


@pytest.mark.parametrize("cls, kernel", [(nn.ConvTranspose1d, (4,)), (nn.ConvTranspose2d, (4, 4)),
                                         (nn.ConvTranspose3d, (2, 3, 2))])
@pytest.mark.parametrize("groups", [1, 4, 16])
def test_grouped_transposed_convolutions_take_fan_in_per_group(cls, kernel, groups):
    # (in, out / groups, *k): each output sees in / groups inputs over the kernel.
    layer = cls(16, 32, kernel, groups=groups, bias=False)
    receptive = math.prod(kernel)
    (record,) = init_plan(layer)
    assert record.fan == 16 // groups * receptive
    init_module_(layer, seed=0, mode="fan_out")
    (record,) = init_plan(layer, mode="fan_out")
    assert record.fan == 32 // groups * receptive
    init_module_(layer, seed=0)
    assert layer.weight.std().item() == pytest.approx(SQRT2 / math.sqrt(16 // groups * receptive), rel=0.1)


def test_grouped_in_is_checked_and_divides_only_where_asked():
    with pytest.raises(TypeError, match="grouped_in must be a bool, got int 1"):
        register_layout("Whatever", grouped_in=1)
    with pytest.raises(TypeError, match="params must be a name, glob or list of them, got NoneType None"):
        register_layout("Whatever", params=None)
    assert Layout(0, 1, grouped_in=True).fans((8, 2, 3), groups=4) == (6, 6)
    assert Layout(0, 1).fans((8, 2, 3), groups=4) == (24, 6)
    conv = nn.Conv2d(16, 32, 3, groups=4, bias=False)  # torch's layout: (out, in / groups, k, k) already
    (record,) = init_plan(conv)
    assert record.fan == 4 * 9


@pytest.mark.parametrize("head_first", [False, True])
def test_a_table_tied_to_a_layer_is_an_embedding_whichever_comes_first(head_first):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            if head_first:
                self.head = nn.Linear(8, 50, bias=False)
                self.emb = nn.Embedding(50, 8, padding_idx=3)
                self.emb.weight = self.head.weight
            else:
                self.emb = nn.Embedding(50, 8, padding_idx=3)
                self.head = nn.Linear(8, 50, bias=False)
                self.head.weight = self.emb.weight

    model = Tied()
    (record,) = init_plan(model)
    assert record.role == "embedding" and record.fan == 8
    init_module_(model, seed=0)
    assert model.emb.weight[3].eq(0).all()
    assert model.emb.weight.std().item() == pytest.approx(1 / math.sqrt(8), rel=0.1)
