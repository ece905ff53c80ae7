"""Guide families q(z|x): full-rank normal and conditional normalizing flows."""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

import pyrovae
from pyrovae.evaluate import elbo_parts
from pyrovae.guides import registry

FLOWS = [{"transform": "iaf"}, {"transform": "spline"}]


def head(name, in_features=6, latent_dim=3, seed=0, perturb=0.0, **options):
    torch.manual_seed(seed)
    h = registry.build(name, options, "model.guide", in_features, latent_dim)
    if perturb:  # move off the zero-initialised layers so every weight matters
        with torch.no_grad():
            for p in h.parameters():
                p.add_(perturb * torch.randn_like(p))
    return h


def test_full_rank_matches_torch_multivariate_normal():
    h = head("full_rank", perturb=0.3)
    features = torch.randn(5, 6)
    q = h(features)
    out = h.linear(features).detach()
    loc, raw, off = out[:, :3], out[:, 3:6], out[:, 6:]
    L = torch.zeros(5, 3, 3)
    for b in range(5):
        k = 0
        for i in range(3):
            L[b, i, i] = torch.nn.functional.softplus(raw[b, i]) + 1e-4
            for j in range(i):
                L[b, i, j] = off[b, k]
                k += 1
    ref = torch.distributions.MultivariateNormal(loc, scale_tril=L)
    z = ref.sample((4,))
    assert torch.allclose(q.log_prob(z), ref.log_prob(z), atol=1e-5)
    tril = q.scale_tril.detach()
    assert (tril.diagonal(dim1=-2, dim2=-1) > 0).all()
    assert (tril.triu(1) == 0).all() and (tril.tril(-1) != 0).any()
    assert q.rsample((7,)).shape == (7, 5, 3) and q.batch_shape == (5,) and q.event_shape == (3,)


def test_full_rank_starts_diagonal_and_equals_the_diagonal_guide():
    full, diag = head("full_rank"), head("diagonal_normal")
    with torch.no_grad():
        diag.linear.weight.copy_(full.linear.weight[:6])
        diag.linear.bias.copy_(full.linear.bias[:6])
    features = torch.randn(4, 6)
    q, q0 = full(features), diag(features)
    assert (q.scale_tril.tril(-1) == 0).all()
    z = torch.randn(3, 4, 3)
    assert torch.allclose(q.log_prob(z), q0.log_prob(z), atol=1e-5)


def test_full_rank_analytic_kl_against_a_diagonal_normal():
    q = head("full_rank", perturb=0.3)(torch.randn(4, 6))
    m, s = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    p = pyro.distributions.Normal(m, s).to_event(1)
    expected = torch.distributions.kl_divergence(
        torch.distributions.MultivariateNormal(q.loc, scale_tril=q.scale_tril),
        torch.distributions.MultivariateNormal(m, scale_tril=torch.diag_embed(s)))
    assert torch.allclose(torch.distributions.kl_divergence(q, p), expected, atol=1e-5)


@pytest.mark.parametrize("opts", FLOWS, ids=lambda o: o["transform"])
def test_flow_shapes_and_broadcast_log_prob(opts):
    h = head("flow", perturb=0.1, **opts)
    features = torch.randn(4, 6)
    q = h(features)
    assert q.batch_shape == (4,) and q.event_shape == (3,)
    z = q.rsample((5,))
    assert z.shape == (5, 4, 3) and q.log_prob(z).shape == (5, 4)
    # points scored against every example at once (a mixture over the batch, say)
    other = torch.randn(2, 1, 3)
    lp = q.log_prob(other)
    each = torch.stack([h(features[k:k + 1]).log_prob(other[:, 0]) for k in range(4)], -1)
    assert lp.shape == (2, 4) and torch.allclose(lp, each, atol=1e-4)


@pytest.mark.parametrize("opts", FLOWS, ids=lambda o: o["transform"])
def test_flow_log_density_is_base_minus_log_det_jacobian(opts):
    h = head("flow", perturb=0.3, depth=2, **opts).double()
    q = h(torch.randn(1, 6, dtype=torch.double))  # one example
    base, transforms = q.base_dist, q.transforms

    def f(eps):  # (1, D) -> (1, D) through the conditioned transforms
        for t in transforms:
            eps = t(eps)
        return eps

    eps = torch.tensor([[0.7, -1.2, 0.4]], dtype=torch.double)
    jac = torch.autograd.functional.jacobian(f, eps)[0, :, 0, :]  # dz/dε, (D, D)
    assert not torch.allclose(jac, torch.eye(3, dtype=torch.double), atol=1e-2)  # non-trivial
    expected = base.log_prob(eps) - torch.linalg.slogdet(jac).logabsdet
    z = f(eps)
    cached = q.log_prob(z)  # the guide scoring its own sample: the transforms' cached inverse
    assert torch.allclose(cached, expected, atol=1e-8)
    fresh = q.log_prob(z.detach().clone())  # a new point: the inverse is computed
    assert torch.allclose(fresh, expected, atol=1e-8)


@pytest.mark.parametrize("opts", FLOWS, ids=lambda o: o["transform"])
def test_flow_rsample_is_differentiable_in_all_parameters(opts):
    h = head("flow", perturb=0.1, **opts)
    features = torch.randn(8, 6)
    q = h(features)
    z = q.rsample()
    assert z.requires_grad
    (z.pow(2).sum() - q.log_prob(z).sum()).backward()
    named = dict(h.named_parameters())
    assert any(n.startswith("base.") for n in named) and any(n.startswith("transforms.") for n in named)
    for n, p in named.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, n


def test_untrained_iaf_flow_is_its_base_and_has_a_deterministic_mean():
    h = head("flow")
    features = torch.randn(4, 6)
    q = h(features)
    z = torch.randn(3, 4, 3)
    assert torch.allclose(q.log_prob(z), q.base_dist.log_prob(z), atol=1e-5)
    state = torch.get_rng_state()
    m1, m2 = q.mean, q.mean
    assert torch.equal(torch.get_rng_state(), state)  # the estimate leaves the global RNG alone
    assert torch.equal(m1, m2) and m1.shape == (4, 3)
    assert torch.allclose(m1, q.base_dist.mean, atol=0.3)


@pytest.mark.parametrize("options, match", [
    ({"transform": "planar"}, "iaf, spline"),
    ({"depth": 0}, "depth"),
    ({"hidden": [8, -1]}, "hidden"),
    ({"hidden": [1]}, r"integers >= latent_dim \(2\)"),
    ({"bins": 1}, "bins"),
    ({"min_scale": -1.0}, "min_scale"),
])
def test_bad_flow_options_are_spec_errors(options, match):
    spec = {"model": {"latent_dim": 2, "guide": {"name": "flow", **options}}}
    with pytest.raises(pyrovae.SpecError, match=match) as e:
        pyrovae.build(spec, data_shape=(5,))
    assert e.value.key == "model.guide"


GUIDES = [{"name": "diagonal_normal"}, {"name": "full_rank"}, {"name": "flow"},
          {"name": "flow", "transform": "spline", "depth": 1}]


@pytest.mark.parametrize("guide", GUIDES, ids=lambda g: "-".join(map(str, g.values())))
def test_vae_with_each_guide_trains_and_evaluates(guide):
    spec = {"model": {"latent_dim": 3, "guide": guide,
                      "encoder": {"name": "mlp", "hidden": [16]},
                      "decoder": {"name": "mlp", "hidden": [16]},
                      "likelihood": {"name": "normal", "scale": 0.5}}}
    vae = pyrovae.build(spec, data_shape=(5,))
    torch.manual_seed(0)
    train, test = torch.randn(64, 5), torch.randn(16, 5)
    history = pyrovae.fit(vae, (train, test), epochs=2, batch_size=16, progress=False)
    assert len(history) == 2
    assert all(math.isfinite(r["train_objective"]) and math.isfinite(r["test_elbo"]) for r in history)
    parts = elbo_parts(vae, test)
    for k in ("recon", "kl", "elbo"):
        assert parts[k].shape == (16,) and torch.isfinite(parts[k]).all(), k
    assert parts["kl_analytic"] == (guide["name"] != "flow")
    # Pyro's own machinery: a guide trace, vectorized particles, the mean-field ELBO
    gtr = poutine.trace(vae.guide).get_trace(test[:4])
    assert gtr.nodes["z"]["fn"].batch_shape == (4,) and gtr.nodes["z"]["value"].shape == (4, 3)
    loss = Trace_ELBO(num_particles=3, vectorize_particles=True).loss(vae.model, vae.guide, test)
    assert math.isfinite(loss)
    assert math.isfinite(TraceMeanField_ELBO().loss(vae.model, vae.guide, test))
    assert vae.reconstruct(test[:4]).shape == (4, 5)
