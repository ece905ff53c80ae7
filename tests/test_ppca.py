"""Correctness anchor: a linear encoder and decoder with a Normal likelihood and one
learned scale is probabilistic PCA (Tipping & Bishop 1999), whose maximum-likelihood
solution and marginal log p(x) = log N(x; b, W Wᵀ + σ² I) are known in closed form."""

import math

import torch

import pyrovae
from pyrovae.evaluate import elbo_parts, mean_se

from .conftest import ppca_log_marginal, ppca_noise_var

D, L, N = 5, 2, 1000


def ppca_max_log_likelihood(x: torch.Tensor) -> tuple[float, float]:
    """Per-example maximum log-likelihood of PPCA with L components, and σ²_ML:
    σ² = mean of the D-L smallest eigenvalues of the sample covariance S, and
    max log p = -½ [D log 2π + Σ_{j≤L} log λ_j + (D-L) log σ² + D]."""
    xc = x.double() - x.double().mean(0)
    lam = torch.linalg.eigvalsh(xc.T @ xc / x.shape[0]).flip(0)
    sigma2 = lam[L:].mean()
    ll = -0.5 * (D * math.log(2 * math.pi) + lam[:L].log().sum() + (D - L) * sigma2.log() + D)
    return ll.item(), sigma2.item()


def test_linear_vae_with_learned_scale_recovers_the_ppca_maximum_likelihood():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(D, L, generator=g) * 1.5
    x = torch.randn(N, L, generator=g) @ W.T + 0.4 * torch.randn(N, D, generator=g) + 1.0
    best_ll, best_sigma2 = ppca_max_log_likelihood(x)

    spec = {"model": {"latent_dim": L, "encoder": {"name": "mlp", "hidden": []},
                      "decoder": {"name": "mlp", "hidden": []},
                      "likelihood": {"name": "normal", "scale": "learned"}},
            "train": {"epochs": 1500, "batch_size": N, "lr": 2e-2}}
    vae = pyrovae.build(spec, data_shape=(D,))
    pyrovae.fit(vae, (x, x[:0]), progress=False)

    # The model's own marginal: exact, from its weights. At the optimum it is the ML value.
    exact = ppca_log_marginal(vae, x).mean().item()
    assert exact <= best_ll + 1e-6
    assert exact > best_ll - 0.02, (exact, best_ll)
    sigma2 = ppca_noise_var(vae)
    torch.testing.assert_close(sigma2, torch.full((D,), best_sigma2, dtype=torch.double), rtol=0.05,
                               atol=0)
    # The ELBO is below the marginal and, for the linear VAE at its optimum, nearly tight.
    torch.manual_seed(0)
    gap, se = mean_se(ppca_log_marginal(vae, x).float() - elbo_parts(vae, x)["elbo"])
    assert gap > -3 * se
    assert gap < 0.05 + 3 * se, (gap, se)
