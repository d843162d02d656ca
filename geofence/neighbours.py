"""A uniform grid of vessels in projected metres, for the pairwise rules.

Each vessel sits in the cell ``(x // cell_m, y // cell_m)`` together with a small payload;
moving it touches two cells at most. :meth:`Grid.near` looks at the 3×3 (or wider) block of
cells around a point, so a query costs the number of vessels near the point, never the
number of vessels in the picture. Pairwise rules keep one grid each, holding only the vessels
they can pair (slow ones for ``encounter``, moving ones for ``collision_risk``).
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

P = TypeVar("P")


class Grid(Generic[P]):
    """Keys (MMSIs) at points, bucketed by cell; ``payload`` is the rule's own data."""

    __slots__ = ("_cells", "_where", "cell_m")

    def __init__(self, cell_m: float) -> None:
        if cell_m <= 0:
            raise ValueError("cell_m must be positive")
        self.cell_m = cell_m
        self._cells: dict[tuple[int, int], dict[int, tuple[float, float, P]]] = {}
        self._where: dict[int, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def get(self, key: int) -> tuple[float, float, P] | None:
        cell = self._where.get(key)
        return None if cell is None else self._cells[cell][key]

    def put(self, key: int, x: float, y: float, payload: P) -> None:
        """Insert or move ``key`` to ``(x, y)``."""
        size = self.cell_m
        cell = (int(x // size), int(y // size))
        old = self._where.get(key)
        if old is not None and old != cell:
            self._drop(key, old)
        bucket = self._cells.get(cell)
        if bucket is None:
            bucket = self._cells[cell] = {}
        bucket[key] = (x, y, payload)
        self._where[key] = cell

    def remove(self, key: int) -> None:
        cell = self._where.pop(key, None)
        if cell is not None:
            self._drop(key, cell)

    def _drop(self, key: int, cell: tuple[int, int]) -> None:
        bucket = self._cells[cell]
        del bucket[key]
        if not bucket:
            del self._cells[cell]

    def near(self, x: float, y: float, radius: float) -> list[tuple[int, float, float, P]]:
        """Entries within ``radius`` metres of the point (the point's own key included)."""
        cells = self._cells
        if not cells:
            return []
        size = self.cell_m
        reach = max(1, math.ceil(radius / size))
        ci, cj = int(x // size), int(y // size)
        r2 = radius * radius
        out: list[tuple[int, float, float, P]] = []
        side = 2 * reach + 1
        if len(cells) < side * side:
            # Fewer occupied cells than the block holds: visit those in reach, in the
            # block's order (by i, then j), so the answer is the same either way.
            keys = sorted(k for k in cells
                          if abs(k[0] - ci) <= reach and abs(k[1] - cj) <= reach)
            for cell in keys:
                out += [(key, px, py, payload)
                        for key, (px, py, payload) in cells[cell].items()
                        if (px - x) * (px - x) + (py - y) * (py - y) <= r2]
            return out
        # The block, by i then j; one lookup per cell (a busy port: this runs per report).
        get = cells.get
        rows = range(cj - reach, cj + reach + 1)
        for i in range(ci - reach, ci + reach + 1):
            for j in rows:
                bucket = get((i, j))
                if bucket is not None:
                    out += [(key, px, py, payload)
                            for key, (px, py, payload) in bucket.items()
                            if (px - x) * (px - x) + (py - y) * (py - y) <= r2]
        return out

    def members(self) -> list[int]:
        return list(self._where)


def pair_key(a: int, b: int) -> tuple[int, int]:
    """The lower MMSI first, so a pair has one key whichever vessel reports."""
    return (a, b) if a < b else (b, a)


class Pairs:
    """State per vessel pair, with each vessel's pairs indexed for its next report."""

    __slots__ = ("_by_mmsi", "state")

    def __init__(self) -> None:
        self.state: dict[tuple[int, int], dict[str, Any]] = {}
        self._by_mmsi: dict[int, set[tuple[int, int]]] = {}

    def __len__(self) -> int:
        return len(self.state)

    def of(self, mmsi: int) -> set[tuple[int, int]]:
        """The pairs ``mmsi`` is in (a copy, safe to change the pairs while iterating)."""
        return set(self._by_mmsi.get(mmsi, ()))

    def has(self, mmsi: int) -> bool:
        return mmsi in self._by_mmsi

    def add(self, key: tuple[int, int], state: dict[str, Any]) -> dict[str, Any]:
        self.state[key] = state
        for mmsi in key:
            self._by_mmsi.setdefault(mmsi, set()).add(key)
        return state

    def remove(self, key: tuple[int, int]) -> dict[str, Any] | None:
        state = self.state.pop(key, None)
        if state is not None:
            for mmsi in key:
                keys = self._by_mmsi.get(mmsi)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del self._by_mmsi[mmsi]
        return state
