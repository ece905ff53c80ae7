"""Reading image arrays from .npz and HDF5 files a block of rows at a time, and downloading.

A data set file of 10^6 images holds several GB once decompressed; reading it in blocks
lets a loader scatter the rows straight into its train/test splits (or a packed store)
without ever holding a second full copy.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import DataError

BLOCK_BYTES = 64 << 20  # about 64 MB of images per block


def existing(path, what: str, hint: str = "") -> Path:
    """``path`` (user home expanded) if it is a file; else a :class:`DataError` saying what is missing."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"data.path: {what} file {str(p)!r} does not exist{hint}")
    return p


class ImageBlocks:
    """uint8 images ``(N, C, H, W)`` of one array in a file (``(N, H, W)`` and ``(N, H, W, C)``
    arrays are read as one or C channels), yielded in blocks by :meth:`blocks`."""

    def __init__(self, path: Path, shape, what: str):
        self.path, self.what = path, what
        shape = tuple(int(s) for s in shape)
        if len(shape) not in (3, 4):
            raise DataError(f"{what}: images must be shaped (N, H, W) or (N, H, W, C), got {shape}")
        self.channels_last = len(shape) == 4
        h, w = shape[1:3]
        self.num = shape[0]
        self.image_shape = (shape[3] if self.channels_last else 1, h, w)

    def blocks(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(start, images)`` for consecutive blocks of rows, images as uint8 ``(k, C, H, W)``."""
        rows = max(1, BLOCK_BYTES // int(np.prod(self.image_shape)))
        for start in range(0, self.num, rows):
            raw = self._read(start, min(start + rows, self.num))
            yield start, (np.moveaxis(raw, -1, 1) if self.channels_last else raw[:, None])

    def _read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError


class NpzImages(ImageBlocks):
    """The array ``key`` of an .npz file, read sequentially from its zip member (compressed
    or not) so that only one block is in memory at a time."""

    def __init__(self, path: Path, key: str, what: str):
        self.key = key
        try:
            with zipfile.ZipFile(path) as z:
                names = [n.removesuffix(".npy") for n in z.namelist()]
                if key not in names:
                    raise DataError(f"{what}: {str(path)!r} has no array {key!r} "
                                    f"(it has: {', '.join(names) or 'none'})")
                with z.open(key + ".npy") as fp:
                    shape, dtype = _npy_header(fp, what)
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"{what}: cannot read {str(path)!r} as an .npz file: {e}") from e
        if dtype != np.uint8:
            raise DataError(f"{what}: array {key!r} must be uint8, got {dtype}")
        super().__init__(path, shape, what)
        self._stream = None

    def blocks(self):
        with zipfile.ZipFile(self.path) as z, z.open(self.key + ".npy") as fp:
            _npy_header(fp, self.what)
            self._stream, self._next = fp, 0
            try:
                yield from super().blocks()
            finally:
                self._stream = None

    def _read(self, start, stop):
        if start != self._next:
            raise RuntimeError("NpzImages reads its blocks in order")
        row = int(np.prod(self.image_shape))
        data = self._stream.read((stop - start) * row)
        if len(data) != (stop - start) * row:
            raise DataError(f"{self.what}: {str(self.path)!r} ends early (array {self.key!r} truncated)")
        self._next = stop
        shape = (stop - start, *self.image_shape[1:], self.image_shape[0]) if self.channels_last \
            else (stop - start, *self.image_shape[1:])
        return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def _npy_header(fp, what: str):
    """Shape and dtype from the header of a .npy stream (left positioned at the data)."""
    try:
        version = np.lib.format.read_magic(fp)
        read = {(1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, fortran_order, dtype = read(fp)
    except ValueError as e:
        raise DataError(f"{what}: bad .npy header: {e}") from e
    if fortran_order:
        raise DataError(f"{what}: images stored in Fortran order are not supported")
    return shape, dtype


class H5Images(ImageBlocks):
    """The dataset ``key`` of an HDF5 file (read with h5py, a block of rows at a time)."""

    def __init__(self, path: Path, key: str, what: str):
        import h5py

        self.key = key
        try:
            with h5py.File(path, "r") as f:
                if key not in f:
                    raise DataError(f"{what}: {str(path)!r} has no dataset {key!r} "
                                    f"(it has: {', '.join(f.keys()) or 'none'})")
                shape, dtype = f[key].shape, f[key].dtype
        except OSError as e:
            raise DataError(f"{what}: cannot read {str(path)!r} as an HDF5 file: {e}") from e
        if dtype != np.uint8:
            raise DataError(f"{what}: dataset {key!r} must be uint8, got {dtype}")
        super().__init__(path, shape, what)

    def blocks(self):
        import h5py

        with h5py.File(self.path, "r") as f:
            self._dataset = f[self.key]
            try:
                yield from super().blocks()
            finally:
                self._dataset = None

    def _read(self, start, stop):
        return self._dataset[start:stop]


def download(url: str, path: Path, what: str, timeout: float = 60.0) -> None:
    """Fetch ``url`` to ``path`` (through a temporary file, so a broken download leaves no
    half file); any failure is a :class:`DataError` naming the URL and the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        os.replace(part, path)
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        part.unlink(missing_ok=True)
        raise DataError(f"data.download: could not download {what} from {url} to {str(path)!r}: {e}. "
                        f"Download it by hand to that path") from e
