"""Priors p(z): densities against independent computations, shapes, gradients, the
analytic-or-Monte-Carlo KL choice, and a short training run with each prior."""

import copy
import math
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from scipy import stats
from scipy.special import logsumexp
from torch import nn
from torch.distributions import kl_divergence

import pyrovae
from pyrovae import priors
from pyrovae.errors import SpecError
from pyrovae.evaluate import elbo_parts

PRIORS = {
    "standard_normal": {"name": "standard_normal"},
    "learned_normal": {"name": "learned_normal"},
    "laplace": {"name": "laplace", "scale": 0.7},
    "laplace_learned": {"name": "laplace", "learned": True},
    "student_t": {"name": "student_t", "df": 4.0, "scale": 0.8},
    "student_t_learned": {"name": "student_t", "learned": True},
    "mixture": {"name": "mixture", "components": 4},
    "vamp": {"name": "vamp", "components": 5, "init_loc": 0.0, "init_scale": 1.0},
    "flow_affine": {"name": "flow", "hidden": [8, 8]},
    "flow_spline": {"name": "flow", "transform": "spline", "depth": 1, "hidden": [8]},
}
ANALYTIC = {"standard_normal", "learned_normal", "laplace", "laplace_learned"}  # with a diagonal-normal q
FIXED = {"standard_normal", "laplace", "student_t"}  # no parameters


def build(prior, estimator=None, latent_dim=2, seed=0):
    spec = {"model": {"latent_dim": latent_dim, "prior": prior,
                      "encoder": {"name": "mlp", "hidden": [16]},
                      "decoder": {"name": "mlp", "hidden": [16]},
                      "likelihood": {"name": "normal", "scale": 0.5}},
            "train": {"seed": seed}}
    if estimator is not None:
        spec["objective"] = {"name": "elbo", "estimator": estimator}
    return pyrovae.build(spec, data_shape=(5,))


@torch.no_grad()
def perturb(module, scale=0.3, seed=1):
    """Move every parameter off its initial value, so checks do not pass by symmetry."""
    g = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g))


def diagonal_q(batch=3, dim=2, seed=2):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, dim, generator=g)
    scale = 0.3 + torch.rand(batch, dim, generator=g)
    return pyro.distributions.Normal(loc, scale).to_event(1)


def np64(t):
    return t.detach().double().numpy()


# ---- shapes and registration ----------------------------------------------------------------
@pytest.mark.parametrize("key", PRIORS)
def test_batch_event_and_sample_shapes(key):
    vae = build(PRIORS[key])
    p = vae.prior(torch.Size((4, 3)))
    assert p.batch_shape == (4, 3) and p.event_shape == (2,)
    with torch.no_grad():
        z = p.sample()
        assert z.shape == (4, 3, 2) and p.sample((6,)).shape == (6, 4, 3, 2)
        assert p.log_prob(z).shape == (4, 3) and torch.isfinite(p.log_prob(z)).all()
    assert vae.prior(torch.Size((7,))).batch_shape == (7,)


@pytest.mark.parametrize("key", PRIORS)
def test_description_and_parameters_are_registered(key):
    name = PRIORS[key]["name"]
    assert "p(z)" in priors.registry.describe(name)
    vae = build(PRIORS[key])
    own = dict(vae.prior.named_parameters())
    assert (len(own) == 0) == (key in FIXED)
    tr = poutine.trace(vae.model).get_trace(torch.randn(3, 5))
    params = {n for n, s in tr.nodes.items() if s["type"] == "param"}
    assert {f"vae$$$prior.{n}" for n in own} <= params  # Pyro sees them
    assert len(params) == len(list(vae.parameters()))  # and nothing twice


# ---- densities against independent computations ----------------------------------------------
def scipy_logpdf(key, prior, z):
    z = np64(z)
    if key == "standard_normal":
        return stats.norm.logpdf(z).sum(-1)
    loc, scale = np64(prior.loc), np64(prior.scale)
    if key == "learned_normal":
        return stats.norm.logpdf(z, loc, scale).sum(-1)
    if key.startswith("laplace"):
        return stats.laplace.logpdf(z, loc, scale).sum(-1)
    return stats.t.logpdf(z, np64(prior.df), loc, scale).sum(-1)


@pytest.mark.parametrize("key", ["standard_normal", "learned_normal", "laplace", "laplace_learned",
                                 "student_t", "student_t_learned"])
def test_factorised_log_prob_matches_scipy(key):
    vae = build(PRIORS[key])
    perturb(vae.prior)
    z = 2 * torch.randn(10, 2)
    got = vae.prior(torch.Size((10,))).log_prob(z)
    np.testing.assert_allclose(np64(got), scipy_logpdf(key, vae.prior, z), rtol=1e-5, atol=1e-5)
    if key in ("laplace", "student_t"):  # fixed: exactly the options
        assert torch.equal(vae.prior.scale, torch.full((2,), PRIORS[key]["scale"]))
        assert torch.equal(vae.prior.loc, torch.zeros(2))


def test_learned_priors_start_at_their_options():
    p = build({"name": "student_t", "df": 6.0, "scale": 2.0, "learned": True}).prior
    assert torch.allclose(p.scale, torch.full((2,), 2.0)) and torch.allclose(p.df, torch.full((2,), 6.0))
    assert torch.allclose(build(PRIORS["learned_normal"]).prior.scale, torch.ones(2))


def test_mixture_log_prob_is_a_logsumexp_over_components():
    vae = build(PRIORS["mixture"])
    perturb(vae.prior)
    p = vae.prior
    z = 2 * torch.randn(10, 2)
    w, mu, sigma = np64(p.weights), np64(p.means), np64(p.scales)
    per_k = np.log(w)[None, :] + stats.norm.logpdf(np64(z)[:, None, :], mu[None], sigma[None]).sum(-1)
    want = logsumexp(per_k, axis=1)
    np.testing.assert_allclose(np64(p(torch.Size((10,))).log_prob(z)), want, rtol=1e-5, atol=1e-5)


def test_mixture_means_are_spread_and_seeded():
    a, b, c = (build(PRIORS["mixture"], seed=s).prior for s in (0, 0, 1))
    assert torch.equal(a.means, b.means) and not torch.equal(a.means, c.means)
    d = torch.cdist(a.means, a.means) + 10 * torch.eye(4)
    assert d.min() > 0.05 and a.means.std() > 0.3
    assert torch.allclose(a.weights, torch.full((4,), 0.25))


def test_vamp_log_prob_is_the_average_of_guide_densities():
    vae = build(PRIORS["vamp"])
    perturb(vae.prior)
    z = 2 * torch.randn(10, 2)
    q = vae.encode(vae.prior.pseudo_inputs)
    loc, scale = np64(q.base_dist.loc), np64(q.base_dist.scale)
    dens = np.exp(stats.norm.logpdf(np64(z)[:, None, :], loc[None], scale[None]).sum(-1))  # (10, K)
    want = np.log(dens.mean(1))
    got = vae.prior(torch.Size((10,))).log_prob(z)
    np.testing.assert_allclose(np64(got), want, rtol=1e-5, atol=1e-5)


class NoExpand(pyro.distributions.Independent):
    """A guide distribution without ``expand``: the VampPrior must wrap it instead."""

    def expand(self, batch_shape, _instance=None):
        raise NotImplementedError


class StandInEncoder(nn.Module):
    """A stand-in VAE whose guide family is a full-covariance normal (``full``) or a
    diagonal normal that cannot be expanded (``no_expand``)."""

    data_shape = (3,)

    def __init__(self, family):
        super().__init__()
        self.family = family
        self.net = nn.Linear(3, 2 + 4)

    def encode(self, x):
        out = self.net(x)
        tril = torch.zeros(x.shape[0], 2, 2)
        tril[:, 0, 0] = out[:, 2].exp()
        tril[:, 1, 1] = out[:, 3].exp()
        if self.family == "no_expand":
            return NoExpand(pyro.distributions.Normal(out[:, :2], out[:, 2:4].exp()), 1)
        tril[:, 1, 0] = out[:, 4]
        return pyro.distributions.MultivariateNormal(out[:, :2], scale_tril=tril)


@pytest.mark.parametrize("family", ["full", "no_expand"])
def test_vamp_works_for_other_guide_families_and_is_not_a_submodule(family):
    enc = StandInEncoder(family)
    prior = priors.VampPrior(2, components=4)
    with pytest.raises(RuntimeError, match="bind"):
        prior(torch.Size((3,)))
    prior.bind(enc)
    assert prior.pseudo_inputs.shape == (4, 3) and list(prior.children()) == []
    z = torch.randn(6, 2)
    p = prior(torch.Size((6,)))
    assert p.batch_shape == (6,) and p.event_shape == (2,)
    with torch.no_grad():
        q = enc.encode(prior.pseudo_inputs)
        covs = np64(q.base_dist.scale.pow(2).diag_embed() if family == "no_expand" else q.covariance_matrix)
        locs = np64(q.mean)
    dens = np.stack([stats.multivariate_normal(locs[k], covs[k]).pdf(np64(z)) for k in range(4)], 1)
    np.testing.assert_allclose(np64(p.log_prob(z)), np.log(dens.mean(1)), rtol=1e-5, atol=1e-5)
    assert p.sample((5,)).shape == (5, 6, 2)
    p.log_prob(z).sum().backward()
    assert prior.pseudo_inputs.grad.abs().sum() > 0 and enc.net.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("guide", pyrovae.guides.registry.names())
def test_vamp_with_every_registered_guide(guide):
    spec = {"model": {"latent_dim": 2, "prior": PRIORS["vamp"], "guide": guide,
                      "encoder": {"name": "mlp", "hidden": [16]}, "decoder": {"name": "mlp", "hidden": [16]},
                      "likelihood": {"name": "normal", "scale": 0.5}}}
    vae = pyrovae.build(spec, data_shape=(5,))
    z = torch.randn(6, 2)
    with torch.no_grad():
        q = vae.encode(vae.prior.pseudo_inputs)
        per_k = torch.stack([q.log_prob(z[:, None, :].expand(6, 5, 2))[:, k] for k in range(5)], 1)
        want = torch.logsumexp(per_k, 1) - math.log(5)
        got = vae.prior(torch.Size((6,))).log_prob(z)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_vamp_state_dict_copy_and_init_from_data():
    vae = build(PRIORS["vamp"])
    assert [k for k in vae.state_dict() if k.startswith("prior.")] == ["prior.pseudo_inputs"]
    twin = copy.deepcopy(vae)
    assert twin.prior._encode.__self__ is twin  # the copy's prior encodes with the copy
    x = torch.randn(20, 5)
    vae.prior.init_from_data(x)
    u = vae.prior.pseudo_inputs
    assert all((x == row).all(1).any() for row in u)
    with pytest.raises(ValueError, match="example shape"):
        vae.prior.init_from_data(torch.randn(3, 4))


@pytest.mark.parametrize("key", PRIORS)
def test_state_dict_round_trips(key):
    a, b = build(PRIORS[key], seed=0), build(PRIORS[key], seed=1)
    perturb(a.prior)
    b.load_state_dict(a.state_dict())  # strict: same keys
    z = torch.randn(4, 2)
    with torch.no_grad():
        want = a.prior(torch.Size((4,))).log_prob(z)
        torch.testing.assert_close(b.prior(torch.Size((4,))).log_prob(z), want)


# ---- the flow -------------------------------------------------------------------------------
def flow(transform, latent_dim=2, scale=0.2):
    """A flow prior moved well away from its initial (near-identity) map."""
    vae = build({"name": "flow", "transform": transform, "hidden": [8, 8]}, latent_dim=latent_dim)
    perturb(vae.prior, scale)
    return vae.prior


@pytest.mark.parametrize("transform", priors.FLOW_TRANSFORMS)
def test_flow_log_prob_is_the_change_of_variables_formula(transform):
    prior = flow(transform)

    def f(eps):  # sampling map ε -> z
        z = eps.unsqueeze(0)
        for t in prior.transforms():
            z = t(z)
        return z.squeeze(0)

    eps = torch.randn(5, 2)
    with torch.no_grad():
        z = torch.stack([f(e) for e in eps]).clone()  # clone: no help from the transforms' cache
        got = prior(torch.Size((5,))).log_prob(z)
    logdet = torch.stack([torch.linalg.slogdet(torch.autograd.functional.jacobian(f, e))[1] for e in eps])
    want = torch.distributions.Normal(0.0, 1.0).log_prob(eps).sum(-1) - logdet
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("transform", priors.FLOW_TRANSFORMS)
def test_flow_density_integrates_to_one_and_matches_its_samples(transform):
    prior = flow(transform, scale=0.1)  # larger moves make spline densities too sharp for this grid
    h = 0.04
    g = torch.arange(-7, 7, h) + h / 2
    grid = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        dens = prior(torch.Size((grid.shape[0],))).log_prob(grid).double().exp() * h * h
        assert dens.sum().item() == pytest.approx(1.0, abs=5e-3)
        grid_mean = (dens[:, None] * grid.double()).sum(0)
        torch.manual_seed(0)
        s = prior(torch.Size((10000,))).sample().double()
    se = s.std(0) / math.sqrt(s.shape[0])
    assert ((s.mean(0) - grid_mean).abs() < 4 * se + 5e-3).all()


@pytest.mark.parametrize("transform", priors.FLOW_TRANSFORMS)
def test_flow_in_one_dimension(transform):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Pyro warning about input_dim = 1
        prior = flow(transform, latent_dim=1)
    h = 0.01
    grid = (torch.arange(-12, 12, h) + h / 2).unsqueeze(-1)
    with torch.no_grad():
        mass = (prior(torch.Size((grid.shape[0],))).log_prob(grid).double().exp() * h).sum().item()
        assert prior(torch.Size((3,))).sample().shape == (3, 1)
    assert mass == pytest.approx(1.0, abs=5e-3)


# ---- gradients --------------------------------------------------------------------------------
@pytest.mark.parametrize("key", [k for k in PRIORS if k not in FIXED])
def test_prior_parameters_get_finite_gradients_through_the_elbo(key):
    vae = build(PRIORS[key])
    perturb(vae.prior, 0.1)
    torch.manual_seed(0)
    Trace_ELBO().differentiable_loss(vae.model, vae.guide, torch.randn(8, 5)).backward()
    for name, p in vae.prior.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# ---- KL: analytic where a closed form exists, Monte Carlo otherwise --------------------------
@pytest.mark.parametrize("key", sorted(ANALYTIC))
def test_analytic_kl_agrees_with_monte_carlo(key):
    prior = build(PRIORS[key]).prior
    perturb(prior)
    q = diagonal_q()
    p = prior(torch.Size((3,)))
    with torch.no_grad():
        kl = kl_divergence(q, p)
        assert kl.shape == (3,)
        torch.manual_seed(0)
        z = q.sample((40000,))
        d = (q.log_prob(z) - p.log_prob(z)).double()
    mc, se = d.mean(0), d.std(0) / math.sqrt(d.shape[0])
    assert ((kl.double() - mc).abs() < 4 * se).all(), (kl, mc, se)


@pytest.mark.parametrize("key", PRIORS)
def test_kl_dispatch_and_elbo_parts(key):
    vae = build(PRIORS[key])
    x = torch.randn(9, 5)
    q, p = vae.encode(x), vae.prior(torch.Size((9,)))
    if key in ANALYTIC:
        assert kl_divergence(q, p).shape == (9,)
    else:
        with pytest.raises(NotImplementedError):
            kl_divergence(q, p)
    parts = elbo_parts(vae, x)
    assert parts["kl_analytic"] is (key in ANALYTIC)
    assert torch.isfinite(parts["kl"]).all() and parts["kl"].shape == (9,)


@pytest.mark.parametrize("key", ["learned_normal", "laplace_learned"])
def test_meanfield_elbo_uses_the_analytic_kl(key):
    vae = build(PRIORS[key])
    perturb(vae.prior)
    x = torch.randn(6, 5)
    torch.manual_seed(3)
    loss = TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x)
    torch.manual_seed(3)
    guide_tr = poutine.trace(vae.guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(x)
    recon = model_tr.nodes["x"]["fn"].log_prob(x).sum()
    kl = kl_divergence(guide_tr.nodes["z"]["fn"], model_tr.nodes["z"]["fn"]).sum()
    torch.testing.assert_close(loss, kl - recon)


# ---- training -----------------------------------------------------------------------------------
@pytest.mark.parametrize("estimator", [None, "trace_meanfield_elbo"])
@pytest.mark.parametrize("key", PRIORS)
def test_trains_two_epochs_without_nan(key, estimator):
    vae = build(PRIORS[key], estimator)
    before = {n: p.detach().clone() for n, p in vae.prior.named_parameters()}
    g = torch.Generator().manual_seed(0)
    train, test = torch.randn(32, 5, generator=g), torch.randn(16, 5, generator=g)
    history = pyrovae.fit(vae, (train, test), epochs=2, batch_size=16, progress=False)
    assert len(history) == 2
    for r in history:
        assert all(math.isfinite(r[k]) for k in ("train_objective", "test_elbo", "test_kl"))
    for n, p in vae.prior.named_parameters():
        assert torch.isfinite(p).all(), n
        assert not torch.equal(before[n], p.detach()), n  # trained with the rest of the VAE


def test_vamp_with_the_default_bernoulli_likelihood_and_its_default_init():
    spec = {"model": {"latent_dim": 2, "prior": {"name": "vamp", "components": 5},
                      "encoder": {"name": "mlp", "hidden": [16]}, "decoder": {"name": "mlp", "hidden": [16]}}}
    vae = pyrovae.build(spec, data_shape=(5,))
    u = vae.prior.pseudo_inputs
    assert abs(u.mean().item() - 0.5) < 0.1 and 0.05 < u.std().item() < 0.2  # 0.5 ± 0.1: data in [0, 1]
    x = torch.rand(48, 5, generator=torch.Generator().manual_seed(0))
    history = pyrovae.fit(vae, (x[:32], x[32:]), epochs=2, batch_size=16, progress=False)
    assert math.isfinite(history[-1]["test_elbo"])


# ---- option validation ----------------------------------------------------------------------------
@pytest.mark.parametrize("prior, match", [
    ({"name": "mixture", "components": 0}, "components must be an integer >= 1"),
    ({"name": "vamp", "components": 2.5}, "components must be an integer"),
    ({"name": "vamp", "init_scale": 0}, "init_scale must be a positive number"),
    ({"name": "flow", "transform": "planar"}, "valid choices: affine_autoregressive, spline"),
    ({"name": "flow", "depth": 0}, "depth must be an integer >= 1"),
    ({"name": "flow", "hidden": [1]}, "hidden must be a non-empty list of integers >= latent_dim"),
    ({"name": "student_t", "df": -1}, "df must be a positive number"),
    ({"name": "laplace", "scale": True}, "scale must be a positive number"),
    ({"name": "laplace", "learned": "yes"}, "learned must be true or false"),
])
def test_bad_options_are_spec_errors_naming_the_key(prior, match):
    with pytest.raises(SpecError, match=match) as e:
        build(prior)
    assert e.value.key == "model.prior"
