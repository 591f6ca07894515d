"""empty_weights + materialize_: weights on meta, buffers and kept parameters real; ties
restored and filled once; buffers without values refused; all checks before anything moves."""
import math
import threading
import warnings

import pytest
import torch
from torch import nn

from nspl_filler import Generator, empty_weights, init_module_, materialize_

ORIGINAL_REGISTER = nn.Module.register_parameter


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(11, 8, padding_idx=0)
        self.norm = nn.LayerNorm(8)
        self.bn = nn.BatchNorm1d(8)
        self.hidden = nn.Linear(8, 8)
        self.decoder = nn.Linear(8, 11, bias=False)
        self.decoder.weight = self.embed.weight  # tied
        self.scale = nn.Parameter(torch.full((8,), 0.5))  # kept
        self.register_buffer("positions", torch.arange(8))
        self.register_buffer("frequencies", 1.0 / (10000 ** (torch.arange(0, 8, 2) / 8)), persistent=False)

    def forward(self, ids):
        x = self.norm(self.embed(ids) * self.scale + self.frequencies.repeat(2))
        x = self.bn(self.hidden(x).transpose(1, 2)).transpose(1, 2)
        return self.decoder(x)


def test_empty_weights_puts_the_weights_on_meta_and_keeps_the_rest_real():
    with empty_weights():
        net = Net()
    meta = {name for name, p in net.named_parameters() if p.is_meta}
    assert meta == {"embed.weight", "hidden.weight"}  # decoder.weight is embed.weight
    assert net.decoder.weight is net.embed.weight
    assert torch.equal(net.positions, torch.arange(8)) and not net.frequencies.is_meta
    assert torch.equal(net.scale, torch.full((8,), 0.5)) and torch.equal(net.norm.weight, torch.ones(8))
    assert net.hidden.weight.requires_grad
    assert nn.Module.register_parameter.__name__ == "register_parameter"  # restored


def test_materialize_equals_direct_construction():
    torch.manual_seed(0)
    direct = init_module_(Net(), seed=3).eval()
    torch.manual_seed(0)
    with empty_weights():
        deferred = Net()
    assert materialize_(deferred, "cpu", seed=3) is deferred
    deferred.eval()
    assert deferred.decoder.weight is deferred.embed.weight
    assert not any(t.is_meta for t in deferred.state_dict().values())
    a, b = direct.state_dict(), deferred.state_dict()
    for name in a:
        if name != "hidden.bias":  # a kept bias that torch draws at random, after a weight that drew none on meta
            assert torch.equal(a[name], b[name]), name
    ids = torch.tensor([[1, 2, 3], [4, 5, 0]])
    deferred.hidden.bias.data.copy_(direct.hidden.bias)
    assert torch.equal(direct(ids), deferred(ids))


def test_materialize_takes_init_module_arguments_and_a_generator():
    with empty_weights():
        a = Net()
    with empty_weights():
        b = Net()
    g = Generator(5, offset=7)
    materialize_(a, "cpu", generator=g, mode="fan_out", rules={"hidden.bias": "zeros"})
    materialize_(b, "cpu", generator=Generator(5, offset=7), mode="fan_out", rules={"hidden.bias": "zeros"})
    assert torch.equal(a.hidden.weight, b.hidden.weight) and a.hidden.bias.eq(0).all()
    assert g.offset == 7 + math.ceil(11 * 8 / 4) + math.ceil(8 * 8 / 4)  # the tied table once


def test_a_model_built_all_on_meta_is_refused_before_anything_moves():
    with torch.device("meta"):
        net = Net()
    with pytest.raises(ValueError, match=r"\['scale \(keep\)', 'norm.weight \(keep\)', 'norm.bias \(keep\)', 'bn.weight .*"
                       "are on the meta device"):
        materialize_(net, "cpu", seed=0)
    writes = [("*.bias", "zeros"), (lambda name, p, m: p.dim() == 1, "ones")]
    with pytest.raises(ValueError, match=r"buffers \['positions', 'frequencies'\] are on the meta device"):
        materialize_(net, "cpu", seed=0, rules=writes)
    assert all(p.is_meta for p in net.parameters())  # nothing moved
    with pytest.warns(UserWarning, match="uninitialised memory"):
        materialize_(net, "cpu", seed=0, rules=writes, meta_buffers="warn")
    assert not any(t.is_meta for t in net.state_dict().values())
    assert torch.equal(net.bn.running_var, torch.ones(8))  # reset, not refused
    assert net.decoder.weight is net.embed.weight


def test_bad_arguments_and_refusals_leave_the_model_on_meta():
    with empty_weights():
        net = Net()
    for call, error, match in [
        (lambda: materialize_(net, "meta", seed=0), ValueError, "device"),
        (lambda: materialize_(net, "cpu", meta_buffers="zeros"), ValueError, "meta_buffers"),
        (lambda: materialize_(net, "cpu", seeds=0), TypeError, "seeds"),
        (lambda: materialize_(net, "cpu", seed=0, scale="keep"), ValueError, r"embed.weight \(nspl\(gain=1.0, mode='fan_in'\) \(own std\)\)"),
        (lambda: materialize_(net, "cpu", seed=0, rules={"hidden.weight": "keep"}), ValueError, "hidden.weight"),
        (lambda: materialize_(net, "cpu", seed=0, rules={"hidden.weight": {"alpha": math.nan}}), ValueError, "alpha"),
        (lambda: materialize_(net.half(), "cpu", seed=0, rules={"hidden.weight": {"gain": 1e6}}), ValueError,
         "overflows"),
        (lambda: materialize_(net, "cpu", seed=0, generator=Generator(0)), ValueError, "not both"),
        (lambda: materialize_(torch.zeros(2), "cpu"), TypeError, "Module"),
    ]:
        with pytest.raises(error, match=match):
            call()
        assert net.hidden.weight.is_meta and net.embed.weight.is_meta


def test_a_model_with_no_parameters_and_a_real_model_move_as_they_are():
    buffers_only = nn.BatchNorm1d(4, affine=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert materialize_(buffers_only, "cpu", seed=0) is buffers_only
    real = nn.Linear(3, 3)
    bias = real.bias
    materialize_(real, "cpu", seed=0)
    assert real.bias is bias  # already on the device: the same Parameter


def test_empty_weights_nests_and_restores_on_error():
    register = nn.Module.register_parameter
    with empty_weights():
        with empty_weights():
            inner = nn.Linear(3, 3)
        outer = nn.Linear(3, 3)
    assert inner.weight.is_meta and outer.weight.is_meta and not outer.bias.is_meta
    with pytest.raises(RuntimeError, match="boom"):
        with empty_weights():
            raise RuntimeError("boom")
    assert nn.Module.register_parameter is register
    assert not nn.Linear(3, 3).weight.is_meta


def test_empty_weights_keeps_ties_with_parameters_that_stay_real_and_with_originals():
    class TableFirst(nn.Module):  # a raw table (kept, real) that a layer then holds as its weight
        def __init__(self):
            super().__init__()
            self.table = nn.Parameter(torch.randn(10, 4))
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.table

    class OriginalKept(nn.Module):  # the original of a weight put on meta, registered again
        def __init__(self):
            super().__init__()
            weight = nn.Parameter(torch.randn(10, 4))
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = weight
            self.alias = weight

    with empty_weights():
        first, kept = TableFirst(), OriginalKept()
    assert first.head.weight is first.table and not first.table.is_meta
    assert kept.head.weight is kept.alias and kept.alias.is_meta
    for model in (first, kept):
        materialize_(model, "cpu", seed=0)
    assert first.head.weight is first.table and kept.head.weight is kept.alias and not kept.alias.is_meta


def write_net(net):
    """What Net's constructor computes, for a Net built on meta: its own init function."""
    with torch.no_grad():
        net.scale.fill_(0.5)
        net.norm.reset_parameters()
        net.bn.reset_parameters()
        net.positions.copy_(torch.arange(8))
        net.frequencies.copy_(1.0 / (10000 ** (torch.arange(0, 8, 2) / 8)))


def test_a_model_built_all_on_meta_gets_values_from_a_callable_before_the_fills():
    rules = {"hidden.bias": "zeros"}  # torch draws it at random: a rule makes it comparable
    direct = init_module_(Net(), seed=4, rules=rules)
    with torch.device("meta"):
        net = Net()
    seen = []
    materialize_(net, "cpu", values=lambda m: (seen.append(torch.isnan(m.hidden.weight).all()), write_net(m)),
                 seed=4, rules=rules)
    assert seen == [False]  # the callable runs after the memory is given, before the fills (garbage there)
    assert net.decoder.weight is net.embed.weight
    for (name, a), b in zip(direct.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name


def test_values_reset_parameters_needs_a_reset_parameters_on_each_owner():
    model = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.BatchNorm1d(6), nn.Embedding(5, 6))
    with torch.device("meta"):
        meta = nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.BatchNorm1d(6), nn.Embedding(5, 6))
    materialize_(meta, "cpu", values="reset_parameters", seed=9)
    init_module_(model, seed=9)
    for name in ("0.weight", "1.weight", "1.bias", "2.weight", "2.bias", "2.running_var", "3.weight"):
        assert torch.equal(meta.state_dict()[name], model.state_dict()[name]), name
    assert meta[0].bias.isfinite().all() and meta[0].bias.abs().max() <= 0.5  # Linear's own: U(-1/sqrt(4), ...)

    with torch.device("meta"):
        net = Net()
    with pytest.raises(ValueError, match=r"own \['scale \(Net\)', 'positions \(Net\)', 'frequencies \(Net\)'\] "
                                         "have no reset_parameters"):
        materialize_(net, "cpu", values="reset_parameters", seed=0)
    assert all(p.is_meta for p in net.parameters())
    with pytest.raises(ValueError, match="values must be None, 'reset_parameters' or a callable"):
        materialize_(net, "cpu", values="zeros", seed=0)


def test_tensors_still_without_values_are_named():
    def writes(scale=True, positions=True, frequencies=True):
        def f(net):
            write_net(net)
            with torch.no_grad():
                if not scale:
                    net.scale[1:] = math.nan  # written in part
            if not positions:
                net.positions = torch.empty(8, dtype=torch.int64, device="meta")
            if not frequencies:
                net.frequencies = torch.ones(4)  # replaced by a real tensor: it has values
        return f

    for call, named in [
        (lambda net: None, r"parameters \['scale', 'norm.weight', 'norm.bias', 'bn.weight', 'bn.bias'\]; "
                           r"buffers \['positions', 'frequencies'\]"),
        (writes(scale=False), r"parameters \['scale'\]"),
        (writes(positions=False), r"buffers \['positions'\]"),
    ]:
        with torch.device("meta"):
            net = Net()
        with pytest.raises(ValueError, match=r"values=.* left " + named + " without values"):
            materialize_(net, "cpu", values=call, seed=0, rules={"hidden.bias": "zeros"})
    with torch.device("meta"):
        net = Net()
    materialize_(net, "cpu", values=writes(frequencies=False), seed=0, rules={"hidden.bias": "zeros"})
    assert torch.equal(net.frequencies, torch.ones(4))

    class Counter(nn.Module):  # an integer buffer: judged by its version counter
        def __init__(self):
            super().__init__()
            self.register_buffer("steps", torch.zeros(3, dtype=torch.int64))

    with torch.device("meta"):
        counter = Counter()
    with pytest.raises(ValueError, match=r"left buffers \['steps'\] without values"):
        materialize_(counter, "cpu", values=lambda m: None, seed=0)
    with torch.device("meta"):
        counter = Counter()
    with pytest.warns(UserWarning, match=r"buffers \['steps'\] .* uninitialised memory"):
        materialize_(counter, "cpu", values=lambda m: None, meta_buffers="warn", seed=0)
    with torch.device("meta"):
        counter = Counter()
    materialize_(counter, "cpu", values=lambda m: m.steps.zero_(), seed=0)
    assert torch.equal(counter.steps, torch.zeros(3, dtype=torch.int64))


# ------------------------------------------------------------------ empty_weights belongs to its thread
def test_empty_weights_does_not_reach_other_threads():
    inside, built, leave = threading.Event(), threading.Event(), threading.Event()
    models = {}

    def in_context():
        with empty_weights():
            inside.set()
            built.wait(timeout=60)
            models["inside"] = nn.Linear(4, 4)
        leave.set()

    def outside():
        inside.wait(timeout=60)
        models["outside"] = nn.Sequential(nn.Linear(4, 4), nn.Embedding(5, 3))
        built.set()

    threads = [threading.Thread(target=in_context), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert leave.is_set()
    assert models["inside"].weight.device.type == "meta"
    assert all(p.device.type == "cpu" for p in models["outside"].parameters())
    assert nn.Module.register_parameter is ORIGINAL_REGISTER


def test_threads_inside_at_once_each_get_meta_weights_and_their_own_ties():
    barrier = threading.Barrier(4)
    results, errors = [None] * 4, []

    def build(k):
        try:
            with empty_weights():
                barrier.wait(timeout=60)
                net = Net()
                barrier.wait(timeout=60)  # every thread has built inside before any leaves
            results[k] = net
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=build, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    for net in results:
        assert net.hidden.weight.device.type == "meta" and net.scale.device.type == "cpu"
        assert net.decoder.weight is net.embed.weight
    assert len({id(net.embed.weight) for net in results}) == 4
    assert nn.Module.register_parameter is ORIGINAL_REGISTER
    assert nn.Linear(2, 2).weight.device.type == "cpu"


def test_empty_weights_nests_and_restores_the_original():
    with empty_weights():
        with empty_weights():
            inner = nn.Linear(2, 2)
        after_inner = nn.Linear(2, 2)
    assert inner.weight.device.type == "meta" and after_inner.weight.device.type == "meta"
    assert nn.Module.register_parameter is ORIGINAL_REGISTER
    assert nn.Linear(2, 2).weight.device.type == "cpu"


def test_materialize_plans_the_model_once_and_warns_once(monkeypatch, capsys):
    from nspl_filler import plan as planning

    walks = []
    walk = planning._Columns.__init__

    def counted(self, module):
        walks.append(module)
        walk(self, module)

    monkeypatch.setattr(planning._Columns, "__init__", counted)
    rules = {"*.bias": "zeros", "nothing.*": "ones", "hidden.weight": {"init": "normal"}}
    with empty_weights():
        deferred = Net()
    with pytest.warns(UserWarning, match=r"rules \['nothing\.\*'\] match no parameter") as caught:
        materialize_(deferred, "cpu", seed=5, rules=rules, verbose=True)
    assert len(walks) == 1  # planned once: checked on meta, then written on the moved tensors
    assert sum("match no parameter" in str(w.message) for w in caught) == 1
    report = capsys.readouterr().out.splitlines()
    assert any(line.startswith("hidden.weight") for line in report)  # verbose: the report
    # The moved tensors held uninitialised memory: no "own std" is measured from it, where
    # init_module_ on a built model measures one for every drawn tensor.
    own_column = report[0].index("own std")
    assert all(len(line) <= own_column for line in report[1:])
    init_module_(Net(), seed=5, rules=rules, verbose=True)
    built = capsys.readouterr().out.splitlines()
    assert any(len(line) > built[0].index("own std") for line in built[1:] if line.startswith("hidden.weight"))
    # The values are those of planning the moved model afresh (init_module_).
    direct = Net()
    direct.load_state_dict(deferred.state_dict())
    direct.decoder.weight = direct.embed.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        init_module_(direct, seed=5, rules=rules)
    for name, tensor in direct.state_dict().items():
        assert torch.equal(tensor, deferred.state_dict()[name]), name
    # With values=, the values may change what planning reads: it plans again.
    with empty_weights():
        again = Net()
    walks.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        materialize_(again, "cpu", seed=5, values=lambda m: None)
    assert len(walks) == 2


@pytest.mark.parametrize("rule", ["normal", "uniform"])
def test_single_tensor_rules_on_meta_check_and_bump_as_the_op_does(rule):
    # On meta, a normal / uniform parameter gets the op's checks without its fake kernel:
    # the same errors as on the CPU, and the same version bump as an in-place op.
    meta, real = nn.Linear(3, 4, device="meta"), nn.Linear(3, 4)
    before = meta.weight._version
    init_module_(meta, seed=0, rules={"weight": rule})
    assert meta.weight._version == before + 1 and meta.weight.is_meta
    errors = []
    for model in (meta.half(), real.half()):
        with pytest.raises(ValueError) as caught:
            init_module_(model, seed=0, rules={"weight": {"init": rule, "gain": 1e6}})
        errors.append(str(caught.value))
    assert errors[0] == errors[1] and "overflows" in errors[0] and "'weight'" in errors[0]


def test_materialize_asks_predicates_about_the_tensors_that_hold_memory():
    # A predicate may answer by the tensor itself: it is asked again once the model has memory.
    def on_cpu(name, param, module):
        return param.device.type == "cpu" and name == "hidden.weight"

    with empty_weights():
        deferred = Net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        materialize_(deferred, "cpu", seed=0, rules=[(on_cpu, 0.5)])
    assert torch.equal(deferred.hidden.weight, torch.full((8, 8), 0.5))


def test_a_dispatch_mode_sees_the_ops_of_a_meta_model(op_calls):
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4))
    with op_calls:
        init_module_(model, seed=0, rules={"0.weight": "normal", "1.weight": "uniform"})
    assert [op for op in op_calls.ops if op.startswith("nspl_filler.")] == [
        "nspl_filler.nspl_many_", "nspl_filler.normal_", "nspl_filler.symmetric_uniform_"]
