"""init_module_: initialise a whole model at once, NSPL for its layer weights, with per-name
and per-module-type rules, a report of what each parameter got, and bulk filling
(fill_many_'s op) for speed.

The data flows one way: the rules (rules.py) compiled into a plan (plan.py: a row per
parameter, its rule, role, target std and the op arguments that give it), then the streams
of the parameters that draw (stream.py chooses them), then the op calls, all checked before
the first runs (write_plan, here). Works on nested models, tied and shared parameters,
meta-built models (see meta.py) and DTensor (FSDP2) parameters."""
from __future__ import annotations

import itertools
from typing import Callable, Optional

import torch
from torch import Tensor, nn

from ._extension import _C, ops
from .bulk import _check_writable, _inference, _Labels, _named, _nspl_many_calls, _OpCall, _run_all
from .generator import as_signed64
from .init import GeneratorLike
from .options import InitOptions, Unpack, resolve, takes
from .plan import DEPARTURE, Entry, ParamInit, Plan, collector_paused, format_report, init_plan, plan
from .rules import EMBEDDING_RULE, RANDOM_RULES, SCALES, WRITING_RULES
from .sharded import PLAIN_TYPES, any_dtensor, local_shard
from .stream import Streams, check_names, check_stream_options, preview_streams, with_streams

_CONSTANT_RULES = frozenset(("zeros", "ones", "constant"))
_CONSTANT_VALUES = {"zeros": 0.0, "ones": 1.0}
_RANDOM = frozenset(RANDOM_RULES)
_DRAWING = _RANDOM | {"custom"}
_THROUGH = frozenset(WRITING_RULES + ("custom",))


def _callable_generator(tensor: Tensor, key: Optional[int], offset: int, torch_generator: Optional[torch.Generator]
                        ) -> Optional[torch.Generator]:
    """The generator a callable rule gets for its parameter: with a key, a torch.Generator
    seeded from the parameter's place in the stream (Philox of its first block, in a
    counter domain of its own), so every parameter gets other values and the same ones on
    every call; without one, the torch generator of the call (None: torch's default)."""
    if key is None:
        return torch_generator
    words = _C.philox4x32_10([offset & 0xFFFFFFFF, offset >> 32, 1, 0], [key & 0xFFFFFFFF, key >> 32])
    device = tensor.device if tensor.device.type in ("cpu", "cuda") else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(words[0] | (words[1] << 32))


def _rows_where(ids: list[int], distinct: dict[int, tuple], test: Callable[[tuple], bool]) -> list[int]:
    """The indices k with test(the decision of id ids[k]), asking `test` once per distinct
    decision (`distinct`: the decisions by id, those of `ids` among them; rows deciding alike
    share one tuple) and finding the rows by passes in C."""
    chosen = {i for i, decision in distinct.items() if test(decision)}
    if len(chosen) == len(distinct):
        return list(range(len(ids)))
    return list(itertools.compress(range(len(ids)), map(chosen.__contains__, ids))) if chosen else []


_SKIP, _ALONE = object(), object()  # _random_calls: a parameter it leaves, one it calls its op for alone


def _random_calls(the_plan: Plan, drawing: list[int], streams: Streams, ids: list[int]) -> list[_OpCall]:
    """The op calls of the random rules among the parameters `drawing` (indices into the
    plan; parameter drawing[j] reads the stream of streams' tensor j): NSPL parameters in one
    bulk call per (alpha, ratio, mode) and device, the others (normal, uniform, NSPL with
    explicit fans) one op call each. What a parameter needs is worked out once per decision
    (`ids`: the ids of the drawing parameters' decisions)."""
    decisions = the_plan.decisions
    distinct = dict(zip(ids, map(decisions.__getitem__, drawing)))
    how: dict[int, object] = {}  # id(decision) -> its bulk group's (mode, alpha, ratio), _SKIP or _ALONE
    for i, (_, action, scaled) in distinct.items():
        if action.rule not in _RANDOM or scaled.std is None:
            how[i] = _SKIP  # a callable, or scale "keep" on the meta device: no values, a fill would write none
        elif action.rule == "nspl" and scaled.fans is None:
            draw = scaled.draw
            how[i] = (draw.mode, draw.alpha, draw.ratio)
        else:
            how[i] = _ALONE
    groups: dict[object, list[int]] = {}
    if len(set(how.values())) == 1:  # one way for all
        groups[next(iter(how.values()))] = list(range(len(drawing)))
    else:
        for j, label in enumerate(map(how.__getitem__, ids)):
            groups.setdefault(label, []).append(j)
    calls: list[_OpCall] = []
    for j in groups.pop(_ALONE, []):
        key = None if streams.keys is None else streams.keys[j]
        calls.append(_one_call(the_plan.entry(drawing[j]), key, streams.offsets[j], streams.generator))
    groups.pop(_SKIP, None)
    gain_of = {i: decision[2].gain for i, decision in distinct.items() if isinstance(how[i], tuple)}
    bulk: list[_OpCall] = []
    for (mode, alpha, ratio), group in groups.items():
        indices = list(map(drawing.__getitem__, group))
        gains = (list(map(gain_of.__getitem__, ids)) if len(group) == len(ids)
                 else list(map(gain_of.__getitem__, map(ids.__getitem__, group))))
        bulk += _nspl_many_calls(
            list(map(the_plan.tensors.__getitem__, indices)), mode, alpha, ratio, gains, streams.part(group),
            labels=_Labels(list(map(the_plan.names.__getitem__, indices))), plain=the_plan.plain,
        )
    return bulk + calls


def _one_call(entry: Entry, key: Optional[int], offset: int, generator: Optional[torch.Generator]) -> _OpCall:
    """The op call of one 'normal', 'uniform' or explicit-fan 'nspl' parameter."""
    target, global_shape, global_start = local_shard(entry.tensor)
    seed = None if key is None else as_signed64(key)
    offset = 0 if key is None else offset
    stream = dict(seed=seed, offset=offset, generator=generator, global_shape=global_shape,
                  global_start=global_start)
    scaled = entry.scaled
    if entry.action.rule == "nspl":
        draw = scaled.draw
        args = (draw.mode, draw.alpha, draw.ratio, scaled.gain, *scaled.fans)
        op, check = ops.nspl_, _C.check_nspl
    else:
        args = (scaled.scale,)
        op, check = ((ops.normal_, _C.check_normal) if entry.action.rule == "normal"
                     else (ops.symmetric_uniform_, _C.check_symmetric_uniform))

    def check_call() -> None:
        try:
            _check_writable(target)
            check(target, *args, seed, offset, generator is not None, global_shape, global_start)
        except (RuntimeError, ValueError) as error:
            raise _named(error, f"parameter {entry.name!r}, rule {entry.action.label()!r}") from None

    def run() -> None:
        if target.is_meta and type(target) in PLAIN_TYPES and not _intercepted():
            # Nothing to write: the op's own checks, without a trip through its fake kernel
            # (some 12 µs a call, for each of a meta model's many normal or uniform parameters),
            # and the version bump the in-place op makes.
            check_call()
            if not target.is_inference():  # (an inference tensor has no version counter)
                torch.autograd.graph.increment_version(target)
            return
        op(target, *args, **stream)

    return _OpCall(check_call, run)


def _intercepted() -> bool:
    """Whether a torch function or dispatch mode is active: it must see every op call."""
    return torch._C._is_torch_function_mode_enabled() or torch._C._len_torch_dispatch_stack() > 0


def _zero_padding_rows(the_plan: Plan, drawing: list[int]) -> None:
    """nn.Embedding / nn.EmbeddingBag keep the row padding_idx at zero (their reset_parameters
    does the same); for a sharded weight, on the rank whose shard holds that row."""
    if not any(issubclass(kind, (nn.Embedding, nn.EmbeddingBag)) for kind in set(map(type, the_plan.owners))):
        return
    for k in drawing:
        owner, tensor = the_plan.owners[k], the_plan.tensors[k]
        if (not isinstance(owner, (nn.Embedding, nn.EmbeddingBag)) or owner.padding_idx is None
                or tensor is not owner.weight or the_plan.decisions[k][1].rule not in _RANDOM):
            continue
        target, _, global_start = local_shard(tensor)
        row = owner.padding_idx - (global_start[0] if global_start else 0)
        if 0 <= row < target.shape[0]:
            target[row].zero_()


def _constants(the_plan: Plan, ids: list[int], distinct: dict[int, tuple]) -> dict[float, list[Tensor]]:
    """The local tensors of the constant rules, by value; ValueError for a constant that is
    not a value of its parameter's dtype (docs/spec.md §5: no silent infinities), naming the
    first such parameter. Each decision is asked once (`ids`: the decisions' ids, `distinct`:
    the decisions by id); its rows are found by passes in C, and a constant rule's value is
    checked once per dtype among its rows."""
    decisions, tensors = the_plan.decisions, the_plan.tensors
    ids_of: dict[float, set[int]] = {}  # a constant -> the decisions that write it
    for i, (_, action, _) in distinct.items():
        if action.rule in _CONSTANT_RULES:
            value = action.value if action.rule == "constant" else _CONSTANT_VALUES[action.rule]
            ids_of.setdefault(value, set()).add(i)
    by_value: dict[float, list[Tensor]] = {}
    for value, chosen in ids_of.items():
        rows = list(itertools.compress(range(len(ids)), map(chosen.__contains__, ids)))
        by_value[value] = list(map(tensors.__getitem__, rows))
    # A constant rule's value must be one of each of its parameters' dtypes: asked once per
    # (rule, dtype), in row order, so that the error names the first parameter it refuses.
    constant = {i for i, (_, action, _) in distinct.items() if action.rule == "constant"}
    asked: set[tuple[int, torch.dtype]] = set()
    for k in (itertools.compress(range(len(ids)), map(constant.__contains__, ids)) if constant else ()):
        action, dtype = decisions[k][1], tensors[k].dtype
        if (id(action), dtype) in asked:
            continue
        asked.add((id(action), dtype))
        if dtype.is_floating_point and abs(action.value) > torch.finfo(dtype).max:
            raise ValueError(
                f"nspl_filler: parameter {the_plan.names[k]!r} (rule {action.label()!r}): the constant "
                f"{action.value:g} overflows {dtype} (max {torch.finfo(dtype).max:g})"
            )
    if not the_plan.plain and any_dtensor(tensors):
        by_value = {value: [local_shard(t)[0] for t in targets] for value, targets in by_value.items()}
    return by_value


def write_plan(the_plan: Plan, seed: Optional[int], generator: GeneratorLike, check_only: bool = False,
               named_in: Optional[nn.Module] = None) -> None:
    """Writes the plan: the stream, then every op call and constant checked, then written.
    `check_only`: make every check, write nothing (and advance no Generator). `named_in`: the
    model whose parameter names give the streams (stream="name"), None for one stream."""
    decisions, all_tensors = the_plan.decisions, the_plan.tensors
    ids = list(map(id, decisions))
    distinct = dict(zip(ids, decisions))
    drawing = _rows_where(ids, distinct, lambda decision: decision[1].rule in _DRAWING)
    drawn_ids = ids if len(drawing) == len(ids) else list(map(ids.__getitem__, drawing))
    tensors = list(map(all_tensors.__getitem__, drawing))
    names = (None if named_in is None else
             check_names(list(map(the_plan.names.__getitem__, drawing)), len(drawing), "the parameters' names",
                         named_in))
    with torch.no_grad():
        by_value = _constants(the_plan, ids, distinct)
        # The constants are written after the random rules: check now what could refuse them.
        for targets in by_value.values():
            for j in _inference(targets):
                _check_writable(targets[j])
        if check_only:
            streams = preview_streams(tensors, seed=seed, generator=generator, names=names, argument="stream='name'")
            for call in _random_calls(the_plan, drawing, streams, drawn_ids):
                call.check()
            return
        chosen: list[Streams] = []

        def fill(streams: Streams) -> None:
            chosen.append(streams)
            _run_all(_random_calls(the_plan, drawing, streams, drawn_ids))

        if drawing:
            with_streams(tensors, fill, seed=seed, generator=generator, names=names, argument="stream='name'")
        for value, targets in by_value.items():
            # zero_ first: add_ alone would keep the garbage that to_empty leaves (NaN + c).
            torch._foreach_zero_(targets)
            if value != 0.0:
                torch._foreach_add_(targets, value)
        for j in _rows_where(drawn_ids, distinct, lambda decision: decision[1].rule == "custom"):
            k, action = drawing[j], decisions[drawing[j]][1]
            if action.takes_generator:
                streams = chosen[0]
                key = None if streams.keys is None else streams.keys[j]
                action.function(all_tensors[k], generator=_callable_generator(
                    all_tensors[k], key, streams.offsets[j], streams.generator))
            else:
                action.function(all_tensors[k])
        _zero_padding_rows(the_plan, drawing)
        for k, through in the_plan.through.items():
            if decisions[k][1].rule in _THROUGH:
                through.right_inverse(all_tensors[k])  # sets the originals so that the weight is the tensor
        for m in the_plan.statistics.values():
            if m.track_running_stats:
                m.reset_running_stats()


@takes(InitOptions)
def init_module_(module: nn.Module, **options: Unpack[InitOptions]) -> nn.Module:
    """Initialise the parameters of `module` (nested modules included) in place; return it.

    Default rules, by the role of each parameter, in ``module.named_parameters()`` order (a
    tied or shared parameter once, under its first name, and answering rules by every name):

    - "layer": the weights of layer modules (Linear, Bilinear, Conv*d, ConvTranspose*d,
      MultiheadAttention's own projections, RNN / LSTM / GRU weights, transformers' Conv1D,
      and any type given to register_layout): NSPL with Var[w] = gain² / n, n from the fans
      of the layer's layout by `mode` (so a weight stored (in, out) gets its true fans),
      gain = `gain` or calculate_gain(nonlinearity, param) (sqrt(2) for the default 'relu');
    - "embedding": nn.Embedding / nn.EmbeddingBag tables: the rule EMBEDDING_RULE, NSPL
      with gain 1 and n = embedding_dim (the fan_in of a table tied to an output layer);
    - everything else ("norm": the parameters of norm layers, the magnitudes ``name_g`` of
      an old-style weight norm; "other": biases, position embeddings stored as raw
      parameters, class tokens, layer scales, T5's ``relative_attention_bias`` table, ...):
      kept as the model made them ("keep");
    - whatever its role, a frozen parameter (requires_grad False: a fixed sinusoidal table)
      is kept; a rule still writes it.

    Layer weights include the 3-D weights of experts containers and routers' weights
    (layouts.weight_layout: fans per expert) and the direction ``name_v`` of an old-style
    weight norm. A tensor under torch.nn.utils.parametrize (weight_norm, orthogonal,
    spectral_norm, ...) has one entry under the module's own name (``lin.weight``), filled
    as that module's weight and handed to the parametrization's right_inverse, which sets
    its originals; without right_inverse it is kept, with a UserWarning. FSDP1's flat
    parameter (use_orig_params=False) and lazy modules not yet run are ValueErrors.

    `scale`: "fan" (the default, above) or "keep": each random rule fills its tensor with
    NSPL (or its rule's law) at the std the tensor has now, over the whole tensor, so that
    the model's own variance recipe (small heads, residual scaling, ...) is kept and NSPL
    gives the shape; a tensor of std 0 (zeros, a constant) keeps its values. Needs values:
    NaN or infinity, as uninitialised memory holds, is a ValueError.

    Also, as the modules' own reset_parameters do: BatchNorm / InstanceNorm running statistics
    are reset, and the padding_idx row of an nn.Embedding / nn.EmbeddingBag weight that gets
    a random rule is zeroed.

    `rules` (a dict, or a sequence of (key, rule) pairs; the first key that matches wins,
    then the defaults) change the rule of parameters by

    - key: a glob on the qualified name (``"*.embed.weight"``; ``*`` also matches dots), a
      compiled regex (``re.compile(r"layers\\.\\d+\\.attn\\..*")``, full match), a module type
      (``nn.LayerNorm``: the parameters that modules of that type own; with a random rule,
      only their weights), or a predicate ``(name, param, module) -> bool``;
    - rule: ``"nspl"``, ``"normal"`` (Gaussian, same variance gain² / n), ``"uniform"``
      (symmetric uniform, bound sqrt(3)·gain / sqrt(n)), ``"zeros"``, ``"ones"``, ``"keep"``
      (alias ``"skip"``), a number (constant), a dict with "init" (one of the random rules,
      default "nspl") and options: mode, gain, nonlinearity, param, scale, fan_in, fan_out
      (explicit fans win over the layout's; a 1-D tensor needs the ones its mode uses), plus
      alpha / ratio (nspl), std (normal) or bound (uniform); or a callable ``f(param)`` that
      initialises the parameter itself under no_grad. A callable that takes a ``generator``
      keyword gets the parameter's own torch.Generator: with ``seed`` or an
      nspl_filler.Generator one seeded from the parameter's place in the stream, so
      ``lambda p, generator: fill_(p.T, generator=generator)`` gives each parameter its own
      values, the same on every call; with a torch generator or none, that one (or None).

    A rule whose key matches no parameter warns (``strict=True``: ValueError).

    Randomness: the random rules and callables take, in parameter order, consecutive blocks
    of one stream: with ``seed=s`` or an nspl_filler.Generator exactly as filling the
    parameters one by one from one nspl_filler.Generator; with a torch.Generator or none,
    from that generator (or the default one), with DTensor parameters through a key agreed
    across their mesh (see fill_). DTensor / FSDP2 parameters get on each rank the values of
    their slices of the unsharded parameters; constants and callables act on the local
    shards and the DTensors.

    ``stream="name"`` (with ``seed=s``) gives each parameter a stream of its own instead: key
    key_for(s, canonical name) from block 0 (docs/spec.md §4b), so its values depend on (seed, name,
    shape, rule) alone (a callable's generator too). Adding, removing or reordering other
    layers, wrapping the model (torch.compile, activation checkpointing,
    DistributedDataParallel: see canonical_name) or building only one pipeline stage of it
    leaves them as they are. A tied parameter takes its first name.

    A parameter without elements (e.g. of ``nn.Linear(0, 5)``) is skipped whatever its rule,
    except a callable: the report says "keep (no elements)".

    All or nothing: every rule, every parameter and every bulk call (one per (mode, alpha,
    ratio) and device) is checked, with the checks the ops make, before anything is written;
    an error names the parameter. `verbose=True` prints the report (see init_plan and
    format_report: name, shape, role, rule, fan, std).

    Python's cyclic garbage collector is paused while the model is planned and written
    (callables and predicates of rules run then too) and restored after: the few objects
    planning allocates per parameter would otherwise trigger collections that scan the whole
    model (docs/benchmarks.md).
    """
    the_options = resolve("init_module_", options, InitOptions)
    by_name = check_stream_options(the_options)
    # One pause for both: the collector, back on between them, would collect then what
    # planning allocated (its count of allocations keeps growing while it is off).
    with collector_paused():
        the_plan = plan(module, the_options)
        write_module(module, the_plan, the_options, by_name)
    return module


def write_module(module: nn.Module, the_plan: Plan, options: InitOptions, by_name: bool, measure: bool = True) -> None:
    """What init_module_ does with the plan of `module` (plan() with the call's `options`,
    on the tensors the module holds now): write it, streams by name where `by_name`, and
    print the report where options["verbose"], with the std each drawn tensor had before
    where `measure` (not where the tensors hold uninitialised memory); the collector paused
    throughout."""
    verbose = options["verbose"]
    with collector_paused():
        records = the_plan.records(own_std=measure) if verbose else None
        write_plan(the_plan, options["seed"], options["generator"], named_in=module if by_name else None)
    if verbose:
        print(format_report(records))


__all__ = ["DEPARTURE", "EMBEDDING_RULE", "ParamInit", "SCALES", "format_report", "init_module_", "init_plan"]
