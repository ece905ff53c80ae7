"""FactorVAE: the density-ratio TC estimate, the separation of the two optimizers, and
the discriminator's place in checkpoints."""

import io
import math

import pyro
import pytest
import torch
from pyro import poutine

import pyrovae
from pyrovae import runs
from pyrovae.objectives.factor_vae import FactorVAE, permute_dims

from .conftest import linear_gaussian_vae, objective_for, small_spec


def factor_vae(vae, **options):
    obj = objective_for(vae, "factor_vae", **options)
    assert isinstance(obj, FactorVAE)
    return obj


def test_permute_dims_shuffles_each_column_independently():
    torch.manual_seed(0)
    z = torch.randn(4000, 1) * torch.ones(1, 3) + 0.1 * torch.randn(4000, 3)  # corr ≈ 0.99
    p = permute_dims(z)
    assert torch.equal(p.sort(0).values, z.sort(0).values)  # same marginals, column by column
    corr = torch.corrcoef(p.T)
    off = corr[~torch.eye(3, dtype=torch.bool)]
    assert off.abs().max() < 4 / math.sqrt(4000)  # independent columns: |r| ~ 1/sqrt(n)


@pytest.mark.parametrize("rho", [0.8, 0.0])
def test_trained_discriminator_estimates_the_tc_of_a_gaussian(rho):
    """z ~ N(0, [[1, ρ], [ρ, 1]]): TC = -½ log(1 - ρ²) = 0.511 nats for ρ = 0.8, 0 for ρ = 0.
    The estimate E[logit D(z)] is only as good as the classifier (its approximation error
    and its noise around the optimum bias the mean logit), so the tolerance is loose:
    0.1 nats, against a Monte Carlo error of ~0.005 on 20000 draws; over training seeds
    0, 1, 2 the estimate for ρ = 0.8 was 0.510, 0.501, 0.523."""
    obj = FactorVAE(linear_gaussian_vae(latent_dim=2), discriminator_hidden=[32, 32], discriminator_lr=1e-3)
    torch.manual_seed(0)
    chol = torch.linalg.cholesky(torch.tensor([[1.0, rho], [rho, 1.0]]))
    for _ in range(600 if rho else 300):
        obj.discriminator_step(torch.randn(256, 2) @ chol.T)
    with torch.no_grad():
        logits = obj.tc_logits(torch.randn(20000, 2) @ chol.T)
    tc_true = -0.5 * math.log(1 - rho**2)
    se = logits.std().item() / math.sqrt(logits.numel())
    assert abs(logits.mean().item() - tc_true) < 0.1 + 4 * se, (logits.mean().item(), tc_true)


def test_discriminator_is_separate_from_the_vae(small_vae, small_data):
    obj = factor_vae(small_vae, gamma=10.0)
    vae_ids = {id(p) for p in small_vae.parameters()}
    disc = list(obj.discriminator.parameters())
    assert disc and not any(id(p) in vae_ids for p in disc)
    assert not any(name.startswith("vae$$$discriminator") for name in pyro.get_param_store().keys())
    x = small_data.train[:64]
    enc = next(small_vae.encoder.parameters())
    # the VAE loss sends gradient into the encoder (through z) but never into the discriminator
    loss = obj.loss(x, num_data=200)
    loss.backward()
    assert all(p.grad is None for p in disc)
    enc_grad = enc.grad.clone()
    # and the TC term is part of that gradient: with γ = 0 the encoder gradient differs
    small_vae.zero_grad()
    torch.manual_seed(0)
    factor_vae(small_vae, gamma=0.0).loss(x, num_data=200).backward()
    g0 = enc.grad.clone()
    small_vae.zero_grad()
    torch.manual_seed(0)
    obj.loss(x, num_data=200).backward()
    assert not torch.allclose(enc.grad, g0)
    assert enc_grad.abs().sum() > 0
    # the discriminator's step leaves the VAE's gradients and parameters alone
    small_vae.zero_grad(set_to_none=True)
    before = {k: v.clone() for k, v in small_vae.state_dict().items()}
    w0 = disc[0].detach().clone()
    obj.after_step(x, num_data=200)
    assert all(p.grad is None for p in small_vae.parameters())
    assert all(torch.equal(before[k], v) for k, v in small_vae.state_dict().items())
    assert not torch.equal(disc[0], w0)


def test_tc_factor_is_gamma_times_the_mean_logit(small_vae, small_data):
    """loss - (-ELBO) on the same z = γ · N · mean_i logit D(z_i), z the guide's draw."""
    obj = factor_vae(small_vae, gamma=7.0)
    x, n = small_data.train[:64], 200
    torch.manual_seed(0)
    got = obj.loss(x, num_data=n)
    torch.manual_seed(0)
    elbo = pyro.infer.Trace_ELBO().differentiable_loss(small_vae.model, small_vae.guide, x, None, num_data=n)
    torch.manual_seed(0)
    with small_vae.unregistered():
        z = poutine.trace(small_vae.guide).get_trace(x, num_data=n).nodes["z"]["value"]
    want = 7.0 * n * obj.tc_logits(z).mean()
    assert (got - elbo).item() == pytest.approx(want.item(), rel=1e-4, abs=1e-3)
    assert not obj.is_elbo and factor_vae(small_vae, gamma=0.0).is_elbo


def test_state_dict_round_trip_restores_network_and_optimizer(small_vae):
    a = factor_vae(small_vae, discriminator_hidden=[16], discriminator_lr=1e-2)
    torch.manual_seed(0)
    for _ in range(3):
        a.discriminator_step(torch.randn(32, 3))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # the checkpoint's way: weights-only load must work
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    small_vae.spec = pyrovae.Spec.load(small_vae.spec, ["train.seed=1"])
    b = factor_vae(small_vae, discriminator_hidden=[16], discriminator_lr=1e-2)
    assert not torch.equal(a.discriminator[0].weight, b.discriminator[0].weight)  # other seed
    b.load_state_dict(state)
    for pa, pb in zip(a.discriminator.parameters(), b.discriminator.parameters(), strict=True):
        assert torch.equal(pa, pb)
        sa, sb = a.discriminator_optimizer.state[pa], b.discriminator_optimizer.state[pb]
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
        assert int(sa["step"]) == int(sb["step"]) == 3
    # the next step is the same on both: Adam's moments and step count came back
    z = torch.randn(32, 3)
    for obj in (a, b):
        torch.manual_seed(5)
        obj.discriminator_step(z)
    for pa, pb in zip(a.discriminator.parameters(), b.discriminator.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_fit_resume_equals_an_uninterrupted_run(tmp_path, small_data):
    over = {"objective.name": "factor_vae", "objective.discriminator_hidden": "[16]",
            "objective.discriminator_lr": 1.0e-3}
    full = pyrovae.build(small_spec(**over, **{"train.epochs": 4}), data=small_data)
    h_full = pyrovae.fit(full, small_data, run_dir=tmp_path / "full", progress=False)

    part = pyrovae.build(small_spec(**over, **{"train.epochs": 2}), data=small_data)
    pyrovae.fit(part, small_data, run_dir=tmp_path / "part", progress=False)
    resumed = pyrovae.load(tmp_path / "part")
    h = pyrovae.fit(resumed, small_data, run_dir=tmp_path / "part", resume=True, epochs=4, progress=False)

    a, b = runs.read_checkpoint(tmp_path / "full"), runs.read_checkpoint(tmp_path / "part")
    assert set(a["objective"]) == {"discriminator", "discriminator_optimizer"}
    for k, v in a["model"].items():
        assert torch.allclose(v, b["model"][k], atol=1e-6), k
    for k, v in a["objective"]["discriminator"].items():
        assert torch.allclose(v, b["objective"]["discriminator"][k], atol=1e-6), k
    sa = a["objective"]["discriminator_optimizer"]["state"]
    sb = b["objective"]["discriminator_optimizer"]["state"]
    assert all(torch.allclose(sa[i]["exp_avg"], sb[i]["exp_avg"], atol=1e-6) for i in sa)
    assert int(sa[0]["step"]) == int(sb[0]["step"]) == 4 * 4  # 4 epochs of 4 steps
    assert h[-1]["train_tc"] == pytest.approx(h_full[-1]["train_tc"], abs=1e-5)
    assert h[-1]["train_discriminator_accuracy"] == pytest.approx(h_full[-1]["train_discriminator_accuracy"])


def test_trains_two_epochs(small_data):
    spec = small_spec(**{"objective.name": "factor_vae", "objective.discriminator_hidden": "[32]"})
    vae = pyrovae.build(spec, data=small_data)
    hist = pyrovae.fit(vae, small_data, progress=False)
    for h in hist:
        for k in ("train_objective", "test_elbo", "train_tc", "train_tc_se",
                  "train_discriminator_accuracy", "train_discriminator_accuracy_se"):
            assert math.isfinite(h[k]), k
        assert 0 <= h["train_discriminator_accuracy"] <= 1


@pytest.mark.parametrize("options", [{"gamma": -1.0}, {"discriminator_hidden": [0]},
                                     {"discriminator_hidden": 64}, {"discriminator_lr": 0.0}])
def test_bad_options_are_spec_errors(small_data, options):
    spec = small_spec(**{"objective.name": "factor_vae"})
    spec["objective"].update(options)
    with pytest.raises(pyrovae.SpecError) as e:
        pyrovae.build(spec, data=small_data)
    assert e.value.key == "objective"
