"""Posterior analysis: PSIS k̂ against known tails and the linear-Gaussian posterior, the
ArviZ export's round trip, posterior predictive p-values, and ``pyrovae analyze`` end to end."""

import json

import arviz as az
import numpy as np
import pytest
import torch

import pyrovae
from pyrovae.analysis import export, ppc
from pyrovae.analysis.psis import khat_threshold, pareto_khat, psis_diagnostics
from pyrovae.cli import main

from .conftest import linear_gaussian_vae, set_ppca_posterior


def ppca(scale_factor, n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    W, b = torch.randn(5, 2, generator=g), torch.randn(5, generator=g)
    vae = linear_gaussian_vae(sigma=0.5, guide="full_rank")
    set_ppca_posterior(vae, W, b, 0.5, scale_factor=scale_factor)
    x = torch.randn(n, 2, generator=g) @ W.T + b + 0.5 * torch.randn(n, 5, generator=g)
    return vae, x


def test_khat_reads_a_known_tail_with_the_right_sign():
    # weights w = u^(-k), u ~ U(0, 1), have exactly a Pareto tail P(w > t) = t^(-1/k)
    rng = np.random.default_rng(0)
    u = rng.uniform(size=(20, 4000))
    for k in (0.3, 0.75, 1.2):
        assert np.median(pareto_khat(-k * np.log(u))) == pytest.approx(k, abs=0.06)
    # proposal N(0, 1) for a wider target N(0, σ²): w ∝ exp(z²(1 - 1/σ²)/2), tail k → 1 - 1/σ²
    # (approached from below at finite S); a narrower target gives bounded weights
    z = rng.normal(size=(20, 4000))
    k_by_sigma = [np.median(pareto_khat(0.5 * z**2 * (1 - 1 / s**2))) for s in (0.5, 1.25, 2.0)]
    assert k_by_sigma[0] < 0 < k_by_sigma[1] < 0.5 < k_by_sigma[2] < 0.8
    assert khat_threshold(1000) == pytest.approx(1 - 1 / 3)


def test_exact_posterior_guide_has_small_khat_and_a_narrow_one_large():
    torch.manual_seed(0)
    exact = psis_diagnostics(*ppca(1.0), num_draws=1000)
    assert (exact.khat < 0.5).all()  # equal weights: -inf, no tail at all
    wide = psis_diagnostics(*ppca(1.5), num_draws=1000)
    assert np.isfinite(wide.khat).all() and (wide.khat < 0.5).all()
    bad = psis_diagnostics(*ppca(0.3), num_draws=1000)
    assert (bad.khat > 0.7).mean() > 0.7 and bad.fraction_above > 0.7
    assert list(bad.worst(3)) == list(np.argsort(-bad.khat)[:3])
    d = bad.to_dict()
    assert d["n"] == 40 and sum(d["bands"].values()) == 40 and d["worst"][0]["khat"] == bad.khat.max()


def test_datatree_round_trips_through_netcdf_with_dims_and_coords(tmp_path, small_vae, small_data):
    x, labels = small_data.test[:6], small_data.test_labels[:6]
    dt = export.to_datatree(small_vae, x, num_draws=20, num_chains=3, index=np.arange(10, 16), labels=labels)
    path = export.save_netcdf(dt, tmp_path / "posterior.nc")
    back = az.from_netcdf(path)
    assert back.posterior["z"].dims == ("chain", "draw", "obs", "z_dim")
    assert back.posterior["z"].shape == (3, 20, 6, 3)
    assert back.posterior_predictive["x"].dims == ("chain", "draw", "obs", "channel", "row", "col")
    assert back.observed_data["x"].dims == ("obs", "channel", "row", "col")
    assert back.log_likelihood["x"].dims == ("chain", "draw", "obs")
    assert list(back.posterior["obs"].values) == list(range(10, 16))
    assert list(back.constant_data["label"].values) == labels.tolist()
    np.testing.assert_array_equal(back.posterior["z"].values, dt.posterior["z"].values)
    np.testing.assert_allclose(back.observed_data["x"].values, x.double().numpy())
    summary = az.summary(back, var_names=["z"])
    assert len(summary) == 6 * 3 and (summary["r_hat"] < 1.2).all()  # iid pseudo-chains agree
    # log p(x|z) in the export is the likelihood of the observed x at each draw
    z = torch.as_tensor(back.posterior["z"].values[0, 0], dtype=torch.float32)
    want = small_vae.decode(z).log_prob(x).double().detach().numpy()
    np.testing.assert_allclose(back.log_likelihood["x"].values[0, 0], want, rtol=1e-5)


def test_predictive_budget_limits_the_draws_kept(small_vae, small_data):
    x = small_data.test[:5]
    dt = export.to_datatree(small_vae, x, num_draws=10, num_chains=2, predictive_budget=2 * 5 * 64 * 3)
    assert dt.posterior_predictive["x"].shape[:2] == (2, 3) and dt.posterior["z"].shape[:2] == (2, 10)


def test_ppc_p_values_on_constructed_cases():
    # every example's 100 predictive draws are 0, 1, ..., 99 (2 chains x 50 draws)
    pred = np.repeat(np.arange(100.0).reshape(2, 50, 1), 3, axis=2)
    dt = az.from_dict({"posterior_predictive": {"x": pred[..., None]},
                       "observed_data": {"x": np.array([[49.5], [-1.0], [200.0]])}},
                      dims={"x": ["obs", "feature"]})
    tdt = ppc.statistic_datatree(dt, "mean")
    np.testing.assert_allclose(ppc.p_values(tdt), [0.5, 1.0, 0.0])
    summary = ppc.check(dt, "mean")
    assert summary["fraction_outside_95"] == pytest.approx(2 / 3) and summary["draws_per_example"] == 100
    with pytest.raises(ValueError, match="valid choices"):
        ppc.check(dt, "median")


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    assert main(["train", "--out", str(out), "--quiet", "--set", "train.epochs=3",
                 "--set", "model.latent_dim=3", "--set", "model.encoder.hidden=[32]",
                 "--set", "model.decoder.hidden=[32]"]) == 0
    return out


def test_analyze_writes_a_report_whose_links_exist(trained_run, capsys):
    rc = main(["analyze", str(trained_run), "--max-examples", "30", "--num-particles", "50",
               "--num-draws", "100", "--export-draws", "10", "--mcmc-examples", "2", "--mcmc-chains", "2",
               "--mcmc-samples", "30", "--mcmc-warmup", "30"])
    assert rc == 0
    report = (trained_run / "report.md").read_text()
    links = [ln.split("](")[1].rstrip(")") for ln in report.splitlines() if ln.startswith("![")]
    assert len(links) >= 10
    for link in links:
        assert (trained_run / link).stat().st_size > 1000
    res = json.loads((trained_run / "analysis" / "analysis.json").read_text())
    assert res["psis"]["n"] == 30 and res["evaluation"]["num_particles"] == 50
    assert len(res["mcmc"]["examples"]) == 2
    assert az.from_netcdf(trained_run / "analysis" / "posterior.nc").posterior["z"].shape == (4, 10, 30, 3)
    assert "k̂" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--num-draws", "5"], "--num-draws must be at least 10"),
    (["--statistic", "median"], "valid choices: mean, sum, sd"),
])
def test_analyze_bad_options_are_one_line_errors(trained_run, capsys, args, message):
    assert main(["analyze", str(trained_run), *args]) == 2
    assert message in capsys.readouterr().err


def test_analyze_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_analyze_a_semi_supervised_model_skips_nuts_with_a_note(tmp_path, small_data):
    from pyrovae.analysis.analyze import analyze

    from .conftest import small_spec

    vae = pyrovae.build(small_spec(**{"model.variant": "m2"}), data=small_data)
    res = analyze(vae, small_data, tmp_path, max_examples=12, num_particles=20, num_draws=50, export_draws=5,
                  mcmc_examples=2, progress=None)
    assert "skipped" in res["mcmc"]["notes"] and "skipped" in (tmp_path / "report.md").read_text()
    assert res["psis"]["n"] == 12 and np.isfinite(res["evaluation"]["log_px"])
