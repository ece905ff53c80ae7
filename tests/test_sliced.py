"""Sliced-Wasserstein distance and the SWAE objective, checked against optimal assignments
(scipy's linear_sum_assignment and wasserstein_distance), the closed form W_2² between 1-D
Gaussians, E_θ[(θ·Δμ)²] = ‖Δμ‖²/d, and log-densities read off Pyro traces."""

import math

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from scipy.optimize import linear_sum_assignment
from scipy.stats import wasserstein_distance

import pyrovae
from pyrovae.objectives.sliced import random_directions, sliced_wasserstein

from .conftest import small_spec

N = 1000


def _assignment_cost(a, b, p):
    """min over one-to-one matchings of the mean |a_i - b_π(i)|^p: W_p^p of two equal-size 1-D
    samples, by the Hungarian algorithm (no sorting)."""
    cost = np.abs(a[:, None] - b[None, :]) ** p
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def test_one_dimension_matches_scipy():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(37, 1, generator=g, dtype=torch.float64)
    y = 0.3 + 2.0 * torch.rand(37, 1, generator=g, dtype=torch.float64)
    w1 = wasserstein_distance(x[:, 0].numpy(), y[:, 0].numpy())
    assert sliced_wasserstein(x, y, 5, p=1, generator=g).item() == pytest.approx(w1, rel=1e-12)
    w22 = _assignment_cost(x[:, 0].numpy(), y[:, 0].numpy(), 2)
    assert sliced_wasserstein(x, y, 5, p=2, generator=g).item() == pytest.approx(w22, rel=1e-10)


@pytest.mark.parametrize("p", [1, 2])
def test_each_direction_is_an_optimal_assignment(p):
    """In d = 3, the estimate equals the average over the given directions of the optimal
    matching cost of the projections."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(25, 3, generator=g, dtype=torch.float64)
    scale = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    y = torch.randn(25, 3, generator=g, dtype=torch.float64) * scale
    theta = random_directions(3, 7, generator=g, dtype=torch.float64)
    direct = np.mean([_assignment_cost((x @ t).numpy(), (y @ t).numpy(), p) for t in theta.T])
    assert sliced_wasserstein(x, y, p=p, directions=theta).item() == pytest.approx(direct, rel=1e-10)
    perm = torch.randperm(25, generator=g)
    assert sliced_wasserstein(x, y[perm], p=p, directions=theta).item() == pytest.approx(direct, rel=1e-10)


@pytest.mark.parametrize("p", [1, 2])
def test_a_shifted_copy_costs_the_projected_shift(p):
    """y = x + c: every projection is shifted by θ·c, so SW_p^p = mean_θ |θ·c|^p exactly."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(50, 4, generator=g, dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=torch.float64)
    theta = random_directions(4, 20, generator=g, dtype=torch.float64)
    exact = (c @ theta).abs().pow(p).mean().item()
    assert sliced_wasserstein(x, x + c, p=p, directions=theta).item() == pytest.approx(exact, rel=1e-10)
    # in one dimension the directions are ±1: W_p^p = |c|^p
    assert sliced_wasserstein(x[:, :1], x[:, :1] + 1.5, 3, p=p).item() == pytest.approx(1.5**p, rel=1e-12)


def _repeat(fn, reps):
    t = torch.tensor([fn(i) for i in range(reps)], dtype=torch.float64)
    return t.mean().item(), t.std().item() / math.sqrt(reps)


def test_1d_gaussians_w2_squared():
    """SW_2² = W_2² = (μ1-μ2)² + (σ1-σ2)² = 4.5 for N(1, 2²) vs N(-0.5, 0.5²). 10 repeats of
    50 000 draws each: within 4 standard errors (the positive bias of empirical W_2², of order
    (σ1²+σ2²) log log n / n ≈ 2e-4, is far below that)."""
    g = torch.Generator().manual_seed(3)
    n = 50_000

    def one(_):
        x = 1.0 + 2.0 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        y = -0.5 + 0.5 * torch.randn(n, 1, generator=g, dtype=torch.float64)
        return sliced_wasserstein(x, y, 1, p=2, generator=g).item()

    mean, se = _repeat(one, 10)
    assert abs(mean - 4.5) < 4 * se and se < 0.02


def test_1d_gaussians_w1_with_equal_scales():
    """W_1(N(μ1, σ²), N(μ2, σ²)) = |μ1 - μ2| = 0.7."""
    g = torch.Generator().manual_seed(4)
    n = 50_000

    def one(_):
        x = torch.randn(n, 1, generator=g, dtype=torch.float64)
        y = 0.7 + torch.randn(n, 1, generator=g, dtype=torch.float64)
        return sliced_wasserstein(x, y, 1, p=1, generator=g).item()

    mean, se = _repeat(one, 10)
    assert abs(mean - 0.7) < 4 * se and se < 0.01


def test_random_directions_average_projected_shift():
    """θ uniform on S^{d-1}: |θ| = 1 and E[(θ·Δμ)²] = ‖Δμ‖²/d (E θθᵀ = I/d)."""
    g = torch.Generator().manual_seed(5)
    delta = torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64)
    theta = random_directions(4, 200_000, generator=g, dtype=torch.float64)
    assert torch.allclose(theta.norm(dim=0), torch.ones(200_000, dtype=torch.float64))
    v = (delta @ theta) ** 2
    se = v.std().item() / math.sqrt(v.numel())
    assert abs(v.mean().item() - 6.0 / 4) < 4 * se and se < 0.01


def test_isotropic_gaussians_with_shifted_means():
    """N(0, I_4) vs N(Δμ, I_4): each projection is N(0, 1) vs N(θ·Δμ, 1), W_2² = (θ·Δμ)², so
    SW_2² = ‖Δμ‖²/d = 1.5. 8 repeats of 2000 draws and 500 directions: within 4 SE."""
    g = torch.Generator().manual_seed(6)
    delta = torch.tensor([1.0, 2.0, 0.0, -1.0], dtype=torch.float64)

    def one(_):
        x = torch.randn(2000, 4, generator=g, dtype=torch.float64)
        y = delta + torch.randn(2000, 4, generator=g, dtype=torch.float64)
        return sliced_wasserstein(x, y, 500, p=2, generator=g).item()

    mean, se = _repeat(one, 8)
    assert abs(mean - 1.5) < 4 * se and se < 0.05


def test_sliced_wasserstein_rejects_bad_arguments():
    x = torch.randn(5, 2)
    with pytest.raises(ValueError, match="equal shape"):
        sliced_wasserstein(x, torch.randn(6, 2))
    with pytest.raises(ValueError, match="p must be"):
        sliced_wasserstein(x, x, p=3)
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(x, x, projections=0)


# ---- the objective ---------------------------------------------------------------------------------
def _build(small_data, objective):
    spec = small_spec()
    spec["objective"] = objective
    return pyrovae.build(spec, data=small_data)


def _objective(vae):
    from pyrovae.assemble import build_objective
    return build_objective(vae)


@pytest.mark.parametrize("encoder", ["deterministic", "stochastic"])
@pytest.mark.parametrize("p", [1, 2])
def test_swae_loss_by_hand(small_data, encoder, p):
    """-(N/B) Σ log p(x|z) + λ N SW_p^p(z, prior draws), same directions (same RNG order)."""
    lam, projections = 4.0, 30
    vae = _build(small_data, {"name": "swae", "lam": lam, "p": p, "projections": projections,
                              "encoder": encoder}).double()
    obj = _objective(vae)
    x = small_data.train[:16].double()
    gtr = poutine.trace(obj.guide).get_trace(x, num_data=N)
    mtr = poutine.trace(poutine.replay(obj.model, trace=gtr)).get_trace(x, num_data=N)
    assert gtr.nodes["z"]["mask"] is False and mtr.nodes["z"]["mask"] is False  # no KL
    assert "sliced_wasserstein" in mtr.nodes
    q = vae.encode(x)
    if encoder == "deterministic":
        assert torch.equal(gtr.nodes["z"]["value"], q.mean)

    pyro.set_rng_seed(9)
    loss = obj.loss(x, num_data=N).item()
    pyro.set_rng_seed(9)
    z = q.mean if encoder == "deterministic" else q.rsample()
    draws = vae.prior(torch.Size([16])).rsample()
    sw = sliced_wasserstein(z, draws, projections, p).item()
    expected = -(N / 16) * vae.decode(z).log_prob(x).sum().item() + lam * N * sw
    assert loss == pytest.approx(expected, rel=1e-10)


def test_plain_pyro_svi_runs_swae(small_data):
    obj = _objective(_build(small_data, {"name": "swae"}))
    x = small_data.train[:32]
    svi = pyro.infer.SVI(obj.model, obj.guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    pyro.set_rng_seed(0)
    svi_loss = svi.evaluate_loss(x, num_data=N)
    pyro.set_rng_seed(0)
    assert svi_loss == pytest.approx(obj.loss(x, num_data=N).item(), rel=1e-5)
    assert all(math.isfinite(svi.step(x, num_data=N)) for _ in range(3))


@pytest.mark.parametrize("objective", [{"name": "swae"}, {"name": "swae", "p": 1, "encoder": "stochastic"}])
def test_swae_fits_two_epochs(small_data, objective):
    hist = pyrovae.fit(_build(small_data, objective), small_data, progress=False)
    assert len(hist) == 2
    for h in hist:
        for key in ("train_objective", "train_sliced_wasserstein", "train_sliced_wasserstein_se",
                    "test_elbo"):
            assert math.isfinite(h[key]), key
        assert h["train_sliced_wasserstein"] > 0


@pytest.mark.parametrize("objective, word", [
    ({"name": "swae", "p": 3}, "p must be"),
    ({"name": "swae", "p": True}, "p must be"),
    ({"name": "swae", "projections": 0}, "projections"),
    ({"name": "swae", "lam": -1.0}, "lam"),
    ({"name": "swae", "encoder": "random"}, "encoder"),
])
def test_bad_swae_options_are_spec_errors_naming_objective(small_data, objective, word):
    with pytest.raises(pyrovae.SpecError) as e:
        _build(small_data, objective)
    assert e.value.key == "objective" and word in str(e.value)
