"""Values for strict JSON (RFC 8259), which has no NaN or infinity: the command line's --json
output and the convergence study's records write them as null."""
from __future__ import annotations

import math


def json_safe(value: object) -> object:
    """`value` with every float NaN or infinity in it, at any depth of dicts, lists and
    tuples, replaced by None (tuples become lists, as JSON writes them)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value
