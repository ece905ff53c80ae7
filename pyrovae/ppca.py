"""Probabilistic PCA (Tipping & Bishop 1999): the linear-Gaussian VAE in closed form.

x = W z + b + σ ε with z ~ N(0, I_L), ε ~ N(0, I_D), so log p(x) = log N(x; b, W Wᵀ + σ² I).
Its maximum-likelihood fit is b = the data mean, σ² = the mean of the D - L smallest
eigenvalues λ of the sample covariance, W = U_L (Λ_L - σ² I)^½. A VAE with linear
encoder and decoder, a ``normal`` likelihood with one learned scale and a
``standard_normal`` prior is this model, so its ELBO can be checked against the optimum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PPCA:
    """The model N(x; mean, weight weightᵀ + noise_var I), in float64."""

    mean: torch.Tensor  # (D,)
    weight: torch.Tensor  # (D, L)
    noise_var: torch.Tensor  # (D,): σ² per feature (all equal for a maximum-likelihood fit)

    @classmethod
    def fit(cls, x: torch.Tensor, latent_dim: int) -> PPCA:
        """The maximum-likelihood PPCA with ``latent_dim`` components of the rows of ``x``."""
        x = x.reshape(x.shape[0], -1).double()
        d = x.shape[1]
        if not 1 <= latent_dim < d:
            raise ValueError(f"latent_dim must be in [1, {d - 1}] for {d}-dimensional data, got {latent_dim}")
        mean = x.mean(0)
        xc = x - mean
        lam, vec = torch.linalg.eigh(xc.T @ xc / x.shape[0])
        lam, vec = lam.flip(0).clamp_min(0), vec.flip(1)
        noise = lam[latent_dim:].mean()
        if not noise > 0:
            raise ValueError(f"the data span at most {latent_dim} dimensions: PPCA's noise variance is 0")
        weight = vec[:, :latent_dim] * (lam[:latent_dim] - noise).clamp_min(0).sqrt()
        return cls(mean, weight, noise.expand(d).clone())

    @classmethod
    def from_linear_vae(cls, vae) -> PPCA:
        """The exact model of a VAE whose decoder is one linear layer, likelihood ``normal``
        with a fixed, learned or per-feature scale, and prior ``standard_normal``."""
        from .likelihoods import NormalLikelihood
        from .priors import StandardNormalPrior

        layers = [m for m in vae.decoder.modules() if not list(m.children())]
        if (len(layers) != 1 or not isinstance(layers[0], torch.nn.Linear)
                or not isinstance(vae.likelihood, NormalLikelihood) or vae.likelihood.num_params != 1
                or not isinstance(vae.prior, StandardNormalPrior)):
            raise ValueError("PPCA.from_linear_vae needs a linear decoder (mlp with hidden: []), the "
                             "normal likelihood (scale not predicted) and the standard_normal prior")
        with torch.no_grad():
            p = vae.decode(torch.zeros(1, vae.latent_dim, device=layers[0].weight.device))
            noise = p.base_dist.scale.double().expand(p.batch_shape + p.event_shape)[0].flatten() ** 2
            lin = layers[0]  # its outputs are (num_params = 1, *data_shape), flattened: the features
            return cls(lin.bias.double().cpu(), lin.weight.double().cpu(), noise.cpu())

    def covariance(self) -> torch.Tensor:
        return self.weight @ self.weight.T + torch.diag(self.noise_var)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) per example (nats), for rows of ``x`` (any example shape that flattens to D)."""
        mvn = torch.distributions.MultivariateNormal(self.mean, self.covariance())
        return mvn.log_prob(x.reshape(x.shape[0], -1).double().cpu())

    @staticmethod
    def max_log_likelihood(x: torch.Tensor, latent_dim: int) -> float:
        """Mean log-likelihood per example at the maximum, from the eigenvalues alone:
        -½ [D log 2π + Σ_{j≤L} log λ_j + (D-L) log σ² + D]."""
        x = x.reshape(x.shape[0], -1).double()
        d = x.shape[1]
        xc = x - x.mean(0)
        lam = torch.linalg.eigvalsh(xc.T @ xc / x.shape[0]).flip(0).clamp_min(0)
        noise = lam[latent_dim:].mean()
        return -0.5 * (d * math.log(2 * math.pi) + lam[:latent_dim].log().sum().item()
                       + (d - latent_dim) * math.log(noise.item()) + d)
