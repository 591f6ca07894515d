"""init_module_: default rules by role, rules by name / type / predicate, the report, equality
with filling one by one, meta + to_empty, tied weights, scale "keep", rules that match
nothing, explicit fans, callables' generators."""
import math
import re
import warnings

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
    # Embedding tables: NSPL with gain 1, n = embedding_dim.
    assert by_name["embed.weight"] == ParamInit("embed.weight", (11, 8), "nspl(gain=1.0, mode='fan_in')", 8, 1 / math.sqrt(8),
                                                "embedding")
    assert by_name["conv.weight"].fan == 24 and by_name["conv.weight"].role == "layer"
    assert by_name["conv.weight"].std == SQRT2 / math.sqrt(24)
    assert by_name["blocks.0.attn.in_proj_weight"].rule == "nspl"
    assert by_name["blocks.0.attn.out_proj.weight"].role == "layer"
    assert by_name["blocks.1.mlp.0.weight"].fan == 8 and by_name["blocks.1.mlp.2.weight"].fan == 32
    # Everything that is not a layer weight keeps the model's values.
    for name in ["conv.bias", "blocks.0.attn.in_proj_bias", "blocks.0.mlp.0.bias", "head.bias"]:
        assert by_name[name] == ParamInit(name, tuple(dict(net.named_parameters())[name].shape), "keep", None, None)
    for name in ["bn.weight", "bn.bias", "blocks.1.norm.weight", "blocks.1.norm.bias", "scale.weight"]:
        assert (by_name[name].rule, by_name[name].role) == ("keep", "norm"), name
    assert by_name["act.weight"] == ParamInit("act.weight", (1,), "keep", None, None, "other")


def test_values_equal_filling_one_by_one_from_a_generator():
    net = Net()
    before = snapshot(net)
    net.bn.running_mean.fill_(3.0)
    assert init_module_(net, seed=42) is net
    g = Generator(42)
    filled = set()
    for name, p in Net().named_parameters():  # only the shapes and the order matter
        actual = dict(net.named_parameters())[name]
        if p.dim() >= 2:
            gain = 1.0 if name == "embed.weight" else SQRT2
            expected = fill_(torch.empty_like(p), gain=gain, generator=g)
            if name == "embed.weight":
                expected[3] = 0  # padding_idx row
            assert torch.equal(actual, expected), name
            filled.add(name)
    for name, value in before.items():  # every other parameter keeps its value
        if name not in filled and not name.startswith("bn.running") and name != "bn.num_batches_tracked":
            assert torch.equal(net.state_dict()[name], value), name
    assert net.bn.running_mean.abs().sum() == 0 and torch.equal(net.bn.running_var, torch.ones(8))


def test_generator_and_arguments_pass_through():
    net_a, net_b = Net(), Net()
    g = Generator(5, offset=100)
    init_module_(net_a, mode="fan_out", alpha=2.5, ratio=20.0, nonlinearity="tanh", generator=g)
    reference = Generator(5, offset=100)
    gain = torch.nn.init.calculate_gain("tanh")
    for (name, p), q in zip(net_a.named_parameters(), net_b.parameters()):
        if p.dim() >= 2:
            table = name == "embed.weight"  # EMBEDDING_RULE: gain 1, n = embedding_dim whatever the mode
            fill_(q, "fan_in" if table else "fan_out", alpha=2.5, ratio=20.0, gain=1.0 if table else gain,
                  generator=reference)
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
        (nn.BatchNorm1d, "ones"),
        ("*.attn.*", "zeros"),
        ("*.attn.in_proj_weight", "ones"),  # never reached: the previous key matches first
    ]
    norm_before = net.blocks[0].norm.weight.clone()
    with pytest.warns(UserWarning, match=r"\['\*\.attn\.in_proj_weight'\] match no parameter"):
        records = {r.name: r for r in init_plan(net, rules=rules)}
    rules.pop()
    assert records["embed.weight"] == ParamInit("embed.weight", (11, 8), "normal(std=0.02)", 8, 0.02, "embedding")
    assert records["blocks.0.attn.out_proj.weight"].rule == "nspl(alpha=2.0, gain=1.0)"
    assert records["blocks.0.attn.out_proj.weight"].std == pytest.approx(1.0 / math.sqrt(8))
    assert records["blocks.0.norm.weight"].rule == "keep"
    assert records["bn.weight"].rule == records["bn.bias"].rule == "ones"  # a type key with a constant: all
    assert records["blocks.1.mlp.0.weight"].rule == "uniform"
    assert records["blocks.1.mlp.0.weight"].std == pytest.approx(SQRT2 / math.sqrt(8))
    assert records["head.weight"].rule.endswith("custom") and records["head.weight"].std is None
    assert records["act.weight"].rule == "constant(0.25)" and records["blocks.1.attn.in_proj_weight"].rule == "zeros"
    assert records["conv.bias"].rule == "keep"

    init_module_(net, rules=rules, seed=9)
    assert calls == [(5, 8), (5,)]
    assert torch.equal(net.head.weight, torch.full((5, 8), 0.5))
    assert torch.equal(net.act.weight, torch.tensor([0.25]))
    assert torch.equal(net.blocks[0].norm.weight, norm_before)
    assert net.bn.bias.eq(1).all()
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
    with pytest.raises(ValueError, match="act.weight.*fan_in"):
        init_module_(net, rules={"act.weight": "nspl"}, seed=0)  # a 1-D tensor has no fans
    with pytest.raises(ValueError, match="unknown rule"):
        init_module_(net, rules={"head.weight": "xavier"}, seed=0)
    with pytest.raises(ValueError, match="not options"):
        init_module_(net, rules={"head.weight": {"init": "normal", "alpha": 2.0}}, seed=0)
    with pytest.raises(ValueError, match="fan_in must be finite and > 0"):
        init_module_(net, rules={"head.weight": {"fan_in": 0}}, seed=0)
    with pytest.raises(ValueError, match="scale must be one of"):
        init_module_(net, scale="own", seed=0)
    with pytest.raises(ValueError, match="match no parameter"):
        init_module_(net, rules={"haed.weight": "zeros"}, strict=True, seed=0)
    with pytest.raises(TypeError, match="key"):
        init_module_(net, rules={3: "zeros"}, seed=0)
    with pytest.raises(TypeError, match="pairs"):
        init_module_(net, rules=["head.weight"], seed=0)
    with pytest.raises(TypeError, match="strict"):
        init_module_(net, strict="yes", seed=0)
    with pytest.raises(ValueError, match="not both"):
        init_module_(net, seed=0, generator=Generator(0))
    with pytest.raises(TypeError, match="Module"):
        init_module_(torch.empty(3, 3), seed=0)
    after = snapshot(net)
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_rule_that_matches_nothing_warns():
    net = Net()
    with pytest.warns(UserWarning, match=r"\['haed\.weight'\] match no parameter"):
        init_module_(net, seed=0, rules={"haed.weight": "zeros", "head.weight": "zeros"})
    assert net.head.weight.eq(0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        init_module_(net, seed=0, rules={"head.*": "zeros"})


def test_a_module_type_rule_with_a_random_rule_reaches_only_weights():
    net = Net()
    bias = net.head.bias.clone()
    records = {r.name: r for r in init_plan(net, rules={nn.Linear: {"gain": 1.0}, nn.Embedding: "normal"})}
    assert records["head.weight"].rule == "nspl(gain=1.0)" and records["head.bias"].rule == "keep"
    assert records["blocks.0.attn.out_proj.weight"].rule == "nspl(gain=1.0)"  # a Linear subclass
    assert records["embed.weight"].rule == "normal"
    init_module_(net, seed=0, rules={nn.Linear: {"gain": 1.0}})
    assert torch.equal(net.head.bias, bias)


def test_dict_rules_take_explicit_fans():
    net = Net()
    rules = {"act.weight": {"fan_in": 4.0}, "scale.weight": {"init": "normal", "fan_in": 9, "gain": 3.0},
             "head.weight": {"fan_in": 2, "fan_out": 50, "mode": "average"}}
    records = {r.name: r for r in init_plan(net, rules=rules)}
    assert (records["act.weight"].fan, records["act.weight"].std) == (4.0, SQRT2 / 2)
    assert records["scale.weight"].std == 1.0
    assert records["head.weight"].fan == 26
    init_module_(net, seed=3, rules=rules)
    # The explicit fans, exactly as fill_ takes them, at the parameter's place in the stream.
    offset = 0
    for name, p in net.named_parameters():
        if name == "head.weight":
            break
        if records[name].rule != "keep":
            offset += -(-p.numel() // 4)
    expected = fill_(torch.empty(5, 8), "average", fan_in=2, fan_out=50, generator=Generator(3, offset))
    assert torch.equal(net.head.weight, expected)
    assert net.act.weight.abs().item() >= SQRT2 / 2 / math.sqrt(nspl_filler.second_moment()) * (1 - 1e-6)


def test_callable_rules_get_a_generator_of_their_own():
    def as_transposed(p, generator):
        fill_(p.T, generator=generator)

    net, again = Net(), Net()
    rules = {"blocks.*.mlp.0.weight": as_transposed}
    init_module_(net, seed=0, rules=rules)
    init_module_(again, seed=0, rules=rules)
    first, second = net.blocks[0].mlp[0].weight, net.blocks[1].mlp[0].weight
    assert first.shape == second.shape and not torch.equal(first, second)  # not the same values everywhere
    assert torch.equal(first, again.blocks[0].mlp[0].weight)  # the same on every call
    # A callable takes its parameter's blocks: what follows it is where it would be under "nspl".
    plain = init_module_(Net(), seed=0)
    assert torch.equal(net.blocks[0].mlp[2].weight, plain.blocks[0].mlp[2].weight)
    assert torch.equal(net.head.weight, plain.head.weight)
    # torch.nn.init functions that take a generator take it too.
    def rule(p, generator):
        nn.init.normal_(p, generator=generator)

    init_module_(net, seed=1, rules={"head.bias": rule})
    kept = net.head.bias.clone()
    init_module_(net, seed=1, rules={"head.bias": rule})
    assert torch.equal(net.head.bias, kept)
    init_module_(net, seed=2, rules={"head.bias": rule})
    assert not torch.equal(net.head.bias, kept)
    seen = []
    init_module_(net, rules={"head.bias": lambda p, generator: seen.append(generator)})  # torch's default
    assert seen == [None]


def test_scale_keep_refills_at_each_tensors_own_std():
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        net.blocks[0].mlp[2].weight.mul_(0.01)   # a small residual branch
        net.head.weight.zero_()                  # a zero-initialised head
    before = snapshot(net)
    records = {r.name: r for r in init_plan(net, scale="keep")}
    assert records["head.weight"].rule == "keep (std 0)" and records["head.weight"].std is None
    target = before["blocks.0.mlp.2.weight"].std(correction=0).item()
    assert records["blocks.0.mlp.2.weight"].rule == "nspl (own std)"
    assert records["blocks.0.mlp.2.weight"].std == pytest.approx(target)
    init_module_(net, seed=4, scale="keep")
    w = net.blocks[0].mlp[2].weight
    assert not torch.equal(w, before["blocks.0.mlp.2.weight"])
    assert w.std().item() == pytest.approx(target, rel=0.3)
    assert net.head.weight.eq(0).all()
    for name in ["embed.weight", "conv.weight", "blocks.1.attn.in_proj_weight"]:
        got, want = dict(net.named_parameters())[name].std(correction=0), before[name].std(correction=0)
        assert got.item() == pytest.approx(want.item(), rel=0.3), name
    # The values are NSPL's: |w| / c lies in [1, ratio] for c = std / sqrt(E[y²]).
    c = target / math.sqrt(nspl_filler.second_moment())
    assert w.abs().min() >= c * (1 - 1e-5) and w.abs().max() <= c * 100 * (1 + 1e-5)
    # A rule can ask for it alone, and garbage (NaN) is refused before anything is written.
    assert init_plan(net, rules={"conv.weight": {"scale": "keep"}})[1].rule == "nspl(scale='keep')"
    with torch.no_grad():
        net.conv.weight[0, 0, 0] = math.nan
    kept = snapshot(net)
    with pytest.raises(ValueError, match="conv.weight.*NaN"):
        init_module_(net, seed=0, scale="keep")
    after = snapshot(net)
    assert all(torch.equal(kept[k], after[k]) for k in kept if k != "conv.weight")


def test_meta_then_to_empty_equals_direct_construction_with_rules_for_the_kept():
    torch.manual_seed(0)
    direct = Net()
    with torch.device("meta"):
        deferred = Net()
    # to_empty leaves garbage: the parameters that would be kept need rules (or materialize_).
    rules = [("*.bias", "zeros"), ("act.weight", 0.25), (lambda name, p, m: p.dim() == 1, "ones")]
    assert init_module_(deferred, seed=7, rules=rules) is deferred  # on meta: a no-op that checks the rules
    deferred.to_empty(device="cpu")
    init_module_(deferred, seed=7, rules=rules)
    init_module_(direct, seed=7, rules=rules)
    a, b = direct.state_dict(), deferred.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tied_weights_are_filled_once_and_answer_to_every_name():
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
    assert records[0].aliases == ("decoder.weight",)
    assert format_report(records).splitlines()[1].startswith("embed.weight = decoder.weight")
    init_module_(net, seed=1)
    assert net.decoder.weight is net.embed.weight
    g = Generator(1)
    assert torch.equal(net.embed.weight, fill_(torch.empty(10, 6), gain=1.0, generator=g))
    assert torch.equal(net.hidden.weight, fill_(torch.empty(6, 6), generator=g))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the alias is a name of the parameter: the rule applies
        init_module_(net, seed=1, rules={"decoder.weight": "zeros"})
    assert net.embed.weight.eq(0).all()


def test_torch_generator_is_reproducible():
    a, b = Net(), Net()
    torch.manual_seed(3)
    init_module_(a)
    torch.manual_seed(3)
    init_module_(b, generator=None)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if p.dim() >= 2:
            assert torch.equal(p, q), name
    init_module_(b, generator=torch.Generator().manual_seed(3))  # a fresh generator, same seed
    assert torch.equal(a.head.weight, b.head.weight)
    init_module_(b, generator=torch.Generator().manual_seed(4))
    assert not torch.equal(a.head.weight, b.head.weight)


def test_verbose_prints_the_report(capsys):
    net = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    plan = format_report(init_plan(net))  # before: the own std is the one the model gave
    own = float(net[0].weight.std(correction=0))
    init_module_(net, seed=0, verbose=True)
    out = capsys.readouterr().out
    assert out == plan + "\n"
    lines = out.splitlines()
    assert lines[0].split() == ["name", "shape", "role", "rule", "fan", "std", "own", "std"]
    assert lines[1].split()[:6] == ["0.weight", "3x4", "layer", "nspl", "4", f"{SQRT2 / 2:.6g}"]
    assert float(lines[1].split()[6]) == pytest.approx(own, rel=1e-5)
    assert lines[2].split() == ["0.bias", "3", "other", "keep"]
    assert lines[3].split() == ["1.weight", "3", "norm", "keep"]


def test_exported():
    assert nspl_filler.init_module_ is init_module_ and nspl_filler.init_plan is init_plan
    for name in ["empty_weights", "materialize_", "register_layout", "layout_of", "Layout", "EMBEDDING_RULE"]:
        assert name in nspl_filler.__all__ and hasattr(nspl_filler, name)


def test_a_rule_that_an_earlier_rule_shadows_is_reported_as_taking_nothing():
    net = nn.Sequential(nn.Linear(3, 3))
    rules = [("0.*", "zeros"), ("0.bias", "ones")]
    with pytest.warns(UserWarning, match=r"\['0\.bias'\] match no parameter .* that an earlier rule does not take"):
        init_module_(net, seed=0, rules=rules)
    assert net[0].bias.eq(0).all()
    with pytest.raises(ValueError, match="an earlier rule does not take"):
        init_module_(net, seed=0, rules=rules, strict=True)


@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "average"])
def test_embedding_tables_take_n_embedding_dim_whatever_the_mode(mode):
    table = nn.Embedding(1000, 16)
    (record,) = init_plan(table, mode=mode)
    assert record.fan == 16 and record.std == pytest.approx(0.25)
