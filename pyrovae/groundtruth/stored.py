"""Ground-truth data sets whose images come from a file that stores the whole factor grid.

The file is read once, a block at a time. :meth:`StoredImages.to_data` scatters each
block straight into the train/test splits; when the splits cover the grid (the default),
those arrays also answer :meth:`~StoredImages.images` for the metrics, so the images are
held once. Otherwise, or when images are asked for before any split, the whole grid is
kept: as bits (8 pixels a byte) for binary images such as dSprites', else as uint8.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .base import GroundTruthData
from .files import ImageBlocks
from .grid import FactorGrid


class ArrayStore:
    """All grid images as one uint8 array ``(N, C, H, W)``."""

    def __init__(self, num: int, image_shape):
        self.array = np.empty((num, *image_shape), dtype=np.uint8)

    def put(self, start: int, block: np.ndarray) -> None:
        self.array[start:start + len(block)] = block

    def take(self, index: np.ndarray, out=None) -> np.ndarray:
        return np.take(self.array, index, axis=0, out=out, mode="clip")  # index checked by the grid


class BitStore:
    """All grid images of 0/1 pixels packed 8 to a byte: ``N * C * H * W / 8`` bytes."""

    def __init__(self, num: int, image_shape, what: str):
        self.image_shape, self.what = tuple(image_shape), what
        self.pixels = int(np.prod(image_shape))
        self.bits = np.empty((num, (self.pixels + 7) // 8), dtype=np.uint8)

    def put(self, start: int, block: np.ndarray) -> None:
        if block.size and block.max() > 1:
            raise DataError(f"{self.what}: pixels must be 0 or 1, found {int(block.max())}")
        self.bits[start:start + len(block)] = np.packbits(block.reshape(len(block), -1), axis=1)

    def take(self, index: np.ndarray, out=None) -> np.ndarray:
        rows = np.take(self.bits, index, axis=0)
        images = np.unpackbits(rows, axis=1, count=self.pixels).reshape(len(index), *self.image_shape)
        if out is None:
            return images
        out[...] = images
        return out


class SplitStore:
    """Grid images found in the train/test arrays (flat indices sorted, together covering the grid)."""

    def __init__(self, parts):
        self.parts = parts  # [(sorted flat indices, images), ...]

    def take(self, index: np.ndarray, out=None) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64)
        first = self.parts[0][1]
        if out is None:
            out = np.empty((len(index), *first.shape[1:]), dtype=first.dtype)
        found = np.zeros(len(index), dtype=bool)
        for where, images in self.parts:
            pos = np.minimum(np.searchsorted(where, index), len(where) - 1)
            hit = where[pos] == index
            out[hit] = np.take(images, pos[hit], axis=0)
            found |= hit
        if not found.all():  # cannot happen for indices checked against the grid
            raise DataError(f"grid index {int(index[~found][0])} is in neither split")
        return out


class StoredImages(GroundTruthData):
    """Images of every grid point, read from ``blocks`` (row ``k`` = flat grid index ``k``).

    ``binary=True`` keeps a full copy as bits (the images must be 0/1)."""

    def __init__(self, name: str, grid: FactorGrid, blocks: ImageBlocks, factor_names, factor_values=None,
                 value_scale: float = 1.0, binary: bool = False):
        if blocks.num != grid.total:
            raise DataError(f"{blocks.what}: {blocks.num} images for a factor grid of "
                            f"{grid.sizes} ({grid.total} points)")
        super().__init__(name, grid, blocks.image_shape, factor_names, factor_values, value_scale)
        self.blocks, self.binary = blocks, binary
        self._store = None

    def _full_store(self):
        if self.binary:
            return BitStore(self.grid.total, self.image_shape, self.blocks.what)
        return ArrayStore(self.grid.total, self.image_shape)

    def images(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if self._store is None:
            store = self._full_store()
            for start, block in self.blocks.blocks():
                store.put(start, block)
            self._store = store
        return self._store.take(self.grid.check_index(index), out)

    def _split_images(self, train_idx: np.ndarray, test_idx: np.ndarray):
        if self._store is not None:
            return super()._split_images(train_idx, test_idx)
        splits = [(idx, np.empty((len(idx), *self.image_shape), dtype=np.uint8))
                  for idx in (train_idx, test_idx)]
        covered = len(train_idx) + len(test_idx) == self.grid.total
        full = None if covered else self._full_store()
        for start, block in self.blocks.blocks():
            for idx, images in splits:
                a, b = np.searchsorted(idx, [start, start + len(block)])
                np.take(block, idx[a:b] - start, axis=0, out=images[a:b], mode="clip")  # in range
            if full is not None:
                full.put(start, block)
        self._store = SplitStore(splits) if covered else full
        return splits[0][1], splits[1][1]
