"""Priors p(z): modules that return a distribution over z with event shape (latent_dim,).

Every learnable part of a prior (means, scales, mixture weights, flow networks,
VampPrior pseudo-inputs) is an ``nn.Parameter`` or submodule of the prior, so it is
part of ``vae.parameters()``, the Pyro param store and the checkpoint, and is trained
with the rest of the VAE.

KL(q(z|x) || p(z)) is analytic (``TraceMeanField_ELBO``, ``evaluate.elbo_parts``) only
where torch/Pyro know a closed form for the pair. For the default diagonal-normal guide,
``Independent(Normal)``, that is ``standard_normal``, ``learned_normal`` (Normal-Normal)
and ``laplace`` (torch's Normal-Laplace KL). ``student_t``, ``mixture``, ``vamp`` and
``flow`` have none: ``kl_divergence`` raises ``NotImplementedError`` and Pyro falls back to
the Monte Carlo estimate log q(z|x) - log p(z). No KL is registered here; the
``full_rank`` guide (a MultivariateNormal) gets its closed form against
``standard_normal`` and ``learned_normal`` from :mod:`pyrovae.guides`.
"""

from __future__ import annotations

import warnings
from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import nn
from torch.nn import functional as F

from .options import (
    check_choice,
    check_finite,
    check_flag,
    check_int,
    check_int_list,
    check_positive,
    softplus_inverse,
)
from .registry import Registry

registry = Registry("prior")
register = registry.register

MIN_SCALE = 1.0e-4  # floor under every learned scale: keeps log-densities finite


class Prior(nn.Module, metaclass=ABCMeta):
    """Base class: ``forward(batch_shape)`` returns p(z) batched to ``batch_shape``."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim

    def bind(self, vae) -> None:
        """Called once the VAE is assembled. A prior that needs other parts (the
        VampPrior pushes pseudo-inputs through ``vae.encode``) keeps them here; it must
        not store ``vae`` as a submodule attribute."""

    @abstractmethod
    def forward(self, batch_shape: torch.Size) -> dist.TorchDistribution:
        """p(z) with batch shape ``batch_shape`` and event shape ``(latent_dim,)``."""

    def _shape(self, batch_shape) -> torch.Size:
        return torch.Size(batch_shape) + (self.latent_dim,)


def _inv_softplus(y: float) -> float:
    """x with softplus(x) + MIN_SCALE == y."""
    return softplus_inverse(max(y - MIN_SCALE, 1e-12))


def _softplus_scale(raw: torch.Tensor) -> torch.Tensor:
    return F.softplus(raw) + MIN_SCALE


# ---- factorised priors ------------------------------------------------------------------
@register("standard_normal")
class StandardNormalPrior(Prior):
    """Isotropic standard normal: p(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.register_buffer("zero", torch.zeros(()))

    def forward(self, batch_shape):
        return dist.Normal(self.zero, 1.0).expand(self._shape(batch_shape)).to_event(1)


class _LocScalePrior(Prior):
    """A location and a positive scale per dimension, fixed buffers or learned parameters
    (scale = softplus(raw) + 1e-4, so it stays positive)."""

    def __init__(self, latent_dim: int, scale: float, learned: bool):
        super().__init__(latent_dim)
        scale, self.learned = check_positive("scale", scale), check_flag("learned", learned)
        if self.learned:
            self.loc = nn.Parameter(torch.zeros(latent_dim))
            self.raw_scale = nn.Parameter(torch.full((latent_dim,), _inv_softplus(scale)))
        else:
            self.register_buffer("loc", torch.zeros(latent_dim))
            self.register_buffer("fixed_scale", torch.full((latent_dim,), scale))

    @property
    def scale(self) -> torch.Tensor:
        return _softplus_scale(self.raw_scale) if self.learned else self.fixed_scale


@register("learned_normal")
class LearnedNormalPrior(_LocScalePrior):
    """Diagonal normal with learned mean and scale: p(z) = N(μ, diag σ²), σ = softplus(·) + 1e-4.

    Initialised at N(0, I). The KL from a diagonal-normal guide is analytic.
    """

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim, 1.0, True)

    def forward(self, batch_shape):
        return dist.Normal(self.loc, self.scale).expand(self._shape(batch_shape)).to_event(1)


@register("laplace")
class LaplacePrior(_LocScalePrior):
    """Factorised Laplace: p(z) = Π_d exp(-|z_d - μ_d| / b_d) / (2 b_d); μ = 0, b = ``scale``.

    ``learned: true`` trains μ and b (per dimension, starting at 0 and ``scale``). The KL
    from a diagonal-normal guide is analytic (torch's Normal-Laplace formula).
    """

    def __init__(self, latent_dim: int, *, scale: float = 1.0, learned: bool = False):
        super().__init__(latent_dim, scale, learned)

    def forward(self, batch_shape):
        return dist.Laplace(self.loc, self.scale).expand(self._shape(batch_shape)).to_event(1)


@register("student_t")
class StudentTPrior(_LocScalePrior):
    """Factorised Student t: p(z) = Π_d t_ν((z_d - μ_d) / s_d) / s_d; μ = 0, s = ``scale``, ν = ``df``.

    ``learned: true`` trains μ, s and ν (per dimension, starting at 0, ``scale`` and ``df``).
    Heavier tails for smaller ``df``; the KL is estimated by Monte Carlo.
    """

    def __init__(self, latent_dim: int, *, df: float = 3.0, scale: float = 1.0, learned: bool = False):
        super().__init__(latent_dim, scale, learned)
        df = check_positive("df", df)
        if self.learned:
            self.raw_df = nn.Parameter(torch.full((latent_dim,), _inv_softplus(df)))
        else:
            self.register_buffer("fixed_df", torch.full((latent_dim,), df))

    @property
    def df(self) -> torch.Tensor:
        return _softplus_scale(self.raw_df) if self.learned else self.fixed_df

    def forward(self, batch_shape):
        return dist.StudentT(self.df, self.loc, self.scale).expand(self._shape(batch_shape)).to_event(1)


# ---- mixtures -----------------------------------------------------------------------------
@register("mixture")
class MixturePrior(Prior):
    """Gaussian mixture: p(z) = Σ_k π_k N(z; μ_k, diag σ_k²), with weights, means and scales learned.

    ``components``: K. Means start at N(0, I) draws (spread out, seeded), scales at 0.5,
    weights equal. The KL is estimated by Monte Carlo.
    """

    def __init__(self, latent_dim: int, *, components: int = 10):
        super().__init__(latent_dim)
        self.components = check_int("components", components)
        k = self.components
        self.logits = nn.Parameter(torch.zeros(k))
        self.means = nn.Parameter(torch.randn(k, latent_dim))
        self.raw_scales = nn.Parameter(torch.full((k, latent_dim), _inv_softplus(0.5)))

    @property
    def weights(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def scales(self) -> torch.Tensor:
        return _softplus_scale(self.raw_scales)

    def forward(self, batch_shape):
        batch = torch.Size(batch_shape)
        shape = batch + self.means.shape
        components = dist.Normal(self.means.expand(shape), self.scales.expand(shape)).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=self.logits.expand(batch + (self.components,))),
                                      components)


@register("vamp")
class VampPrior(Prior):
    """VampPrior: p(z) = (1/K) Σ_k q(z | u_k), the guide at K learned pseudo-inputs u_k.

    Tomczak & Welling (2018). ``components``: K. Each u_k is shaped like one example and
    starts at ``init_loc`` + ``init_scale`` · N(0, 1) noise (0.5 ± 0.1 suits data in [0, 1];
    use init_loc 0, init_scale 1 for standardised data, or call ``init_from_data(x)``).
    The pseudo-inputs and, through them, the encoder are trained by the prior term.
    Works with any guide family; the KL is estimated by Monte Carlo.
    """

    def __init__(self, latent_dim: int, *, components: int = 50, init_loc: float = 0.5,
                 init_scale: float = 0.1):
        super().__init__(latent_dim)
        self.components = check_int("components", components)
        self.init_loc = check_finite("init_loc", init_loc)
        self.init_scale = check_positive("init_scale", init_scale)
        self.register_parameter("pseudo_inputs", None)  # created in bind: needs the data shape
        self._encode = None

    def bind(self, vae) -> None:
        """Create the pseudo-inputs (shaped like one of ``vae``'s examples) and keep
        ``vae.encode``: a bound method, not a submodule, so the VAE's parameters are not
        registered twice and modules stay a tree (a deepcopy of the VAE rebinds to the copy)."""
        shape = (self.components, *vae.data_shape)
        if self.pseudo_inputs is None or tuple(self.pseudo_inputs.shape) != shape:
            device = next(iter(vae.parameters()), torch.empty(0)).device
            u = self.init_loc + self.init_scale * torch.randn(shape)
            self.pseudo_inputs = nn.Parameter(u.to(device))
        self._encode = vae.encode

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the pseudo-inputs to K random examples of ``x`` (a common VampPrior init)."""
        self._check_bound()
        if tuple(x.shape[1:]) != tuple(self.pseudo_inputs.shape[1:]):
            raise ValueError(f"x has example shape {tuple(x.shape[1:])}, "
                             f"the pseudo-inputs have {tuple(self.pseudo_inputs.shape[1:])}")
        idx = torch.randint(x.shape[0], (self.components,), device=x.device)
        self.pseudo_inputs.copy_(x[idx].to(self.pseudo_inputs))

    def _check_bound(self):
        if self._encode is None:
            raise RuntimeError("the VampPrior needs the VAE's encoder: call prior.bind(vae) first")

    def forward(self, batch_shape):
        self._check_bound()
        q = self._encode(self.pseudo_inputs)
        k = self.components
        if tuple(q.batch_shape) != (k,) or tuple(q.event_shape) != (self.latent_dim,):
            raise ValueError(f"vae.encode(pseudo_inputs) has batch shape {tuple(q.batch_shape)} and event "
                             f"shape {tuple(q.event_shape)}; expected ({k},) and ({self.latent_dim},)")
        shape = torch.Size(batch_shape) + (k,)
        try:
            components = q.expand(shape)
        except NotImplementedError:  # a guide family without its own expand
            components = dist.ExpandedDistribution(q, shape)
        uniform = dist.Categorical(logits=self.pseudo_inputs.new_zeros(()).expand(shape))
        return dist.MixtureSameFamily(uniform, components)


# ---- normalizing flow ---------------------------------------------------------------------
FLOW_TRANSFORMS = ("affine_autoregressive", "spline")


@register("flow")
class FlowPrior(Prior):
    """Normalizing flow: z = f(ε), ε ~ N(0, I); log p(z) = log N(f⁻¹(z); 0, I) + log |det ∂f⁻¹/∂z|.

    f⁻¹ is ``depth`` learned autoregressive layers (coordinate order reversed between
    layers), evaluated in one parallel pass per layer, so log p(z) is fast (MAF-style);
    sampling inverts them one coordinate at a time. ``transform``: ``affine_autoregressive``
    (affine layers, Pyro's affine_autoregressive) or ``spline`` (monotone rational-quadratic
    splines with ``bins`` bins on [-3, 3], identity outside; Pyro's spline_autoregressive).
    ``hidden``: the autoregressive networks' hidden sizes, each >= latent_dim (null: two
    layers of max(32, 3 latent_dim + 1)). With latent_dim 1 each layer is a learned
    elementwise map. The KL is estimated by Monte Carlo.
    """

    def __init__(self, latent_dim: int, *, transform: str = "affine_autoregressive", depth: int = 2,
                 hidden: list[int] | None = None, bins: int = 8):
        super().__init__(latent_dim)
        self.transform = check_choice("transform", transform, FLOW_TRANSFORMS)
        self.depth = check_int("depth", depth)
        bins = check_int("bins", bins, 2)
        if hidden is None:
            hidden = [max(32, 3 * latent_dim + 1)] * 2
        self.hidden = check_int_list("hidden", hidden, latent_dim, empty=False, low_name="latent_dim",
                                     why=" (autoregressive masks need that many units)")

        def layer():
            if transform == "affine_autoregressive":
                return T.affine_autoregressive(latent_dim, hidden_dims=self.hidden)
            return T.spline_autoregressive(latent_dim, hidden_dims=self.hidden, count_bins=bins)

        with warnings.catch_warnings():  # latent_dim 1: Pyro suggests an affine map; it is one
            warnings.filterwarnings("ignore", message="ConditionalAutoRegressiveNN input_dim = 1")
            self.layers = nn.ModuleList(layer() for _ in range(self.depth))
        self.register_buffer("zero", torch.zeros(()))
        self.register_buffer("reverse", torch.arange(latent_dim - 1, -1, -1))

    def transforms(self) -> list:
        """The transforms from ε to z, in order: ``TransformedDistribution(base, transforms())``."""
        out = []
        for i, layer in enumerate(self.layers):
            if i and self.latent_dim > 1:
                out.append(T.Permute(self.reverse))
            out.append(layer.inv)  # layer itself maps z -> ε in one pass
        return out[::-1]

    def forward(self, batch_shape):
        base = dist.Normal(self.zero, 1.0).expand(self._shape(batch_shape)).to_event(1)
        return dist.TransformedDistribution(base, self.transforms())
