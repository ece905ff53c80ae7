"""Correctness anchor: a linear encoder and decoder with a Normal likelihood and one
learned scale is probabilistic PCA (Tipping & Bishop 1999), whose maximum-likelihood
solution and marginal log p(x) = log N(x; b, W Wᵀ + σ² I) are known in closed form."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

import pyrovae
from pyrovae.evaluate import elbo_parts, mean_se
from pyrovae.ppca import PPCA

from .conftest import linear_gaussian_vae, ppca_log_marginal

D, L, N = 5, 2, 1000


def ppca_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(D, L, generator=g) * 1.5
    return torch.randn(N, L, generator=g) @ W.T + 0.4 * torch.randn(N, D, generator=g) + 1.0


def test_closed_form_fit_is_the_maximum_and_its_density_is_scipys():
    x = ppca_data()
    fit = PPCA.fit(x, L)
    ll = fit.log_prob(x)
    want = stats.multivariate_normal(fit.mean.numpy(), fit.covariance().numpy()).logpdf(x.double().numpy())
    np.testing.assert_allclose(ll.numpy(), want, rtol=1e-10)
    assert ll.mean().item() == pytest.approx(PPCA.max_log_likelihood(x, L), abs=1e-9)
    # A maximum: any perturbation of W, b or σ² lowers the mean log-likelihood.
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        other = PPCA(fit.mean + 0.01 * torch.randn(D, generator=g, dtype=torch.double),
                     fit.weight + 0.01 * torch.randn(D, L, generator=g, dtype=torch.double),
                     fit.noise_var * math.exp(0.01 * torch.randn((), generator=g).item()))
        assert other.log_prob(x).mean() < ll.mean()


def test_from_linear_vae_rejects_models_that_are_not_ppca():
    vae = pyrovae.build({"model": {"latent_dim": 2}}, data_shape=(5,))
    with pytest.raises(ValueError, match="linear decoder"):
        PPCA.from_linear_vae(vae)
    assert PPCA.from_linear_vae(linear_gaussian_vae()).weight.shape == (D, L)


def test_linear_vae_with_learned_scale_recovers_the_ppca_maximum_likelihood():
    x = ppca_data()
    best = PPCA.fit(x, L)
    best_ll = best.log_prob(x).mean().item()

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
    torch.testing.assert_close(PPCA.from_linear_vae(vae).noise_var, best.noise_var, rtol=0.05, atol=0)
    # The ELBO is below the marginal and, for the linear VAE at its optimum, nearly tight.
    torch.manual_seed(0)
    gap, se = mean_se(ppca_log_marginal(vae, x).float() - elbo_parts(vae, x)["elbo"])
    assert gap > -3 * se
    assert gap < 0.05 + 3 * se, (gap, se)
