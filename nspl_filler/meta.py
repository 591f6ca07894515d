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
import inspect
import threading
import warnings
import weakref
from typing import Iterator, Optional, Union

import torch
from torch import Tensor, nn

from .layouts import weight_layout
from .module import _initialise, _plan, init_module_
from .sharded import is_dtensor
from .stream import check_stream, check_stream_kind

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
    if (type(param) is nn.Parameter and param.device.type != "meta"
            and weight_layout(module, name) is not None):
        chosen = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
        chosen.__dict__.update(param.__dict__)
        module._parameters[name] = chosen
    registered[id(param)] = (weakref.ref(param), chosen)


@contextlib.contextmanager
def empty_weights() -> Iterator[None]:
    """Within this context, modules create the weights that init_module_ fills by default
    (the weights a layout names: Linear, Conv*, attention projections, RNN weights,
    Conv1D, embedding tables, ...) on the meta device: no memory, no initialisation.
    Buffers and every other parameter are created as usual, on the usual device.

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


def materialize_(
    module: nn.Module,
    device: Union[str, torch.device, None] = None,
    *,
    meta_buffers: str = "raise",
    **init_args,
) -> nn.Module:
    """Give `module`'s meta parameters memory on `device`, move everything else there, and
    initialise it with init_module_(module, **init_args); return the module.

    - Ties are kept: every name of a parameter (tied weights such as GPT-2's ``lm_head`` and
      ``wte``, shared modules) holds the same new Parameter afterwards, filled once (where
      ``module.to_empty`` would give each name a Parameter of its own).
    - Buffers move with their values. A buffer on the meta device has none: ValueError naming
      it (``meta_buffers="warn"``: a warning, and uninitialised memory), except the running
      statistics of BatchNorm / InstanceNorm, which init_module_ resets.
    - A meta parameter must get values from its rule: one kept ("keep", or a random rule
      with scale "keep", which needs the values the model gave it) is a ValueError.

    For a model built in empty_weights() with the same seed and arguments, the result equals
    ``init_module_(Model().to(device), **init_args)`` wherever the kept parameters do not
    depend on torch's random generator (a model whose constructor draws random numbers for
    layer weights draws fewer when they are on meta, so its later random draws differ).

    All or nothing: the rules, parameters, buffers and the fills' checks (on the meta
    tensors) are checked before anything moves. DTensor parameters are not handled here
    (FSDP2 has its own: ``module.to_empty(device=...)``, then init_module_). `device`
    defaults to torch's default device.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"nspl_filler: module must be a torch.nn.Module, got {type(module).__name__}")
    if meta_buffers not in META_BUFFER_ACTIONS:
        raise ValueError(f"nspl_filler: meta_buffers must be one of {META_BUFFER_ACTIONS}, got {meta_buffers!r}")
    device = torch.get_default_device() if device is None else torch.device(device)
    if device.type == "meta":
        raise ValueError("nspl_filler: device must be a device with memory, got meta")
    unknown = set(init_args) - _INIT_ARGS
    if unknown:
        raise TypeError(f"nspl_filler: materialize_ got unexpected arguments {sorted(unknown)}; "
                        f"it passes on those of init_module_: {sorted(_INIT_ARGS)}")
    by_name = check_stream_kind(init_args.get("stream", "sequential"))
    check_stream(init_args.get("seed"), init_args.get("generator"), "stream='name'" if by_name else None)

    modules = list(module.modules())
    if any(is_dtensor(t) for m in modules for t in (*m._parameters.values(), *m._buffers.values())):
        raise NotImplementedError(
            "nspl_filler: materialize_ does not place DTensor parameters; for FSDP2 use "
            "module.to_empty(device=...) and then init_module_"
        )
    plan_args = {k: v for k, v in init_args.items() if k not in ("seed", "generator", "verbose", "stream")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rules that match nothing: init_module_ warns below
        entries = _plan(module, **plan_args)
    valueless = [
        f"{e.name} ({e.record().rule})" for e in entries
        if e.tensor.device.type == "meta"
        and ((e.action.rule == "keep" and e.tensor.numel() > 0) or (e.draw is not None and e.std is None))
    ]
    if valueless:
        raise ValueError(
            f"nspl_filler: parameters {valueless} are on the meta device and their rules keep values they do "
            "not have: give them rules that write them (scale 'fan', a constant, a callable), or build them "
            "outside empty_weights()"
        )
    empty = [
        f"{prefix}.{name}" if prefix else name
        for prefix, m in module.named_modules()
        for name, b in m._buffers.items()
        if b is not None and b.device.type == "meta" and not _norm_statistics(m, name)
    ]
    if empty and meta_buffers == "raise":
        raise ValueError(
            f"nspl_filler: buffers {empty} are on the meta device, so they have no values to move; "
            "build the model in nspl_filler.empty_weights() (buffers stay real), or pass "
            "meta_buffers='warn' and fill them yourself"
        )
    _initialise(entries, [], init_args.get("seed"), init_args.get("generator"), check_only=True,
                named_in=module if by_name else None)
    if empty:
        warnings.warn(f"nspl_filler: buffers {empty} were on the meta device: they hold uninitialised memory",
                      UserWarning, stacklevel=2)

    with torch.no_grad():
        moved: dict[int, Tensor] = {}
        for m in modules:
            for name, param in m._parameters.items():
                if param is None:
                    continue
                if id(param) not in moved:
                    if param.device == device:
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
    return init_module_(module, **init_args)


_INIT_ARGS = set(inspect.signature(init_module_).parameters) - {"module"}

__all__ = ["empty_weights", "materialize_"]
