"""2D sprites rendered procedurally: shape x scale x orientation x position x x position y.

A sprite is the set of pixels whose centre lies inside a shape of radius ``r = s R``
(scale ``s``, ``R = radius_fraction * image_size`` pixels) rotated by ``theta``
counter-clockwise as displayed and centred at ``(c_x, c_y)``: pixel ``(row, col)`` is on iff

    shape(Rot(-theta) [(col + 1/2 - c_x), -(row + 1/2 - c_y)] / r) <= 0

with, in unit coordinates ``(a, b)`` (each shape fits the unit disc at every angle):
square ``max(|a|, |b|) <= 1/sqrt 2``; ellipse ``a^2 + (2b)^2 <= 1`` (major axis horizontal
at theta = 0); heart ``(X^2 + Y^2 - 1)^3 - X^2 Y^3 <= 0`` with ``X = k a``, ``Y = k b + y0``
(the classic algebraic heart, point down, scaled by ``k`` and shifted by ``y0`` so its
bounding box is centred and its farthest point lies on the unit circle).

Positions ``p in linspace(0, 1, n)`` map to centres ``c = c0 + step * k`` pixels (``k`` the
position index, ``y`` downwards like rows) with the largest *integer* ``step`` that keeps
the largest sprite a pixel inside the image, centred. Because the step is a whole number
of pixels, moving one position index shifts the image exactly ``step`` pixels, and all
images are shifted copies of ``shapes x scales x orientations`` small sprite patches:
:class:`SpriteRenderer` draws those once and pastes them, so rendering costs about a copy
of the output (no per-pixel geometry per image).

Differences from the official dSprites images (``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz``),
whose generator is not published: the shape outlines are these formulas, not DeepMind's
drawings (their heart in particular is drawn differently, and their sizes differ);
pixels are binary without anti-aliasing, on iff the pixel centre is inside (the official
images are binary too, but their edges need not match pixel for pixel); orientations are
``2 pi k / 40``, k = 0..39, i.e. in [0, 2 pi) (the official file uses ``linspace(0, 2 pi, 40)``,
so its first and last orientations draw the same image); positions are a 1-pixel lattice
of centres 16.5..47.5 px on 64 px images (the official centres span a range of their own).
"""

from __future__ import annotations

import math

import numpy as np

from ..options import check_int
from .base import GroundTruthData
from .grid import FactorGrid

SHAPES = ("square", "ellipse", "heart")

# The algebraic heart (x^2+y^2-1)^3 = x^2 y^3 spans x in [-1.139, 1.139], y in [-1, 1.2365];
# its bounding-box centre is y = 0.11825 and its farthest point from there is 1.33664 away.
_HEART_SCALE, _HEART_SHIFT = 1.33664, 0.11825


def shape_inside(shape: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether unit-coordinate points ``(a, b)`` (b up) lie inside ``shape``."""
    if shape == "square":
        return np.maximum(np.abs(a), np.abs(b)) <= 1 / math.sqrt(2)
    if shape == "ellipse":
        return a * a + 4 * b * b <= 1
    if shape == "heart":
        x, y = _HEART_SCALE * a, _HEART_SCALE * b + _HEART_SHIFT
        return (x * x + y * y - 1) ** 3 - x * x * y ** 3 <= 0
    raise ValueError(f"unknown shape {shape!r} (valid choices: {', '.join(SHAPES)})")


class SpriteRenderer:
    """Binary ``image_size`` x ``image_size`` sprite images for factor indices
    ``(shape, scale, orientation, x, y)``; see the module docstring for the geometry."""

    def __init__(self, image_size: int, shapes=SHAPES, scales=None, orientations=None,
                 num_positions: int = 32, radius_fraction: float = 0.22):
        self.size = int(image_size)
        self.shapes = tuple(shapes)
        self.scales = np.linspace(0.5, 1.0, 6) if scales is None else np.asarray(scales, float)
        self.orientations = (2 * np.pi * np.arange(40) / 40 if orientations is None
                             else np.asarray(orientations, float))
        self.positions = np.linspace(0.0, 1.0, num_positions)
        self.radius = radius_fraction * self.size  # pixels at scale 1
        r_max = self.radius * float(self.scales.max())
        n = int(num_positions)
        room = self.size - 2 * (r_max + 1)  # span of centres that keeps a 1-pixel border
        self.step = 0 if n == 1 else math.floor(room / (n - 1))
        if n > 1 and self.step < 1:
            raise ValueError(f"{n} positions do not fit on {self.size}-pixel images: sprites of "
                             f"radius {r_max:.1f} px leave room for at most {math.floor(room) + 1} "
                             f"pixel-spaced positions")
        self.origin = self.size / 2 - self.step * (n - 1) / 2  # centre at position index 0
        self.centres = self.origin + self.step * np.arange(n)
        self.half = math.ceil(r_max) + 1  # patch covers centre +- half pixels
        self.bank = self._draw_bank()

    @property
    def factor_sizes(self) -> list[int]:
        return [len(self.shapes), len(self.scales), len(self.orientations),
                len(self.positions), len(self.positions)]

    def _draw_bank(self) -> np.ndarray:
        """uint8 patches ``(shape, scale, orientation, P, P)`` around a centre whose
        fractional pixel part is that of every centre (the step is whole pixels)."""
        frac = self.origin - math.floor(self.origin)
        d = np.arange(2 * self.half + 1) + 0.5 - self.half - frac  # pixel centre - sprite centre
        col, row = d[None, None, None, :], d[None, None, :, None]
        r = self.radius * self.scales[:, None, None, None]
        cos = np.cos(self.orientations)[None, :, None, None]
        sin = np.sin(self.orientations)[None, :, None, None]
        u, v = col / r, -row / r
        a, b = cos * u + sin * v, -sin * u + cos * v  # Rot(-theta) (u, v)
        return np.stack([shape_inside(s, a, b) for s in self.shapes]).astype(np.uint8)

    def render(self, factors: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 images ``(n, 1, S, S)`` in {0, 1} of factor indices ``(n, 5)`` (into ``out`` if given)."""
        f = np.asarray(factors, dtype=np.int64)
        n, p = len(f), self.bank.shape[-1]
        # sort the images by (x, y) position, so that each position's images are a slab of
        # ``drawn`` into which their patches paste with one slice assignment
        where = f[:, 3] * len(self.positions) + f[:, 4]
        order = np.argsort(where, kind="stable")
        sprite = (f[:, 0] * len(self.scales) + f[:, 1]) * len(self.orientations) + f[:, 2]
        patches = np.take(self.bank.reshape(-1, p, p), sprite[order], axis=0)
        drawn = np.zeros((n, 1, self.size, self.size), dtype=np.uint8)
        corner = np.floor(self.centres).astype(np.int64) - self.half  # patch corner per position
        starts = np.flatnonzero(np.diff(where[order], prepend=-1))
        for a, e in zip(starts, np.append(starts[1:], n), strict=True):
            x0, y0 = corner[f[order[a], 3]], corner[f[order[a], 4]]
            cx = slice(max(x0, 0), min(x0 + p, self.size))
            cy = slice(max(y0, 0), min(y0 + p, self.size))
            drawn[a:e, 0, cy, cx] = patches[a:e, cy.start - y0:cy.stop - y0, cx.start - x0:cx.stop - x0]
        unsort = np.empty(n, dtype=np.int64)
        unsort[order] = np.arange(n)
        return np.take(drawn, unsort, axis=0, out=out, mode="clip")  # far faster than drawn[unsort]


class Sprites(GroundTruthData):
    """Procedural sprites on a grid of ``shape x scale x orientation x position_x x position_y``
    (factor values: the first ``num_shapes`` of :data:`SHAPES`, scales ``linspace(0.5, 1)``,
    orientations ``2 pi k / n``, positions ``linspace(0, 1)``), rendered on demand; 0/1 pixels."""

    FACTOR_NAMES = ("shape", "scale", "orientation", "position_x", "position_y")

    def __init__(self, name: str = "sprites", image_size: int = 64, num_shapes: int = 3, num_scales: int = 6,
                 num_orientations: int = 40, num_positions: int = 32):
        check_int("image_size", image_size, 8)
        check_int("num_shapes", num_shapes, 1, len(SHAPES))
        check_int("num_scales", num_scales, 1)
        check_int("num_orientations", num_orientations, 1)
        check_int("num_positions", num_positions, 1)
        self.renderer = SpriteRenderer(
            image_size, SHAPES[:num_shapes], np.linspace(0.5, 1.0, num_scales),
            2 * np.pi * np.arange(num_orientations) / num_orientations, num_positions)
        r = self.renderer
        values = [np.arange(num_shapes), r.scales, r.orientations, r.positions, r.positions]
        super().__init__(name, FactorGrid(r.factor_sizes), (1, image_size, image_size),
                         self.FACTOR_NAMES, values, value_scale=1.0)

    def images(self, index: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return self.renderer.render(self.grid.factors(index), out)
