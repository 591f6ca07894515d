"""nspl_filler.Generator: a device-agnostic position in the Philox stream."""
from __future__ import annotations

import operator
import threading
from typing import Callable

import numpy as np

_UINT64 = 1 << 64
#: Offsets travel through the ops as int64: a fill may end at block 2**63 - 1 at the latest,
#: so every offset a Generator reaches is one set_state takes back.
_OFFSET_LIMIT = (1 << 63) - 1


def _integer(name: str, value: object) -> int:
    """`value` as an int if it is one (anything with __index__: numpy's integers too), bools
    excluded (numpy's too, to which numpy 2.2 still gives an __index__); else TypeError naming
    `name`."""
    if not isinstance(value, (bool, np.bool_)):
        try:
            return operator.index(value)
        except TypeError:
            pass
    raise TypeError(f"nspl_filler: {name} must be an int, got {type(value).__name__} {value!r}")


def _check_seed(seed: object, name: str = "seed") -> int:
    """The 64-bit key of `seed`, by the one seed rule of every entry point (fill_, fill_many_,
    init_module_, Generator, FillerParameter): an int in [-2**63, 2**64), modulo 2**64."""
    seed = _integer(name, seed)
    if not -(1 << 63) <= seed < _UINT64:
        raise ValueError(f"nspl_filler: {name} must be in [-2**63, 2**64), got {seed}")
    return seed % _UINT64


def _check_offset(offset: object) -> int:
    offset = _integer("offset", offset)
    if not 0 <= offset <= _OFFSET_LIMIT:
        raise ValueError(f"nspl_filler: offset must be in [0, 2**63 - 1], got {offset}")
    return offset


def as_signed64(value: int) -> int:
    """The int64 that carries the 64-bit key `value` (0 <= value < 2**64) through an op."""
    return value - _UINT64 if value >= (1 << 63) else value


class Generator:
    """A Philox4x32-10 stream position: a 64-bit key and an offset in 128-bit blocks.

    Filling with ``generator=g`` uses key ``g.seed`` and blocks ``g.offset, g.offset + 1, ...``
    and then advances ``g.offset`` by the blocks consumed: ``ceil(numel / 4)`` for 16/32-bit
    dtypes, ``ceil(numel / 2)`` for float64 (docs/spec.md §4). The values depend on (seed, offset,
    shape, parameters) alone, so they are the same on every device; filling tensors one by
    one or in one bulk call gives the same values.

    Offsets lie in [0, 2**63 - 1]: a fill that would end past block 2**63 - 1 raises
    ValueError and leaves the generator where it was. Fills from several threads take
    distinct blocks. A Generator can be copied (copy.copy, copy.deepcopy) and pickled: the
    copy starts at the same state and then goes its own way.
    """

    def __init__(self, seed: int = 0, offset: int = 0) -> None:
        self._lock = threading.Lock()
        self.set_state((seed, offset))

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def offset(self) -> int:
        return self._offset

    def manual_seed(self, seed: int) -> "Generator":
        """Restart the stream at block 0 of key `seed`."""
        return self.set_state((seed, 0))

    def get_state(self) -> tuple[int, int]:
        """(seed, offset): pass it to set_state to replay from here."""
        with self._lock:
            return (self._seed, self._offset)

    def set_state(self, state: tuple[int, int]) -> "Generator":
        """Move to `state` = (seed, offset): seed by the seed rule of fill_ (kept modulo
        2**64), offset an int in [0, 2**63 - 1]."""
        seed, offset = state
        seed = _check_seed(seed)
        offset = _check_offset(offset)
        with self._lock:
            self._seed, self._offset = seed, offset
        return self

    def _consume(self, blocks: int, fill: Callable[[int, int], None]) -> None:
        """Run fill(seed, first_block), then advance by `blocks`. A fill that raises
        consumes nothing, so a rejected call leaves the stream where it was; the lock makes
        the read, the fill and the advance one step for other threads."""
        with self._lock:
            fill(self._seed, self._offset)
            self._offset += blocks

    def __getstate__(self) -> dict:
        with self._lock:
            return {"seed": self._seed, "offset": self._offset}

    def __setstate__(self, state: dict) -> None:
        self._lock = threading.Lock()
        self.set_state((state["seed"], state["offset"]))

    def __repr__(self) -> str:
        return f"nspl_filler.Generator(seed={self._seed}, offset={self._offset})"
