"""init_module_: default rules, rules by name / type / predicate, the report, equality with
filling one by one, meta + to_empty, tied weights."""
import math
import re

import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler import Generator, ParamInit, fill_, format_report, init_module_, init_plan

SQRT2 = math.sqrt(2.0)


class ScaleNorm(nn.Module):
    """A user-defined norm layer: recognised by its class name."""

    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim))

    def forward(self, x):
        return x * self.weight


class Block(nn.Module):
    def __init__(self, dim=8):
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim, bias=False))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 8, padding_idx=3)
        self.conv = nn.Conv1d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm1d(8)
        self.blocks = nn.ModuleList([Block(), Block()])
        self.scale = ScaleNorm(8)
        self.act = nn.PReLU()
        self.head = nn.Linear(8, 5)


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_default_rules_and_report():
    net = Net()
    records = init_plan(net)
    by_name = {r.name: r for r in records}
    assert [r.name for r in records] == [name for name, _ in net.named_parameters()]
    assert all(isinstance(r, ParamInit) for r in records)
    assert by_name["embed.weight"] == ParamInit("embed.weight", (11, 8), "nspl", 8, SQRT2 / math.sqrt(8))
    assert by_name["conv.weight"].fan == 24 and by_name["conv.bias"].rule == "zeros"
    assert (by_name["bn.weight"].rule, by_name["bn.bias"].rule) == ("ones", "zeros")
    assert by_name["blocks.0.attn.in_proj_weight"].rule == "nspl"
    assert by_name["blocks.0.attn.in_proj_bias"].rule == "zeros"
    assert by_name["blocks.1.norm.weight"].rule == "ones" and by_name["blocks.1.norm.bias"].std == 0.0
    assert by_name["blocks.1.mlp.0.weight"].fan == 8 and by_name["blocks.1.mlp.2.weight"].fan == 32
    assert by_name["scale.weight"].rule == "ones"
    assert by_name["act.weight"] == ParamInit("act.weight", (1,), "skip", None, None)


def test_values_equal_filling_one_by_one_from_a_generator():
    net = Net()
    before_prelu = net.act.weight.clone()
    assert init_module_(net, seed=42) is net
    g = Generator(42)
    for name, p in Net().named_parameters():  # only the shapes and the order matter
        actual = dict(net.named_parameters())[name]
        if p.dim() >= 2:
            expected = fill_(torch.empty_like(p), gain=SQRT2, generator=g)
            if name == "embed.weight":
                expected[3] = 0  # padding_idx row
            assert torch.equal(actual, expected), name
    assert torch.equal(net.act.weight, before_prelu)
    assert torch.equal(net.bn.weight, torch.ones(8)) and torch.equal(net.scale.weight, torch.ones(8))
    assert torch.equal(net.conv.bias, torch.zeros(8)) and torch.equal(net.embed.weight[3], torch.zeros(8))
    assert net.bn.running_mean.abs().sum() == 0 and torch.equal(net.bn.running_var, torch.ones(8))


def test_generator_and_arguments_pass_through():
    net_a, net_b = Net(), Net()
    g = Generator(5, offset=100)
    init_module_(net_a, mode="fan_out", alpha=2.5, ratio=20.0, nonlinearity="tanh", generator=g)
    reference = Generator(5, offset=100)
    gain = torch.nn.init.calculate_gain("tanh")
    for (name, p), q in zip(net_a.named_parameters(), net_b.parameters()):
        if p.dim() >= 2:
            fill_(q, "fan_out", alpha=2.5, ratio=20.0, gain=gain, generator=reference)
            if name == "embed.weight":
                with torch.no_grad():
                    q[3] = 0
            assert torch.equal(p, q), name
    assert g.get_state() == reference.get_state()


def test_rules_by_glob_regex_type_predicate_and_their_kinds():
    net = Net()
    calls = []

    def custom(p):
        calls.append(tuple(p.shape))
        nn.init.constant_(p, 0.5)

    rules = [
        ("embed.weight", {"init": "normal", "std": 0.02}),
        (re.compile(r"blocks\.\d+\.attn\.out_proj\.weight"), {"gain": 1.0, "alpha": 2.0}),
        (nn.LayerNorm, "skip"),
        (lambda name, p, m: name.endswith("mlp.0.weight"), "uniform"),
        ("head.*", custom),
        ("act.weight", 0.25),
        ("*.attn.*", "zeros"),
        ("*.attn.in_proj_weight", "ones"),  # never reached: the previous key matches first
    ]
    norm_before = net.blocks[0].norm.weight.clone()
    records = {r.name: r for r in init_plan(net, rules=rules)}
    assert records["embed.weight"] == ParamInit("embed.weight", (11, 8), "normal(std=0.02)", 8, 0.02)
    assert records["blocks.0.attn.out_proj.weight"].rule == "nspl(alpha=2.0, gain=1.0)"
    assert records["blocks.0.attn.out_proj.weight"].std == pytest.approx(1.0 / math.sqrt(8))
    assert records["blocks.0.norm.weight"].rule == "skip"
    assert records["blocks.1.mlp.0.weight"].rule == "uniform"
    assert records["blocks.1.mlp.0.weight"].std == pytest.approx(SQRT2 / math.sqrt(8))
    assert records["head.weight"].rule.endswith("custom") and records["head.weight"].std is None
    assert records["act.weight"].rule == "constant(0.25)" and records["blocks.1.attn.in_proj_weight"].rule == "zeros"

    init_module_(net, rules=rules, seed=9)
    assert calls == [(5, 8), (5,)]
    assert torch.equal(net.head.weight, torch.full((5, 8), 0.5))
    assert torch.equal(net.act.weight, torch.tensor([0.25]))
    assert torch.equal(net.blocks[0].norm.weight, norm_before)
    assert net.blocks[1].attn.in_proj_weight.abs().sum() == 0
    assert net.embed.weight.std().item() == pytest.approx(0.02, rel=0.3)
    bound = math.sqrt(3.0) * SQRT2 / math.sqrt(8)
    assert net.blocks[0].mlp[0].weight.abs().max() < bound

    # Random rules draw from one stream in parameter order, whatever their kind.
    expected, offset = {}, 0
    for name, p in net.named_parameters():
        rule, e = records[name].rule, torch.empty_like(p)
        if rule == "normal(std=0.02)":
            torch.ops.nspl_filler.normal_(e, 0.02, seed=9, offset=offset)
        elif rule == "uniform":
            torch.ops.nspl_filler.symmetric_uniform_(e, bound, seed=9, offset=offset)
        elif rule.startswith("nspl"):
            gain, alpha = (1.0, 2.0) if "gain" in rule else (SQRT2, 1.0)
            fill_(e, gain=gain, alpha=alpha, generator=Generator(9, offset))
        else:
            continue
        expected[name] = e
        offset += -(-p.numel() // 4)
    expected["embed.weight"][3] = 0
    for name, value in expected.items():
        assert torch.equal(dict(net.named_parameters())[name], value), name


def test_bad_rules_raise_before_anything_is_written():
    net = Net()
    before = snapshot(net)
    with pytest.raises(ValueError, match="act.weight"):
        init_module_(net, rules={"act.weight": "nspl"}, seed=0)  # a 1-D tensor has no fans
    with pytest.raises(ValueError, match="unknown rule"):
        init_module_(net, rules={"head.weight": "xavier"}, seed=0)
    with pytest.raises(ValueError, match="not options"):
        init_module_(net, rules={"head.weight": {"init": "normal", "alpha": 2.0}}, seed=0)
    with pytest.raises(TypeError, match="key"):
        init_module_(net, rules={3: "zeros"}, seed=0)
    with pytest.raises(ValueError, match="not both"):
        init_module_(net, seed=0, generator=Generator(0))
    with pytest.raises(TypeError, match="Module"):
        init_module_(torch.empty(3, 3), seed=0)
    after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_meta_then_to_empty_equals_direct_construction():
    torch.manual_seed(0)
    direct = Net()
    with torch.device("meta"):
        deferred = Net()
    assert init_module_(deferred, seed=7) is deferred  # on meta: a no-op that checks the rules
    deferred.to_empty(device="cpu")
    rules = {"act.weight": 0.25}  # PReLU's slope is otherwise left as to_empty leaves it
    init_module_(deferred, seed=7, rules=rules)
    init_module_(direct, seed=7, rules=rules)
    a, b = direct.state_dict(), deferred.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tied_weights_are_filled_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(10, 6)
            self.hidden = nn.Linear(6, 6)
            self.decoder = nn.Linear(6, 10, bias=False)
            self.decoder.weight = self.embed.weight

    net = Tied()
    records = init_plan(net)
    assert [r.name for r in records] == ["embed.weight", "hidden.weight", "hidden.bias"]
    init_module_(net, seed=1)
    assert net.decoder.weight is net.embed.weight
    g = Generator(1)
    assert torch.equal(net.embed.weight, fill_(torch.empty(10, 6), generator=g))
    assert torch.equal(net.hidden.weight, fill_(torch.empty(6, 6), generator=g))


def test_torch_generator_is_reproducible():
    a, b = Net(), Net()
    torch.manual_seed(3)
    init_module_(a)
    torch.manual_seed(3)
    init_module_(b, generator=None)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    init_module_(b, generator=torch.Generator().manual_seed(3))  # a fresh generator, same seed
    assert torch.equal(a.head.weight, b.head.weight)
    init_module_(b, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a.head.weight, b.head.weight)


def test_verbose_prints_the_report(capsys):
    net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    init_module_(net, seed=0, verbose=True)
    out = capsys.readouterr().out
    assert out == format_report(init_plan(net)) + "\n"
    lines = out.splitlines()
    assert lines[0].split() == ["name", "shape", "rule", "fan", "std"]
    assert lines[1].split() == ["0.weight", "3x4", "nspl", "4", f"{SQRT2 / 2:.6g}"]
    assert lines[3].split() == ["1.weight", "3", "ones", "0"]


def test_exported():
    assert nspl_filler.init_module_ is init_module_ and nspl_filler.init_plan is init_plan
