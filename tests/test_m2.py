"""The semi-supervised M2 (model.variant m2): the enumerated ELBO against the hand-written
sum over classes, the point-mass guide for labelled examples, the classification factor,
the labelled subset, and a classifier that learns."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

import pyrovae
import pyrovae.train
from pyrovae import runs
from pyrovae.evaluate import elbo_parts
from pyrovae.semisupervised import stratified_subset

from .conftest import small_spec

K = 10


def m2_spec(prior="standard_normal", **variant):
    spec = small_spec(**{"model.latent_dim": 2, "model.encoder.hidden": "[16]",
                         "model.decoder.hidden": "[16]", "model.prior": prior})
    spec["model"]["variant"] = {"name": "m2", "classifier_hidden": [16], **variant}
    return spec


@pytest.fixture
def m2(small_data):
    vae = pyrovae.build(m2_spec(), data=small_data)
    with torch.no_grad():  # a classifier far from uniform, so the weights q(y|x) matter
        vae.classifier[-1][-1].weight.mul_(20)
    return vae


def enum_loss(vae):
    """The Pyro loss M2 asks an objective to use (TraceEnum_ELBO, max_plate_nesting=1)."""
    return vae.pyro_loss(Trace_ELBO)


def labelled_elbo_by_hand(vae, x, y, z):
    """L(x, y) at a drawn z: log p(x|z,y) + log p(z) + log p(y) - log q(z|x,y), per example,
    from torch distributions built on the networks (no Pyro)."""
    onehot = torch.eye(K)[y]
    params = vae.decoder(torch.cat([z, onehot], -1))
    bern = torch.distributions.Bernoulli(logits=params[:, 0], validate_args=False)
    log_lik = bern.log_prob(x).sum((1, 2, 3))
    log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
    feats = torch.cat([vae.encoder(x), onehot], -1)
    loc, raw = vae.guide_head.linear(feats).chunk(2, -1)
    q = torch.distributions.Normal(loc, torch.nn.functional.softplus(raw) + 1e-4)
    return log_lik + log_pz - math.log(K) - q.log_prob(z).sum(-1)


def enumerated_guide_trace(vae, x, y=None, seed=0):
    pyro.set_rng_seed(seed)
    return poutine.trace(poutine.enum(vae.guide, first_available_dim=-2)).get_trace(x, y)


def test_unlabelled_elbo_is_the_q_weighted_sum_of_labelled_elbos_plus_entropy(m2, small_data):
    x = small_data.train[:8]
    pyro.set_rng_seed(3)
    loss = enum_loss(m2).differentiable_loss(m2.model, m2.guide, x)
    # the same draws of z, one per class and example (shape (K, n, latent))
    z = enumerated_guide_trace(m2, x, seed=3).nodes["z"]["value"]
    assert z.shape == (K, 8, 2)
    q = m2.classify(x)
    elbo_k = torch.stack([labelled_elbo_by_hand(m2, x, torch.full((8,), k), z[k]) for k in range(K)], 1)
    entropy = -(q * q.log()).sum(1)
    u = (q * elbo_k).sum(1) + entropy
    assert -loss.item() == pytest.approx(u.sum().item(), rel=1e-5)
    assert entropy.max() < math.log(K) - 0.1  # not the trivial case of a uniform q(y|x)


def test_labelled_examples_in_a_mixed_batch_score_exactly_their_labelled_elbo(m2, small_data):
    x, truth = small_data.train[:8], small_data.train_labels[:8]
    y = truth.clone()
    y[4:] = -1
    m2.alpha = 0.0  # the ELBO alone
    pyro.set_rng_seed(5)
    loss = enum_loss(m2).differentiable_loss(m2.model, m2.guide, x, y, num_data=40)
    z = enumerated_guide_trace(m2, x, y, seed=5).nodes["z"]["value"]
    elbo_k = torch.stack([labelled_elbo_by_hand(m2, x, torch.full((8,), k), z[k]) for k in range(K)], 1)
    q = m2.classify(x)
    lab = elbo_k[torch.arange(4), truth[:4]]  # L(x, y) at the known label only
    unl = (q[4:] * elbo_k[4:]).sum(1) - (q[4:] * q[4:].log()).sum(1)
    assert -loss.item() == pytest.approx(5.0 * (lab.sum() + unl.sum()).item(), rel=1e-5)  # 40 / 8
    # a fully labelled batch observes y in the model (no y site in the guide): the same L(x, y)
    pyro.set_rng_seed(6)
    loss = enum_loss(m2).differentiable_loss(m2.model, m2.guide, x[:4], truth[:4])
    pyro.set_rng_seed(6)
    gtr = poutine.trace(m2.guide).get_trace(x[:4], truth[:4])
    assert "y" not in gtr.nodes
    mtr = poutine.trace(m2.model).get_trace(x[:4], truth[:4])
    assert mtr.nodes["y"]["is_observed"]
    hand = labelled_elbo_by_hand(m2, x[:4], truth[:4], gtr.nodes["z"]["value"])
    assert -loss.item() == pytest.approx(hand.sum().item(), rel=1e-5)


def test_alpha_term_is_alpha_times_the_summed_log_q_of_the_known_labels(m2, small_data):
    x, y = small_data.train[:10], small_data.train_labels[:10].clone()
    y[::2] = -1
    losses = {}
    for alpha in (0.0, 2.5):
        m2.alpha = alpha
        pyro.set_rng_seed(0)
        losses[alpha] = enum_loss(m2).differentiable_loss(m2.model, m2.guide, x, y, num_data=30).item()
    log_q = torch.log_softmax(m2.classifier(x), -1)[torch.arange(10), y.clamp(min=0)]
    expected = 2.5 * log_q[y >= 0].sum().item() * 3.0  # scaled by num_data / batch = 30 / 10
    assert losses[0.0] - losses[2.5] == pytest.approx(expected, rel=1e-4)
    site = poutine.trace(m2.model).get_trace(x, y).nodes["classification"]
    torch.testing.assert_close(site["fn"].log_factor, 2.5 * torch.where(y >= 0, log_q, 0.0))
    assert m2.extra_objective_terms


def test_labelled_fraction_keeps_a_stratified_subset_of_the_right_size(digits):
    vae = pyrovae.build(m2_spec(labelled_fraction=0.1, label_seed=4), data=digits)
    y = vae.training_labels(digits)
    truth = digits.train_labels
    kept = y >= 0
    n = truth.shape[0]
    assert int(kept.sum()) == round(0.1 * n) == vae.num_labelled
    assert torch.equal(y[kept], truth[kept]) and bool((y[~kept] == -1).all())
    for c in range(K):
        n_c = int((truth == c).sum())
        assert abs(int((y == c).sum()) - 0.1 * n_c) < 1  # floor or ceil of the class's share
    assert torch.equal(vae.training_labels(digits), y)  # fixed by label_seed
    other = pyrovae.build(m2_spec(label_seed=5), data=digits).training_labels(digits)
    assert not torch.equal(other, y) and int((other >= 0).sum()) == int(kept.sum())
    # labels already hidden in the data stay hidden; the fraction is of the known ones
    lab = np.array([0] * 30 + [1] * 10 + [-1] * 20)
    keep = stratified_subset(lab, 0.5, 0)
    assert keep.sum() == 20 and keep[:30].sum() == 15 and keep[30:40].sum() == 5 and not keep[40:].any()
    assert stratified_subset(lab, 0.0, 0).sum() == 0 and stratified_subset(lab, 1.0, 0).sum() == 40


def test_elbo_parts_equal_traceenum_with_the_same_draws(small_data):
    # with a Student-t prior the z KL has no closed form: evaluate then uses log q - log p at
    # the drawn z, the same estimator TraceEnum_ELBO uses; one seed gives one set of draws
    vae = pyrovae.build(m2_spec(prior="student_t"), data=small_data)
    x = small_data.test[:12]
    pyro.set_rng_seed(2)
    loss = enum_loss(vae).differentiable_loss(vae.model, vae.guide, x)
    pyro.set_rng_seed(2)
    parts = elbo_parts(vae, x)
    assert not parts["kl_analytic"]
    assert parts["elbo"].sum().item() == pytest.approx(-loss.item(), rel=1e-5)


def test_analytic_kl_of_the_evaluation(m2, small_data):
    x = small_data.test[:12]
    parts = elbo_parts(m2, x)
    q = m2.classify(x).detach()
    kl = torch.zeros(12)
    for k in range(K):
        d = m2.encode(x, torch.full((12,), k))
        mu, s = d.mean.detach(), d.stddev.detach()
        kl += q[:, k] * 0.5 * (mu**2 + s**2 - 1 - 2 * s.log()).sum(-1)
    kl += (q * (q * K).log()).sum(1)  # KL(q(y|x) || Cat(1/K))
    assert parts["kl_analytic"]
    torch.testing.assert_close(parts["kl"], kl, rtol=1e-5, atol=1e-5)


def test_trains_and_reports_classifier_accuracy_above_chance(small_data):
    vae = pyrovae.build(m2_spec(labelled_fraction=0.5, alpha=5.0), data=small_data)
    hist = pyrovae.fit(vae, small_data, epochs=15, batch_size=50, lr=3e-3, progress=False)
    assert all(math.isfinite(h["train_objective"]) and math.isfinite(h["test_elbo"]) for h in hist)
    assert "train_elbo" not in hist[-1]  # the α term makes the objective more than the ELBO
    res = pyrovae.evaluate(vae, small_data)
    with torch.no_grad():
        pred = vae.classify(small_data.test).argmax(1)
    acc = (pred == small_data.test_labels).float().mean().item()
    assert res["accuracy"] == pytest.approx(acc) and res["accuracy_n"] == 50
    assert res["accuracy_se"] == pytest.approx(math.sqrt(acc * (1 - acc) / 50))
    assert acc > 0.1 + 4 * math.sqrt(0.1 * 0.9 / 50)  # well above chance (1/K): 0.74 here


def test_generation_saving_and_loading(tmp_path, m2, small_data):
    torch.manual_seed(0)
    a = m2.sample(3, y=4)
    torch.manual_seed(0)
    z = torch.randn(3, 2)
    torch.testing.assert_close(a, torch.sigmoid(m2.decoder(torch.cat([z, torch.eye(K)[[4] * 3]], 1))[:, 0]))
    tr = poutine.trace(m2.model).get_trace()
    assert not tr.nodes["y"]["is_observed"] and tr.nodes["x"]["value"].shape == (1, 1, 8, 8)
    runs.save_checkpoint(tmp_path, vae=m2, optimizer=None, epoch=0, history=[])
    loaded = pyrovae.load(tmp_path)
    assert loaded.spec.model.variant.options["num_classes"] == K
    torch.testing.assert_close(loaded.classify(small_data.test), m2.classify(small_data.test))


def test_m2_asks_for_the_enumerating_loss(m2, small_data):
    assert m2.pyro_loss(Trace_ELBO).max_plate_nesting == 1
    loss = m2.pyro_loss(Trace_ELBO, num_particles=3, vectorize_particles=True)
    assert isinstance(loss, TraceEnum_ELBO)
    x, y = small_data.train[:6], small_data.train_labels[:6].clone()
    y[:3] = -1
    assert math.isfinite(loss.differentiable_loss(m2.model, m2.guide, x, y, num_data=60).item())
    with pytest.raises(ValueError, match="TraceEnum_ELBO"):
        m2.pyro_loss(pyro.infer.RenyiELBO)
