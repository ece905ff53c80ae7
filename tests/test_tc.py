"""β-TCVAE and its minibatch estimators of the aggregate posterior q(z) = (1/N) Σ_n q(z|x_n).

Estimators are checked against direct double sums (full batch: exact), against the exact
expectation over random minibatches (finite data set), and against closed forms for
Gaussian aggregates (infinite data set). Tolerances for the closed forms are 4 standard
errors (over independent replicate batches) plus the first-order (delta-method) bias of
a log of a ratio estimate: with χ² = E_z[Var_x q(z|x) / q(z)²] (closed form for Gaussian
mixtures, :func:`chi2`), log q̂(z) is biased by about -χ²/(2(M-1)) for MSS and +χ²/(2M)
for MWS; a term's allowance is |the difference of the biases of its two log-densities|
(observed biases were 30-100% of this first-order value).
"""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

import pyrovae
from pyrovae.objectives.tc import (
    BetaTCVAE,
    decompose_kl,
    log_importance_weights,
    log_qz_estimates,
)

from .conftest import objective_for, small_spec

F64 = torch.float64
HUGE_N = 10**12  # an "infinite" data set: the batch is a sample from the population




# ---- helpers ------------------------------------------------------------------------------
def chi2(cov_aggregate: np.ndarray, cov_component: np.ndarray) -> float:
    """E_z[E_x q(z|x)² / q(z)²] - 1 for q(z|x) = N(m(x), S), m ~ N(0, Σ - S), z ~ q(z) = N(0, Σ).

    q(z|x)² = N(z; m, S/2) / ((4π)^{D/2} |S|^{1/2}); averaged over m it is N(z; 0, P) / (...)
    with P = Σ - S/2, and ∫ N(z; 0, P)² / N(z; 0, Σ) ... reduces to
    (|Σ|/|P|)^{1/2} |P⁻¹ - Σ⁻¹|^{-1/2} 2^{-D/2} |S|^{-1/2}. (1-D check: = Σ/S.)
    """
    d = cov_aggregate.shape[0]
    p = cov_aggregate - cov_component / 2
    det = np.linalg.det
    ratio = (math.sqrt(det(cov_aggregate) / det(p))
             / math.sqrt(det(np.linalg.inv(p) - np.linalg.inv(cov_aggregate)))
             * 2 ** (-d / 2) / math.sqrt(det(cov_component)))
    return ratio - 1


def log_bias(chi: float, m: int, sampling: str) -> float:
    """First-order bias of log q̂(z) for a batch of M."""
    return -chi / (2 * (m - 1)) if sampling == "mss" else chi / (2 * m)


def replicate_terms(mu, scale, z, prior, sampling):
    """Batch means of mi/tc/dwkl over R independent batches (leading dim) and their SE."""
    q = dist.Normal(mu, scale).to_event(1)
    terms = decompose_kl(z, q, prior, HUGE_N, sampling)
    out = {}
    for k, v in terms.items():
        means = v.mean(-1)  # (R,)
        out[k] = (means.mean().item(), means.std().item() / math.sqrt(means.numel()))
    return out


def normal_logpdf(x, loc, scale):
    return -0.5 * ((x - loc) / scale) ** 2 - np.log(scale) - 0.5 * np.log(2 * np.pi)


def logmeanexp(a, axis):
    mx = a.max(axis=axis, keepdims=True)
    return (mx + np.log(np.exp(a - mx).mean(axis=axis, keepdims=True))).squeeze(axis)


# ---- the weights ------------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["mss", "mws"])
@pytest.mark.parametrize("m,n", [(1, 1), (1, 50), (8, 8), (8, 50), (64, 10**6)])
def test_importance_weights_are_mixture_weights(sampling, m, n):
    w = log_importance_weights(m, n, sampling, dtype=F64)
    # each row is a mixture over the batch: the weights sum to 1 (not 1/N, not N/M)
    assert torch.allclose(torch.logsumexp(w, dim=1), torch.zeros(m, dtype=F64), atol=1e-12)
    if m > 1 and sampling == "mss":
        assert w[0, 0].item() == pytest.approx(-math.log(n))
        assert w[0, 1].item() == pytest.approx(math.log((n - 1) / (n * (m - 1))))
    if m > 1 and sampling == "mws":
        assert torch.allclose(w, torch.full_like(w, -math.log(m)))


def test_weights_reject_bad_arguments():
    with pytest.raises(ValueError, match="at least the batch size"):
        log_importance_weights(10, 5, "mss")
    with pytest.raises(ValueError, match="sampling"):
        log_importance_weights(10, 50, "iwae")


# ---- finite data sets: exact answers ------------------------------------------------------------
def finite_data_set(n=30, d=3, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 1.5, (n, d))
    scale = rng.uniform(0.3, 1.2, (n, d))
    z = mu + scale * rng.normal(size=(n, d))  # z_n ~ q(z|x_n)
    return mu, scale, z


def direct_log_qz(mu, scale, z):
    """Double sums over the whole data set: log q(z_i) and Σ_d log q(z_id), (N,) each."""
    pair = normal_logpdf(z[:, None, :], mu[None, :, :], scale[None, :, :])  # [i, n, d]
    return logmeanexp(pair.sum(-1), axis=1), logmeanexp(pair, axis=1).sum(-1)


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_full_batch_estimates_equal_direct_double_sums(sampling):
    mu, scale, z = finite_data_set()
    q = dist.Normal(torch.tensor(mu), torch.tensor(scale)).to_event(1)
    log_qz, log_prod = log_qz_estimates(torch.tensor(z), q, num_data=len(z), sampling=sampling)
    want_qz, want_prod = direct_log_qz(mu, scale, z)
    np.testing.assert_allclose(log_qz.numpy(), want_qz, rtol=1e-10)
    np.testing.assert_allclose(log_prod.numpy(), want_prod, rtol=1e-10)
    p = dist.Normal(torch.zeros(3, dtype=F64), 1.0).to_event(1)
    terms = decompose_kl(torch.tensor(z), q, p, len(z), sampling)
    kl = q.log_prob(torch.tensor(z)) - p.log_prob(torch.tensor(z))
    assert torch.allclose(terms["mi"] + terms["tc"] + terms["dwkl"], kl, atol=1e-10)
    np.testing.assert_allclose(terms["tc"].numpy(), want_qz - want_prod, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_random_minibatch_estimates_have_the_predicted_expectation(sampling):
    """On a data set of N = 40, minibatches of M = 8: MSS is unbiased for q(z_i); MWS has
    expectation (1/M) q(z_i|x_i) + (M-1)/M · mean_{n≠i} q(z_i|x_n). Both checked on
    5000 random batches (every row of every batch) within 4 standard errors."""
    n, m, k = 40, 8, 5000
    mu, scale, z = finite_data_set(n, 2, seed=1)
    pair = normal_logpdf(z[:, None, :], mu[None], scale[None]).sum(-1)  # log q(z_i|x_n)
    qz = np.exp(pair).mean(1)
    if sampling == "mss":
        target = qz
    else:
        self_term = np.exp(np.diag(pair))
        others = (np.exp(pair).sum(1) - self_term) / (n - 1)
        target = self_term / m + (m - 1) / m * others
    g = torch.Generator().manual_seed(0)
    idx = torch.rand(k, n, generator=g).argsort(1)[:, :m]  # k batches without replacement
    q = dist.Normal(torch.tensor(mu)[idx], torch.tensor(scale)[idx]).to_event(1)
    log_qz, _ = log_qz_estimates(torch.tensor(z)[idx], q, num_data=n, sampling=sampling)
    ratio = (log_qz.exp() / torch.tensor(target)[idx]).mean(1)  # per-batch mean of q̂ / E[q̂]
    se = ratio.std().item() / math.sqrt(k)
    assert abs(ratio.mean().item() - 1) < 4 * se, (ratio.mean().item(), se)
    if sampling == "mws":  # the test can tell: MWS is biased for q(z) on this data set
        bias = (log_qz.exp() / torch.tensor(qz)[idx]).mean().item() - 1
        assert bias > 20 * se


# ---- Gaussian aggregates: closed forms ----------------------------------------------------------
A = np.array([[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.5, 0.5, 0.7]])
SIGMA = 0.7


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_tc_of_a_correlated_gaussian_aggregate(sampling):
    """q(z|x_j) = N(A u_j, σ² I), u_j ~ N(0, I): q(z) = N(0, C), C = A Aᵀ + σ² I, and
    TC = -½ log det R (R the correlation matrix of C) = 0.302 nats."""
    r, m, d = 100, 128, 3
    cov = A @ A.T + SIGMA**2 * np.eye(d)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    tc_true = -0.5 * math.log(np.linalg.det(corr))
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(r, m, d, generator=g, dtype=F64) @ torch.tensor(A).T
    z = mu + SIGMA * torch.randn(r, m, d, generator=g, dtype=F64)
    prior = dist.Normal(torch.zeros(d, dtype=F64), 1.0).to_event(1)
    tc, se = replicate_terms(mu, SIGMA, z, prior, sampling)["tc"]
    s = SIGMA**2 * np.eye(d)
    chi_joint = chi2(cov, s)
    chi_dims = sum(chi2(cov[i:i + 1, i:i + 1], s[:1, :1]) for i in range(d))
    allowance = abs(log_bias(chi_joint, m, sampling) - log_bias(chi_dims, m, sampling))  # 0.032
    assert tc_true == pytest.approx(0.302, abs=1e-3)
    assert abs(tc - tc_true) < 4 * se + allowance, (tc, tc_true, se, allowance)


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_mi_tc_dwkl_with_independent_dimensions(sampling):
    """q(z|x_j) = N(μ_j, s² I), μ_j ~ N(0, τ² I) (τ = s = 1, D = 3): q(z) = N(0, (τ²+s²) I).
    MI = D · ½ log(1 + τ²/s²), TC = 0, DWKL = D · KL(N(0, τ²+s²) || N(0.5, 1.2²))."""
    r, m, d, tau, s = 100, 128, 3, 1.0, 1.0
    g = torch.Generator().manual_seed(1)
    mu = tau * torch.randn(r, m, d, generator=g, dtype=F64)
    z = mu + s * torch.randn(r, m, d, generator=g, dtype=F64)
    loc, sd = 0.5, 1.2
    prior = dist.Normal(torch.full((d,), loc, dtype=F64), sd).to_event(1)
    est = replicate_terms(mu, s, z, prior, sampling)
    v = tau**2 + s**2
    truth = {"mi": d * 0.5 * math.log(1 + tau**2 / s**2), "tc": 0.0,
             "dwkl": d * 0.5 * (math.log(sd**2 / v) + (v + loc**2) / sd**2 - 1)}
    chi_dim = tau**2 / s**2  # 1-D: ratio Σ/S = 1 + τ²/s²
    chi_joint = (1 + chi_dim) ** d - 1
    bias = {"mi": abs(log_bias(chi_joint, m, sampling)),
            "tc": abs(log_bias(chi_joint, m, sampling) - d * log_bias(chi_dim, m, sampling)),
            "dwkl": d * abs(log_bias(chi_dim, m, sampling))}
    for k in truth:
        mean, se = est[k]
        assert abs(mean - truth[k]) < 4 * se + bias[k], (k, mean, truth[k], se, bias[k])
    tc, se = est["tc"]
    # the expectation is not negative beyond MC error, except by MSS's O(1/M) Jensen bias
    # (log of an unbiased estimate); MWS's first-order bias is positive
    floor = -4 * se - (bias["tc"] if sampling == "mss" else 0.0)
    assert tc > floor, (tc, floor)


def test_tc_does_not_go_negative_with_a_full_batch():
    """With M = N the densities are exact, so E[TC estimate] is the TC of the finite
    mixture, a KL divergence: never negative. Averaged over 200 draws of z per example."""
    mu, scale, _ = finite_data_set(30, 3, seed=2)
    g = torch.Generator().manual_seed(3)
    mu_t, scale_t = torch.tensor(mu), torch.tensor(scale)
    z = mu_t + scale_t * torch.randn(200, *mu.shape, generator=g, dtype=F64)
    q = dist.Normal(mu_t.expand(200, -1, -1), scale_t.expand(200, -1, -1)).to_event(1)
    p = dist.Normal(torch.zeros(3, dtype=F64), 1.0).to_event(1)
    tc = decompose_kl(z, q, p, 30, "mss")["tc"].mean(-1)
    assert tc.mean().item() > -4 * tc.std().item() / math.sqrt(200)


def test_full_covariance_guide_matches_the_diagonal_one():
    g = torch.Generator().manual_seed(0)
    loc = torch.randn(20, 3, generator=g, dtype=F64)
    scale = torch.rand(20, 3, generator=g, dtype=F64) + 0.3
    z = loc + scale * torch.randn(20, 3, generator=g, dtype=F64)
    diag = dist.Normal(loc, scale).to_event(1)
    full = dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))
    for a, b in zip(log_qz_estimates(z, diag, 100), log_qz_estimates(z, full, 100), strict=True):
        assert torch.allclose(a, b, atol=1e-10)


def test_non_factorised_distributions_are_refused():
    z = torch.randn(5, 2)
    q = dist.Normal(z, 1.0).to_event(1)
    mixture = dist.MixtureSameFamily(dist.Categorical(logits=torch.zeros(5, 3)),
                                     dist.Normal(torch.zeros(5, 3, 2), 1.0).to_event(1))
    with pytest.raises(ValueError, match="prior p\\(z\\) must factorise"):
        decompose_kl(z, q, mixture)
    with pytest.raises(ValueError, match="q\\(z\\|x\\) must factorise"):
        log_qz_estimates(z, mixture)
    with pytest.raises(ValueError, match="batch shape"):
        log_qz_estimates(z[:4], q)


@pytest.mark.parametrize("key,value", [("model.prior", "mixture"), ("model.prior", "vamp"),
                                       ("model.guide", "flow")])
def test_objective_refuses_non_factorised_models(small_data, key, value):
    with pytest.raises(pyrovae.SpecError) as e:
        pyrovae.build(small_spec(**{"objective.name": "beta_tcvae", key: value}), data=small_data)
    assert e.value.key == "objective" and "factorise" in str(e.value)


# ---- the objective ---------------------------------------------------------------------------
def tcvae(vae, **options):
    obj = objective_for(vae, "beta_tcvae", **options)
    assert isinstance(obj, BetaTCVAE)
    return obj


def elbo_loss(vae, x, n):
    return pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, None, num_data=n)


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_unit_weights_give_the_elbo(small_vae, small_data, sampling):
    """α = β = γ = 1: the decomposition telescopes to log q(z|x) - log p(z), so the loss
    equals Trace_ELBO's on the same draw of z (and so in expectation)."""
    obj = tcvae(small_vae, alpha=1.0, beta=1.0, gamma=1.0, sampling=sampling)
    assert obj.is_elbo
    x, n = small_data.train[:64], 200
    for seed in range(3):
        torch.manual_seed(seed)
        a = obj.loss(x, num_data=n)
        torch.manual_seed(seed)
        b = elbo_loss(small_vae, x, n)
        assert a.item() == pytest.approx(b.item(), rel=1e-5)
    # in expectation, with independent draws: difference of means within 4 SE
    with torch.no_grad():
        a = torch.stack([obj.loss(x, num_data=n) for _ in range(50)])
        b = torch.stack([elbo_loss(small_vae, x, n) for _ in range(50)])
    se = math.sqrt(a.var().item() / 50 + b.var().item() / 50)
    assert abs(a.mean().item() - b.mean().item()) < 4 * se


def test_full_rank_guide_is_accepted(small_data):
    """A full-covariance normal guide: pairwise joint densities from the MultivariateNormal,
    per-dimension ones from its marginals; with unit weights the loss is still the ELBO."""
    vae = pyrovae.build(small_spec(**{"model.guide": "full_rank"}), data=small_data)
    obj = tcvae(vae, alpha=1.0, beta=1.0, gamma=1.0)
    x = small_data.train[:32]
    torch.manual_seed(0)
    a = obj.loss(x, num_data=200)
    torch.manual_seed(0)
    assert a.item() == pytest.approx(elbo_loss(vae, x, 200).item(), rel=1e-5)


def test_penalty_weights_and_num_data_reach_the_factor(small_vae, small_data):
    """loss - (-ELBO) on the same z = N · mean((α-1) MI + (β-1) TC + (γ-1) DWKL), the
    terms computed here from the guide's draw with N = 200 (MSS weights depend on N)."""
    obj = tcvae(small_vae, alpha=0.5, beta=6.0, gamma=2.0)
    x, n = small_data.train[:64], 200
    torch.manual_seed(0)
    got = obj.loss(x, num_data=n)
    torch.manual_seed(0)
    elbo = elbo_loss(small_vae, x, n)
    torch.manual_seed(0)
    with small_vae.unregistered():
        tr = poutine.trace(small_vae.guide).get_trace(x, num_data=n)
    q, z = tr.nodes["z"]["fn"], tr.nodes["z"]["value"]
    t = decompose_kl(z, q, small_vae.prior(torch.Size([64])), n, "mss")
    want = n * (-0.5 * t["mi"] + 5.0 * t["tc"] + 1.0 * t["dwkl"]).mean()
    assert (got - elbo).item() == pytest.approx(want.item(), rel=1e-4, abs=1e-3)
    assert obj.epoch_metrics()["train_tc"] == pytest.approx(t["tc"].mean().item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("sampling", ["mss", "mws"])
def test_trains_two_epochs(small_data, sampling):
    spec = small_spec(**{"objective.name": "beta_tcvae", "objective.sampling": sampling})
    vae = pyrovae.build(spec, data=small_data)
    hist = pyrovae.fit(vae, small_data, progress=False)
    assert len(hist) == 2
    for h in hist:
        for k in ("train_objective", "test_elbo", "train_mi", "train_tc", "train_dwkl",
                  "train_mi_se", "train_tc_se", "train_dwkl_se"):
            assert math.isfinite(h[k]), k
        assert "train_elbo" not in h  # β = 6: not the ELBO
        assert h["train_dwkl"] > -0.5  # DWKL is a KL; its estimate is only noisy, not wrong


@pytest.mark.parametrize("options", [{"sampling": "iwae"}, {"alpha": -1.0}, {"beta": "big"},
                                     {"gamma": True}])
def test_bad_options_are_spec_errors(small_data, options):
    spec = small_spec(**{"objective.name": "beta_tcvae"})
    spec["objective"].update(options)
    with pytest.raises(pyrovae.SpecError) as e:
        pyrovae.build(spec, data=small_data)
    assert e.value.key == "objective"
