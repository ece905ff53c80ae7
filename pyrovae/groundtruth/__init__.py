"""Ground-truth factor data sets: images x = g(f) of every point f of a discrete factor grid.

The disentanglement metrics need to draw factors and render their images; these data
sets do both, with the interface of disentanglement_lib's ``GroundTruthData``
(:class:`GroundTruthData`: observations float32 ``(num, H, W, C)`` in [0, 1], plus
:meth:`~GroundTruthData.observations_chw` for pyrovae's channels-first encoders).

Registered data sets (``data: {name: ...}`` in a spec), each a :class:`pyrovae.data.Data`
of uint8 images with ``ground_truth`` set:

* ``dsprites``: the official dSprites file, or the same grid rendered procedurally offline;
* ``shapes_small``: 32x32 procedural sprites with few values per factor, for quick runs;
* ``shapes3d``, ``mpi3d``: the official 3D Shapes and MPI3D files.

Modules: :mod:`.grid` (factor grid, flat index), :mod:`.base` (the interface, splits),
:mod:`.sprites` (the renderer), :mod:`.files` (block readers, download), :mod:`.stored`
(file-backed data sets), :mod:`.official` (the three file formats), :mod:`.loaders`
(the registered data sets).
"""

from . import loaders
from .base import GroundTruthData, chw, hwc
from .grid import FactorGrid
from .official import dsprites as open_dsprites
from .official import mpi3d as open_mpi3d
from .official import shapes3d as open_shapes3d
from .sprites import SHAPES, SpriteRenderer, Sprites
from .stored import StoredImages

__all__ = [
    "SHAPES", "FactorGrid", "GroundTruthData", "SpriteRenderer", "Sprites", "StoredImages", "chw", "hwc",
    "loaders", "open_dsprites", "open_mpi3d", "open_shapes3d",
]
