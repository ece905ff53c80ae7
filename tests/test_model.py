"""vae.model / vae.guide are ordinary Pyro programs: Pyro's own tools work on them."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Importance, Predictive, Trace_ELBO, TraceMeanField_ELBO

import pyrovae

from .conftest import linear_gaussian_vae, ppca_log_marginal


def test_trace_has_plate_sites_and_event_dims(small_vae, small_data):
    x = small_data.train[:7]
    tr = poutine.trace(small_vae.model).get_trace(x)
    z, xs = tr.nodes["z"], tr.nodes["x"]
    assert z["fn"].batch_shape == (7,) and z["fn"].event_shape == (3,)
    assert xs["is_observed"] and xs["fn"].event_shape == (1, 8, 8)
    assert [f.name for f in z["cond_indep_stack"]] == ["data"]
    params = [n for n, s in tr.nodes.items() if s["type"] == "param"]
    assert len(params) == len(list(small_vae.parameters()))  # every weight is visible to Pyro
    gtr = poutine.trace(small_vae.guide).get_trace(x)
    assert gtr.nodes["z"]["fn"].batch_shape == (7,) and not gtr.nodes["z"]["is_observed"]


def test_minibatch_plate_scales_by_num_data(small_vae, small_data):
    x = small_data.train[:10]
    tr = poutine.trace(small_vae.model).get_trace(x, num_data=200)
    assert tr.nodes["x"]["scale"] == pytest.approx(20.0)
    assert poutine.trace(small_vae.model).get_trace(x).nodes["x"]["scale"] == 1.0


def test_trace_elbo_equals_hand_computed_elbo(small_vae, small_data):
    x = small_data.train[:16]
    guide_tr = poutine.trace(small_vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(small_vae.model, trace=guide_tr)).get_trace(x)
    z = guide_tr.nodes["z"]["value"]
    q = small_vae.encode(x)
    p_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_lik = torch.distributions.Bernoulli(logits=small_vae.decoder(z)[:, 0],
                                            validate_args=False).log_prob(x).sum((1, 2, 3))
    hand = (log_lik + p_z - q.log_prob(z)).sum()
    pyro_elbo = model_tr.log_prob_sum() - guide_tr.log_prob_sum()
    assert torch.allclose(hand, pyro_elbo, rtol=1e-5)


def test_plain_pyro_svi_trains_the_same_tensors(small_vae, small_data):
    x = small_data.train
    before = {n: p.detach().clone() for n, p in small_vae.named_parameters()}
    svi = SVI(small_vae.model, small_vae.guide, pyro.optim.Adam({"lr": 3e-3}), Trace_ELBO())
    torch.manual_seed(0)
    first = sum(svi.step(x) for _ in range(5)) / 5
    for _ in range(60):
        svi.step(x)
    last = sum(svi.step(x) for _ in range(5)) / 5
    assert last < first - 0.5 * x.shape[0]  # at least half a nat per example better
    for n, p in small_vae.named_parameters():  # the module's own parameters moved
        assert not torch.equal(before[n], p.detach()), n


def test_two_vaes_in_one_session_do_not_share_parameters(small_data):
    from .conftest import small_spec
    a = pyrovae.build(small_spec(), data=small_data)
    b = pyrovae.build(small_spec(**{"train.seed": 1}), data=small_data)
    x = small_data.train[:50]
    svi_a = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi_a.step(x)
    b_before = {n: p.detach().clone() for n, p in b.named_parameters()}
    svi_b = SVI(b.model, b.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi_b.step(x)
    a_before = {n: p.detach().clone() for n, p in a.named_parameters()}
    svi_b.step(x)
    assert all(torch.equal(a_before[n], p) for n, p in a.named_parameters())
    assert any(not torch.equal(b_before[n], p) for n, p in b.named_parameters())


def test_predictive_prior_and_posterior(small_vae, small_data):
    x = small_data.test[:4]
    post = Predictive(small_vae.model, guide=small_vae.guide, num_samples=11)(x)
    assert post["z"].shape == (11, 4, 3)
    prior = Predictive(small_vae.model, num_samples=6, return_sites=["z", "x"])(None, batch_size=5)
    assert prior["z"].shape == (6, 5, 3) and prior["x"].shape == (6, 5, 1, 8, 8)
    assert set(prior["x"].unique().tolist()) <= {0.0, 1.0}  # Bernoulli draws


def test_meanfield_elbo_uses_the_analytic_kl(small_vae, small_data):
    x = small_data.train[:32]
    torch.manual_seed(0)
    with torch.no_grad():
        mc = torch.stack([Trace_ELBO().differentiable_loss(small_vae.model, small_vae.guide, x)
                          for _ in range(200)])
        torch.manual_seed(0)
        mf = torch.stack([TraceMeanField_ELBO().differentiable_loss(small_vae.model, small_vae.guide, x)
                          for _ in range(200)])
    # same expectation, and the analytic KL removes the KL term's variance
    se = math.sqrt(mc.var() / 200 + mf.var() / 200)
    assert abs(mc.mean() - mf.mean()) < 4 * se
    assert mf.var() < mc.var()


def test_importance_matches_the_exact_ppca_marginal():
    """Linear-Gaussian VAE = probabilistic PCA: log p(x) = log N(x; b, W Wᵀ + σ² I)."""
    vae = linear_gaussian_vae()
    torch.manual_seed(0)
    x = torch.randn(1, 5)
    exact = ppca_log_marginal(vae, x)[0].item()
    pyro.set_rng_seed(0)
    imp = Importance(vae.model, guide=None, num_samples=3000).run(x)  # prior as proposal
    est = imp.get_log_normalizer().item()
    w = torch.stack(imp.log_weights).double()
    rel_se = (w - w.max()).exp().std() / (w - w.max()).exp().mean() / math.sqrt(w.numel())
    assert abs(est - exact) < 4 * rel_se.item() + 1e-3
    # and with the (untrained) guide as proposal, the ELBO sits below log p(x)
    elbo = -Trace_ELBO(num_particles=2000, vectorize_particles=True).loss(vae.model, vae.guide, x)
    assert elbo < exact


def test_x_shape_mismatch_is_a_clear_error(small_vae):
    with pytest.raises(ValueError, match=r"expects \(1, 8, 8\)"):
        small_vae.model(torch.zeros(2, 64))
