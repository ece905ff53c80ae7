"""MMD kernels and estimator, and the MMD objectives (info_vae, wae), checked against direct
double sums, the closed form of MMD² between Gaussians under the rbf kernel, and log-densities
read off Pyro traces of the plain ``vae.model``/``vae.guide``."""

import math
import statistics

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from torch import nn

import pyrovae
from pyrovae.objectives import registry
from pyrovae.objectives.mmd import InfoVAE, imq, mean_sites, mmd2, rbf

from .conftest import small_spec

N = 1000  # data-set size the minibatch stands for: the plate scales by N / B, penalties by N


# ---- the estimator ---------------------------------------------------------------------------
def _kernel_direct(a, b, kernel, h, scales):
    sq = sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))
    if kernel == "rbf":
        return sum(math.exp(-sq / (2 * h * h * s)) for s in scales)
    c = 2 * len(a) * h * h
    return sum(s * c / (s * c + sq) for s in scales)


def _mmd2_direct(x, y, kernel, bandwidth, scales):
    """The U-statistic with explicit loops over pairs, on Python floats."""
    x, y = x.tolist(), y.tolist()
    if bandwidth == "median":
        pooled = x + y
        sq = [sum((a - b) ** 2 for a, b in zip(pooled[i], pooled[j], strict=True))
              for i in range(len(pooled)) for j in range(i + 1, len(pooled))]
        assert len(sq) % 2 == 1  # an odd number of pairs: the median is one of them
        m2 = statistics.median(sq)
        h = math.sqrt(m2 / 2 if kernel == "rbf" else m2 / (2 * len(x[0])))
    else:
        h = bandwidth
    n, m = len(x), len(y)
    sxx = sum(_kernel_direct(x[i], x[j], kernel, h, scales) for i in range(n) for j in range(n) if i != j)
    syy = sum(_kernel_direct(y[i], y[j], kernel, h, scales) for i in range(m) for j in range(m) if i != j)
    sxy = sum(_kernel_direct(a, b, kernel, h, scales) for a in x for b in y)
    return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
@pytest.mark.parametrize("bandwidth", [0.7, "median"])
@pytest.mark.parametrize("scales", [(1.0,), (0.5, 1.0, 4.0)])
def test_mmd2_equals_the_double_sum(kernel, bandwidth, scales):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = 0.5 + 1.5 * torch.randn(5, 3, generator=g, dtype=torch.float64)  # 11 points, 55 pairs
    got = mmd2(x, y, kernel, bandwidth=bandwidth, scales=scales).item()
    assert got == pytest.approx(_mmd2_direct(x, y, kernel, bandwidth, scales), rel=1e-12, abs=1e-14)


def test_kernels_at_known_points():
    a = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # ‖a - b‖² = 25
    assert rbf(a, b, bandwidth=5.0).item() == pytest.approx(math.exp(-0.5))
    assert imq(a, b, bandwidth=2.5).item() == pytest.approx(0.5)  # C = 2·2·2.5² = 25
    assert rbf(a, a, scales=(1.0, 2.0, 3.0)).item() == 3.0  # k(a, a) = number of scales


def test_mmd2_of_a_sample_with_itself_is_within_2_over_n_of_zero():
    """With y = x the U-statistic is exactly (2/n)(mean off-diagonal k - 1): in [-2/n, 0]."""
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    n = x.shape[0]
    for kernel in ("rbf", "imq"):
        got = mmd2(x, x, kernel, bandwidth=1.0).item()
        k = rbf(x, x) if kernel == "rbf" else imq(x, x)
        off = (k.sum() - k.diagonal().sum()).item() / (n * (n - 1))
        assert got == pytest.approx(2 / n * (off - 1), rel=1e-10)
        assert -2 / n <= got <= 0


def _repeats(shift, kernel, reps=100, n=100, d=2, seed=0):
    """MMD² estimates between N(0, I) and N(shift·e_1, I) samples, ``reps`` independent repeats."""
    g = torch.Generator().manual_seed(seed)
    delta = torch.zeros(d, dtype=torch.float64)
    delta[0] = shift
    out = [mmd2(torch.randn(n, d, generator=g, dtype=torch.float64),
                delta + torch.randn(n, d, generator=g, dtype=torch.float64), kernel, bandwidth=1.0).item()
           for _ in range(reps)]
    t = torch.tensor(out)
    return t.mean().item(), t.std().item() / math.sqrt(reps)


@pytest.mark.parametrize("kernel", ["rbf", "imq"])
def test_mmd2_is_unbiased_between_identical_distributions(kernel):
    """E[MMD²_u] = 0 exactly when P = Q (fixed bandwidth): the mean of 100 repeats is within
    4 standard errors of 0, and that standard error is small (< 2e-3)."""
    mean, se = _repeats(0.0, kernel)
    assert abs(mean) < 4 * se and se < 2e-3


def test_mmd2_matches_the_gaussian_closed_form_and_grows_with_the_shift():
    """rbf, bandwidth h, P = N(0, σ²I_d), Q = N(Δ, σ²I_d):
    MMD² = 2 (h²/(h²+2σ²))^{d/2} (1 - exp(-‖Δ‖²/(2(h²+2σ²))))  (Gaussian integrals)."""
    h, sigma, d = 1.0, 1.0, 2
    means = []
    for i, shift in enumerate((0.5, 1.0, 2.0)):
        exact = 2 * (h * h / (h * h + 2 * sigma**2)) ** (d / 2) * (
            1 - math.exp(-shift**2 / (2 * (h * h + 2 * sigma**2))))
        mean, se = _repeats(shift, "rbf", seed=10 + i)  # independent draws per shift
        assert abs(mean - exact) < 4 * se, (shift, mean, se, exact)
        assert mean > 5 * se
        means.append(mean)
    assert means[0] < means[1] < means[2]


def test_imq_mmd2_is_positive_and_grows_with_the_shift():
    stats = [_repeats(shift, "imq", seed=2) for shift in (0.5, 1.0, 2.0)]
    assert all(mean > 5 * se for mean, se in stats)
    assert stats[0][0] < stats[1][0] < stats[2][0]


def test_median_bandwidth_makes_mmd2_scale_invariant():
    """The median heuristic rescales with the data: MMD²(cx, cy) = MMD²(x, y)."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y = 1.0 + torch.randn(30, 2, generator=g, dtype=torch.float64)
    for kernel in ("rbf", "imq"):
        assert mmd2(7 * x, 7 * y, kernel).item() == pytest.approx(mmd2(x, y, kernel).item(), rel=1e-10)


def test_mmd2_rejects_bad_arguments():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd2(x, x, "rbf", bandwidth="auto")
    with pytest.raises(ValueError, match="kernel"):
        mmd2(x, x, "gauss")
    with pytest.raises(ValueError, match="equal d"):
        mmd2(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd2(x[:1], x)


# ---- the objectives -------------------------------------------------------------------------------
def _build(small_data, objective, **model):
    spec = small_spec()
    spec["objective"] = objective
    spec["model"].update(model)
    return pyrovae.build(spec, data=small_data)


def _objective(vae):
    from pyrovae.assemble import build_objective
    return build_objective(vae)


def _plain_parts(vae, x, seed):
    """z, log q(z|x), log p(z), log p(x|z) per example from traces of the plain guide and model,
    then B draws from p(z): the random numbers in the order the objective uses them."""
    pyro.set_rng_seed(seed)
    gtr = poutine.trace(vae.guide).get_trace(x, num_data=N)
    mtr = poutine.trace(poutine.replay(vae.model, trace=gtr)).get_trace(x, num_data=N)
    z = gtr.nodes["z"]["value"]
    parts = (z, gtr.nodes["z"]["fn"].log_prob(z), mtr.nodes["z"]["fn"].log_prob(z),
             mtr.nodes["x"]["fn"].log_prob(x))
    return (*parts, vae.prior(torch.Size([x.shape[0]])).rsample())


@pytest.mark.parametrize("alpha, lam", [(0.0, 1.0), (-1.0, 2.0), (0.5, 2.0), (1.0, 3.0)],
                         ids=["elbo", "beta_vae_2", "mixed", "mmd_vae"])
def test_info_vae_loss_by_hand(small_data, alpha, lam):
    """-(N/B) Σ [log p(x|z) + (1-α)(log p(z) - log q(z|x))] + (α+λ-1) N MMD²(z, prior draws)."""
    vae = _build(small_data, {"name": "info_vae", "alpha": alpha, "lam": lam}).double()
    obj = _objective(vae)
    x = small_data.train[:16].double()
    pyro.set_rng_seed(7)
    loss = obj.loss(x, num_data=N).item()
    z, log_q, log_p, log_lik, draws = _plain_parts(vae, x, 7)
    weight = alpha + lam - 1
    expected = -(N / x.shape[0]) * (log_lik + (1 - alpha) * (log_p - log_q)).sum().item()
    if weight:
        expected += weight * N * mmd2(z, draws, "rbf").item()
    assert loss == pytest.approx(expected, rel=1e-10)
    assert obj.is_elbo == (alpha == 0.0 and lam == 1.0)
    if obj.is_elbo:  # α = 0, λ = 1 is the ELBO: same number as Trace_ELBO on the plain programs
        pyro.set_rng_seed(7)
        elbo_loss = pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, num_data=N)
        assert loss == elbo_loss.item()


@pytest.mark.parametrize("alpha, lam", [(0.0, 1.0), (1.0, 3.0), (0.5, 2.0)])
def test_info_vae_mmd_factor_is_mmd2_times_n(small_data, alpha, lam):
    vae = _build(small_data, {"name": "info_vae", "alpha": alpha, "lam": lam, "kernel": "imq"}).double()
    obj = _objective(vae)
    x = small_data.train[:16].double()
    pyro.set_rng_seed(3)
    gtr = poutine.trace(obj.guide).get_trace(x, num_data=N)
    state = torch.get_rng_state()
    mtr = poutine.trace(poutine.replay(obj.model, trace=gtr)).get_trace(x, num_data=N)
    z_masked = mtr.nodes["z"]["mask"] is False and gtr.nodes["z"]["mask"] is False
    assert z_masked == (alpha == 1.0)  # MMD-VAE: no KL term
    if alpha + lam - 1 == 0:
        assert "mmd" not in mtr.nodes
        return
    torch.set_rng_state(state)
    draws = vae.prior(torch.Size([16])).rsample()
    site = mtr.nodes["mmd"]
    factor = site["fn"].log_prob(site["value"]).item()
    expected = -(alpha + lam - 1) * N * mmd2(gtr.nodes["z"]["value"], draws, "imq").item()
    assert factor == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("encoder", ["deterministic", "stochastic"])
@pytest.mark.parametrize("kernel, bandwidth", [("imq", "median"), ("rbf", 1.5)])
def test_wae_loss_by_hand(small_data, encoder, kernel, bandwidth):
    """-(N/B) Σ log p(x|z) + λ N MMD²(z, prior draws); z = mean of q(z|x) when deterministic;
    no KL (z masked in model and guide)."""
    lam = 3.0
    vae = _build(small_data, {"name": "wae", "lam": lam, "encoder": encoder, "kernel": kernel,
                              "bandwidth": bandwidth}).double()
    obj = _objective(vae)
    x = small_data.train[:16].double()
    gtr = poutine.trace(obj.guide).get_trace(x, num_data=N)
    mtr = poutine.trace(poutine.replay(obj.model, trace=gtr)).get_trace(x, num_data=N)
    assert gtr.nodes["z"]["mask"] is False and mtr.nodes["z"]["mask"] is False
    q = vae.encode(x)
    if encoder == "deterministic":
        assert torch.equal(gtr.nodes["z"]["value"], q.mean)

    pyro.set_rng_seed(5)
    loss = obj.loss(x, num_data=N).item()
    pyro.set_rng_seed(5)
    z = q.mean if encoder == "deterministic" else q.rsample()
    draws = vae.prior(torch.Size([16])).rsample()
    log_lik = vae.decode(z).log_prob(x)
    expected = -(N / 16) * log_lik.sum().item() + lam * N * mmd2(z, draws, kernel, bandwidth=bandwidth).item()
    assert loss == pytest.approx(expected, rel=1e-10)


def test_wae_deterministic_encoder_gets_gradient_through_the_mean(small_data):
    vae = _build(small_data, {"name": "wae"})
    obj = _objective(vae)
    obj.loss(small_data.train[:16], num_data=N).backward()
    head = vae.guide_head.linear
    d = vae.latent_dim
    assert head.weight.grad[:d].abs().sum() > 0  # rows that give the mean
    assert head.weight.grad[d:].abs().sum() == 0  # rows that give the scale: unused


class _NoMeanHead(nn.Module):
    """A guide head whose q(z|x) (exp of a normal, as a generic transform) has no ``mean``."""

    def __init__(self, in_features, latent_dim):
        super().__init__()
        self.in_features = in_features
        self.linear = nn.Linear(in_features, latent_dim)

    def forward(self, features):
        base = dist.Normal(self.linear(features), 1.0)
        return dist.TransformedDistribution(base, [dist.transforms.ExpTransform()]).to_event(1)


def test_deterministic_encoder_refuses_a_guide_without_a_mean(small_data):
    vae = _build(small_data, {"name": "elbo"})
    vae.guide_head = _NoMeanHead(vae.guide_head.in_features, vae.latent_dim)
    with pytest.raises(pyrovae.SpecError, match="stochastic") as e:
        registry.build("wae", {"encoder": "deterministic"}, "objective", vae)
    assert e.value.key == "objective" and "mean" in str(e.value)
    registry.build("wae", {"encoder": "stochastic"}, "objective", vae)  # fine without a mean

    def program():
        return pyro.sample("z", vae.guide_head(torch.zeros(1, vae.guide_head.in_features)))

    with pytest.raises(ValueError, match="no mean"):
        mean_sites({"z"})(program)()


@pytest.mark.parametrize("objective", [{"name": "info_vae"}, {"name": "info_vae", "alpha": 0.5},
                                       {"name": "wae"}, {"name": "wae", "encoder": "stochastic"}])
def test_plain_pyro_svi_runs_the_objective(small_data, objective):
    """SVI on objective.model/guide evaluates the same number as objective.loss and trains."""
    vae = _build(small_data, objective)
    obj = _objective(vae)
    x = small_data.train[:32]
    svi = pyro.infer.SVI(obj.model, obj.guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    pyro.set_rng_seed(0)
    svi_loss = svi.evaluate_loss(x, num_data=N)
    pyro.set_rng_seed(0)
    assert svi_loss == pytest.approx(obj.loss(x, num_data=N).item(), rel=1e-5)
    losses = [svi.step(x, num_data=N) for _ in range(3)]
    assert all(math.isfinite(v) for v in losses)


@pytest.mark.parametrize("objective", [{"name": "info_vae", "alpha": 0.5, "lam": 5.0},
                                       {"name": "wae", "kernel": "rbf", "scales": [0.5, 1.0, 2.0]}])
def test_fit_two_epochs(small_data, objective):
    vae = _build(small_data, objective)
    hist = pyrovae.fit(vae, small_data, progress=False)
    assert len(hist) == 2
    for h in hist:
        for key in ("train_objective", "train_mmd2", "train_mmd2_se", "test_elbo"):
            assert math.isfinite(h[key]), key
        assert "train_elbo" not in h
        assert h["train_mmd2_se"] > 0


def test_info_vae_as_the_elbo_reports_train_elbo(small_data):
    hist = pyrovae.fit(_build(small_data, {"name": "info_vae", "alpha": 0.0, "lam": 1.0}), small_data,
                       progress=False, epochs=1)
    assert hist[0]["train_elbo"] == hist[0]["train_objective"] and "train_mmd2" not in hist[0]


@pytest.mark.parametrize("objective, word", [
    ({"name": "info_vae", "alpha": 1.5}, "alpha"),
    ({"name": "info_vae", "alpha": 0.0, "lam": 0.5}, "alpha + lam - 1"),
    ({"name": "info_vae", "lam": 0.0}, "lam"),
    ({"name": "info_vae", "kernel": "gauss"}, "kernel"),
    ({"name": "info_vae", "bandwidth": "auto"}, "bandwidth"),
    ({"name": "info_vae", "bandwidth": -1.0}, "bandwidth"),
    ({"name": "wae", "scales": []}, "scales"),
    ({"name": "wae", "lam": -1.0}, "lam"),
    ({"name": "wae", "encoder": "random"}, "encoder"),
    ({"name": "wae", "lambda": 1.0}, "lambda"),
])
def test_bad_options_are_spec_errors_naming_objective(small_data, objective, word):
    with pytest.raises(pyrovae.SpecError) as e:
        _build(small_data, objective)
    assert e.value.key.startswith("objective") and word in str(e.value)


def test_info_vae_weights():
    vae = pyrovae.build(small_spec(), data_shape=(1, 8, 8))
    obj = InfoVAE(vae, alpha=0.25, lam=2.0)
    assert (obj.kl_weight, obj.mmd_weight) == (0.75, 1.25)
