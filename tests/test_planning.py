"""Planning at scale (nspl_filler/rules.py, plan.py): the compiled rules find the rule that
trying each key in order finds, the planner's short path (templates shared between
parameters) plans what planning each parameter on its own plans, and a plan's columns
follow named_parameters()."""
import re
import warnings
from fnmatch import fnmatchcase

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nspl_filler import init_module_, init_plan, plan as planning, rules as rule_language
from nspl_filler.options import PlanOptions, resolve

SEGMENTS = ["layers", "0", "1", "12", "attn", "mlp", "weight", "bias", "experts", "router", "q_proj", "norm"]
GLOB_PARTS = ["*", "?", "[0-9]", "[!0-9]", ".", "layers", "weight", "bias", "attn", "1", "*.", ".*"]


@st.composite
def qualified_names(draw):
    return ".".join(draw(st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=5)))


@st.composite
def rule_keys(draw):
    kind = draw(st.sampled_from(["glob", "glob", "regex", "type", "predicate"]))
    if kind == "glob":
        return "".join(draw(st.lists(st.sampled_from(GLOB_PARTS), min_size=1, max_size=5)))
    if kind == "regex":
        return re.compile(draw(st.sampled_from([r"layers\.\d+\..*", r".*weight", r"(a|b)\1", r".*\.(bias|weight)",
                                                r"[^.]*"])))
    if kind == "type":
        return draw(st.sampled_from([nn.Linear, nn.Module, nn.LayerNorm, nn.Conv1d]))
    suffix = draw(st.sampled_from(["weight", "bias", "0.weight"]))
    return lambda name, param, module, suffix=suffix: name.endswith(suffix)


OWNERS = [nn.Linear(2, 3), nn.LayerNorm(3), nn.Conv1d(2, 4, 3), nn.Sequential(), nn.Module()]


@settings(max_examples=300, deadline=None)
@given(keys=st.lists(rule_keys(), min_size=1, max_size=8),
       rules=st.lists(st.sampled_from(["zeros", "nspl", "keep", 0.5, {"init": "normal"}]), min_size=8, max_size=8),
       names=st.lists(qualified_names(), min_size=1, max_size=6),
       owner=st.sampled_from(range(len(OWNERS))), local=st.sampled_from(["weight", "bias", "scale"]))
def test_compiled_rules_find_the_first_key_that_matches(keys, rules, names, owner, local):
    pairs = list(zip(keys, rules))
    rule_list = rule_language.parse_rules(pairs)
    compiled = rule_language.CompiledRules(rule_list)
    module = OWNERS[owner]
    param = getattr(module, local, None)
    param = param if isinstance(param, torch.Tensor) else torch.zeros(3, 2)
    for name in names:
        expected = next((k for k, (key, action) in enumerate(rule_list)
                         if rule_language.matches(key, action, name, local, param, module)), len(rule_list))
        assert compiled.first(name, local, param, module) == expected, (name, keys)


def test_compiled_globs_keep_fnmatch_semantics_for_special_characters():
    keys = ["a.b", "a?b", "[ab]*", "x[!y]z", "(a)", "a+b", "a\\b", "[]]", "*"]
    compiled = rule_language.CompiledRules(rule_language.parse_rules([(k, "zeros") for k in keys]))
    names = ["a.b", "axb", "b.c", "xaz", "xyz", "x.z", "(a)", "a+b", "aab", "a\\b", "]", "anything"]
    for name in names:
        expected = next(k for k, key in enumerate(keys) if fnmatchcase(name, key))
        assert compiled.first(name, "", torch.zeros(1), nn.Module()) == expected, name
    assert compiled.first("xyz", "", torch.zeros(1), nn.Module()) == len(keys) - 1


def test_predicates_are_called_only_where_they_can_still_win():
    calls = []

    def predicate(name, param, module):
        calls.append(name)
        return False

    compiled = rule_language.CompiledRules(rule_language.parse_rules([("*.weight", "zeros"), (predicate, "ones")]))
    compiled.first("a.weight", "weight", torch.zeros(1), nn.Module())
    assert calls == []  # the glob before it already matched
    compiled.first("a.bias", "bias", torch.zeros(1), nn.Module())
    assert calls == ["a.bias"]


class Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(10, 6, padding_idx=0)
        self.convs = nn.ModuleList([nn.Conv2d(6, 6, 3, groups=g) for g in (1, 2, 3)])
        self.ups = nn.ModuleList([nn.ConvTranspose2d(6, 6, 3, groups=g) for g in (1, 2, 3)])
        self.norm = nn.BatchNorm2d(6)
        self.empty = nn.Linear(0, 5)
        self.frozen = nn.Linear(6, 6)
        self.frozen.weight.requires_grad_(False)
        self.experts = nn.Parameter(torch.randn(4, 6, 8))
        self.router = nn.Linear(6, 4)
        self.layers = nn.ModuleList([nn.Linear(6, 6) for _ in range(3)])
        self.layers[1] = nn.Linear(6, 7)
        self.head = nn.Linear(6, 10)
        self.head.weight = self.embed.weight  # tied
        self.shared = self.layers[0]         # a module held twice
        self.bilinear = nn.Bilinear(3, 4, 5)
        self.rnn = nn.GRU(6, 6)


RULE_SETS = [
    None,
    {"*.bias": "zeros"},
    {nn.Linear: {"init": "uniform", "gain": 1.0}, "norm.*": "ones", "*.bias": 0.25},
    [(re.compile(r"layers\.\d+\.weight"), {"init": "normal", "mode": "fan_out"}),
     (lambda name, p, m: p.dim() == 1, "zeros"), ("*", "keep")],
    {"layers.*.weight": {"init": "nspl", "alpha": 2.0, "ratio": 10.0, "mode": "average"}, nn.Conv2d: "nspl"},
    {"experts": {"scale": "keep"}, "convs.*.weight": {"scale": "keep"}},
]


def plan_of(module, **arguments):
    """The Plan of `module` by init_plan's keyword `arguments`."""
    return planning.plan(module, resolve("plan", arguments, PlanOptions))


def one_by_one(module, **arguments):
    """The plan of `module` with every parameter planned on its own (Planner.entry): the
    planner's long path, which the short path must agree with."""
    planner = planning.Planner(resolve("Planner", arguments, PlanOptions))
    rows, tied, _ = planning._walk(module)
    return [planner.entry(aliases, tensor).record() for aliases, tensor in planning._with_aliases(rows, tied)]


@pytest.mark.parametrize("rules", RULE_SETS)
@pytest.mark.parametrize("arguments", [{}, {"mode": "fan_out"}, {"scale": "keep"}])
def test_short_path_plans_what_each_parameter_planned_alone_plans(rules, arguments):
    torch.manual_seed(0)
    model = Grouped()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        planned = plan_of(model, rules=rules, **arguments).records()
    assert planned == one_by_one(model, rules=rules, **arguments)
    assert [r.name for r in planned] == [name for name, _ in model.named_parameters()]


@pytest.mark.parametrize("rules", [{"layers.*": "nspl"}, {"router.bias": {"init": "uniform"}}])
def test_short_path_refuses_what_each_parameter_planned_alone_refuses(rules):
    model = Grouped()
    with pytest.raises(ValueError) as short:
        plan_of(model, rules=rules)
    with pytest.raises(ValueError) as alone:
        one_by_one(model, rules=rules)
    assert str(short.value) == str(alone.value)
    assert "has no fans" in str(short.value)


def test_plan_columns_share_decisions_between_alike_parameters():
    model = nn.Sequential(*(nn.Linear(4, 4) for _ in range(50)))
    the_plan = plan_of(model)
    assert len(the_plan) == 100
    assert the_plan.tensors == list(model.parameters())
    # 50 weights share one decision object, and 50 biases another.
    assert len({id(d) for d in the_plan.decisions}) == 2
    assert the_plan.plain and not the_plan.aliases and not the_plan.through


def test_frozen_and_empty_parameters_keep_their_own_decisions_within_a_template():
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(0, 4))
    model[1].weight.requires_grad_(False)
    rules = {r.name: r.rule for r in init_plan(model)}
    assert rules["0.weight"] == "nspl" and rules["1.weight"] == "keep (frozen)"
    assert rules["2.weight"] == "keep (no elements)"


def test_running_statistics_are_reset_once_per_module_even_when_shared():
    norm = nn.BatchNorm1d(3)
    model = nn.Sequential(norm, nn.Linear(3, 3), norm)
    norm.running_mean.fill_(5.0)
    norm.num_batches_tracked.fill_(7)
    init_module_(model, seed=0)
    assert torch.equal(norm.running_mean, torch.zeros(3)) and int(norm.num_batches_tracked) == 0
    assert list(plan_of(model).statistics.values()) == [norm]


def test_the_walk_collects_every_norm_with_running_statistics_and_nothing_else():
    class OwnNorm(nn.BatchNorm1d):  # a subclass, two levels below _NormBase
        pass

    instance = nn.InstanceNorm1d(3, track_running_stats=True)
    own, batch = OwnNorm(3), nn.BatchNorm2d(3)
    model = nn.Sequential(nn.LayerNorm(3), nn.ModuleList([instance, nn.GroupNorm(1, 3)]),
                          nn.ModuleDict({"own": own, "linear": nn.Linear(3, 3)}), batch)
    # By torch's own listing: the modules whose running statistics init_module_ resets.
    expected = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    assert expected == [instance, own, batch]
    assert list(plan_of(model).statistics.values()) == expected
    own.running_var.fill_(4.0)
    init_module_(model, seed=0)
    assert torch.equal(own.running_var, torch.ones(3))
    columns = planning._Columns(model)
    assert set(columns.types) == {type(m) for m in model.modules()} and len(columns.types) == 9


def test_a_plan_of_meta_tensors_has_its_report_made_without_reading_a_tensor(monkeypatch):
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    assert plan_of(model).meta
    measured = []
    monkeypatch.setattr(planning, "_measured_std", lambda tensor: measured.append(tensor) or 1.0)
    assert all(r.own_std is None for r in init_plan(model)) and not measured
    mixed = nn.Sequential(model[0], nn.Linear(4, 4))  # the second layer on the CPU
    assert not plan_of(mixed).meta
    report = {r.name: r.own_std for r in init_plan(mixed)}
    assert report["0.weight"] is None and report["1.weight"] == 1.0
    assert len(measured) == 1 and measured[0] is mixed[1].weight


def test_the_walk_collects_instances_of_types_only():
    with pytest.raises(TypeError, match="types only"):
        planning._C.walk_modules(nn.Linear(2, 2), planning._ATTRIBUTES, planning.PLAIN_TYPES, ("BatchNorm1d",))


def test_a_class_level_groups_attribute_is_read_like_an_instance_one():
    class ClassGroups(nn.ConvTranspose2d):
        groups = 2  # a class attribute: the instance's __dict__ value set by __init__ wins

    class PropertyGroups(nn.ConvTranspose2d):
        @property
        def groups(self):
            return 3

        @groups.setter
        def groups(self, value):
            pass

    model = nn.ModuleDict({"a": ClassGroups(6, 6, 3, groups=1), "b": PropertyGroups(6, 6, 3, groups=3),
                           "c": nn.ConvTranspose2d(6, 6, 3, groups=3)})
    planned = {r.name: r.fan for r in plan_of(model).records()}
    alone = {r.name: r.fan for r in one_by_one(model)}
    assert planned == alone
    assert planned["b.weight"] == planned["c.weight"]


def test_the_collector_is_paused_for_planning_and_restored_after():
    import gc

    seen = []
    model = nn.Sequential(nn.Linear(2, 2))
    rules = {lambda name, p, m: seen.append(gc.isenabled()) or False: "zeros", "*": "keep"}
    assert gc.isenabled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_module_(model, seed=0, rules=rules)
    assert seen and not any(seen) and gc.isenabled()
    gc.disable()
    try:
        init_module_(model, seed=0)
        assert not gc.isenabled()  # left as the caller had it
    finally:
        gc.enable()
    with pytest.raises(ValueError):
        init_module_(model, seed=0, rules={"0.bias": "nspl"})  # a 1-D tensor has no fans
    assert gc.isenabled()


NAME_PARTS = ["0", "1", "7", "12", "123", "a1b", "a22b", "layers", "x\x01y", "ÿ", "٣"]
DIGIT_GLOBS = ["*", "*.weight", "*s.*", "*1*", "*2*.bias", "a?b*", "*[0-9][0-9]*", "layers.*", "*x\x01y*", "*٣*",
               "*a*b*", "1*", "*b.weight"]


@st.composite
def named_models(draw):
    """Linear layers under nested ModuleDicts whose names differ only in their digits, or in
    characters near them ('\\x01', non-ASCII digits)."""
    root = nn.ModuleDict()
    for _ in range(draw(st.integers(1, 6))):
        path = draw(st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=3))
        node = root
        for part in path[:-1]:
            if part not in node or not isinstance(node[part], nn.ModuleDict):
                node[part] = nn.ModuleDict()
            node = node[part]
        node[path[-1]] = nn.Linear(2, 2, bias=draw(st.booleans()))
    return root


@settings(max_examples=150, deadline=None)
@given(model=named_models(), keys=st.lists(st.sampled_from(DIGIT_GLOBS), min_size=1, max_size=3, unique=True),
       rules=st.lists(st.sampled_from(["zeros", "keep", {"init": "normal", "std": 0.1}, {"init": "uniform"}, 0.5]),
                      min_size=3, max_size=3))
def test_kinds_that_share_a_digit_free_name_plan_as_each_parameter_alone(model, keys, rules):
    # The walk gives the parameters of layers.1.w and layers.12.w one kind; digit-free globs are
    # matched once per kind, the others name by name: either way as planning each alone, the
    # same error included (a uniform rule on a bias has no fans).
    pairs = list(zip(keys, rules))

    def outcome(planner):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return planner()
        except ValueError as error:
            return str(error)

    assert outcome(lambda: plan_of(model, rules=pairs).records()) == outcome(lambda: one_by_one(model, rules=pairs))


def test_tensor_facts_agree_with_what_each_tensor_says():
    from nspl_filler import stream

    with torch.inference_mode():
        frozen = torch.empty(5)
    tensors = [torch.empty(7), torch.empty(3, dtype=torch.float64), nn.Parameter(torch.empty(2, 3)),
               torch.empty(0), frozen, torch.empty(9, dtype=torch.bfloat16, device="meta"),
               torch.empty(1, dtype=torch.int32)]
    blocks, inference, one_device = stream.tensor_facts(tensors)
    assert blocks == [2, 2, 2, 0, 2, 3, 1]  # ceil(numel / 4), float64 ceil(numel / 2)
    assert blocks == [-(-t.numel() // (2 if t.dtype == torch.float64 else 4)) for t in tensors]
    assert inference == [4]
    assert not one_device and stream.tensor_facts(tensors[:5])[2] and stream.tensor_facts([])[2]

    class Marked(torch.Tensor):
        pass

    assert stream.tensor_facts([torch.empty(2), torch.empty(2).as_subclass(Marked)]) is None
    assert stream.block_counts([torch.empty(2).as_subclass(Marked)]) == [1]


@pytest.mark.parametrize("count", [300, 3000, 40000])
def test_tied_parameters_among_many_keep_their_first_row_and_every_name(count):
    # Enough parameters that the walk's table of the parameters met grows several times, and
    # (3000 layers) that it reads ahead of the modules it walks (csrc/module_walk.h), past a
    # frozen parameter, a parameter set to None and a module held twice; at 40000 layers the
    # table and the walk's stack pass 2 MiB, and lie on large pages where Linux gives them.
    layers = [nn.Linear(2, 2) for _ in range(count)]
    for k in range(3, count, 7):
        layers[k].weight = layers[k - 3].weight
    layers[count - 5].bias = None
    layers[count - 4].weight.requires_grad_(False)
    layers[count - 2] = layers[count - 30]
    model = nn.Sequential(*layers)
    the_plan = plan_of(model)
    assert the_plan.names == [name for name, _ in model.named_parameters()]
    assert the_plan.tensors == list(model.parameters())
    # A tied row keeps its first name; its aliases are its other names, every one of them, in order.
    names_of = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(tensor), []).append(name)
    aliases = {the_plan.names.index(names[0]): tuple(names[1:]) for names in names_of.values() if len(names) > 1}
    assert the_plan.aliases == aliases
    for k, names in the_plan.aliases.items():
        assert all(model.get_parameter(name) is the_plan.tensors[k] for name in names)
    assert [r.rule for r in plan_of(model).records()] == [r.rule for r in one_by_one(model)]


def test_the_walk_sees_what_python_code_run_during_it_changed_in_modules_ahead():
    # Past 4096 rows the walk reads ahead of the module it visits (csrc/module_walk.h). A
    # module type with a `groups` property is asked through getattr, which runs Python code:
    # here it replaces the parameters (freeing the old ones), the _parameters dict and the
    # child of modules the walk has read ahead, which must then be planned as they are when
    # it reaches them. (The sanitizer build runs this too.)
    class Swapper(nn.Linear):
        targets: list = []

        @property
        def groups(self):
            for k, layer in enumerate(Swapper.targets):
                if k % 3 == 0:
                    layer.weight = nn.Parameter(torch.empty(3, 2))
                elif k % 3 == 1:
                    layer._parameters = {"bias": nn.Parameter(torch.empty(5))}
                else:
                    layer.add_module("inner", nn.Linear(2, 4, bias=False))
            Swapper.targets = []
            return 1

    layers = [nn.Linear(2, 2) for _ in range(2600)]
    at = 2200  # row 4400: past the first 4096
    layers[at] = Swapper(2, 2)
    Swapper.targets = layers[at + 1:at + 40]
    model = nn.Sequential(*layers)
    the_plan = plan_of(model)
    assert not Swapper.targets  # the property ran during the walk
    assert the_plan.names == [name for name, _ in model.named_parameters()]
    assert [id(t) for t in the_plan.tensors] == [id(t) for t in model.parameters()]
    assert [tuple(t.shape) for t in the_plan.tensors] == [tuple(t.shape) for t in model.parameters()]
    assert [r.rule for r in the_plan.records()] == [r.rule for r in one_by_one(model)]


def test_a_report_s_records_are_left_to_reference_counting():
    # Every field of a record is a str, number, None or tuple of them, and records are frozen:
    # no record is in a reference cycle, so the report leaves them untracked by the cyclic
    # collector, whose next pass would otherwise scan every record again.
    import gc
    import pickle

    report = init_plan(nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4)))
    assert report and not any(gc.is_tracked(r) for r in report)
    assert pickle.loads(pickle.dumps(report)) == report
    assert gc.is_tracked(planning.ParamInit("w", (2,), "nspl", 2, 0.5))  # one made by hand is tracked


def test_an_overflowing_constant_names_the_first_parameter_it_overflows():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).half(), nn.Linear(2, 2).half())
    with pytest.raises(ValueError, match=r"parameter '1.bias' \(rule 'constant\(1e\+06\)'\): the constant 1e\+06 "
                                         r"overflows torch.float16"):
        init_module_(model, seed=0, rules={"*.bias": 1e6})
    # The constant met first (1e6, from 1.weight on) overflows only at 3.weight; the one met
    # next (1e39) at 2.weight, which comes first.
    model = nn.Sequential(*(nn.Linear(2, 2) for _ in range(3)), nn.Linear(2, 2).half())
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"parameter '2.weight' .*the constant 1e\+39 overflows torch.float32"):
        init_module_(model, seed=0, rules={"[13].*": 1e6, "2.*": 1e39})
    assert all(torch.equal(p, b) for p, b in zip(model.parameters(), before))
