"""nspl_filler.Generator: a device-agnostic position in the Philox stream."""
from __future__ import annotations

import threading
from typing import Callable

_UINT64 = 1 << 64


def _check_seed(seed: object, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"nspl_filler: {name} must be an int, got {type(seed).__name__} {seed!r}")
    if not -(1 << 63) <= seed < _UINT64:
        raise ValueError(f"nspl_filler: {name} must fit in 64 bits, got {seed}")
    return seed % _UINT64


def as_signed64(value: int) -> int:
    """The int64 that carries the 64-bit key `value` (0 <= value < 2**64) through an op."""
    return value - _UINT64 if value >= (1 << 63) else value


class Generator:
    """A Philox4x32-10 stream position: a 64-bit key and an offset in 128-bit blocks.

    Filling with ``generator=g`` uses key ``g.seed`` and blocks ``g.offset, g.offset + 1, ...``
    and then advances ``g.offset`` by the blocks consumed: ``ceil(numel / 4)`` for 16/32-bit
    dtypes, ``ceil(numel / 2)`` for float64 (SPEC §4). The values depend on (seed, offset,
    shape, parameters) alone, so they are the same on every device; filling tensors one by
    one or in one bulk call gives the same values.
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
        seed, offset = state
        seed = _check_seed(seed)
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError(f"nspl_filler: offset must be an int, got {type(offset).__name__} {offset!r}")
        if not 0 <= offset < (1 << 63):
            raise ValueError(f"nspl_filler: offset must be in [0, 2**63), got {offset}")
        with self._lock:
            self._seed, self._offset = seed, offset
        return self

    def _consume(self, blocks: int, fill: Callable[[int, int], None]) -> None:
        """Run fill(seed, first_block), then advance by `blocks`. A fill that raises
        consumes nothing, so a rejected call leaves the stream where it was."""
        with self._lock:
            fill(self._seed, self._offset)
            self._offset += blocks

    def __repr__(self) -> str:
        return f"nspl_filler.Generator(seed={self._seed}, offset={self._offset})"
