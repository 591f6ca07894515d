"""The options the initialisers share (nspl_filler/options.py): one declaration gives each
function its keywords, their defaults and the error for a keyword it does not take."""
import inspect
import pickle
import typing

import pytest
import torch
from torch import nn

import nspl_filler
from nspl_filler.options import DEFAULTS, InitOptions, LawOptions, PlanOptions, resolve

LAW = ["alpha", "ratio", "gain", "nonlinearity", "param"]
PLAN = ["mode", "alpha", "ratio", "gain", "nonlinearity", "param", "scale", "rules", "strict"]
STREAM = ["seed", "generator", "verbose", "stream"]

# Each public function's parameters as its documentation states them (docs/guide.md and the
# docstrings): the names, in any order, and the defaults a user relies on.
SIGNATURES = {
    "fill_": ["tensor", "mode", *LAW, "fan_in", "fan_out", "seed", "generator", "name"],
    "fill_many_": ["tensors", "mode", *LAW, "seed", "generator", "names"],
    "init_plan": ["module", *PLAN],
    "init_module_": ["module", *PLAN, *STREAM],
    "materialize_": ["module", "device", *PLAN, *STREAM, "values", "meta_buffers"],
}
DOCUMENTED_DEFAULTS = {
    "mode": "fan_in", "alpha": 1.0, "ratio": 100.0, "gain": None, "nonlinearity": "relu", "param": None,
    "scale": "fan", "rules": None, "strict": False, "seed": None, "generator": None, "verbose": False,
    "stream": "sequential",
}


@pytest.mark.parametrize("name", sorted(SIGNATURES))
def test_signatures_state_every_keyword_and_its_default(name):
    parameters = inspect.signature(getattr(nspl_filler, name)).parameters
    assert sorted(parameters) == sorted(SIGNATURES[name])
    assert not any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    for key, default in DOCUMENTED_DEFAULTS.items():
        if key in parameters:
            assert parameters[key].default == default, key
            # Only the tensor, the module, mode of the fills and materialize_'s device are positional.
            if key != "mode" or name not in ("fill_", "fill_many_"):
                assert parameters[key].kind is inspect.Parameter.KEYWORD_ONLY, key


def test_the_defaults_are_the_cores():
    assert DEFAULTS["alpha"] == nspl_filler.DEFAULT_ALPHA == nspl_filler._C.DEFAULT_ALPHA
    assert DEFAULTS["ratio"] == nspl_filler.DEFAULT_RATIO == nspl_filler._C.DEFAULT_RATIO


def test_resolve_fills_in_defaults_and_keeps_what_was_given():
    assert resolve("f", {}, LawOptions) == {"alpha": 1.0, "ratio": 100.0, "nonlinearity": "relu", "param": None}
    options = resolve("f", {"alpha": 2.0, "rules": {"*": "zeros"}}, PlanOptions)
    assert options["alpha"] == 2.0 and options["rules"] == {"*": "zeros"} and options["scale"] == "fan"
    assert set(resolve("f", {}, InitOptions)) == set(PLAN) | set(STREAM)
    # Each call gets a dict of its own: changing one changes no default.
    resolve("f", {}, PlanOptions)["alpha"] = 5.0
    assert resolve("f", {}, PlanOptions)["alpha"] == 1.0


def test_resolve_refuses_a_key_of_another_kind():
    with pytest.raises(TypeError, match=r"^init_plan\(\) got an unexpected keyword argument 'seed'$"):
        resolve("init_plan", {"alpha": 2.0, "seed": 0}, PlanOptions)
    with pytest.raises(TypeError, match="'scale'"):
        resolve("fill_", {"scale": "keep"}, LawOptions)


def test_an_unknown_keyword_is_a_type_error_before_anything_is_written():
    tensor = torch.zeros(4, 4)
    with pytest.raises(TypeError, match=r"fill_\(\) got an unexpected keyword argument 'alpah'"):
        nspl_filler.fill_(tensor, alpah=2.0, seed=0)
    with pytest.raises(TypeError, match=r"fill_many_\(\) got an unexpected keyword argument 'rules'"):
        nspl_filler.fill_many_([tensor], rules={"*": "zeros"}, seed=0)
    assert not tensor.any()

    model = nn.Linear(4, 4)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TypeError, match=r"init_module_\(\) got an unexpected keyword argument 'ratios'"):
        nspl_filler.init_module_(model, seed=0, ratios=10.0)
    with pytest.raises(TypeError, match=r"init_plan\(\) got an unexpected keyword argument 'seed'"):
        nspl_filler.init_plan(model, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))

    with nspl_filler.empty_weights():
        meta = nn.Linear(4, 4)
    with pytest.raises(TypeError, match=r"materialize_\(\) got an unexpected keyword argument 'sed'"):
        nspl_filler.materialize_(meta, "cpu", sed=0)
    assert meta.weight.is_meta  # nothing allocated


def test_shared_options_are_keyword_only():
    with pytest.raises(TypeError):
        nspl_filler.init_plan(nn.Linear(2, 2), "fan_out")
    with pytest.raises(TypeError):
        nspl_filler.fill_(torch.empty(2, 2), "fan_in", 2.0)


@pytest.mark.parametrize("options", [{}, {"alpha": 2.5, "ratio": 7.0, "gain": 0.5, "mode": "fan_out"},
                                     {"nonlinearity": "leaky_relu", "param": 0.2}])
def test_one_set_of_options_means_the_same_to_every_function(options):
    """fill_, fill_many_, init_module_, materialize_ and init_plan read one set of options
    alike: the same values from the same seed, and the std init_plan reports."""
    law = {k: v for k, v in options.items() if k != "mode"}
    mode = options.get("mode", "fan_in")
    model = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False))
    nspl_filler.init_module_(model, seed=3, **options)
    one = nspl_filler.Generator(3)
    by_fill = [nspl_filler.fill_(torch.empty_like(p), mode, generator=one, **law) for p in model.parameters()]
    by_many = nspl_filler.fill_many_([torch.empty_like(p) for p in model.parameters()], mode, seed=3, **law)
    with nspl_filler.empty_weights():
        meta = nn.Sequential(nn.Linear(6, 5, bias=False), nn.Linear(5, 3, bias=False))
    nspl_filler.materialize_(meta, "cpu", seed=3, **options)
    for p, a, b, c in zip(model.parameters(), by_fill, by_many, meta.parameters()):
        assert torch.equal(p, a) and torch.equal(p, b) and torch.equal(p, c)
    gain = options.get("gain") or torch.nn.init.calculate_gain(options.get("nonlinearity", "relu"),
                                                               options.get("param"))
    for record, p in zip(nspl_filler.init_plan(model, **options), model.parameters()):
        n = p.shape[1] if mode == "fan_in" else p.shape[0]
        assert record.std == pytest.approx(gain / n ** 0.5, rel=1e-12)


def test_typed_dicts_resolve_their_annotations():
    for kind in (LawOptions, PlanOptions, InitOptions):
        assert set(typing.get_type_hints(kind)) == set(kind.__optional_keys__)


class Recording(torch.Tensor):
    """A tensor subclass whose __torch_function__ records the keywords it is handed."""

    seen: list = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        if func in (nspl_filler.fill_, nspl_filler.fill_many_):
            cls.seen.append(sorted(kwargs))
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("name", ["fill_", "fill_many_"])
def test_a_torch_function_handler_is_handed_every_law_option(name):
    Recording.seen.clear()
    tensor = torch.empty(4, 4).as_subclass(Recording)
    if name == "fill_":
        nspl_filler.fill_(tensor, seed=1)
    else:
        nspl_filler.fill_many_([tensor], seed=1)
    assert Recording.seen and set(LawOptions.__optional_keys__) <= set(Recording.seen[0])


def test_records_pickle_and_unpickle_from_the_dict_they_had_before_slots():
    (record, _) = nspl_filler.init_plan(nn.Linear(3, 4))
    assert pickle.loads(pickle.dumps(record)) == record
    # What unpickling a record pickled while records had a __dict__ does: __setstate__(dict).
    old = object.__new__(type(record))
    old.__setstate__({"name": "weight", "shape": (4, 3), "rule": record.rule, "fan": record.fan, "std": record.std,
                      "role": "layer", "aliases": (), "own_std": record.own_std})
    assert old == record and old.own_std == record.own_std
