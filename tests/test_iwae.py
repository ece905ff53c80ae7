"""The importance-weighted bound (objective ``iwae``) against independent answers: Pyro's
Trace_ELBO (K = 1), log weights and DReG gradients written by hand, closed forms for the
linear-Gaussian VAE (exact log p(x), the ELBO gap KL(q || posterior) and the delta-method
bias of L_K), and the ordering ELBO <= L_5 <= L_50 on a trained model."""

import math
import types

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

import pyrovae
from pyrovae.errors import SpecError
from pyrovae.evaluate import elbo_parts, mean_se
from pyrovae.objectives import registry
from pyrovae.objectives.iwae import IWAE

from .conftest import linear_gaussian_vae, ppca_log_marginal, small_spec

SIGMA = 0.5


def grads(loss, params, retain_graph=False):
    g = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=retain_graph)
    return [torch.zeros_like(p) if gi is None else gi for gi, p in zip(g, params, strict=True)]


# ---- the linear-Gaussian VAE with a guide of known quality ------------------------------
def inflated_posterior_guide(vae, c):
    """Decoder with orthogonal columns (so the posterior N(A(x - b), S) is diagonal) and the
    guide q(z|x) = N(A(x - b), c² S): the exact posterior mean, c times its standard deviation
    (for a flow guide, which starts at the identity, its base distribution)."""
    W = torch.zeros(5, 2)
    W[0, 0], W[1, 1] = 1.5, 0.7
    b = torch.tensor([0.3, -0.2, 0.1, 0.0, 0.5])
    Minv = torch.linalg.inv(torch.eye(2) + W.T @ W / SIGMA**2)
    head = getattr(vae.guide_head, "base", vae.guide_head)
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
        A = Minv @ W.T / SIGMA**2
        head.linear.weight.zero_()
        head.linear.weight[:2] = A
        head.linear.bias[:2] = -A @ b
        raw = c * Minv.diagonal().sqrt() - head.min_scale  # softplus(raw) = that
        head.linear.bias[2:] = raw + torch.log(-torch.expm1(-raw))
    return W, b


def weight_moment(m, c, dims=2):
    """E_q[u^m], u = w / p(x) = posterior / q, for q = posterior widened by c in each of
    ``dims`` independent coordinates: per coordinate ∫ N(0,1)^m N(0,c²)^(1-m) = c^(m-1)/sqrt(m - (m-1)/c²)."""
    return (c ** (m - 1) / math.sqrt(m - (m - 1) / c**2)) ** dims


def predicted_gap(k, c, dims=2):
    """E[L_K] - log p(x) to second order in 1/K: with ū the mean of K weights / p(x),
    E log ū ≈ -Var/2 + E[(ū-1)³]/3 - E[(ū-1)⁴]/4, Var = ρ/K, third moment μ₃/K², fourth ≈ 3ρ²/K²."""
    m2, m3 = weight_moment(2, c, dims), weight_moment(3, c, dims)
    rho = m2 - 1
    mu3 = m3 - 3 * m2 + 2
    return -rho / (2 * k) + mu3 / (3 * k**2) - 3 * rho**2 / (4 * k**2)


def linear_data(W, b, n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) @ W.T + b + SIGMA * torch.randn(n, 5, generator=g)


def test_exact_posterior_guide_gives_log_p_for_every_particle():
    vae = linear_gaussian_vae(sigma=SIGMA)
    W, b = inflated_posterior_guide(vae, c=1.0)
    x = linear_data(W, b, 20, seed=0)
    obj = IWAE(vae, num_particles=7)
    with torch.no_grad():
        log_w = obj.log_weights(x)
    assert log_w.shape == (7, 20)
    torch.testing.assert_close(log_w.double(), ppca_log_marginal(vae, x).expand(7, 20), rtol=0, atol=2e-4)


def test_ppca_bias_matches_kl_and_the_delta_method():
    """K = 1: E[L_1] - log p(x) = -KL(q || posterior) = -2(c²/2 - 1/2 - log c) exactly.
    K = 10: the delta-method bias (second order). Means over 4000 examples, with their SE."""
    c = 1.3
    vae = linear_gaussian_vae(sigma=SIGMA)
    W, b = inflated_posterior_guide(vae, c)
    x = linear_data(W, b, 4000, seed=1)
    exact = ppca_log_marginal(vae, x)
    obj = IWAE(vae)
    kl = 2 * (c**2 / 2 - 0.5 - math.log(c))
    for k, predicted in ((1, -kl), (10, predicted_gap(10, c))):
        pyro.set_rng_seed(k)
        gap, se = mean_se(obj.bound(x, num_particles=k).double() - exact)
        assert abs(gap - predicted) < 4 * se, (k, gap, se, predicted)
    assert predicted_gap(10, c) < -4 * se  # the K = 10 bias is resolved, not lost in noise


def test_large_k_bound_equals_the_exact_ppca_marginal():
    """K = 2000 on 4 examples, 10 independent runs each: the bound matches log p(x) within
    Monte Carlo error (SE from the runs; the delta-method SE of one run agrees with it)."""
    vae = linear_gaussian_vae(sigma=SIGMA)
    W, b = inflated_posterior_guide(vae, c=1.6)
    x = linear_data(W, b, 4, seed=2)
    exact = ppca_log_marginal(vae, x)
    obj = IWAE(vae)
    pyro.set_rng_seed(3)
    runs = torch.stack([obj.bound(x, num_particles=2000) for _ in range(10)]).double()  # (10, 4)
    gap = runs - exact
    se = gap.std(0) / math.sqrt(10)
    assert (gap.mean(0).abs() < 4 * se).all(), (gap.mean(0), se)
    pooled, pooled_se = gap.mean().item(), (se.pow(2).sum().sqrt() / 4).item()
    assert pooled < 3 * pooled_se  # not above log p(x)
    with torch.no_grad():
        log_w = obj.log_weights(x, num_particles=2000).double()
    u = (log_w - log_w.max(0).values).exp()
    delta_se = u.std(0) / u.mean(0) / math.sqrt(2000)
    ratio = delta_se / gap.std(0)
    assert ((ratio > 0.4) & (ratio < 2.5)).all(), ratio
    # and these bounds are below log p(x) in the limit the delta method gives: -ρ/2K
    assert abs(predicted_gap(2000, 1.6)) < 0.2 * pooled_se


def test_trained_ppca_large_k_bound_equals_the_marginal():
    vae = linear_gaussian_vae(sigma=SIGMA)
    torch.manual_seed(1)
    W = torch.randn(5, 2)
    x = torch.randn(400, 2) @ W.T + SIGMA * torch.randn(400, 5)
    pyrovae.fit(vae, (x[:400], x[:0]), epochs=20, batch_size=100, lr=2e-2, progress=False)
    obj = IWAE(vae)
    xe = x[:3]
    exact = ppca_log_marginal(vae, xe)
    pyro.set_rng_seed(0)
    gap = torch.stack([obj.bound(xe, num_particles=3000) for _ in range(8)]).double() - exact
    se = gap.std(0) / math.sqrt(8)
    assert (gap.mean(0).abs() < 4 * se).all(), (gap.mean(0), se)
    elbo = obj.bound(xe.repeat(200, 1), num_particles=1).double() - exact.repeat(200)
    m, s = mean_se(elbo)
    assert m < gap.mean().item() and m < 0


# ---- K = 1 is the ELBO; the log weights by hand ----------------------------------------------
@pytest.mark.parametrize("over", [{}, {"model.guide": "flow"}, {"model.prior": "mixture"},
                                  {"model.prior": "vamp"}])
@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_one_particle_is_trace_elbo(small_data, over, estimator):
    vae = pyrovae.build(small_spec(**over), data=small_data)
    x = small_data.train[:16]
    params = list(vae.parameters())
    obj = IWAE(vae, num_particles=1, estimator=estimator)
    assert obj.is_elbo
    torch.manual_seed(0)
    loss = obj.loss(x, num_data=200)
    g = grads(loss, params)
    torch.manual_seed(0)
    ref = Trace_ELBO().differentiable_loss(vae.model, vae.guide, x, num_data=200)
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-3)
    if estimator == "iwae":  # the gradient too; DReG's K = 1 gradient is "sticking the landing"
        for a, r in zip(g, grads(ref, params), strict=True):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)


def hand_log_weights(vae, x, k, *, stop_q=False):
    """log N(z; 0, I) + log Bernoulli(x; decoder(z)) - log q(z|x), z ~ q expanded to (K, B)."""
    q = vae.encode(x)
    z = q.expand((k, x.shape[0])).rsample()
    if stop_q:
        q = dist.Normal(q.base_dist.loc.detach(), q.base_dist.scale.detach()).to_event(1)
    logits = vae.decoder(z).select(-4, 0)
    lik = torch.distributions.Bernoulli(logits=logits, validate_args=False).log_prob(x).sum((-3, -2, -1))
    return torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1) + lik - q.log_prob(z)


def test_log_weights_and_bound_by_hand(small_vae, small_data):
    x = small_data.train[:9]
    obj = IWAE(small_vae, num_particles=6)
    torch.manual_seed(0)
    ours = obj.log_weights(x)
    torch.manual_seed(0)
    hand = hand_log_weights(small_vae, x, 6)
    torch.testing.assert_close(ours, hand, rtol=1e-5, atol=1e-4)
    torch.manual_seed(1)
    loss = obj.loss(x, num_data=90)
    torch.manual_seed(1)
    hand = hand_log_weights(small_vae, x, 6)
    bound = torch.logsumexp(hand, 0) - math.log(6)
    torch.testing.assert_close(loss, -10 * bound.sum(), rtol=1e-5, atol=1e-3)  # num_data / B = 10
    metrics = obj.epoch_metrics()
    assert metrics["train_iwae_bound"] == pytest.approx(bound.mean().item(), rel=1e-5)
    assert metrics["train_iwae_bound_se"] == pytest.approx(bound.std().item() / 3, rel=1e-4)
    assert obj.epoch_metrics() == {}  # reset


# ---- DReG ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 7])
def test_dreg_gradients_equal_a_hand_written_dreg(small_vae, small_data, k):
    """Tucker et al. (2019): guide parameters get Σ w̃² ∇ log w with q's parameters stopped
    (only the path through z); model parameters get the IWAE gradient Σ w̃ ∇ log w."""
    vae = small_vae
    x = small_data.train[:12]
    enc = list(vae.encoder.parameters()) + list(vae.guide_head.parameters())
    dec = list(vae.decoder.parameters())
    obj = IWAE(vae, num_particles=k, estimator="dreg")
    torch.manual_seed(0)
    loss = obj.loss(x)
    ours = grads(loss, enc + dec)
    torch.manual_seed(0)
    log_w = hand_log_weights(vae, x, k, stop_q=True)
    w = torch.softmax(log_w.detach(), 0)
    hand = grads(-(w**2 * log_w).sum(), enc, retain_graph=True) + grads(-(w * log_w).sum(), dec)
    for a, h in zip(ours, hand, strict=True):
        torch.testing.assert_close(a, h, rtol=1e-4, atol=1e-5)
    torch.manual_seed(0)
    iwae = IWAE(vae, num_particles=k).loss(x)
    torch.testing.assert_close(loss, iwae)  # same value: the bound


@pytest.mark.parametrize("guide", ["diagonal_normal", "flow"])
def test_dreg_is_unbiased_for_the_iwae_gradient_with_less_variance(guide):
    """Same draws for both estimators (paired): the mean difference of the guide-parameter
    gradients is zero within 4.5 SE over 40 replicates, and DReG's variance is smaller."""
    if guide == "flow":
        spec = {"model": {"latent_dim": 2, "encoder": {"name": "mlp", "hidden": []},
                          "decoder": {"name": "mlp", "hidden": []}, "guide": {"name": "flow", "hidden": [8]},
                          "likelihood": {"name": "normal", "scale": SIGMA}}}
        vae = pyrovae.build(spec, data_shape=(5,))
    else:
        vae = linear_gaussian_vae(sigma=SIGMA)
    W, b = inflated_posterior_guide(vae, c=1.5)
    x = linear_data(W, b, 30, seed=4)
    params = list(vae.encoder.parameters()) + list(vae.guide_head.parameters())
    iwae, dreg = IWAE(vae, num_particles=10), IWAE(vae, num_particles=10, estimator="dreg")
    gi, gd = [], []
    for r in range(40):
        for obj, out in ((iwae, gi), (dreg, gd)):
            torch.manual_seed(r)
            out.append(torch.cat([g.flatten() for g in grads(obj.loss(x), params)]))
    gi, gd = torch.stack(gi).double(), torch.stack(gd).double()
    diff = gd - gi
    se = diff.std(0) / math.sqrt(40)
    used = se > 1e-6  # coordinates with a gradient at all
    assert used.sum() >= 10
    z = diff.mean(0)[used] / se[used]
    ratio = (gd.var(0).sum() / gi.var(0).sum()).item()
    print(f"{guide}: max |mean DReG - IWAE| / SE = {z.abs().max():.2f} over {int(used.sum())} coordinates; "
          f"variance DReG / IWAE = {ratio:.3f}")
    assert z.abs().max() < 4.5, z
    assert ratio < 0.7


# ---- K, ordering, training ---------------------------------------------------------------------
def test_bound_grows_with_k_on_a_trained_model(small_data):
    vae = pyrovae.build(small_spec(), data=small_data)
    pyrovae.fit(vae, small_data, epochs=15, lr=3e-3, progress=False)
    vae.eval()
    x = small_data.test[:50]
    obj = IWAE(vae)
    pyro.set_rng_seed(0)
    bounds = {k: obj.bound(x.repeat(16, 1, 1, 1), num_particles=k).double().reshape(16, -1).mean(0)
              for k in (1, 5, 50)}  # per example, mean of 16 independent draws
    elbo = elbo_parts(vae, x.repeat(16, 1, 1, 1))["elbo"].double().reshape(16, -1).mean(0)
    # L_1 is the ELBO (here against evaluate's analytic-KL estimate), then L_K increases
    m, se = mean_se(bounds[1] - elbo)
    assert abs(m) < 4 * se
    for lo, hi in ((1, 5), (5, 50)):
        m, se = mean_se(bounds[hi] - bounds[lo])
        assert m > 4 * se, (lo, hi, m, se)


@pytest.mark.parametrize("estimator", ["iwae", "dreg"])
def test_fit_reports_the_bound(small_data, estimator):
    spec = small_spec(**{"objective.name": "iwae", "objective.num_particles": 3,
                         "objective.estimator": estimator})
    vae = pyrovae.build(spec, data=small_data)
    before = [p.detach().clone() for p in vae.parameters()]
    hist = pyrovae.fit(vae, small_data, progress=False)
    assert len(hist) == 2
    for h in hist:
        assert h["train_iwae_bound"] == pytest.approx(h["train_objective"], rel=1e-5)
        assert h["train_iwae_bound_se"] > 0 and h["iwae_num_particles"] == 3
        assert "train_elbo" not in h and math.isfinite(h["test_elbo"])
    assert all(not torch.equal(a, p) for a, p in zip(before, vae.parameters(), strict=True))


@pytest.mark.parametrize("over", [{"model.guide": "flow"}, {"model.prior": "mixture"}])
def test_trains_with_a_flow_guide_and_a_mixture_prior(small_data, over):
    vae = pyrovae.build(small_spec(**over), data=small_data)
    x = small_data.train
    obj = IWAE(vae, num_particles=5, estimator="dreg")
    opt = torch.optim.Adam(vae.parameters(), lr=3e-3)
    pyro.set_rng_seed(0)
    start = obj.bound(x, num_particles=20).double()
    with vae.unregistered():
        for _ in range(25):
            loss = obj.loss(x)
            opt.zero_grad()
            loss.backward()
            assert all(torch.isfinite(p.grad).all() for p in vae.parameters() if p.grad is not None)
            opt.step()
    end = obj.bound(x, num_particles=20).double()
    m, se = mean_se(end - start)
    assert m > 4 * se, (m, se)


def test_plain_pyro_svi_on_the_objective_programs(small_vae, small_data):
    """Trace_ELBO on objective.model/objective.guide is the same loss and gradient."""
    x = small_data.train[:10]
    params = list(small_vae.parameters())
    for estimator in ("iwae", "dreg"):
        obj = IWAE(small_vae, num_particles=4, estimator=estimator)
        torch.manual_seed(0)
        ours = obj.loss(x, num_data=40)
        g = grads(ours, params)
        torch.manual_seed(0)
        svi_loss = obj.pyro_loss.differentiable_loss(obj.model, obj.guide, x, num_data=40)
        torch.testing.assert_close(svi_loss, ours, rtol=1e-5, atol=1e-3)
        for a, r in zip(grads(svi_loss, params), g, strict=True):
            torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-4)
    svi = SVI(obj.model, obj.guide, pyro.optim.Adam({"lr": 1e-3}), obj.pyro_loss)
    assert math.isfinite(svi.step(x))


# ---- options and refusals ------------------------------------------------------------------------
def test_options_are_checked(small_vae):
    for options, key in (({"num_particles": 0}, "num_particles"), ({"num_particles": 2.5}, "num_particles"),
                         ({"estimator": "rws"}, "estimator 'rws'")):
        with pytest.raises(SpecError, match=key):
            registry.build("iwae", options, "objective", small_vae)
    obj = registry.build("iwae", {}, "objective", small_vae)
    assert obj.num_particles == 5 and obj.estimator == "iwae" and not obj.is_elbo


PLAIN_VAE = {"enumerates": False, "pyro_loss": lambda loss_class, **kw: loss_class(**kw)}


def test_global_sites_and_non_reparameterised_guides_are_refused(small_vae, small_data):
    x = small_data.train[:4]

    def model_with_global(x, y=None, **kw):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        return small_vae.model(x, y, **kw)

    def guide_with_global(x, y=None, **kw):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        return small_vae.guide(x, y, **kw)

    fake = types.SimpleNamespace(model=model_with_global, guide=guide_with_global, **PLAIN_VAE)
    with pytest.raises(ValueError, match="'g'.*data plate"):
        IWAE(fake).loss(x)

    def model_discrete(x, y=None, **kw):
        with pyro.plate("examples", x.shape[0], dim=-1):
            pyro.sample("c", dist.Bernoulli(0.5))
        return small_vae.model(x, y, **kw)

    def guide_discrete(x, y=None, **kw):
        with pyro.plate("examples", x.shape[0], dim=-1):
            pyro.sample("c", dist.Bernoulli(0.3))
        return small_vae.guide(x, y, **kw)

    fake = types.SimpleNamespace(model=model_discrete, guide=guide_discrete, **PLAIN_VAE)
    with pytest.raises(ValueError, match="reparameterised.*'c'"):
        IWAE(fake).loss(x)
