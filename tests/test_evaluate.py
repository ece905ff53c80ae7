import math

import pytest
import torch
from pyro.infer import Trace_ELBO

import pyrovae
from pyrovae.evaluate import elbo_parts, mean_se

from .conftest import linear_gaussian_vae, ppca_log_marginal


def set_exact_posterior(vae, sigma=0.5):
    """Give the linear-Gaussian VAE a decoder with orthogonal columns, so the exact
    posterior N(M⁻¹Wᵀ(x-b)/σ², M⁻¹), M = I + WᵀW/σ², is diagonal, and set the guide to it."""
    W = torch.zeros(5, 2)
    W[0, 0], W[1, 1] = 1.5, 0.7
    b = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5])
    M = torch.eye(2) + W.T @ W / sigma**2
    Minv = torch.linalg.inv(M)
    post_std = Minv.diagonal().sqrt()
    head = vae.guide_head.linear
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
        A = Minv @ W.T / sigma**2                         # loc = A (x - b)
        head.weight.zero_()
        head.weight[:2] = A
        head.bias[:2] = -A @ b
        raw = post_std - vae.guide_head.min_scale        # softplus(raw) = that
        head.bias[2:] = raw + torch.log(-torch.expm1(-raw))
    return W, b


def test_analytic_kl_matches_the_closed_form(small_vae, small_data):
    x = small_data.test[:30]
    parts = elbo_parts(small_vae, x)
    q = small_vae.encode(x)
    mu, s = q.mean.detach(), q.stddev.detach()
    closed = 0.5 * (mu**2 + s**2 - 1 - 2 * s.log()).sum(-1)
    assert parts["kl_analytic"]
    torch.testing.assert_close(parts["kl"], closed, rtol=1e-5, atol=1e-6)


def test_exact_posterior_guide_makes_the_elbo_the_marginal_likelihood():
    vae = linear_gaussian_vae(sigma=0.5)
    W, b = set_exact_posterior(vae)
    torch.manual_seed(0)
    z = torch.randn(3000, 2)
    x = z @ W.T + b + 0.5 * torch.randn(3000, 5)
    exact = ppca_log_marginal(vae, x)
    # Trace_ELBO with the exact posterior has zero variance: every sample gives log p(x).
    with torch.no_grad():
        loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x[:50])
    assert -loss.item() == pytest.approx(exact[:50].sum().item(), rel=1e-4)
    # evaluate's ELBO (analytic KL + one-sample reconstruction) is unbiased for it.
    parts = elbo_parts(vae, x)
    m, se = mean_se(parts["elbo"] - exact.float())
    assert abs(m) < 4 * se + 1e-4


def test_elbo_is_below_the_exact_marginal_for_a_trained_ppca():
    vae = linear_gaussian_vae(sigma=0.5)
    torch.manual_seed(1)
    W = torch.randn(5, 2)
    x = torch.randn(600, 2) @ W.T + 0.5 * torch.randn(600, 5)
    pyrovae.fit(vae, (x[:500], x[500:]), epochs=30, batch_size=100, lr=1e-2, progress=False)
    parts = elbo_parts(vae, x[500:])
    gap = ppca_log_marginal(vae, x[500:]).float() - parts["elbo"]
    m, se = mean_se(gap)
    assert m > -3 * se  # log p(x) >= ELBO on average


def test_evaluate_summary_units_and_bits_per_dim(small_vae, small_data):
    res = pyrovae.evaluate(small_vae, small_data)
    assert res["unit"] == "nats per example" and res["n"] == 50
    assert res["neg_elbo_bits_per_dim"] == pytest.approx(-res["elbo"] / (64 * math.log(2)))
    again = pyrovae.evaluate(small_vae, small_data)
    assert again["elbo"] == res["elbo"]  # seeded: the same report twice
