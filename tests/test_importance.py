"""Importance-sampled log p(x) (pyrovae.importance) against the exact marginal of a
linear-Gaussian VAE (probabilistic PCA) and against direct numpy arithmetic."""

import math

import numpy as np
import pytest
import torch

from pyrovae.evaluate import elbo_parts, mean_se
from pyrovae.importance import log_marginal, log_mean_exp_se, log_weights

from .conftest import linear_gaussian_vae, ppca_log_marginal, set_ppca_posterior


def ppca_case(seed=0, n=40, guide="full_rank", scale_factor=1.0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(5, 2, generator=g)
    b = torch.randn(5, generator=g)
    vae = linear_gaussian_vae(sigma=0.5, guide=guide)
    if guide == "full_rank":
        set_ppca_posterior(vae, W, b, 0.5, scale_factor=scale_factor)
    else:
        with torch.no_grad():
            vae.decoder.net[0].weight.copy_(W)
            vae.decoder.net[0].bias.copy_(b)
    x = torch.randn(n, 2, generator=g) @ W.T + b + 0.5 * torch.randn(n, 5, generator=g)
    return vae, x


def test_log_mean_exp_and_its_delta_method_se_match_numpy():
    rng = np.random.default_rng(0)
    lw = rng.normal(-30.0, 2.0, size=(500, 3))
    est, se = log_mean_exp_se(torch.tensor(lw))
    w = np.exp(lw + 30.0)
    np.testing.assert_allclose(est.numpy(), np.log(w.mean(0)) - 30.0, rtol=1e-12)
    np.testing.assert_allclose(se.numpy(), w.std(0, ddof=1) / (math.sqrt(500) * w.mean(0)), rtol=1e-9)
    # equal weights: no Monte Carlo error at all
    est, se = log_mean_exp_se(torch.full((10, 2), -3.0, dtype=torch.double))
    assert torch.allclose(est, torch.full((2,), -3.0, dtype=torch.double)) and (se == 0).all()


def test_exact_posterior_proposal_gives_log_px_with_zero_variance():
    vae, x = ppca_case()
    lw = log_weights(vae, x, num_particles=7).double()
    exact = ppca_log_marginal(vae, x)
    torch.testing.assert_close(lw, exact.expand(7, -1), rtol=0, atol=2e-4)
    est, se = log_marginal(vae, x, num_particles=50)
    torch.testing.assert_close(est, exact, rtol=0, atol=2e-4)
    assert se.max() < 1e-3


def test_is_estimate_matches_the_exact_marginal_within_its_standard_error():
    # an imperfect but overdispersed proposal (the exact posterior's scale x 1.5): real Monte
    # Carlo error, and bounded weights, so the delta-method standard error is trustworthy
    vae, x = ppca_case(seed=1, n=30, scale_factor=1.5)
    torch.manual_seed(0)
    est, se = log_marginal(vae, x, num_particles=3000, particles_per_pass=700)  # several passes
    exact = ppca_log_marginal(vae, x)
    z = (est - exact) / se
    assert (z.abs() < 3).float().mean() >= 0.9  # per example, within 3 standard errors
    assert abs((est - exact).mean()) < 3 * se.pow(2).sum().sqrt() / x.shape[0] + 1e-3


def test_delta_method_se_is_honest_across_repeats():
    vae, x = ppca_case(seed=2, n=1, scale_factor=1.5)
    torch.manual_seed(0)
    runs = [log_marginal(vae, x, num_particles=200) for _ in range(200)]
    est = torch.stack([r[0][0] for r in runs])
    se = torch.stack([r[1][0] for r in runs])
    assert est.std().item() == pytest.approx(se.mean().item(), rel=0.3)


def test_is_is_above_the_elbo_and_the_gap_shrinks_with_k():
    vae, x = ppca_case(seed=3, n=200, guide="diagonal_normal")
    torch.manual_seed(0)
    exact = ppca_log_marginal(vae, x)
    elbo = elbo_parts(vae, x)["elbo"].double()
    gaps = []
    for k in (1, 10, 100, 1000):
        est, _ = log_marginal(vae, x, num_particles=k)
        gaps.append(mean_se(exact - est))
    m, s = mean_se(gaps[0][0] - gaps[0][0] + (exact - elbo))  # exact - ELBO, analytic KL
    assert m > 3 * s  # the untrained guide leaves a real gap
    for (g1, s1), (g2, s2) in zip(gaps, gaps[1:], strict=False):
        assert g2 < g1 + 2 * math.hypot(s1, s2)
    assert gaps[-1][0] < 0.3 * gaps[0][0]
    assert gaps[-1][0] > -3 * gaps[-1][1]  # log p̂ is a stochastic lower bound


def test_bad_num_particles_is_a_clear_error():
    vae, x = ppca_case(n=2)
    with pytest.raises(ValueError, match="num_particles"):
        log_marginal(vae, x, num_particles=0)
