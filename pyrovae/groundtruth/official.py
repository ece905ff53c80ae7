"""The official files of dSprites, 3D Shapes and MPI3D, opened as :class:`StoredImages`.

Each file stores one image per point of its factor grid in row-major order (the last
factor fastest). The grid is read from the file where the file records it, and checked:

* dSprites ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``: ``imgs`` uint8 (737280, 64, 64)
  of 0/1 pixels; ``latents_classes`` (737280, 6) int64 gives the grid (colour 1 x shape 3 x
  scale 6 x orientation 40 x x 32 x y 32) and ``latents_values`` the factor values. As in
  disentanglement_lib, the constant colour factor is dropped: 5 factors.
* 3D Shapes ``3dshapes.h5``: ``images`` uint8 (480000, 64, 64, 3); ``labels`` float64
  (480000, 6) give the grid (floor hue 10, wall hue 10, object hue 10, scale 8, shape 4,
  orientation 15) as the distinct values of each column.
* MPI3D ``mpi3d_{toy,realistic,real}.npz``: ``images`` uint8 (1036800, 64, 64, 3), no labels;
  the grid is the published one, :data:`MPI3D_SIZES` (object colour 6, object shape 6,
  object size 2, camera height 3, background colour 3, horizontal axis 40, vertical axis 40).

A file with a smaller grid in the same format (fewer values per factor, still complete and
row-major) opens too, so tests use tiny files; for MPI3D, which has no labels, a smaller
grid is accepted only through :data:`MPI3D_SIZES` (tests monkeypatch it) and the file's
length must equal the grid's size.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError
from .files import H5Images, NpzImages
from .grid import FactorGrid
from .stored import StoredImages

DSPRITES_FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
DSPRITES_URL = f"https://github.com/deepmind/dsprites-dataset/raw/master/{DSPRITES_FILE}"
DSPRITES_FACTORS = ("shape", "scale", "orientation", "position_x", "position_y")

SHAPES3D_FILE = "3dshapes.h5"
SHAPES3D_URL = "https://console.cloud.google.com/storage/browser/3d-shapes"
SHAPES3D_FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")

MPI3D_URL = "https://github.com/rr-learning/disentanglement_dataset"
MPI3D_VARIANTS = ("toy", "realistic", "real")
MPI3D_FACTORS = ("object_color", "object_shape", "object_size", "camera_height", "background_color",
                 "horizontal_axis", "vertical_axis")
MPI3D_SIZES = [6, 6, 2, 3, 3, 40, 40]


def dsprites(path) -> StoredImages:
    """The official dSprites .npz at ``path`` (an existing file)."""
    what = "dsprites"
    try:  # the pickled ``metadata`` entry is never unpickled
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("latents_classes", "latents_values") if k in z.files}
            names = z.files
    except (ValueError, OSError) as e:
        raise DataError(f"{what}: cannot read {str(path)!r} as an .npz file: {e}") from e
    missing = {"imgs", "latents_classes", "latents_values"} - set(names)
    if missing:
        raise DataError(f"{what}: {str(path)!r} lacks {', '.join(sorted(missing))} "
                        f"(it has: {', '.join(names)})")
    classes, values = arrays["latents_classes"], arrays["latents_values"]
    if classes.ndim != 2 or classes.shape[1] != 6 or values.shape != classes.shape:
        raise DataError(f"{what}: latents_classes/latents_values must be shaped (N, 6), "
                        f"got {classes.shape} and {values.shape}")
    full = _grid_of(classes, what)
    if full.sizes[0] != 1:
        raise DataError(f"{what}: expected one colour (factor 0), found {full.sizes[0]}")
    grid = FactorGrid(full.sizes[1:])  # same flat index: the colour index is always 0
    factor_values = [values[np.arange(s) * full.bases[j], j] for j, s in enumerate(full.sizes)][1:]
    return StoredImages("dsprites", grid, NpzImages(path, "imgs", what), DSPRITES_FACTORS, factor_values,
                        value_scale=1.0, binary=True)


def shapes3d(path) -> StoredImages:
    """The official 3D Shapes HDF5 file at ``path`` (an existing file)."""
    import h5py

    what = "shapes3d"
    images = H5Images(path, "images", what)
    try:
        with h5py.File(path, "r") as f:
            if "labels" not in f:
                raise DataError(f"{what}: {str(path)!r} has no dataset 'labels'")
            labels = np.asarray(f["labels"][:], dtype=np.float64)
    except OSError as e:
        raise DataError(f"{what}: cannot read {str(path)!r}: {e}") from e
    if labels.ndim != 2 or labels.shape[1] != len(SHAPES3D_FACTORS):
        raise DataError(f"{what}: labels must be shaped (N, 6), got {labels.shape}")
    factor_values = [np.unique(labels[:, j]) for j in range(labels.shape[1])]
    classes = np.stack([np.searchsorted(v, labels[:, j]) for j, v in enumerate(factor_values)], axis=1)
    grid = _grid_of(classes, what)
    return StoredImages("shapes3d", grid, images, SHAPES3D_FACTORS, factor_values, value_scale=1 / 255)


def mpi3d(path, variant: str) -> StoredImages:
    """The official MPI3D .npz of ``variant`` at ``path`` (an existing file)."""
    what = f"mpi3d ({variant})"
    images = NpzImages(path, "images", what)
    grid = FactorGrid(MPI3D_SIZES)
    if images.num != grid.total:
        raise DataError(f"{what}: {str(path)!r} holds {images.num} images; the MPI3D factor grid "
                        f"{grid.sizes} has {grid.total}")
    return StoredImages(f"mpi3d_{variant}", grid, images, MPI3D_FACTORS, value_scale=1 / 255)


def _grid_of(classes: np.ndarray, what: str) -> FactorGrid:
    """The grid whose row-major enumeration ``classes`` (per-image factor indices) is."""
    if classes.size == 0 or classes.min() < 0:
        raise DataError(f"{what}: factor indices must be non-negative, found {classes.min(initial=0)}")
    grid = FactorGrid(classes.max(axis=0) + 1)
    grid.check_row_major(classes, what)
    return grid
