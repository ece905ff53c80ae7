"""The ELBO family (β, KL warm-up, free bits) and the capacity-annealed β-VAE.

Every loss is checked against a number built independently of the objective's code:
Pyro's own Trace_ELBO / TraceMeanField_ELBO on the unwrapped ``vae.model``/``vae.guide``,
or the reconstruction term read off a replayed trace plus a KL from the closed form
KL(N(μ, σ²) || N(0, 1)) = (σ² + μ² - 1)/2 - log σ or from scipy's log-densities.
Hand-built losses use the same seed, hence the same z, as the objective's loss.
"""

import math

import numpy as np
import pyro
import pyro.infer
import pyro.optim
import pytest
import torch
from pyro import poutine
from scipy import stats

import pyrovae
from pyrovae.errors import SpecError
from pyrovae.objectives import registry, schedules

from .conftest import small_spec

N = 200  # the data set size the minibatch stands for (num_data)
B = 16  # the minibatch
SEED = 7


def objective(vae, name="elbo", **options):
    return registry.build(name, options, "objective", vae)


def vae64(**over):
    """The small test VAE in float64, so hand-built sums agree to ~1e-12."""
    return pyrovae.build(small_spec(**over), data_shape=(1, 8, 8)).double()


@pytest.fixture
def x(small_data):
    return small_data.train[:B].double()


def seeded_loss(obj, x, **kw):
    pyro.set_rng_seed(SEED)
    return obj.loss(x, num_data=N, **kw)


def hand_parts(vae, x):
    """Under SEED (so z is the objective's draw): the reconstruction term
    Σ_b log p(x_b|z_b) · N/B, the guide's loc/scale, z, and the prior site's distribution."""
    pyro.set_rng_seed(SEED)
    gtr = poutine.trace(vae.guide).get_trace(x, num_data=N)
    mtr = poutine.trace(poutine.replay(vae.model, trace=gtr)).get_trace(x, num_data=N)
    recon = mtr.nodes["x"]["fn"].log_prob(x).sum() * (N / B)
    q = gtr.nodes["z"]["fn"].base_dist
    return recon, q.loc.detach(), q.scale.detach(), gtr.nodes["z"]["value"].detach(), mtr.nodes["z"]["fn"]


def normal_kl(loc, scale):
    """KL(N(loc, scale²) || N(0, 1)) per example and dimension, closed form."""
    return 0.5 * (scale**2 + loc**2 - 1) - scale.log()


def close(a, b, rtol=1e-10):
    a, b = (float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for v in (a, b))
    assert a == pytest.approx(b, rel=rtol, abs=1e-9), (a, b)


# ---- β = 1, no schedule: Pyro's own ELBO ------------------------------------------------------
@pytest.mark.parametrize("estimator", ["trace_elbo", "trace_meanfield_elbo"])
def test_beta_one_no_schedule_is_exactly_pyros_elbo(small_vae, small_data, estimator):
    x = small_data.train[:B]
    plain = {"trace_elbo": pyro.infer.Trace_ELBO, "trace_meanfield_elbo": pyro.infer.TraceMeanField_ELBO}
    pyro.set_rng_seed(SEED)
    ref = plain[estimator]().differentiable_loss(small_vae.model, small_vae.guide, x, num_data=N)
    obj = objective(small_vae, estimator=estimator)
    assert obj.is_elbo
    assert torch.equal(seeded_loss(obj, x), ref)
    # warm-ups that have reached β(t) = 1: the wrapper is active and changes nothing
    for opts, t in [({"warmup": "linear", "warmup_epochs": 4}, 4.0),
                    ({"warmup": "cyclical", "warmup_epochs": 8, "cycles": 2}, 2.0),  # top of cycle 1
                    ({"warmup": "cyclical", "warmup_epochs": 8, "cycles": 2}, 9.5)]:
        obj = objective(small_vae, estimator=estimator, **opts)
        obj.set_progress(t)
        assert obj.current_beta == 1.0 and not obj.is_elbo
        assert torch.equal(seeded_loss(obj, x), ref), opts


# ---- schedules -------------------------------------------------------------------------------
def test_linear_and_cyclical_schedule_values():
    # linear, 5 epochs: t/5 up to 1
    assert [schedules.linear(t, 5) for t in (0, 1, 2.5, 5, 12)] == [0.0, 0.2, 0.5, 1.0, 1.0]
    assert schedules.linear(3, 0) == 1.0
    # cyclical, 8 epochs in 2 cycles of 4, rising over the first half (2 epochs) of each
    ts = [0, 1, 2, 3, 3.9, 4, 5, 6, 7.5, 8, 20]
    want = [0.0, 0.5, 1.0, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert [schedules.cyclical(t, 8, 2, 0.5) for t in ts] == want
    # ratio 1 is a saw-tooth: 4 cycles of 2.5 epochs over 10
    assert [schedules.cyclical(t, 10, 4, 1.0) for t in (0.5, 2.5, 3.75, 9.375)] == [0.2, 0.0, 0.5, 0.75]
    # capacity ramp: 0 -> 25 nats over 10 epochs; from 5 nats; capacity_epochs 0
    assert [schedules.ramp(t, 0, 25, 10) for t in (0, 2, 10, 15)] == [0.0, 5.0, 25.0, 25.0]
    assert schedules.ramp(5, 5, 25, 10) == 15.0 and schedules.ramp(0, 0, 25, 0) == 25.0


def test_objective_reads_the_schedule_each_time_the_model_runs(small_vae, small_data):
    x = small_data.train[:B]
    obj = objective(small_vae, beta=4.0, warmup="linear", warmup_epochs=2)
    model, guide = obj.model, obj.guide  # taken once, as a plain SVI loop would
    for t, beta_t in [(0.0, 0.0), (0.5, 1.0), (1.0, 2.0), (3.0, 4.0)]:
        obj.set_progress(t)
        assert obj.current_beta == beta_t
        gtr = poutine.trace(guide).get_trace(x)
        mtr = poutine.trace(poutine.replay(model, trace=gtr)).get_trace(x)
        for tr in (gtr, mtr):
            if beta_t == 0:  # masked out (poutine.scale would reject 0)
                assert tr.nodes["z"]["mask"] is False
            else:
                assert tr.nodes["z"]["scale"] == beta_t and tr.nodes["z"]["mask"] is None
        assert mtr.nodes["x"]["scale"] == 1.0


def test_warmup_at_zero_is_reconstruction_only(x):
    vae = vae64()
    for kind in ("linear", "cyclical"):
        obj = objective(vae, beta=3.0, warmup=kind, warmup_epochs=4)
        obj.set_progress(0.0)
        recon = hand_parts(vae, x)[0]
        close(seeded_loss(obj, x), -recon)


@pytest.mark.parametrize("estimator", ["trace_elbo", "trace_meanfield_elbo"])
@pytest.mark.parametrize("opts,t,beta_t", [
    ({"beta": 2.0, "warmup": "linear", "warmup_epochs": 4}, 1.0, 0.5),  # 2 · 1/4
    ({"beta": 1.0, "warmup": "cyclical", "warmup_epochs": 8, "cycles": 2}, 5.0, 0.5),  # 2nd cycle, halfway up
    ({"beta": 3.0}, 0.3, 3.0),  # constant β
])
def test_mid_warmup_is_recon_plus_beta_t_kl(x, estimator, opts, t, beta_t):
    vae = vae64()
    obj = objective(vae, estimator=estimator, **opts)
    obj.set_progress(t)
    assert obj.current_beta == beta_t
    recon, loc, scale, z, _ = hand_parts(vae, x)
    if estimator == "trace_meanfield_elbo":  # analytic KL
        kl = normal_kl(loc, scale).sum()
    else:  # the one-sample estimate log q(z|x) - log p(z), densities from scipy
        kl = (stats.norm.logpdf(z.numpy(), loc.numpy(), scale.numpy()) - stats.norm.logpdf(z.numpy())).sum()
    close(seeded_loss(obj, x), -recon + beta_t * kl * N / B)


# ---- free bits --------------------------------------------------------------------------------
def test_free_bits_above_every_kl_d_gives_the_floor(x):
    vae = vae64()
    recon, loc, scale, _, _ = hand_parts(vae, x)
    kl_d = normal_kl(loc, scale).mean(0)
    lam = float(kl_d.max()) + 0.7
    obj = objective(vae, free_bits=lam)
    d = vae.latent_dim
    # the factor site itself carries -d·λ·N
    pyro.set_rng_seed(SEED)
    gtr = poutine.trace(obj.guide).get_trace(x, num_data=N)
    mtr = poutine.trace(poutine.replay(obj.model, trace=gtr)).get_trace(x, num_data=N)
    mtr.compute_log_prob()
    close(mtr.nodes["free_bits_kl"]["log_prob_sum"], -d * lam * N)
    assert gtr.nodes["z"]["mask"] is False and mtr.nodes["z"]["mask"] is False  # z left Pyro's ELBO
    close(seeded_loss(obj, x), -recon + d * lam * N)
    m = obj.epoch_metrics()
    assert m["free_bits_floor_dims"] == d
    close(m["train_kl"], kl_d.sum(), rtol=1e-9)


def test_free_bits_below_every_kl_d_is_the_analytic_elbo(x):
    vae = vae64()
    recon, loc, scale, _, _ = hand_parts(vae, x)
    lam = 1e-9
    assert (normal_kl(loc, scale).mean(0) > lam).all()
    pyro.set_rng_seed(SEED)
    ref = pyro.infer.TraceMeanField_ELBO().differentiable_loss(vae.model, vae.guide, x, num_data=N)
    # whatever the estimator, free bits take the analytic per-dimension KL when it exists
    for estimator in ("trace_elbo", "trace_meanfield_elbo"):
        close(seeded_loss(objective(vae, free_bits=lam, estimator=estimator), x), ref)
    # λ = 0 is off: exactly the ELBO
    obj = objective(vae, free_bits=0.0, estimator="trace_meanfield_elbo")
    assert obj.is_elbo and obj.model == vae.model
    assert torch.equal(seeded_loss(obj, x), ref)


def test_free_bits_mixed_dims_with_beta_and_warmup(x):
    vae = vae64()
    recon, loc, scale, _, _ = hand_parts(vae, x)
    kl_d = normal_kl(loc, scale).mean(0).sort().values
    lam = float(kl_d[0] + kl_d[1]) / 2  # dimension 0 below λ, the others above
    obj = objective(vae, free_bits=lam, beta=3.0, warmup="linear", warmup_epochs=4)
    obj.set_progress(1.0)  # β(t) = 3 · 1/4
    want = float(lam + kl_d[1] + kl_d[2])
    assert want > float(kl_d.sum())
    close(seeded_loss(obj, x), -recon + 0.75 * want * N)
    assert obj.epoch_metrics() == pytest.approx({"beta": 0.75, "train_kl": float(kl_d.sum()),
                                                 "free_bits_floor_dims": 1.0}, rel=1e-9)
    assert obj.epoch_metrics() == {"beta": 0.75}  # reset after reading


def test_free_bits_monte_carlo_per_dimension_without_an_analytic_kl(x):
    vae = vae64(**{"model.prior": "student_t"})  # torch has no Normal-StudentT KL
    recon, loc, scale, z, p = hand_parts(vae, x)
    pt = p.base_dist
    log_q = stats.norm.logpdf(z.numpy(), loc.numpy(), scale.numpy())
    log_p = stats.t.logpdf(z.numpy(), pt.df.detach().numpy(), pt.loc.detach().numpy(),
                           pt.scale.detach().numpy())
    kl_d = np.sort((log_q - log_p).mean(0))
    lam = (kl_d[1] + kl_d[2]) / 2  # two dimensions below λ, one above
    obj = objective(vae, free_bits=float(lam))
    close(seeded_loss(obj, x), -recon + (2 * lam + kl_d[2]) * N)


@pytest.mark.parametrize("over,who", [({"model.guide": "full_rank"}, "guide 'full_rank'"),
                                      ({"model.prior": "mixture"}, "prior 'mixture'"),
                                      ({"model.guide": "flow"}, "guide 'flow'")])
def test_free_bits_refuse_a_non_factorised_guide_or_prior(over, who):
    with pytest.raises(SpecError) as e:
        pyrovae.build(small_spec(**over, **{"objective.free_bits": 0.5}), data_shape=(1, 8, 8))
    assert e.value.key == "objective" and who in str(e.value) and "factorises" in str(e.value)


# ---- capacity ---------------------------------------------------------------------------------
def test_capacity_loss_is_recon_plus_gamma_abs_kl_minus_c(x):
    vae = vae64()
    recon, loc, scale, _, _ = hand_parts(vae, x)
    kl = float(normal_kl(loc, scale).sum(-1).mean())  # batch-average KL per example
    c_max = 2 * kl
    obj = objective(vae, "capacity", gamma=7.0, capacity_max=c_max, capacity_epochs=10)
    signs = set()
    for t in (0.0, 2.0, 20.0):
        c = c_max * min(1.0, t / 10)
        obj.set_progress(t)
        close(obj.capacity, c, rtol=1e-12)
        close(seeded_loss(obj, x), -recon + 7.0 * abs(kl - c) * N)
        signs.add(kl > c)
    assert signs == {True, False}  # both sides of the kink
    m = obj.epoch_metrics()
    close(m["capacity"], c_max)
    close(m["train_kl"], kl, rtol=1e-9)


def test_capacity_monte_carlo_kl_and_start(x):
    vae = vae64(**{"model.prior": "student_t"})
    recon, loc, scale, z, p = hand_parts(vae, x)
    pt = p.base_dist
    kl = (stats.norm.logpdf(z.numpy(), loc.numpy(), scale.numpy())
          - stats.t.logpdf(z.numpy(), pt.df.detach().numpy(), pt.loc.detach().numpy(),
                           pt.scale.detach().numpy())).sum(-1).mean()
    obj = objective(vae, "capacity", gamma=3.0, capacity_start=1.0, capacity_max=5.0, capacity_epochs=4)
    obj.set_progress(1.0)  # C = 1 + 4 · 1/4 = 2
    assert obj.capacity == 2.0
    close(seeded_loss(obj, x), -recon + 3.0 * abs(kl - 2.0) * N)


# ---- plain Pyro SVI and fit, for every option set --------------------------------------------
OPTION_SETS = [
    ("elbo", {}),
    ("elbo", {"beta": 4.0, "estimator": "trace_meanfield_elbo"}),
    ("elbo", {"warmup": "linear", "warmup_epochs": 2}),
    ("elbo", {"warmup": "cyclical", "warmup_epochs": 2, "cycles": 2, "cycle_ratio": 1.0}),
    ("elbo", {"free_bits": 0.5}),
    ("elbo", {"free_bits": 0.5, "beta": 2.0, "warmup": "linear", "warmup_epochs": 2,
              "estimator": "trace_meanfield_elbo"}),
    ("elbo", {"free_bits": 0.5, "num_particles": 2}),
    ("capacity", {"capacity_epochs": 4, "capacity_max": 5.0}),
    ("capacity", {"gamma": 10.0, "num_particles": 2}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items()) or 'defaults'}" for n, o in OPTION_SETS]


@pytest.mark.parametrize("name,opts", OPTION_SETS, ids=IDS)
def test_plain_pyro_svi_runs_the_objective(small_vae, small_data, name, opts):
    x = small_data.train[:B]
    obj = objective(small_vae, name, **opts)
    before = {k: v.detach().clone() for k, v in small_vae.named_parameters()}
    svi = pyro.infer.SVI(obj.model, obj.guide, pyro.optim.Adam({"lr": 1e-2}), loss=obj.pyro_loss)
    for step in range(3):
        obj.set_progress(0.5 * step)
        assert math.isfinite(svi.step(x, num_data=N))
    # plain SVI trained the VAE's own parameters ...
    assert any(not torch.equal(v, before[k]) for k, v in small_vae.named_parameters())
    # ... and evaluates the same number as the library's loss
    pyro.set_rng_seed(SEED)
    via_svi = svi.evaluate_loss(x, num_data=N)
    assert via_svi == pytest.approx(seeded_loss(obj, x).item(), rel=1e-5)


@pytest.mark.parametrize("name,opts", OPTION_SETS, ids=IDS)
def test_fit_two_epochs_with_finite_numbers(small_data, name, opts):
    spec = small_spec()
    spec["objective"] = {"name": name, **opts}
    vae = pyrovae.build(spec, data=small_data)
    hist = pyrovae.fit(vae, small_data, progress=False)
    assert len(hist) == 2
    for h in hist:
        numbers = {k: v for k, v in h.items() if isinstance(v, float)}
        assert all(math.isfinite(v) for v in numbers.values()), h
    last_steps = [0.75, 1.75]  # 200 examples, batches of 64: progress at each epoch's last step
    if name == "capacity":
        assert all(h["train_kl"] >= 0 for h in hist)  # analytic normal/normal KL
        want = [min(1.0, t / opts["capacity_epochs"]) * opts["capacity_max"] if "capacity_epochs" in opts
                else min(1.0, t / 100) * 25.0 for t in last_steps]
        assert [h["capacity"] for h in hist] == pytest.approx(want, rel=1e-12)
    elif opts.get("warmup") == "linear":  # β(t) = beta · t / 2
        assert [h["beta"] for h in hist] == pytest.approx([opts.get("beta", 1.0) * t / 2 for t in last_steps])
    elif opts.get("warmup") == "cyclical":  # cycles of 1 epoch, saw-tooth: w = t mod 1
        assert [h["beta"] for h in hist] == pytest.approx([0.75, 0.75])
    if opts.get("free_bits"):
        assert all(0 <= h["free_bits_floor_dims"] <= 3 and h["train_kl"] >= 0 for h in hist)
    assert ("train_elbo" in hist[-1]) == (name == "elbo" and not opts)


# ---- options --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,opts,word", [
    ("elbo", {"warmup": "exponential"}, "warmup"),
    ("elbo", {"warmup": "cyclical", "warmup_epochs": 0}, "warmup_epochs"),
    ("elbo", {"warmup_epochs": -1.0}, "warmup_epochs"),
    ("elbo", {"warmup": "cyclical", "cycles": 0}, "cycles"),
    ("elbo", {"cycles": 1.5}, "cycles"),
    ("elbo", {"cycle_ratio": 0}, "cycle_ratio"),
    ("elbo", {"cycle_ratio": 1.5}, "cycle_ratio"),
    ("elbo", {"free_bits": -0.1}, "free_bits"),
    ("elbo", {"free_bits": True}, "free_bits"),
    ("elbo", {"beta": -1.0}, "beta"),
    ("capacity", {"gamma": -1.0}, "gamma"),
    ("capacity", {"capacity_max": float("inf")}, "capacity_max"),
    ("capacity", {"capacity_epochs": -2}, "capacity_epochs"),
    ("capacity", {"capacity_start": "zero"}, "capacity_start"),
    ("capacity", {"num_particles": 0}, "num_particles"),
])
def test_bad_options_are_spec_errors_naming_objective(name, opts, word):
    spec = small_spec()
    spec["objective"] = {"name": name, **opts}
    with pytest.raises(SpecError) as e:
        pyrovae.build(spec, data_shape=(1, 8, 8))
    assert e.value.key == "objective" and word in str(e.value)


def test_list_describes_the_options():
    assert set(registry.options("elbo")) >= {"beta", "warmup", "warmup_epochs", "cycles", "cycle_ratio",
                                             "free_bits", "estimator", "num_particles"}
    assert {o.name: o.default for o in registry.options("capacity").values()} == {
        "gamma": 1000.0, "capacity_max": 25.0, "capacity_epochs": 100.0, "capacity_start": 0.0,
        "num_particles": 1}
    elbo, cap = registry.describe("elbo"), registry.describe("capacity")
    assert "warm-up" in elbo and "max(λ, KL_d)" in elbo and "linear | cyclical" in elbo
    assert "|KL(q(z|x) || p(z)) - C(t)|" in cap and "capacity_max" in cap
