"""Likelihoods p(x|z): decoder output -> a Pyro distribution over one example x.

The decoder emits ``num_params`` numbers per data feature, shaped
``(batch, num_params, *data_shape)``. A likelihood turns that into a distribution
whose event shape is the data shape (so ``log_prob`` is one number per example) and
gives its mean for reconstructions. ``check_data`` rejects data outside the support
before any training starts.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn

from .errors import DataError
from .registry import Registry

registry = Registry("likelihood")
register = registry.register


class Likelihood(nn.Module, metaclass=ABCMeta):
    """Base class: subclass, set ``num_params``, implement ``forward`` and ``mean``.

    Built with the data shape (one example); ``split(params)`` returns the
    ``num_params`` tensors, each shaped ``(*batch, *data_shape)``.
    """

    num_params: int = 1
    support_text: str = "finite real values"

    def __init__(self, data_shape):
        super().__init__()
        self.data_shape = tuple(data_shape)
        self.event_dim = len(self.data_shape)

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return params.unbind(-self.event_dim - 1)

    @abstractmethod
    def forward(self, params: torch.Tensor) -> dist.TorchDistribution:
        """Distribution over x with ``event_shape == data_shape``."""

    @abstractmethod
    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x | decoder output], shaped like the data."""

    def in_support(self, x: torch.Tensor) -> torch.Tensor:
        """Boolean tensor: which values this likelihood can score."""
        return torch.isfinite(x)

    def check_data(self, x: torch.Tensor, what: str = "data") -> None:
        """Raise :class:`DataError` if any value of ``x`` is outside the support."""
        ok = self.in_support(x)
        if bool(ok.all()):
            return
        bad = x[~ok]
        finite = x[torch.isfinite(x)]
        rng = (
            f"[{finite.min().item():.4g}, {finite.max().item():.4g}]" if finite.numel() else "none"
        )
        raise DataError(
            f"{what}: likelihood {getattr(self, 'registry_name', type(self).__name__)!r} "
            f"needs {self.support_text}, but {bad.numel()} of {x.numel()} values are not "
            f"(e.g. {bad.flatten()[0].item():.4g}; finite range {rng}). Rescale the data or "
            f"choose another model.likelihood (valid choices: {', '.join(registry.names())})."
        )


@register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """Bernoulli on logits; scores binary data or [0,1] intensities as cross-entropy.

    log p(x|z) = sum_i x_i log s(l_i) + (1 - x_i) log(1 - s(l_i)), s the sigmoid.
    For non-binary x in [0,1] this is the usual (unnormalised) cross-entropy.
    """

    support_text = "values in [0, 1]"

    def forward(self, params):
        (logits,) = self.split(params)
        # validate_args=False: [0,1] intensities are scored by the same formula.
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(self.event_dim)

    def mean(self, params):
        return torch.sigmoid(self.split(params)[0])

    def in_support(self, x):
        return torch.isfinite(x) & (x >= 0) & (x <= 1)


@register("normal")
class NormalLikelihood(Likelihood):
    """Normal with the decoder output as mean and a fixed scale σ: log N(x; μ(z), σ²)."""

    def __init__(self, data_shape, *, scale: float = 0.1):
        super().__init__(data_shape)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ValueError(f"scale must be a positive number, got {scale!r}")
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, params):
        (loc,) = self.split(params)
        return dist.Normal(loc, self.scale).to_event(self.event_dim)

    def mean(self, params):
        return self.split(params)[0]
