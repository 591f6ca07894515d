"""Streams by name (docs/spec.md §4b): key = BLAKE2b-64 keyed by the seed over the canonical name,
from block 0. A parameter's values depend on (seed, name, shape, parameters) alone: not on
the other layers, their order, or the wrappers around the model."""
import copy
import hashlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import nspl_filler
from nspl_filler import Generator, canonical_name, fill_, fill_many_, init_module_, key_for, symmetric_power_law_
from nspl_filler import stream
from nspl_filler._extension import _C
from nspl_filler.generator import as_signed64

ops = torch.ops.nspl_filler
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def spec_key(seed, name):
    """docs/spec.md §4b, written out independently of nspl_filler.stream."""
    key = (seed % 2**64).to_bytes(8, "little")
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8, key=key).digest(), "little")


NAMES = ["encoder.0.weight", "", "x", "层.0.权重", "encoder.Ω.weight", "emb.🙂", "a" * 300]
SEEDS = [0, 1, 2**63, 2**64 - 1, -1, -(2**63), 123456789]


@pytest.mark.parametrize("seed", SEEDS)
def test_key_for_matches_the_spec(seed):
    for name in NAMES[:1] + NAMES[2:]:
        assert key_for(seed, name) == spec_key(seed, name), (seed, name)
    assert key_for(seed, "encoder.0.weight") != key_for(seed, "encoder.1.weight")


# Lengths around BLAKE2b's 128-byte blocks, in UTF-8 bytes of 1 to 4 each.
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 2**64 - 1),
       names=st.lists(st.one_of(st.text(max_size=140), st.text(alphabet="ab", min_size=120, max_size=400),
                                st.text(alphabet="层🙂", min_size=30, max_size=70)), max_size=6))
def test_the_keys_hashed_in_cpp_are_hashlibs(seed, names):
    assert _C.name_keys(seed, names) == [spec_key(seed, name) for name in names]


NAME_PARTS = ["0", "weight", "_orig_mod", "module", "_fsdp_wrapped_module", "层", "", "x_mod"]


@settings(max_examples=300, deadline=None)
@given(names=st.lists(st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4).map(".".join), max_size=6))
def test_check_names_of_many_names_is_canonical_name_of_each(names):
    """check_names takes names that are their own canonical form in a few passes over them all,
    and looks at each name otherwise: the same names, or the same error, as one by one."""
    def one_by_one():
        canonical = [canonical_name(name) for name in names]
        if len(set(canonical)) != len(canonical):
            raise ValueError("same once canonical")
        return canonical

    def outcome(function):
        try:
            return function()
        except ValueError as error:
            return ValueError
    assert outcome(lambda: stream.check_names(names, len(names))) == outcome(one_by_one)


def test_negative_seeds_alias_their_value_modulo_2_64():
    assert key_for(-1, "w") == key_for(2**64 - 1, "w") != key_for(2**63, "w")
    assert key_for(-(2**63), "w") == key_for(2**63, "w")


def test_key_for_rejects_bad_arguments():
    with pytest.raises(ValueError, match="seed"):
        key_for(2**64, "w")
    with pytest.raises(ValueError, match="seed"):
        key_for(-(2**63) - 1, "w")
    with pytest.raises(TypeError, match="seed"):
        key_for(1.0, "w")
    with pytest.raises(TypeError, match="name"):
        key_for(0, b"w")
    with pytest.raises(ValueError, match="name"):
        key_for(0, "")
    with pytest.raises(ValueError, match="UTF-8"):
        key_for(0, "w\ud800")


def test_canonical_names_strip_what_wrappers_insert():
    assert canonical_name("_orig_mod.encoder.0.weight") == "encoder.0.weight"
    assert canonical_name("a._checkpoint_wrapped_module.b._fsdp_wrapped_module.w") == "a.b.w"
    assert canonical_name("module.w") == "module.w"  # a user's own 'module' stays without a DDP
    assert key_for(3, "_orig_mod.blocks.1.weight") == spec_key(3, "blocks.1.weight")
    with pytest.raises(ValueError, match="name"):
        canonical_name("_orig_mod")


def test_fill_by_name_is_the_fill_from_block_0_of_its_key():
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        t = fill_(torch.empty(9, 7, dtype=dtype), seed=5, name="blocks.3.mlp.weight")
        expected = fill_(torch.empty(9, 7, dtype=dtype), seed=key_for(5, "blocks.3.mlp.weight"))
        assert torch.equal(t, expected)
        assert not torch.equal(t, fill_(torch.empty(9, 7, dtype=dtype), seed=5, name="blocks.3.mlp.bias"))
    assert torch.equal(
        symmetric_power_law_(torch.empty(4, 5), 2.0, 0.1, 1.0, seed=-7, name="p"),
        symmetric_power_law_(torch.empty(4, 5), 2.0, 0.1, 1.0, seed=key_for(-7, "p")),
    )
    # A view (the slow path) and a Parameter (the direct path) agree.
    base = torch.empty(7, 9)
    fill_(base.t(), seed=5, name="n")
    assert torch.equal(base.t(), fill_(nn.Parameter(torch.empty(9, 7)), seed=5, name="n").detach())


def test_fill_many_by_name_equals_fill_one_by_one_and_ignores_the_others():
    shapes = [((3, 5), torch.float32), ((7, 2, 3), torch.float64), ((65, 33), torch.bfloat16),
              ((0, 4), torch.float32), ((9, 11), torch.float16)]
    names = ["a.weight", "b.weight", "c.weight", "empty.weight", "d.weight"]
    tensors = [torch.empty(s, dtype=d) for s, d in shapes]
    gains = [0.5 + k for k in range(len(tensors))]
    assert fill_many_(tensors, gain=gains, seed=11, names=names) == tensors
    for t, name, g in zip(tensors, names, gains):
        assert torch.equal(t, fill_(torch.empty_like(t), gain=g, seed=11, name=name)), name
    # Any iterable of names.
    copies = fill_many_([torch.empty_like(t) for t in tensors], gain=gains, seed=11, names=iter(names))
    assert all(torch.equal(c, t) for c, t in zip(copies, tensors, strict=True))
    # Fewer tensors, in another order: the same values for each name.
    again = [torch.empty_like(tensors[4]), torch.empty_like(tensors[1])]
    fill_many_(again, gain=[gains[4], gains[1]], seed=11, names=[names[4], names[1]])
    assert torch.equal(again[0], tensors[4]) and torch.equal(again[1], tensors[1])


def test_name_arguments_are_checked_before_anything_is_written():
    t = torch.zeros(4, 4)
    cases = [
        (dict(name="w"), ValueError, "pass seed="),
        (dict(name="w", generator=Generator(0)), ValueError, "not generator="),
        (dict(name="w", generator=torch.Generator()), ValueError, "not generator="),
        (dict(name="", seed=0), ValueError, "non-empty"),
        (dict(name=3, seed=0), TypeError, "name must be a str"),
        (dict(name="w", seed=2**64), ValueError, "seed"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            fill_(t, **kwargs)
        with pytest.raises(error, match=match):
            fill_(t[:, :3], **kwargs)  # a view: the slow path
    tensors = [torch.zeros(3, 3), torch.zeros(2, 2)]
    cases = [
        (dict(names=["a", "b"]), ValueError, "pass seed="),
        (dict(names=["a", "b"], generator=Generator(0)), ValueError, "not generator="),
        (dict(names="ab", seed=0), TypeError, "sequence of str"),
        (dict(names=3, seed=0), TypeError, "sequence of str"),
        (dict(names=["a"], seed=0), ValueError, "1 entries for 2"),
        (dict(names=["a", None], seed=0), TypeError, r"names\[1\]"),
        (dict(names=["a", ""], seed=0), ValueError, r"names\[1\]"),
        (dict(names=["a.w", "_orig_mod.a.w"], seed=0), ValueError, r"names\[0\] \('a.w'\) and names\[1\]"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            fill_many_(tensors, **kwargs)
    assert t.abs().sum() == 0 and all(x.abs().sum() == 0 for x in tensors)


class Net(nn.Module):
    """Layers in a ModuleDict, so that layers can be inserted, removed and reordered without
    renaming the others."""

    def __init__(self, keys=("0", "1", "2", "3"), width=6):
        super().__init__()
        self.embed = nn.Embedding(11, width, padding_idx=2)
        self.layers = nn.ModuleDict({k: nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width)) for k in keys})
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers.values():
            x = layer(x)
        return self.head(x)


# Biases and norm layers keep their values by default, and a fresh model's differ: rules that
# write them make two models comparable parameter by parameter.
BASE = {"*bias": "zeros", nn.LayerNorm: "ones"}
RULES = {**BASE, "head.weight": {"init": "normal", "gain": 1.0}, "layers.1.0.weight": {"init": "uniform"}}


def by_name(model):
    return {canonical_name(n, model): p.detach().clone() for n, p in model.named_parameters()}


def assert_shared_names_equal(a, b):
    shared = set(a) & set(b)
    assert shared
    for name in shared:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.filterwarnings("ignore:nspl_filler. rules .* match no parameter")  # layers.1, where it is gone
def test_inserting_removing_and_reordering_layers_leaves_the_others_bit_identical():
    reference = by_name(init_module_(Net(), seed=9, stream="name", rules=RULES))
    for keys in [("0", "1", "new", "2", "3"), ("0", "2", "3"), ("3", "1", "0", "2"), ("2",)]:
        edited = by_name(init_module_(Net(keys), seed=9, stream="name", rules=RULES))
        assert_shared_names_equal(reference, edited)
    # A layer replaced by one of another shape: only its own values change.
    wider = Net()
    wider.layers["1"] = nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12))
    changed = by_name(init_module_(wider, seed=9, stream="name", rules=RULES))
    for name, value in reference.items():
        if name.startswith("layers.1."):
            assert value.shape != changed[name].shape, name
        else:
            assert torch.equal(changed[name], value), name
    # The sequential stream, by contrast, shifts every layer after an insertion.
    plain = by_name(init_module_(Net(), seed=9, rules=BASE))
    inserted = by_name(init_module_(Net(("new", "0", "1", "2", "3")), seed=9, rules=BASE))
    assert torch.equal(plain["embed.weight"], inserted["embed.weight"])
    assert not torch.equal(plain["head.weight"], inserted["head.weight"])


def test_values_by_name_are_each_parameters_fill_by_name():
    model = init_module_(Net(), seed=4, stream="name", rules=RULES, gain=0.7)
    for name, p in model.named_parameters():
        if name == "head.weight":
            expected = torch.empty_like(p)
            ops.normal_(expected, 1.0 / math.sqrt(6), seed=as_signed64(key_for(4, name)))
        elif name == "layers.1.0.weight":
            expected = torch.empty_like(p)
            ops.symmetric_uniform_(expected, math.sqrt(3.0) * (0.7 / math.sqrt(6)), seed=as_signed64(key_for(4, name)))
        elif name == "embed.weight":  # an embedding table: gain 1 (EMBEDDING_RULE), its padding row 0
            expected = fill_(torch.empty_like(p), gain=1.0, seed=4, name=name)
            expected[2] = 0
        elif p.dim() >= 2:
            expected = fill_(torch.empty_like(p), gain=0.7, seed=4, name=name)
        else:
            continue
        assert torch.equal(p.detach(), expected), name


def test_meta_and_to_empty_equals_direct():
    with torch.device("meta"):
        model = Net()
    model.to_empty(device="cpu")
    assert_shared_names_equal(by_name(init_module_(model, seed=2, stream="name", rules=BASE)),
                              by_name(init_module_(Net(), seed=2, stream="name", rules=BASE)))
    # materialize_ passes stream= on, and checks the names before it moves anything.
    with nspl_filler.empty_weights():
        large = Net()
    nspl_filler.materialize_(large, "cpu", seed=2, stream="name", rules=BASE)
    assert_shared_names_equal(by_name(large), by_name(init_module_(Net(), seed=2, stream="name", rules=BASE)))
    with nspl_filler.empty_weights():
        large = Net()
    with pytest.raises(ValueError, match="pass seed="):
        nspl_filler.materialize_(large, "cpu", stream="name", rules=BASE)
    assert large.embed.weight.is_meta


def test_wrapped_models_get_the_same_values():
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

    # Rules by module type: rules by name see the wrappers' segments (below).
    def is_head_weight(name, p, module):
        return p.dim() == 2 and isinstance(module, nn.Linear) and module.out_features == 3

    rules = {**BASE, nn.Embedding: {"init": "normal", "gain": 1.0}, is_head_weight: {"init": "uniform"}}
    reference = by_name(init_module_(Net(), seed=6, stream="name", rules=rules))
    compiled = torch.compile(Net(), backend="eager")
    assert any("_orig_mod" in n for n, _ in compiled.named_parameters())
    checkpointed = Net()
    for key in list(checkpointed.layers):
        checkpointed.layers[key] = checkpoint_wrapper(checkpointed.layers[key])
    assert any("_checkpoint_wrapped_module" in n for n, _ in checkpointed.named_modules())
    both = torch.compile(copy.deepcopy(checkpointed), backend="eager")
    for model in (compiled, checkpointed, both):
        init_module_(model, seed=6, stream="name", rules=rules)
        values = {canonical_name(n): p for n, p in model.named_parameters()}
        assert values.keys() == reference.keys()
        assert_shared_names_equal(reference, values)
    x = torch.tensor([[1, 4, 7]])
    assert torch.equal(both(x), init_module_(Net(), seed=6, stream="name", rules=rules)(x))
    # The sequential stream follows the order, which these wrappers keep.
    sequential = init_module_(torch.compile(copy.deepcopy(checkpointed), backend="eager"), seed=6, rules=BASE)
    for p, q in zip(sequential.parameters(), init_module_(Net(), seed=6, rules=BASE).parameters(), strict=True):
        assert torch.equal(p, q)
    # A rule keyed by name matches the name that named_parameters() gives, segments included.
    with pytest.warns(UserWarning, match=r"\['head.weight'\] match no parameter"):
        plan = {r.name: r.rule for r in nspl_filler.init_plan(compiled, rules={"head.weight": "zeros"})}
    assert plan["_orig_mod.head.weight"] == "nspl"


def test_init_module_by_name_is_one_bulk_op_call(op_calls):
    layers = nn.Sequential(*[nn.Linear(6, 6) for _ in range(8)], nn.Conv1d(6, 4, 3))
    with op_calls:
        init_module_(layers, seed=0, stream="name", rules={"*bias": "zeros"})
    assert [op for op in op_calls.ops if op.startswith("nspl_filler.")] == ["nspl_filler.nspl_many_"]


def test_callable_rules_get_generators_of_their_names():
    rules = {**BASE, nn.Linear: lambda p, generator: p.normal_(generator=generator)}
    reference = by_name(init_module_(Net(), seed=5, stream="name", rules=rules))
    edited = by_name(init_module_(Net(("3", "new", "1")), seed=5, stream="name", rules=rules))
    assert_shared_names_equal(reference, edited)
    assert not torch.equal(reference["layers.1.0.weight"], reference["layers.3.0.weight"])


def test_tied_parameters_take_their_first_name():
    model = Net()
    model.head = nn.Linear(6, 11, bias=False)
    model.head.weight = model.embed.weight
    init_module_(model, seed=1, stream="name")
    expected = fill_(torch.empty(11, 6), gain=1.0, seed=1, name="embed.weight")
    expected[2] = 0
    assert torch.equal(model.head.weight.detach(), expected)


def test_init_module_stream_argument_errors_write_nothing():
    model = Net()
    before = copy.deepcopy(model.state_dict())
    cases = [
        (dict(stream="name"), ValueError, "pass seed="),
        (dict(stream="name", generator=Generator(1)), ValueError, "not generator="),
        (dict(stream="names", seed=0), ValueError, "'sequential' or 'name'"),
        (dict(stream=None, seed=0), TypeError, "stream"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            init_module_(model, **kwargs)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_default_stays_sequential():
    a = init_module_(Net(), seed=3)
    b = init_module_(Net(), seed=3, stream="sequential")
    c = init_module_(Net(), seed=3, stream="name")
    assert torch.equal(a.head.weight, b.head.weight)
    assert not torch.equal(a.head.weight, c.head.weight)


def test_exported():
    assert nspl_filler.key_for is key_for and "key_for" in nspl_filler.__all__
    assert "canonical_name" in nspl_filler.__all__


@requires_cuda
def test_cuda_by_name_equals_cpu():
    from test_bulk import assert_close_to_cpu

    cpu = [torch.empty(13, 29), torch.empty(7, 5, dtype=torch.float64), torch.empty(2100, 2100),
           torch.empty(300, 41).t(), torch.empty(9, 11, dtype=torch.bfloat16)] + [torch.empty(5, 7) for _ in range(60)]
    names = [f"p{k}.weight" for k in range(len(cpu))]
    cuda = [torch.full_like(t, float("nan"), device="cuda") for t in cpu]
    fill_many_(cpu, seed=2**64 - 3, names=names)
    fill_many_(cuda, seed=2**64 - 3, names=names)
    assert_close_to_cpu(cuda, cpu)
    model = Net().cuda()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    init_module_(model, seed=8, stream="name", rules=RULES)
    reference = init_module_(Net(), seed=8, stream="name", rules=RULES)
    assert_close_to_cpu([p.detach() for p in model.parameters()], [p.detach() for p in reference.parameters()])


def test_compiled_fills_by_name_equal_eager():
    def init(w, seed, name):
        return fill_(w, seed=seed, name=name)

    def init_many(ws, seed, names):
        return fill_many_(ws, seed=seed, names=names)

    compiled = torch.compile(init, fullgraph=True, backend="aot_eager")
    compiled_many = torch.compile(init_many, fullgraph=True, backend="aot_eager")
    for seed, name in [(4, "layers.0.weight"), (2**64 - 1, "layers.1.weight")]:
        assert torch.equal(compiled(torch.empty(5, 8), seed, name), init(torch.empty(5, 8), seed, name))
        names = [name, "head.weight"]
        got = compiled_many([torch.empty(5, 8), torch.empty(3, 3)], seed, names)
        want = init_many([torch.empty(5, 8), torch.empty(3, 3)], seed, names)
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_name_errors_name_the_argument_the_caller_used():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module or None, got int"):
        canonical_name("a", model=5)
    t = torch.full((3, 3), 7.0)
    with pytest.raises(ValueError, match="with name each key"):
        fill_(t, name="w", generator=torch.Generator())
    with pytest.raises(ValueError, match="with name each key"):
        symmetric_power_law_(t, 0.0, 1.0, 10.0, name="w")
    with pytest.raises(ValueError, match="with names each key"):
        fill_many_([t], names=["w"])
    with pytest.raises(ValueError, match="with stream='name' each key"):
        init_module_(nn.Linear(3, 3), stream="name")
    assert t.eq(7.0).all()
