"""The discrete grid of ground-truth factor values and its row-major flat index.

Factor ``i`` takes ``sizes[i]`` values, indexed ``0..sizes[i]-1``. Each grid point has
the flat index ``sum_i f_i * base_i`` with ``base_i = prod_{j>i} sizes[j]`` (the last
factor varies fastest), which is the order in which the official dSprites, 3D Shapes
and MPI3D files store their images (disentanglement_lib's ``factor_bases``).
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def randint(random_state, high: int, size: int) -> np.ndarray:
    """Uniform integers in ``[0, high)`` from a ``np.random.RandomState`` (as disentanglement_lib
    draws them) or a ``np.random.Generator``."""
    if isinstance(random_state, np.random.Generator):
        return random_state.integers(high, size=size)
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(high, size=size)
    raise TypeError(f"random_state must be a numpy RandomState or Generator, got {type(random_state)}")


class FactorGrid:
    """Factor sizes and the map between factor indices ``(n, F)`` and flat indices ``(n,)``."""

    def __init__(self, sizes):
        sizes = [int(s) for s in sizes]
        if not sizes or min(sizes) < 1:
            raise ValueError(f"factor sizes must be a non-empty list of positive integers, got {sizes}")
        self.sizes = sizes
        # base_i = prod_{j>i} sizes_j, so flat = factors @ bases
        self.bases = np.append(np.cumprod(sizes[::-1])[::-1][1:], 1).astype(np.int64)
        self.total = int(np.prod(sizes, dtype=np.int64))

    def __repr__(self) -> str:
        return f"FactorGrid({self.sizes})"

    @property
    def num_factors(self) -> int:
        return len(self.sizes)

    def check(self, factors, what: str = "factors") -> np.ndarray:
        """``factors`` as an int64 array ``(n, F)``; a :class:`DataError` if out of the grid."""
        f = np.asarray(factors)
        if f.ndim != 2 or f.shape[1] != self.num_factors:
            raise DataError(f"{what} must be shaped (num, {self.num_factors}), got shape {f.shape}")
        if f.size and not np.issubdtype(f.dtype, np.integer):
            if not np.all(np.mod(f, 1) == 0):
                raise DataError(f"{what} must be integer factor indices, got dtype {f.dtype}")
        f = f.astype(np.int64, copy=False)
        bad = (f < 0) | (f >= np.asarray(self.sizes))
        if bad.any():
            row, col = map(int, np.argwhere(bad)[0])
            raise DataError(f"{what}: factor {col} has index {int(f[row, col])} in row {row}; "
                            f"valid indices are 0..{self.sizes[col] - 1} (factor sizes {self.sizes})")
        return f

    def index(self, factors) -> np.ndarray:
        """Flat indices ``(n,)`` of factor indices ``(n, F)``."""
        return self.check(factors) @ self.bases

    def check_index(self, index) -> np.ndarray:
        """Flat indices as an int64 array ``(n,)``; a :class:`DataError` if off the grid."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.total):
            raise DataError(f"flat indices must be in [0, {self.total}), got range "
                            f"[{idx.min()}, {idx.max()}]")
        return idx

    def factors(self, index) -> np.ndarray:
        """Factor indices ``(n, F)`` of flat indices ``(n,)`` (the inverse of :meth:`index`)."""
        idx = self.check_index(index)
        return (idx[:, None] // self.bases) % np.asarray(self.sizes, dtype=np.int64)

    def sample(self, num: int, random_state) -> np.ndarray:
        """``num`` grid points drawn uniformly, one factor column after the other (as
        disentanglement_lib's ``SplitDiscreteStateSpace.sample_latent_factors``)."""
        out = np.zeros((int(num), self.num_factors), dtype=np.int64)
        for i, size in enumerate(self.sizes):
            out[:, i] = randint(random_state, size, int(num))
        return out

    def check_row_major(self, classes: np.ndarray, what: str) -> None:
        """A :class:`DataError` unless row ``k`` of ``classes`` (a file's per-image factor
        indices) is grid point ``k``: the file stores the grid in row-major order."""
        if len(classes) != self.total:
            raise DataError(f"{what}: {len(classes)} images for a factor grid of {self.sizes} "
                            f"({self.total} points)")
        if not np.array_equal(np.asarray(classes, dtype=np.int64) @ self.bases,
                              np.arange(self.total, dtype=np.int64)):
            raise DataError(f"{what}: images are not stored in row-major factor order "
                            f"(last factor fastest) over the grid {self.sizes}")
