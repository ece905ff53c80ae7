"""Amortized guide families q(z|x): a head on the encoder's features that returns a
distribution over z with event shape (latent_dim,)."""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive, ConditionalSplineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import nn
from torch.distributions.kl import register_kl
from torch.nn import functional as F

from .options import check_choice, check_int, check_int_list, check_nonnegative
from .registry import Registry

registry = Registry("guide")
register = registry.register


class Guide(nn.Module, metaclass=ABCMeta):
    """Base class: ``forward(features)`` returns q(z|x) for a batch of encoder features."""

    def __init__(self, in_features: int, latent_dim: int):
        super().__init__()
        self.in_features, self.latent_dim = in_features, latent_dim

    @abstractmethod
    def forward(self, features: torch.Tensor) -> dist.TorchDistribution:
        """q(z|x) with batch shape ``features.shape[:-1]``, event shape ``(latent_dim,)``."""


@register("diagonal_normal")
class DiagonalNormalGuide(Guide):
    """Mean-field normal: q(z|x) = N(μ(x), diag σ(x)²), σ = softplus(·) + min_scale."""

    def __init__(self, in_features: int, latent_dim: int, *, min_scale: float = 1.0e-4):
        super().__init__(in_features, latent_dim)
        self.min_scale = check_nonnegative("min_scale", min_scale)
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, features):
        loc, raw = self.linear(features).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + self.min_scale).to_event(1)


@register("full_rank")
class FullRankGuide(Guide):
    """Full-covariance normal: q(z|x) = N(μ(x), L(x) L(x)ᵀ), i.e. z = μ(x) + L(x) ε.

    L is lower-triangular with diag L = softplus(·) + min_scale and free strictly-lower entries.

    One linear head gives μ (latent_dim), the raw diagonal (latent_dim) and the
    latent_dim·(latent_dim-1)/2 entries below it. The rows for the off-diagonal entries
    start at zero, so an untrained full_rank guide is the diagonal_normal guide.
    """

    def __init__(self, in_features: int, latent_dim: int, *, min_scale: float = 1.0e-4):
        super().__init__(in_features, latent_dim)
        self.min_scale = check_nonnegative("min_scale", min_scale)
        rows, cols = torch.tril_indices(latent_dim, latent_dim, offset=-1)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)
        self.linear = nn.Linear(in_features, 2 * latent_dim + rows.numel())
        with torch.no_grad():  # off-diagonal entries start at zero: L(x) starts diagonal
            self.linear.weight[2 * latent_dim:].zero_()
            self.linear.bias[2 * latent_dim:].zero_()

    def head(self, features):
        """``(loc, scale_tril)`` of q(z|x) for a batch of features."""
        d = self.latent_dim
        out = self.linear(features)
        loc, raw, off = out[..., :d], out[..., d:2 * d], out[..., 2 * d:]
        tril = out.new_zeros(*out.shape[:-1], d, d)
        tril[..., self.rows, self.cols] = off
        tril = tril + torch.diag_embed(F.softplus(raw) + self.min_scale)
        return loc, tril

    def forward(self, features):
        loc, tril = self.head(features)
        return dist.MultivariateNormal(loc, scale_tril=tril)


@register_kl(dist.MultivariateNormal, dist.Independent)
def _kl_mvn_diagonal_normal(q, p):
    """KL(N(μ, LLᵀ) || N(m, diag s²)) in closed form, so the full_rank guide gets an analytic
    KL against a diagonal normal prior (TraceMeanField_ELBO, ``evaluate``)."""
    if p.reinterpreted_batch_ndims != 1 or type(p.base_dist) not in (dist.Normal, torch.distributions.Normal):
        raise NotImplementedError
    m, s = p.base_dist.loc, p.base_dist.scale
    tril = q.scale_tril
    trace = (tril / s.unsqueeze(-1)).pow(2).sum((-2, -1))
    mahalanobis = ((m - q.loc) / s).pow(2).sum(-1)
    log_det = 2 * (s.log().sum(-1) - tril.diagonal(dim1=-2, dim2=-1).log().sum(-1))
    return 0.5 * (trace + mahalanobis - q.event_shape[0] + log_det)


class FlowDistribution(dist.TransformedDistribution):
    """A transformed distribution whose ``log_prob`` broadcasts its argument against the
    batch shape first (conditioned transforms need input and context batch shapes to
    agree), and whose ``mean`` is a Monte Carlo estimate (no closed form)."""

    mean_samples = 256
    """Draws in the ``mean`` estimate; they come from a fixed seed (the global RNG is untouched)."""

    def log_prob(self, value):
        shape = torch.broadcast_shapes(value.shape, self.batch_shape + self.event_shape)
        if value.shape != shape:  # leaves the transforms' cache usable for our own samples
            value = value.expand(shape)
        return super().log_prob(value)

    @property
    def mean(self):
        base = self.base_dist
        while hasattr(base, "base_dist"):
            base = base.base_dist
        device = getattr(base, "loc", torch.zeros(())).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            return self.rsample((self.mean_samples,)).mean(0)


TRANSFORMS = ("iaf", "spline")


@register("flow")
class FlowGuide(Guide):
    """Normalizing flow conditioned on x: z = f_depth ∘ … ∘ f_1(ε), ε ~ N(μ(x), diag σ(x)²).

    Each f_k is an inverse-autoregressive (transform: iaf) or spline autoregressive (transform: spline)
    bijection whose parameters depend on the encoder features h(x); log q(z|x) =
    log N(ε; μ, σ²) - Σ_k log|det ∂f_k|.

    ``iaf``: f(ε) = m(ε, h) + exp(s(ε, h)) ⊙ ε (Kingma et al. 2016, eq. 10; log-scale clipped
    to [-5, 3]). ``spline``: elementwise monotone linear rational splines with ``bins`` bins
    on [-3, 3], identity outside (Dolatabadi et al. 2020). m, s and the spline parameters come
    from a MADE network on (ε, h) (Pyro's conditional_affine_autoregressive /
    conditional_spline_autoregressive) with hidden sizes ``hidden``, each >= latent_dim
    (null: two layers of max(64, 10·latent_dim)); successive layers reverse the
    coordinate order. ``min_scale`` is the floor under σ. Each network's last layer starts
    at zero, so an untrained iaf flow is exactly the diagonal_normal guide (a spline flow is
    within ~0.05 of the identity). Sampling, and scoring the guide's own samples (what the
    ELBO does), are one pass per layer (the inverse is cached); scoring other points, as a
    VampPrior does, inverts each layer in latent_dim passes.
    """

    def __init__(self, in_features: int, latent_dim: int, *, depth: int = 2, transform: str = "iaf",
                 hidden: list[int] | None = None, bins: int = 8, min_scale: float = 1.0e-4):
        super().__init__(in_features, latent_dim)
        self.depth = check_int("depth", depth)
        self.transform = check_choice("transform", transform, TRANSFORMS)
        self.bins = check_int("bins", bins, 2)
        if hidden is None:
            hidden = [max(64, 10 * latent_dim)] * 2
        self.hidden = check_int_list("hidden", hidden, latent_dim, empty=False, low_name="latent_dim",
                                     why=" (autoregressive masks need that many units)")
        self.base = DiagonalNormalGuide(in_features, latent_dim, min_scale=min_scale)
        self.transforms = nn.ModuleList()
        for k in range(depth):
            order = torch.arange(latent_dim)
            perm = order if k % 2 == 0 else order.flip(0)
            param_dims = [1, 1] if transform == "iaf" else [bins, bins, bins - 1, bins]
            with warnings.catch_warnings():  # latent_dim 1: Pyro suggests an affine map; it is one
                warnings.filterwarnings("ignore", message="ConditionalAutoRegressiveNN input_dim = 1")
                arn = ConditionalAutoRegressiveNN(latent_dim, in_features, self.hidden,
                                                  param_dims=param_dims, permutation=perm)
            if transform == "iaf":
                t = ConditionalAffineAutoregressive(arn)
            else:
                t = ConditionalSplineAutoregressive(latent_dim, arn, count_bins=bins, bound=3.0,
                                                    order="linear")
            nn.init.zeros_(arn.layers[-1].weight)  # start at (close to) the identity
            nn.init.zeros_(arn.layers[-1].bias)
            self.transforms.append(t)

    def forward(self, features):
        base = self.base(features)
        return FlowDistribution(base, [t.condition(features) for t in self.transforms])
