"""Posterior-collapse diagnostics (pyrovae.diagnostics) and the full ``evaluate`` report,
against closed forms and scipy."""

import math

import numpy as np
import pyro.distributions as td
import pytest
import torch
from scipy import integrate, stats
from torch.distributions import kl_divergence

import pyrovae
from pyrovae.diagnostics import active_units, kl_per_dimension, marginals, mutual_information

from .conftest import linear_gaussian_vae, ppca_log_marginal, set_ppca_posterior, small_spec


def test_kl_per_dimension_of_diagonal_normals_is_the_closed_form_and_sums_to_the_kl():
    g = torch.Generator().manual_seed(0)
    mu, s = torch.randn(6, 3, generator=g), torch.rand(6, 3, generator=g) + 0.2
    q = td.Normal(mu, s).to_event(1)
    p = td.Normal(torch.zeros(6, 3), torch.ones(6, 3)).to_event(1)
    kl, analytic = kl_per_dimension(q, p)
    assert analytic
    torch.testing.assert_close(kl, 0.5 * (mu**2 + s**2 - 1) - s.log())
    torch.testing.assert_close(kl.sum(-1), kl_divergence(q, p))


def test_full_rank_marginals_are_the_covariance_diagonal():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(4, 3, 3, generator=g)
    cov = a @ a.transpose(-1, -2) + 0.5 * torch.eye(3)
    q = td.MultivariateNormal(torch.randn(4, 3, generator=g), covariance_matrix=cov)
    m = marginals(q)
    torch.testing.assert_close(m.scale**2, cov.diagonal(dim1=-2, dim2=-1))


def test_kl_against_a_mixture_prior_matches_numerical_integration():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, generator=g)
    loc, scale = torch.randn(3, 2, generator=g) * 2, torch.rand(3, 2, generator=g) + 0.5
    prior = td.MixtureSameFamily(td.Categorical(logits=logits.expand(5, 3)),
                                 td.Normal(loc.expand(5, 3, 2), scale.expand(5, 3, 2)).to_event(1))
    q = td.Normal(torch.randn(5, 2, generator=g), torch.rand(5, 2, generator=g) + 0.3).to_event(1)
    torch.manual_seed(0)
    kl, analytic = kl_per_dimension(q, prior, num_samples=20000)
    assert not analytic and kl.shape == (5, 2)
    w = torch.softmax(logits, 0).numpy()
    for i in range(2):
        for j in range(2):
            mq, sq = q.base_dist.loc[i, j].item(), q.base_dist.scale[i, j].item()
            def integrand(z, j=j, mq=mq, sq=sq):
                log_p = np.log(sum(w[k] * stats.norm.pdf(z, loc[k, j], scale[k, j]) for k in range(3)))
                return stats.norm.pdf(z, mq, sq) * (stats.norm.logpdf(z, mq, sq) - log_p)
            want = integrate.quad(integrand, mq - 12 * sq, mq + 12 * sq)[0]
            assert kl[i, j].item() == pytest.approx(want, abs=0.03)


def test_active_units_count_dimensions_whose_mean_varies_across_examples():
    g = torch.Generator().manual_seed(3)
    means = torch.randn(2000, 3, generator=g) * torch.tensor([1.0, 0.05, 0.2])
    count, var = active_units(means)
    assert count == 2  # variances 1, 0.0025, 0.04 against the threshold 0.01
    torch.testing.assert_close(var, means.double().var(0))


def test_mutual_information_of_a_gaussian_channel():
    # x ~ N(0, 1), q(z|x) = N(a x, s²): q(z) = N(0, a² + s²), I = ½ log((a² + s²)/s²)
    a, s, n = 1.5, 0.5, 3000
    torch.manual_seed(0)
    x = torch.randn(n)
    qs = [td.Normal((a * xb)[:, None], s).to_event(1) for xb in x.split(1000)]
    zs = [q.sample() for q in qs]
    terms = mutual_information(qs, zs)
    m, se = terms.mean().item(), terms.std().item() / math.sqrt(n)
    assert m == pytest.approx(0.5 * math.log((a * a + s * s) / (s * s)), abs=4 * se + 0.01)
    # a guide that ignores x carries no information
    qs0 = [td.Normal(torch.zeros(1000, 1), 1.0).to_event(1) for _ in range(3)]
    zs0 = [q.sample() for q in qs0]
    assert mutual_information(qs0, zs0).abs().max() < 1e-9


def test_evaluate_reports_is_log_likelihood_gap_and_diagnostics_for_ppca():
    g = torch.Generator().manual_seed(4)
    W, b = torch.randn(5, 2, generator=g), torch.randn(5, generator=g)
    vae = linear_gaussian_vae(sigma=0.5, guide="full_rank")
    set_ppca_posterior(vae, W, b, 0.5)
    x = torch.randn(300, 2, generator=g) @ W.T + b + 0.5 * torch.randn(300, 5, generator=g)
    data = pyrovae.data.Data("ppca", x[:100], x[100:])
    res = pyrovae.evaluate(vae, data, num_particles=100, per_example=True)
    exact = ppca_log_marginal(vae, x[100:])
    torch.testing.assert_close(res["per_example"]["log_px"], exact, rtol=0, atol=2e-4)
    assert abs(res["gap"]) < 4 * res["gap_se"] + 1e-3  # the exact posterior: ELBO = log p(x)
    assert res["log_px_mc_se"] < 1e-3 and res["unit"] == "nats per example"
    assert res["active_units"] == 2 and res["latent_dim"] == 2
    assert sum(res["kl_per_dim"]) > 0 and len(res["kl_per_dim_se"]) == 2
    # I(x; z) for the linear-Gaussian model: ½ log det(Cov z) / det(Cov z|x) = ½ log det M
    M = torch.eye(2, dtype=torch.double) + W.T.double() @ W.double() / 0.25
    mi = 0.5 * torch.logdet(M).item()
    assert res["mutual_info"] == pytest.approx(mi, abs=4 * res["mutual_info_se"] + 0.1)
    assert res["mutual_info"] <= res["mutual_info_max"] + 4 * res["mutual_info_se"]


def test_evaluate_is_seeded_and_num_particles_zero_skips_importance_sampling(small_vae, small_data):
    res = pyrovae.evaluate(small_vae, small_data, num_particles=20)
    again = pyrovae.evaluate(small_vae, small_data, num_particles=20)
    assert res == again
    assert res["neg_log_px_bits_per_dim"] == pytest.approx(-res["log_px"] / (64 * math.log(2)))
    assert res["log_px"] >= res["elbo"] - 4 * res["gap_se"]
    skip = pyrovae.evaluate(small_vae, small_data, num_particles=0)
    assert "log_px" not in skip and skip["elbo"] == res["elbo"] and skip["mutual_info"] == res["mutual_info"]


def test_flow_guide_has_no_per_dimension_kl_but_the_rest_works(small_data):
    vae = pyrovae.build(small_spec(**{"model.guide": "flow"}), data=small_data)
    res = pyrovae.evaluate(vae, small_data, num_particles=10)
    assert res["kl_per_dim"] is None and "flow" in res["kl_per_dim_note"]
    assert math.isfinite(res["mutual_info"]) and math.isfinite(res["log_px"])


@pytest.mark.parametrize("variant", ["cvae", "m2"])
def test_models_with_labels_get_the_full_evaluation(small_data, variant):
    vae = pyrovae.build(small_spec(**{"model.variant": variant}), data=small_data)
    res = pyrovae.evaluate(vae, small_data, num_particles=50)
    assert math.isfinite(res["log_px"]) and res["log_px"] >= res["elbo"] - 4 * res["gap_se"]
    assert res["active_units"] <= 3
