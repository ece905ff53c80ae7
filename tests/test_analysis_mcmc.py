"""NUTS refinement of z (pyrovae.analysis.mcmc) against the linear-Gaussian VAE's exact posterior."""

import json
import math

import arviz as az
import numpy as np
import pyro
import pytest
import torch

import pyrovae
from pyrovae.analysis import mcmc
from pyrovae.errors import DataError, SpecError

from .conftest import linear_gaussian_vae, ppca_log_marginal, ppca_posterior, set_ppca_posterior, small_spec

SIGMA = 0.5


def _ppca(scale_factor: float, n: int):
    """A full_rank linear-Gaussian VAE set to its exact posterior (Cholesky x ``scale_factor``),
    n examples drawn from it, and (W, b)."""
    g = torch.Generator().manual_seed(4)
    W, b = torch.randn(5, 2, generator=g), torch.randn(5, generator=g)
    vae = linear_gaussian_vae(sigma=SIGMA, guide="full_rank")
    set_ppca_posterior(vae, W, b, SIGMA, scale_factor=scale_factor)
    x = torch.randn(n, 2, generator=g) @ W.T + b + SIGMA * torch.randn(n, 5, generator=g)
    return vae, x, W, b


@pytest.fixture(scope="module")
def exact():
    vae, x, W, b = _ppca(1.0, 2)
    res = mcmc.refine(vae, x, num_chains=2, num_samples=150, warmup_steps=100, num_particles=1000,
                      local_steps=100, obs_index=[7, 3], seed=1)
    return vae, x, W, b, res


def test_nuts_recovers_the_analytic_posterior_mean_and_covariance(exact):
    vae, x, W, b, res = exact
    mean, cov = ppca_posterior(W, b, SIGMA, x)
    mean, cov = mean.numpy(), cov.numpy()
    z = res.nuts_draws  # (chain, draw, obs, z_dim)
    assert z.shape == (2, 150, 2, 2)
    # posterior means within 4 Monte Carlo standard errors (ArviZ's MCSE, from the ESS)
    assert np.all(np.abs(res.nuts_mean - mean) < 4 * res.nuts_mean_mcse)
    # covariance entries E[(z_a - μ_a)(z_b - μ_b)] about the exact mean, each within 4 s.e.
    # of its own draws (sd of the products / sqrt of their bulk ESS)
    dev = z - mean
    pairs = np.stack([dev[..., a] * dev[..., c] for a, c in ((0, 0), (1, 1), (0, 1))], -1)
    ess = az.ess(az.from_dict({"posterior": {"p": pairs}}, dims={"p": ["obs", "pair"]}))["p"].values
    se = pairs.reshape(-1, 2, 3).std(0) / np.sqrt(ess)
    want = np.array([cov[0, 0], cov[1, 1], cov[0, 1]])
    assert np.all(np.abs(pairs.reshape(-1, 2, 3).mean(0) - want) < 4 * se)
    assert np.all(res.rhat_max < 1.05) and np.all(res.ess_bulk_min > 100)
    assert sum(res.divergences) == 0 and all(s > 0 for s in res.step_size)


def test_exact_guide_has_no_gaps_and_matching_moments(exact):
    vae, x, W, b, res = exact
    exact_log_px = ppca_log_marginal(vae, x).numpy()
    assert np.all(np.abs(res.log_px - exact_log_px) < 4 * res.log_px_se + 1e-3)
    assert np.all(np.abs(res.elbo - exact_log_px) < 1e-3)  # the exact posterior: ELBO = log p(x)
    for gap in ("inference_gap", "approximation_gap", "amortization_gap"):
        value, se = getattr(res, gap), getattr(res, gap + "_se")
        assert np.all(np.abs(value) < 4 * se + 1e-3), gap
    assert np.all(res.approximation_gap < 1e-4)  # q* (sticking-the-landing Adam) is the exact posterior
    mean, cov = ppca_posterior(W, b, SIGMA, x)
    assert res.guide_moments == "closed form"
    np.testing.assert_allclose(res.guide_mean, mean.numpy(), atol=1e-4)
    sd = np.broadcast_to(cov.diagonal().sqrt().numpy(), (2, 2))
    np.testing.assert_allclose(res.guide_sd, sd, rtol=1e-4)
    assert np.all(np.abs(res.mean_difference) < 4 * res.nuts_mean_mcse / res.nuts_sd)
    sd_tol = 4 / np.sqrt(2 * res.ess_bulk_min[:, None])  # relative s.e. of a Gaussian sd estimate
    assert np.all(np.abs(res.sd_ratio - 1) < sd_tol)


def test_datatree_holds_the_draws_indexed_by_example_and_their_log_joint(exact):
    vae, x, W, b, res = exact
    dt = res.posterior
    post = dt["posterior"]
    assert dict(post.sizes) == {"chain": 2, "draw": 150, "obs": 2, "z_dim": 2}
    assert post["obs"].values.tolist() == [7, 3] and res.index.tolist() == [7, 3]
    # lp = log p(x_i, z_i) = log N(z; 0, I) + log N(x; W z + b, σ² I), at one draw
    z = torch.as_tensor(post["z"].values[1, 5], dtype=torch.float64)
    lp = (torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
          + torch.distributions.Normal(z @ W.T.double() + b.double(), SIGMA).log_prob(x.double()).sum(-1))
    np.testing.assert_allclose(dt["sample_stats"]["lp"].values[1, 5], lp.numpy(), rtol=1e-5)
    assert dt["sample_stats"]["diverging"].shape == (2, 150)
    assert float(az.rhat(dt, var_names=["z"])["z"].max()) == pytest.approx(res.rhat_max.max())


def test_summary_json_table_and_figure(exact, tmp_path):
    vae, x, W, b, res = exact
    rows = res.summary()
    assert [r["index"] for r in rows] == [7, 3]
    assert rows[1]["amortization_gap"] == pytest.approx(float(res.amortization_gap[1]))
    assert rows[0]["sd_ratio_min"] <= rows[0]["sd_ratio_max"]
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["examples"] == rows and d["settings"]["num_chains"] == 2
    assert d["units"]["log_px, elbo, *_gap"] == "nats per example"
    assert len(d["per_dimension"]["sd_ratio"]) == 2 and "Cremer" in d["notes"]
    text = res.table()
    assert "nats" in text.lower() and "approx. gap" in text and len(text.splitlines()) == 4
    path = mcmc.figure(res, tmp_path / "fig" / "mcmc.png", max_dims=2)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_a_too_narrow_guide_shows_its_amortization_gap_and_sd_ratio():
    """Guide = exact posterior with its Cholesky factor x 0.3: KL(q || p(z|x)) = L/2 (s² - 1 - 2 log s)
    in closed form, all of it amortization gap (q* is the exact posterior, in the family)."""
    vae, x, W, b = _ppca(0.3, 2)
    res = mcmc.refine(vae, x, num_chains=4, num_samples=150, warmup_steps=100, num_particles=2000,
                      local_steps=200, chain_method="vectorized", seed=2)
    kl = 2 * 0.5 * (0.3 ** 2 - 1 - 2 * math.log(0.3))
    assert np.all(np.abs(res.inference_gap - kl) < 4 * res.inference_gap_se + 1e-3)
    assert np.all(np.abs(res.amortization_gap - kl) < 4 * res.amortization_gap_se + 1e-3)
    assert np.all(res.amortization_gap > 1.0)
    assert np.all(np.abs(res.approximation_gap) < 4 * res.approximation_gap_se + 1e-3)
    exact_log_px = ppca_log_marginal(vae, x).numpy()
    assert np.all(np.abs(res.log_px - exact_log_px) < 4 * res.log_px_se + 1e-3)  # q* as proposal
    sd_tol = 4 * 0.3 / np.sqrt(2 * res.ess_bulk_min[:, None])
    assert np.all(np.abs(res.sd_ratio - 0.3) < sd_tol)
    assert np.all(np.abs(res.mean_difference) < 4 * res.nuts_mean_mcse / res.nuts_sd)  # the mean is right
    assert np.all(res.rhat_max < 1.05) and res.settings["chain_method"] == "vectorized"
    assert res.nuts_draws.shape == (4, 150, 2, 2)


def test_flow_guide_mixture_prior_single_chain_and_no_side_effects(small_data):
    """Any guide head (here a flow) gets per-example copies for q*; a mixture prior's support is
    sampled unconstrained; one chain gives R-hat NaN (None in the summary); the VAE, its train
    mode, the param store and the caller's RNG are untouched."""
    vae = pyrovae.build(small_spec(**{"model.guide": "flow", "model.prior": "mixture"}), data=small_data)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    rng = torch.get_rng_state()
    vae.train()
    res = mcmc.refine(vae, small_data.test[:2], num_chains=1, num_samples=30, warmup_steps=30,
                      num_particles=200, local_steps=30, local_particles=16)
    assert torch.equal(torch.get_rng_state(), rng) and vae.training
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert all(p.requires_grad for p in vae.parameters()) and len(pyro.get_param_store()) == 0
    assert res.guide_moments.startswith("Monte Carlo") and res.local_draws.shape == (200, 2, 3)
    assert np.all(np.isnan(res.rhat_max)) and res.summary()[0]["rhat_max"] is None
    assert np.all(res.elbo_local > res.elbo - 4 * res.amortization_gap_se)  # q* no worse than the start
    assert np.all(np.isfinite(res.log_px)) and np.all(res.log_px > res.elbo_local - 4 * res.log_px_se)


@pytest.mark.parametrize("kwargs, error, words", [
    ({"num_chains": 0}, SpecError, "num_chains"),
    ({"num_samples": 2.5}, SpecError, "num_samples"),
    ({"num_particles": 1}, SpecError, "num_particles"),
    ({"local_lr": -1.0}, SpecError, "local_lr"),
    ({"chain_method": "parallel"}, SpecError, "sequential"),
    ({"obs_index": [1, 2]}, DataError, "obs_index"),
    ({"y": torch.zeros(3)}, DataError, "unconditional"),
])
def test_bad_arguments_raise_clear_errors(kwargs, error, words):
    vae, x, _, _ = _ppca(1.0, 3)
    with pytest.raises(error, match=words):
        mcmc.refine(vae, x, **kwargs)


@pytest.mark.parametrize("shape, words", [((3, 4), r"\(n, 5\)"), ((5,), r"x\[None\]"), ((0, 5), "n >= 1")])
def test_x_of_the_wrong_shape_is_refused(shape, words):
    vae, _, _, _ = _ppca(1.0, 1)
    with pytest.raises(DataError, match=words):
        mcmc.refine(vae, torch.zeros(shape))
    with pytest.raises(DataError, match="NaN"):
        mcmc.refine(vae, torch.full((2, 5), float("nan")))


def test_the_compiled_potential_gives_the_same_posterior():
    vae, x, W, b = _ppca(1.0, 1)
    res = mcmc.refine(vae, x, num_chains=1, num_samples=300, warmup_steps=100, num_particles=100,
                      local_steps=0, jit=True, seed=2)
    mean, cov = ppca_posterior(W, b, SIGMA, x)
    assert res.nuts_draws.shape == (1, 300, 1, 2)
    assert np.all(np.abs(res.nuts_mean - mean.numpy()) < 5 * res.nuts_mean_mcse)
