"""DIP-VAE: the covariance penalties against a direct numpy computation."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import pyrovae
from pyrovae.objectives.dip import DIPVAE, dip_covariance, dip_terms

from .conftest import objective_for, small_spec


def numpy_penalty(cov, lambda_od, lambda_d):
    """λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii - 1)², written out as loops."""
    d = cov.shape[0]
    off = sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j)
    diag = sum((cov[i, i] - 1) ** 2 for i in range(d))
    return lambda_od * off + lambda_d * diag


def random_batch(m=50, d=4, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(0, 1, (m, d)) @ rng.normal(0, 1, (d, d))  # correlated means
    scale = rng.uniform(0.2, 1.5, (m, d))
    return mu, scale


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_covariance_and_penalty_match_numpy(kind):
    mu, scale = random_batch()
    q = dist.Normal(torch.tensor(mu), torch.tensor(scale)).to_event(1)
    want = np.cov(mu, rowvar=False, bias=True)  # Cov_batch[μ(x)], 1/M
    if kind == "ii":
        want = want + np.diag((scale**2).mean(0))  # + E_batch[Σ(x)]
    cov = dip_covariance(q, kind)
    np.testing.assert_allclose(cov.numpy(), want, rtol=1e-10)
    off, diag = dip_terms(cov)
    got = 3.0 * off + 7.0 * diag
    assert got.item() == pytest.approx(numpy_penalty(want, 3.0, 7.0), rel=1e-10)


def test_full_covariance_guide_uses_its_covariance_matrices():
    mu, _ = random_batch(30, 3, seed=1)
    rng = np.random.default_rng(2)
    tril = np.tril(rng.normal(0, 0.5, (30, 3, 3)), -1) + np.eye(3) * rng.uniform(0.3, 1, (30, 1, 1))
    q = dist.MultivariateNormal(torch.tensor(mu), scale_tril=torch.tensor(tril))
    want = np.cov(mu, rowvar=False, bias=True) + (tril @ tril.transpose(0, 2, 1)).mean(0)
    np.testing.assert_allclose(dip_covariance(q, "ii").numpy(), want, rtol=1e-10)


def dip(vae, **options):
    obj = objective_for(vae, "dip_vae", **options)
    assert isinstance(obj, DIPVAE)
    return obj


def test_lambda_d_follows_the_paper_unless_set(small_vae):
    a = dip(small_vae, kind="i", lambda_od=2.0)
    b = dip(small_vae, kind="ii", lambda_od=2.0)
    c = dip(small_vae, kind="i", lambda_od=2.0, lambda_d=0.5)
    assert (a.lambda_d, b.lambda_d, c.lambda_d) == (20.0, 2.0, 0.5)
    assert dip(small_vae, lambda_od=0.0, lambda_d=0.0).is_elbo and not a.is_elbo


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_factor_is_the_penalty_of_the_batch_times_num_data(small_vae, small_data, kind):
    """loss - (-ELBO) on the same draw = N · penalty(q(z|x) of the batch), checked with the
    numpy formula on the encoder's means and scales."""
    obj = dip(small_vae, kind=kind, lambda_od=3.0, lambda_d=5.0)
    x, n = small_data.train[:64], 200
    torch.manual_seed(0)
    got = obj.loss(x, num_data=n)
    torch.manual_seed(0)
    elbo = pyro.infer.Trace_ELBO().differentiable_loss(small_vae.model, small_vae.guide, x, None, num_data=n)
    with torch.no_grad():
        q = small_vae.encode(x)
        mu, var = q.mean.double().numpy(), q.variance.double().numpy()
    cov = np.cov(mu, rowvar=False, bias=True) + (np.diag(var.mean(0)) if kind == "ii" else 0)
    want = n * numpy_penalty(cov, 3.0, 5.0)
    assert (got - elbo).item() == pytest.approx(want, rel=1e-4)
    m = obj.epoch_metrics()
    assert m["train_dip_diagonal"] == pytest.approx(numpy_penalty(cov, 0.0, 1.0), rel=1e-4)
    assert m["train_dip_offdiagonal"] == pytest.approx(numpy_penalty(cov, 1.0, 0.0), rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("kind", ["i", "ii"])
def test_trains_two_epochs(small_data, kind):
    spec = small_spec(**{"objective.name": "dip_vae", "objective.kind": kind})
    vae = pyrovae.build(spec, data=small_data)
    hist = pyrovae.fit(vae, small_data, progress=False)
    for h in hist:
        for k in ("train_objective", "test_elbo", "train_dip_offdiagonal", "train_dip_diagonal",
                  "train_dip_offdiagonal_se", "train_dip_diagonal_se"):
            assert math.isfinite(h[k]), k
        assert h["train_dip_offdiagonal"] >= 0 and h["train_dip_diagonal"] >= 0


@pytest.mark.parametrize("over", [{"objective.kind": "iii"}, {"objective.lambda_od": -1.0},
                                  {"objective.lambda_d": "many"},
                                  {"objective.kind": "ii", "model.guide": "flow"}])
def test_bad_options_are_spec_errors(small_data, over):
    spec = small_spec(**{"objective.name": "dip_vae", **over})
    with pytest.raises(pyrovae.SpecError) as e:
        pyrovae.build(spec, data=small_data)
    assert e.value.key == "objective"
