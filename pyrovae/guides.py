"""Amortized guide families q(z|x): a head on the encoder's features that returns a
distribution over z with event shape (latent_dim,)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn import functional as F

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
        if not isinstance(min_scale, (int, float)) or min_scale < 0:
            raise ValueError(f"min_scale must be a non-negative number, got {min_scale!r}")
        self.min_scale = float(min_scale)
        self.linear = nn.Linear(in_features, 2 * latent_dim)

    def forward(self, features):
        loc, raw = self.linear(features).chunk(2, dim=-1)
        return dist.Normal(loc, F.softplus(raw) + self.min_scale).to_event(1)
