"""Likelihoods for quantised intensities (8-bit pixels x = k/255 in [0, 1]):
``categorical`` (a softmax over the levels) and ``discretized_logistic``
(PixelCNN++'s discretised logistic, optionally a mixture).

Both score x by its level k = round((levels - 1) x), so data must lie on the grid
k/(levels - 1) (within 1e-4); ``levels`` (default 256) sets the grid, e.g. 17 for
scikit-learn's digits (k/16).
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.nn.functional import logsigmoid

from ..options import check_int, check_positive
from .base import Likelihood, positive, register

MAX_LEVELS = 65536


class Grid(constraints.Constraint):
    """The values k/(levels - 1), k = 0..levels-1, within ``tol``."""

    is_discrete = True
    event_dim = 0

    def __init__(self, levels: int):
        self.levels = levels
        self.tol = min(1e-4, 0.25 / (levels - 1))
        super().__init__()

    def check(self, value):
        n = self.levels - 1
        near = ((value * n).round() / n - value).abs() <= self.tol
        return near & (value >= -self.tol) & (value <= 1 + self.tol)

    def text(self) -> str:
        n = self.levels - 1
        return f"intensities in [0, 1] on the grid k/{n}, k = 0..{n} (within {self.tol:g})"

    def __repr__(self):
        return f"Grid(levels={self.levels})"


def level(value: torch.Tensor, levels: int) -> torch.Tensor:
    """k = round((levels - 1) x), clamped to [0, levels - 1] (as a float tensor)."""
    return (value * (levels - 1)).round().clamp(0, levels - 1)


# ---- categorical ---------------------------------------------------------------------------------
class GridCategorical(TorchDistribution):
    """Categorical over the values k/(levels - 1) in [0, 1], levels = ``logits.shape[-1]``."""

    arg_constraints = {"logits": constraints.real_vector}
    has_rsample = False

    def __init__(self, logits, validate_args=None):
        self.logits = logits - logits.logsumexp(-1, keepdim=True)
        self.levels = logits.shape[-1]
        super().__init__(logits.shape[:-1], torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return Grid(self.levels)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(GridCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + (self.levels,))
        new.levels = self.levels
        super(GridCategorical, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        k = level(value, self.levels).long()
        shape = torch.broadcast_shapes(k.shape, self.batch_shape)
        logits = self.logits.expand(shape + (self.levels,))
        return logits.gather(-1, k.expand(shape).unsqueeze(-1)).squeeze(-1)

    def sample(self, sample_shape=()):
        with torch.no_grad():
            k = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
            return k.to(self.logits.dtype) / (self.levels - 1)

    def _grid(self):
        return torch.linspace(0, 1, self.levels, dtype=self.logits.dtype, device=self.logits.device)

    @property
    def mean(self):
        return self.logits.exp() @ self._grid()

    @property
    def variance(self):
        return self.logits.exp() @ self._grid() ** 2 - self.mean**2


@register("categorical")
class CategoricalLikelihood(Likelihood):
    """Categorical over 256 levels per feature for 8-bit intensities x = k/255:
    p(x = k/255 | z) = softmax(l(z))_k.

    The decoder predicts ``levels`` logits per feature (num_params = levels); x is
    scored at k = round(255 x). E[x|z] = Σ_k softmax(l)_k k/255. ``levels`` sets a
    coarser or finer grid k/(levels - 1).
    """

    def __init__(self, data_shape, *, levels: int = 256):
        super().__init__(data_shape)
        self.levels = self.num_params = check_int("levels", levels, 2, MAX_LEVELS)
        self.grid = Grid(self.levels)
        self.support_text = self.grid.text()

    def forward(self, params):
        logits = params.movedim(-self.event_dim - 1, -1)
        return GridCategorical(logits).to_event(self.event_dim)

    def mean(self, params):
        return GridCategorical(params.movedim(-self.event_dim - 1, -1)).mean

    def in_support(self, x):
        return self.grid.check(x)


# ---- discretized logistic ------------------------------------------------------------------------
class DiscretizedLogistic(TorchDistribution):
    """A mixture of K discretised logistics on the grid k/(levels - 1) in [0, 1].

    Component c puts on level k the mass of a Logistic(loc_c, scale_c) over the bin
    [x_k - h, x_k + h], h = 1/(2 (levels - 1)); the edge bins x = 0 and x = 1 take the
    whole tails (-inf, h] and [1 - h, inf), so the masses of the levels sum to 1.
    ``loc``, ``scale`` and ``logits`` (mixture weights; None for K = 1) are shaped
    ``(*batch_shape, K)``.

    The log of a bin's mass uses the exact identity, for a = (x + h - μ)/s and
    b = (x - h - μ)/s,

        log(σ(a) - σ(b)) = log σ(a) + log σ(-b) + log(1 - exp(-(a - b))),  a - b = 2h/s,

    whose three terms are finite for every finite μ and positive s: no difference of
    CDFs is ever formed, so it cannot underflow or cancel in the far tails or for tiny
    s (where PixelCNN++ falls back to the mid-point density), and its gradients stay
    finite everywhere.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive,
                       "logits": constraints.real}
    has_rsample = False

    def __init__(self, loc, scale, logits=None, *, levels: int = 256, validate_args=None):
        if logits is None:
            logits = torch.zeros_like(loc[..., :1]).expand(loc.shape)
        loc, scale, logits = torch.broadcast_tensors(loc, scale, logits)
        self.loc, self.scale = loc, scale
        self.logits = logits - logits.logsumexp(-1, keepdim=True)
        self.levels = levels
        super().__init__(loc.shape[:-1], torch.Size(), validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return Grid(self.levels)

    @property
    def components(self) -> int:
        return self.loc.shape[-1]

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        batch_shape = torch.Size(batch_shape)
        shape = batch_shape + (self.components,)
        new.loc, new.scale, new.logits = (t.expand(shape) for t in (self.loc, self.scale, self.logits))
        new.levels = self.levels
        super(DiscretizedLogistic, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        n = self.levels - 1
        k = level(value, self.levels).unsqueeze(-1)
        half = 0.5 / n
        z = (k / n - self.loc) / self.scale
        a = z + half / self.scale
        b = z - half / self.scale
        log_upper = logsigmoid(a)  # log F(x + h): the bin at 0 takes (-inf, h]
        log_lower_tail = logsigmoid(-b)  # log(1 - F(x - h)): the bin at 1 takes [1 - h, inf)
        log_bin = log_upper + log_lower_tail + torch.log(-torch.expm1(-2 * half / self.scale))
        lp = torch.where(k == 0, log_upper, torch.where(k == n, log_lower_tail, log_bin))
        return torch.logsumexp(self.logits + lp, -1)

    def sample(self, sample_shape=()):
        with torch.no_grad():
            shape = torch.Size(sample_shape) + self.loc.shape
            loc, scale = self.loc.expand(shape), self.scale.expand(shape)
            if self.components > 1:
                c = torch.distributions.Categorical(logits=self.logits).sample(sample_shape)
                loc = loc.gather(-1, c.unsqueeze(-1))
                scale = scale.gather(-1, c.unsqueeze(-1))
            tiny = torch.finfo(loc.dtype).tiny
            u = torch.rand(loc.shape, dtype=loc.dtype, device=loc.device).clamp(tiny, 1 - 1e-7)
            y = loc + scale * (u.log() - torch.log1p(-u))
            return (level(y, self.levels) / (self.levels - 1))[..., 0]

    @property
    def mean(self):
        """Exact: E[x] = (1/n) Σ_{k=1..n} P(x >= k/n) = (1/n) Σ_k Σ_c π_c σ(-(k/n - h - μ_c)/s_c)."""
        n = self.levels - 1
        weights = self.logits.exp()
        total = torch.zeros_like(self.loc[..., 0])
        # In chunks of thresholds, so memory stays a few times that of the parameters.
        chunk = max(1, min(n, (1 << 24) // max(1, self.loc.numel())))
        for start in range(1, n + 1, chunk):
            t = torch.arange(start, min(start + chunk, n + 1), dtype=self.loc.dtype,
                             device=self.loc.device) / n - 0.5 / n
            tail = torch.sigmoid((self.loc.unsqueeze(-1) - t) / self.scale.unsqueeze(-1))
            total = total + (weights.unsqueeze(-1) * tail).sum((-1, -2))
        return total / n


@register("discretized_logistic")
class DiscretizedLogisticLikelihood(Likelihood):
    """Discretised logistic (PixelCNN++) for 8-bit x = k/255, optionally a mixture:
    P(x) = F((x + h - μ)/s) - F((x - h - μ)/s), h = 1/510.

    F is the logistic CDF; the bins at 0 and 1 take the whole tails, so the 256
    masses sum to 1. The decoder predicts μ and s = min_scale + softplus(u) per
    feature; ``components: K > 1`` makes it a mixture of K of them per feature
    (decoder outputs: K mixture logits, K locations, K raw scales; no coupling
    between channels). E[x|z] is the exact mean of the discretised distribution.
    """

    def __init__(self, data_shape, *, components: int = 1, levels: int = 256,
                 min_scale: float = 1e-3):
        super().__init__(data_shape)
        self.components = check_int("components", components, 1)
        self.levels = check_int("levels", levels, 2, MAX_LEVELS)
        self.min_scale = check_positive("min_scale", min_scale)
        self.num_params = 2 if self.components == 1 else 3 * self.components
        self.grid = Grid(self.levels)
        self.support_text = self.grid.text()

    def distribution(self, params) -> DiscretizedLogistic:
        p = params.movedim(-self.event_dim - 1, -1)
        if self.components == 1:
            loc, raw, logits = p[..., :1], p[..., 1:], None
        else:
            logits, loc, raw = p.split(self.components, -1)
        return DiscretizedLogistic(loc, positive(raw, self.min_scale), logits, levels=self.levels)

    def forward(self, params):
        return self.distribution(params).to_event(self.event_dim)

    def mean(self, params):
        return self.distribution(params).mean

    def in_support(self, x):
        return self.grid.check(x)
