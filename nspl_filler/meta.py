"""Models too large to build twice: build them with their NSPL weights on the meta device
(empty_weights), then give those weights memory on the target device and fill them
(materialize_), without ever writing them on the CPU first.

The convention is the one of accelerate's ``init_empty_weights``: buffers stay real (their
values, such as position ids or rotary frequencies, come from the constructor and cannot be
recomputed), and so does every parameter that init_module_ keeps by default (biases, norm
layers' weights, other parameters), so that it keeps the value its model gave it. Only the
weights that init_module_ fills by default (layer weights and embedding tables: see
layouts.py) are created on meta.
"""
from __future__ import annotations

import contextlib
import math
import threading
import warnings
import weakref
from typing import Any, Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from .layouts import weight_layout
from .module import init_module_, write_module, write_plan
from .options import InitOptions, Unpack, resolve, takes
from .plan import Plan, collector_paused, plan
from .sharded import all_passed, check_placeable, is_dtensor, materialise_shard, reset_fsdp_shards, root_meshes
from .stream import check_stream_options

# nn.Module.register_parameter is patched while any thread is inside empty_weights(); the
# patch acts only for the threads inside (_INSIDE), so a model that another thread builds
# meanwhile gets its weights as usual.
_PATCH_LOCK = threading.Lock()
_PATCH: dict[str, object] = {"users": 0, "original": None, "installed": False}
_INSIDE = threading.local()
#: What materialize_ does with a buffer on the meta device (it has no value to move):
#: "raise" (the default) or "warn" (it gets uninitialised memory, for the caller to fill).
META_BUFFER_ACTIONS = ("raise", "warn")


def _register_parameter(module: nn.Module, name: str, param: Optional[nn.Parameter]) -> None:
    """nn.Module.register_parameter while empty_weights() is active somewhere: the original
    for every thread outside the context; inside, a weight that a layout names is replaced
    by one on the meta device."""
    register = _PATCH["original"]
    register(module, name, param)
    registered = getattr(_INSIDE, "registered", None)
    if registered is None or param is None:
        return
    # Each Parameter object registered so far in this context, by id, with what was
    # registered for it: a second registration of the same object (a tie) gets the same
    # one, so a weight tied to a parameter that stays real stays real, and a tie made with
    # the original of a weight already on meta gets that meta Parameter. The weak reference
    # tells a live object from a dead one whose id was reused.
    seen = registered.get(id(param))
    if seen is not None and seen[0]() is param:
        module._parameters[name] = seen[1]
        return
    chosen = param
    # Frozen parameters (a fixed sinusoidal table) are kept by init_module_: they stay real.
    if (type(param) is nn.Parameter and param.device.type != "meta" and param.requires_grad
            and weight_layout(module, name, param.dim()) is not None):
        chosen = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        chosen.__dict__.update(param.__dict__)
        module._parameters[name] = chosen
    registered[id(param)] = (weakref.ref(param), chosen)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Within this context, modules create the weights that init_module_ fills by default
    (the weights a layout names: Linear, Conv*, attention projections, RNN weights,
    Conv1D, embedding tables, the 3-D weights of experts containers and routers' weights
    that layouts.weight_layout recognises by class name, ...) on the meta device: no memory,
    no initialisation. Buffers, frozen parameters (created with requires_grad False) and
    every other parameter are created as usual, on the usual device.

    Follow with materialize_(model, device, seed=...). Works by wrapping
    nn.Module.register_parameter (as accelerate's init_empty_weights does); parameters of
    nn.Parameter subclasses are left as they are. The context belongs to the thread that
    enters it: modules that other threads build meanwhile are built as usual, and several
    threads may be inside at once, each with its own ties. It may nest.
    """
    outermost = getattr(_INSIDE, "registered", None) is None
    with _PATCH_LOCK:
        if not _PATCH["installed"]:
            _PATCH["original"] = nn.Module.register_parameter
            nn.Module.register_parameter = _register_parameter
            _PATCH["installed"] = True
        _PATCH["users"] += 1
    if outermost:
        _INSIDE.registered = {}
    try:
        yield
    finally:
        if outermost:
            _INSIDE.registered = None
        with _PATCH_LOCK:
            _PATCH["users"] -= 1
            # Restored only if nobody patched over this one meanwhile; otherwise it stays in
            # their chain, acting for no thread, and is not installed a second time.
            if _PATCH["users"] == 0 and nn.Module.register_parameter is _register_parameter:
                nn.Module.register_parameter = _PATCH["original"]
                _PATCH["installed"] = False


def _norm_statistics(module: nn.Module, name: str) -> bool:
    """Running statistics that init_module_ resets (so they need no value before)."""
    return (isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats
            and name in ("running_mean", "running_var", "num_batches_tracked"))


def _moved(tensor: Tensor, device: torch.device) -> Tensor:
    if tensor.device.type == "meta":
        return torch.empty_like(tensor, device=device)
    return tensor if tensor.device == device else tensor.to(device)


@takes(InitOptions)
def materialize_(
    module: nn.Module,
    device: Union[str, torch.device, None] = None,
    *,
    values: Union[None, str, Callable[[nn.Module], Any]] = None,
    meta_buffers: str = "raise",
    **init_args: Unpack[InitOptions],
) -> nn.Module:
    """Give `module`'s meta parameters memory on `device`, move everything else there, and
    initialise it as init_module_ does with the same options (mode, alpha, ..., seed,
    generator, rules, stream: init_module_'s keywords); return the module.

    - Ties are kept: every name of a parameter (tied weights such as GPT-2's ``lm_head`` and
      ``wte``, shared modules) holds the same new Parameter afterwards, filled once (where
      ``module.to_empty`` would give each name a Parameter of its own).
    - Sharded models (FSDP2's ``fully_shard``, tensor parallel's ``parallelize_module``, both
      on a 2-D mesh): a DTensor parameter gets memory for its local shard only (the same
      Parameter object, placements unchanged; FSDP2 then pads it as after ``to_empty``), and
      the values of its slice of the global tensor: those init_module_ gives the unsharded
      model in one process, for any world size and mesh (sequential stream and
      ``stream="name"``). `device` must be of the mesh's device type. Every rank of the mesh
      must call this (it is a collective): a check that fails on one rank fails on all.
    - Buffers move with their values.
    - A tensor without values (a meta buffer, or a meta parameter that init_module_ keeps:
      rule "keep", or a random rule with scale "keep") gets them from `values`, after the
      memory and before init_module_ fills the rest:

      - None (the default): none do; ValueError naming them (``meta_buffers="warn"``:
        buffers get a warning and uninitialised memory instead);
      - ``"reset_parameters"``: each module that owns one runs its ``reset_parameters()``
        (torch's convention after ``to_empty``), which must write them;
      - a callable ``f(module)``, e.g. ``Transformer.init_weights``, for models that write
        their own buffers and small parameters in one function (torchtitan's convention).

      A tensor that is still without values afterwards (a floating tensor still holding any
      of the NaN it was given, another whose version counter did not move, one replaced by
      a meta tensor) is a ValueError naming it. BatchNorm / InstanceNorm running statistics
      need no values: init_module_ resets them.

    For a model built in empty_weights() with the same seed and arguments, the result equals
    ``init_module_(Model().to(device), **options)`` wherever the kept parameters do not
    depend on torch's random generator (a model whose constructor draws random numbers for
    layer weights draws fewer when they are on meta, so its later random draws differ).

    All or nothing: the arguments, rules, placements, parameters, buffers and the fills'
    checks (on the meta tensors) are checked, and agreed on by every rank of a device mesh,
    before anything is allocated. `device` defaults to torch's default device.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"nspl_filler: module must be a torch.nn.Module, got {type(module).__name__}")
    modules = list(module.modules())
    meshes = root_meshes(t for m in modules for t in m._parameters.values())
    try:
        options = resolve("materialize_", init_args, InitOptions)
        device, by_name = _check_arguments(device, values, meta_buffers, options)
        needed, the_plan, planning_warnings = _check(module, device, values, meta_buffers, options, by_name)
    except Exception:
        if meshes:
            all_passed(meshes, False)  # the other ranks raise too, instead of waiting for this one
        raise
    if meshes and not all_passed(meshes, True):
        raise ValueError("nspl_filler: materialize_: another rank of the device mesh refused the model "
                         "(its error says why); nothing was allocated")

    with torch.no_grad():
        moved: dict[int, Tensor] = {}
        for m in modules:
            for name, param in m._parameters.items():
                if param is None:
                    continue
                if id(param) not in moved:
                    if is_dtensor(param):
                        materialise_shard(param, device)
                        moved[id(param)] = param
                    elif param.device == device:
                        moved[id(param)] = param
                    else:
                        new = nn.Parameter(_moved(param.detach(), device), requires_grad=param.requires_grad)
                        new.__dict__.update(param.__dict__)
                        moved[id(param)] = new
                m._parameters[name] = moved[id(param)]
            for name, buffer in m._buffers.items():
                if buffer is not None:
                    if id(buffer) not in moved:
                        moved[id(buffer)] = _moved(buffer, device)
                    m._buffers[name] = moved[id(buffer)]
        reset_fsdp_shards(modules)
    if values is not None:
        try:
            missing = _give_values(module, values, needed)
        except Exception:
            if meshes:
                all_passed(meshes, False)
            raise
        passed = not missing or meta_buffers == "warn" and all(kind == "buffer" for _, kind, *_ in missing)
        if meshes and not all_passed(meshes, passed) and passed:
            raise ValueError("nspl_filler: materialize_: on another rank of the device mesh, values= left "
                             "tensors without values (its error names them)")
        if not passed:
            left = "; ".join(f"{kind}s {[name for name, k, *_ in missing if k == kind]}"
                             for kind in ("parameter", "buffer") if any(k == kind for _, k, *_ in missing))
            raise ValueError(
                f"nspl_filler: values={_label(values)} left {left} without values: it must write every "
                "parameter that init_module_ keeps and every buffer built on meta (or give them rules that write them)"
            )
        empty = [name for name, *_ in missing]
    else:
        empty = [name for name, kind, *_ in needed if kind == "buffer"]
    if empty:
        warnings.warn(f"nspl_filler: buffers {empty} were on the meta device: they hold uninitialised memory",
                      UserWarning, stacklevel=2)
    if values is not None or the_plan.through or the_plan.asked:
        # values= may have replaced tensors or given them the values a rule's scale reads, a
        # parametrization's weight is evaluated from its originals, and a predicate among the
        # rules may answer otherwise for a tensor with memory: plan again.
        return init_module_(module, **init_args)
    # The plan that was checked, on the tensors that now hold memory: every decision it made
    # reads what moving keeps (shapes, dtypes, requires_grad, the owners, the names).
    for caught in planning_warnings:
        warnings.warn(caught.message, stacklevel=2)
    the_plan.tensors = [moved.get(id(tensor), tensor) for tensor in the_plan.tensors]
    # Without values= the moved tensors hold uninitialised memory: the report has no own std.
    write_module(module, the_plan, options, by_name, measure=False)
    return module


def _check_arguments(device, values, meta_buffers: str, options: InitOptions) -> tuple[torch.device, bool]:
    """The checks of materialize_'s own arguments; returns (device, whether streams go by name)."""
    if meta_buffers not in META_BUFFER_ACTIONS:
        raise ValueError(f"nspl_filler: meta_buffers must be one of {META_BUFFER_ACTIONS}, got {meta_buffers!r}")
    if not (values is None or isinstance(values, str) and values == "reset_parameters" or callable(values)):
        raise ValueError(
            "nspl_filler: values must be None, 'reset_parameters' or a callable f(module), "
            f"got {type(values).__name__} {values!r}"
        )
    device = torch.get_default_device() if device is None else torch.device(device)
    if device.type == "meta":
        raise ValueError("nspl_filler: device must be a device with memory, got meta")
    by_name = check_stream_options(options)
    return device, by_name


_Needed = tuple[str, str, nn.Module, str]  # (qualified name, "parameter" / "buffer", owner, own name)


def _check(module: nn.Module, device: torch.device, values, meta_buffers: str, options: InitOptions,
           by_name: bool) -> tuple[list[_Needed], Plan, list[warnings.WarningMessage]]:
    """Every check of materialize_ that can be made before anything is allocated; returns the
    tensors that need values from `values` (with values None: the meta buffers it warns of),
    the plan init_module_ makes of the model as it is, and the warnings planning gave."""
    owners: dict[int, tuple[str, nn.Module, str]] = {}
    for prefix, m in module.named_modules(remove_duplicate=False):
        for name, param in m._parameters.items():
            if param is not None:
                owners.setdefault(id(param), (f"{prefix}.{name}" if prefix else name, m, name))
                if is_dtensor(param):
                    check_placeable(param, device, owners[id(param)][0])
    with warnings.catch_warnings(record=True) as planning_warnings:
        warnings.simplefilter("always")  # rules that match nothing: given to the caller once the model is written
        with collector_paused():
            the_plan = plan(module, options)
    valueless = [
        the_plan.entry(k) for k, (tensor, (_, action, scaled)) in enumerate(zip(the_plan.tensors, the_plan.decisions))
        if tensor.device.type == "meta"
        and ((action.rule == "keep" and tensor.numel() > 0) or (scaled.draw is not None and scaled.std is None))
    ]
    if valueless and values is None:
        raise ValueError(
            f"nspl_filler: parameters {[f'{e.name} ({e.record().rule})' for e in valueless]} are on the meta "
            "device and their rules keep values they do not have: give them rules that write them (scale 'fan', "
            "a constant, a callable), or pass values='reset_parameters' or values=f(module) to write them. If the "
            "whole model was built on the meta device (torch.device('meta')), build it in "
            "nspl_filler.empty_weights() instead, or pass values=: in empty_weights(), only the weights "
            "init_module_ fills are created on meta, and kept parameters (biases, norms, frozen tables) keep "
            "their values. Within empty_weights(), a parameter frozen only "
            "after it was created (requires_grad_(False) afterwards), or kept because of the module that holds "
            "it (T5's relative_attention_bias), was created on meta too and needs a rule or values="
        )
    needed: list[_Needed] = [(e.name, "parameter", *owners[id(e.tensor)][1:]) for e in valueless]
    for prefix, m in module.named_modules():
        for name, b in m._buffers.items():
            if b is not None and b.device.type == "meta" and not _norm_statistics(m, name):
                qualified = f"{prefix}.{name}" if prefix else name
                if is_dtensor(b):
                    raise NotImplementedError(f"nspl_filler: buffer {qualified!r} is a DTensor on meta; "
                                              "materialize_ gives memory to DTensor parameters only")
                needed.append((qualified, "buffer", m, name))
    empty = [name for name, kind, *_ in needed if kind == "buffer"]
    if empty and values is None and meta_buffers == "raise":
        raise ValueError(
            f"nspl_filler: buffers {empty} are on the meta device, so they have no values to move; "
            "build the model in nspl_filler.empty_weights() (buffers stay real), pass values='reset_parameters' "
            "or values=f(module) to compute them, or pass meta_buffers='warn' and fill them yourself"
        )
    if values == "reset_parameters":
        lacking = [f"{name} ({type(owner).__name__})" for name, _, owner, _ in needed
                   if not callable(getattr(owner, "reset_parameters", None))]
        if lacking:
            raise ValueError(
                f"nspl_filler: values='reset_parameters', but the modules that own {lacking} have no "
                "reset_parameters(); pass values=f(module) that writes them, or give them rules that write them"
            )
    write_plan(the_plan, options["seed"], options["generator"], check_only=True,
               named_in=module if by_name else None)
    return needed, the_plan, planning_warnings


def _label(values) -> str:
    return repr(values) if isinstance(values, str) else getattr(values, "__qualname__", repr(values))


def _held(owner: nn.Module, kind: str, name: str) -> Optional[Tensor]:
    return (owner._parameters if kind == "parameter" else owner._buffers).get(name)


def _give_values(module: nn.Module, values, needed: list[_Needed]) -> list[_Needed]:
    """Runs `values` on the freshly allocated tensors of `needed`; returns those it left
    without values. Floating tensors are first filled with NaN, so that one that is written
    only in part is caught; the others are judged by their version counters (any in-place
    write moves them)."""
    before = []
    with torch.no_grad():
        for _, kind, owner, name in needed:
            tensor = _held(owner, kind, name)
            local = tensor._local_tensor if is_dtensor(tensor) else tensor
            if local.dtype.is_floating_point or local.dtype.is_complex:
                local.fill_(math.nan)
            before.append((tensor, tensor._version, local._version))
    if values == "reset_parameters":
        owners = {id(owner): owner for _, _, owner, _ in needed}
        for owner in owners.values():
            owner.reset_parameters()
    else:
        values(module)
    missing = []
    with torch.no_grad():
        for entry, (tensor, version, local_version) in zip(needed, before):
            now = _held(entry[2], entry[1], entry[3])
            if now is not tensor:
                written = now is not None and now.device.type != "meta"
            else:
                local = tensor._local_tensor if is_dtensor(tensor) else tensor
                if local.dtype.is_floating_point or local.dtype.is_complex:
                    written = not bool(torch.isnan(local).any())
                else:
                    written = tensor._version != version or local._version != local_version
            if not written:
                missing.append(entry)
    return missing


__all__ = ["empty_weights", "materialize_"]
