"""Data sets generated from discrete ground-truth factors: x = g(f), f on a factor grid.

:class:`GroundTruthData` has the interface of disentanglement_lib's ``GroundTruthData``
(``num_factors``, ``factors_num_values``, ``observation_shape``, ``sample_factors``,
``sample_observations_from_factors``, ``sample``, ``sample_observations``), so metric code
written against one runs on the other. As there, observations are float32 numpy arrays
shaped ``(num, H, W, C)`` (channels last) with values in [0, 1]; :meth:`observations_chw`
gives the same images channels first ``(num, C, H, W)``, as pyrovae's encoders take them.

Images are stored as uint8 ``(C, H, W)``; an observation is ``stored * value_scale``.
:meth:`GroundTruthData.to_data` draws a train/test split of grid points without
replacement and returns a :class:`pyrovae.data.Data` holding the uint8 images, with the
data set itself as ``Data.ground_truth``; row ``k`` of ``Data.train`` is grid point
``train_indices[k]`` with factor indices ``train_factors[k]`` (likewise for test).
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Data
from ..options import check_int
from .grid import FactorGrid

CHUNK = 1 << 14  # images rendered or copied at a time when building a split


def hwc(images_chw: np.ndarray) -> np.ndarray:
    """``(n, C, H, W)`` -> ``(n, H, W, C)`` (a view)."""
    return np.moveaxis(images_chw, 1, -1)


def chw(observations_hwc: np.ndarray) -> np.ndarray:
    """``(n, H, W, C)`` -> ``(n, C, H, W)`` (a view), e.g. for an encoder in a
    ``representation_fn`` that receives disentanglement_lib-style observations."""
    return np.moveaxis(np.asarray(observations_hwc), -1, 1)


class GroundTruthData:
    """Images ``x = g(f)`` of every point ``f`` of a discrete factor grid.

    Subclasses implement :meth:`images` (uint8 ``(n, C, H, W)`` for flat grid indices).
    ``factor_values[i]`` holds the physical value of each index of factor ``i``
    (e.g. scales 0.5..1); ``factor_names[i]`` names it.
    """

    def __init__(self, name: str, grid: FactorGrid, image_shape, factor_names, factor_values=None,
                 value_scale: float = 1.0):
        if len(factor_names) != grid.num_factors:
            raise ValueError(f"{len(factor_names)} factor names for {grid.num_factors} factors")
        self.name = name
        self.grid = grid
        self.image_shape = tuple(int(s) for s in image_shape)
        self.factor_names = tuple(factor_names)
        self.factor_values = (
            [np.arange(s, dtype=np.float64) for s in grid.sizes] if factor_values is None
            else [np.asarray(v, dtype=np.float64) for v in factor_values])
        self.value_scale = float(value_scale)
        self.train_indices: np.ndarray | None = None
        self.test_indices: np.ndarray | None = None

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}={s}" for n, s in zip(self.factor_names, self.grid.sizes, strict=True))
        return f"{type(self).__name__}({self.name!r}, {sizes}, image {self.image_shape})"

    # --- disentanglement_lib's interface -------------------------------------------------
    @property
    def num_factors(self) -> int:
        return self.grid.num_factors

    @property
    def factors_num_values(self) -> list[int]:
        return list(self.grid.sizes)

    @property
    def observation_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)``, as disentanglement_lib (pyrovae's own layout is :attr:`image_shape`)."""
        c, h, w = self.image_shape
        return (h, w, c)

    def sample_factors(self, num: int, random_state) -> np.ndarray:
        """Factor indices ``(num, num_factors)`` (int64), each factor uniform and independent."""
        return self.grid.sample(num, random_state)

    def sample_observations_from_factors(self, factors, random_state=None) -> np.ndarray:
        """Float32 images ``(num, H, W, C)`` in [0, 1] of the factor indices ``(num, F)``.
        The images are a deterministic function of the factors; ``random_state`` is unused."""
        stored = self.images(self.grid.index(factors))
        out = np.empty((len(stored), *self.observation_shape), dtype=np.float32)
        return np.multiply(hwc(stored), np.float32(self.value_scale), out=out)

    def sample(self, num: int, random_state):
        """``(factors, observations)`` of ``num`` uniformly drawn grid points."""
        factors = self.sample_factors(num, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)

    def sample_observations(self, num: int, random_state) -> np.ndarray:
        return self.sample(num, random_state)[1]

    # --- pyrovae's layout ----------------------------------------------------------------
    def images(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Stored uint8 images ``(n, C, H, W)`` of flat grid indices ``(n,)`` (written into
        ``out`` when given)."""
        raise NotImplementedError

    def observations_chw(self, factors, random_state=None) -> np.ndarray:
        """Float32 images ``(num, C, H, W)`` = stored * value_scale of factor indices ``(num, F)``."""
        stored = self.images(self.grid.index(factors))
        return np.multiply(stored, np.float32(self.value_scale), dtype=np.float32)

    @property
    def train_factors(self) -> np.ndarray | None:
        """Factor indices ``(num_train, F)`` of ``Data.train``'s rows (after :meth:`to_data`)."""
        return None if self.train_indices is None else self.grid.factors(self.train_indices)

    @property
    def test_factors(self) -> np.ndarray | None:
        """Factor indices ``(num_test, F)`` of ``Data.test``'s rows (after :meth:`to_data`)."""
        return None if self.test_indices is None else self.grid.factors(self.test_indices)

    def split_indices(self, num_train: int | None, num_test: int, split_seed: int):
        """Sorted flat indices of a seeded train/test split drawn without replacement from
        the grid; ``num_train=None`` takes every grid point not in the test split."""
        total = self.grid.total
        check_int("num_test", num_test, 1, total - 1)
        if num_train is None:
            num_train = total - num_test
        check_int("num_train", num_train, 1, total - num_test)
        check_int("split_seed", split_seed, 0)
        chosen = np.random.default_rng(split_seed).permutation(total)[: num_test + num_train]
        return np.sort(chosen[num_test:]), np.sort(chosen[:num_test])

    def to_data(self, num_train: int | None = None, num_test: int = 5000, split_seed: int = 0) -> Data:
        """A :class:`Data` of uint8 images (train/test drawn by :meth:`split_indices`) with
        ``ground_truth=self``; records the split in ``train_indices``/``test_indices``."""
        train_idx, test_idx = self.split_indices(num_train, num_test, split_seed)
        train, test = self._split_images(train_idx, test_idx)
        self.train_indices, self.test_indices = train_idx, test_idx
        return Data(self.name, torch.from_numpy(train), torch.from_numpy(test),
                    value_scale=self.value_scale, ground_truth=self)

    def _split_images(self, train_idx: np.ndarray, test_idx: np.ndarray):
        return self.gather(train_idx), self.gather(test_idx)

    def gather(self, index: np.ndarray) -> np.ndarray:
        """:meth:`images` of many indices, :data:`CHUNK` at a time into one array."""
        out = np.empty((len(index), *self.image_shape), dtype=np.uint8)
        for a in range(0, len(index), CHUNK):
            self.images(index[a:a + CHUNK], out=out[a:a + CHUNK])
        return out
