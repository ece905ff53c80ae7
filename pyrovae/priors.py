"""Priors p(z): modules that return a distribution over z with event shape (latent_dim,)."""

from __future__ import annotations

from abc import ABCMeta, abstractmethod

import pyro.distributions as dist
import torch
from torch import nn

from .registry import Registry

registry = Registry("prior")
register = registry.register


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


@register("standard_normal")
class StandardNormalPrior(Prior):
    """Isotropic standard normal: p(z) = N(0, I)."""

    def __init__(self, latent_dim: int):
        super().__init__(latent_dim)
        self.register_buffer("zero", torch.zeros(()))

    def forward(self, batch_shape):
        shape = torch.Size(batch_shape) + (self.latent_dim,)
        return dist.Normal(self.zero, 1.0).expand(shape).to_event(1)
