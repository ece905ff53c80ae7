"""Ground-truth factor data sets for training (``data: {name: dsprites}`` in a spec).

Each returns a :class:`pyrovae.data.Data` of uint8 images ``(N, C, H, W)`` (``value_scale``
1 for 0/1 sprites, 1/255 for 8-bit colour images) with ``ground_truth`` set to the
:class:`~pyrovae.groundtruth.base.GroundTruthData` for the disentanglement metrics. The
split is ``num_test`` grid points drawn without replacement (seed ``split_seed``) and
``num_train`` of the rest (null: all of the rest); ``ground_truth.train_factors`` /
``test_factors`` give the factor indices of the rows. ``train_labels`` stay None: the
factors are not class labels for the conditional models.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..data import Data, register
from ..options import check_flag
from . import official
from .files import download as fetch
from .files import existing
from .sprites import Sprites

CACHE = "~/.cache/pyrovae"
DSPRITES_SOURCES = ("auto", "file", "render")


@register("dsprites")
def dsprites(*, path: str = f"{CACHE}/{official.DSPRITES_FILE}", download: bool = False, source: str = "auto",
             num_train: int | None = None, num_test: int = 5000, split_seed: int = 0) -> Data:
    """dSprites: 64x64 binary sprites; shape 3 x scale 6 x orientation 40 x position 32 x 32 (737,280 images).

    ``source``: ``file`` reads the official .npz at ``path`` (fetched first when
    ``download`` is true); ``render`` draws the same factor grid procedurally (offline; the
    drawings differ from DeepMind's, see :mod:`pyrovae.groundtruth.sprites`); ``auto``
    takes the file when present or downloaded, and renders otherwise (with a warning).
    """
    if source not in DSPRITES_SOURCES:
        raise ValueError(f"source must be one of {', '.join(DSPRITES_SOURCES)}, got {source!r}")
    check_flag("download", download)
    file = Path(path).expanduser()
    if source != "render" and not file.is_file() and download:
        fetch(official.DSPRITES_URL, file, "dsprites")
    if source == "file" or (source == "auto" and file.is_file()):
        hint = f"; set data.download=true to fetch it from {official.DSPRITES_URL}, or data.source=render"
        ground_truth = official.dsprites(existing(file, "dsprites", hint))
    else:
        if source == "auto":
            warnings.warn(f"dsprites: no file at {str(file)!r}; rendering the factor grid procedurally "
                          f"(the images differ from the official ones). Set data.download=true to fetch "
                          f"the file, or data.source=render to silence this.", stacklevel=2)
        ground_truth = Sprites("dsprites")
    return ground_truth.to_data(num_train, num_test, split_seed)


@register("shapes_small")
def shapes_small(*, image_size: int = 32, num_shapes: int = 3, num_scales: int = 3, num_orientations: int = 8,
                 num_positions: int = 8, num_train: int | None = None, num_test: int = 500,
                 split_seed: int = 0) -> Data:
    """Small procedural sprites for quick runs: 32x32 binary; shape 3 x scale 3 x orientation 8 x position
    8 x 8 (4,608 images), drawn as the rendered dsprites with fewer values per factor (options)."""
    ground_truth = Sprites("shapes_small", image_size, num_shapes, num_scales, num_orientations,
                           num_positions)
    return ground_truth.to_data(num_train, num_test, split_seed)


@register("shapes3d")
def shapes3d(*, path: str = f"{CACHE}/{official.SHAPES3D_FILE}", num_train: int | None = None,
             num_test: int = 5000, split_seed: int = 0) -> Data:
    """3D Shapes from the official 3dshapes.h5: 64x64 RGB; floor hue 10 x wall hue 10 x object hue 10
    x scale 8 x shape 4 x orientation 15 (480,000 images)."""
    hint = f"; download 3dshapes.h5 from {official.SHAPES3D_URL} to that path"
    ground_truth = official.shapes3d(existing(path, "shapes3d", hint))
    return ground_truth.to_data(num_train, num_test, split_seed)


@register("mpi3d")
def mpi3d(*, variant: str = "toy", path: str | None = None, num_train: int | None = None,
          num_test: int = 5000, split_seed: int = 0) -> Data:
    """MPI3D from the official mpi3d_{variant}.npz (toy, realistic or real): 64x64 RGB; 7 factors
    6 x 6 x 2 x 3 x 3 x 40 x 40 (1,036,800 images); ``path`` defaults to the cache folder."""
    if variant not in official.MPI3D_VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(official.MPI3D_VARIANTS)}, got {variant!r}")
    file = path if path is not None else f"{CACHE}/mpi3d_{variant}.npz"
    hint = f"; download mpi3d_{variant}.npz (see {official.MPI3D_URL}) to that path"
    ground_truth = official.mpi3d(existing(file, f"mpi3d ({variant})", hint), variant)
    return ground_truth.to_data(num_train, num_test, split_seed)

