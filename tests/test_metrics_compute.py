"""The metric registry, ``compute`` over seeds, input checks, and the encoder-mean representation."""

import math

import numpy as np
import pytest
import torch

import pyrovae.metrics as M
from pyrovae.errors import DataError, SpecError
from pyrovae.metrics.testing import FactorsAsObservations

from .conftest import linear_gaussian_vae

DATASET = FactorsAsObservations((3, 4))


def noisy_identity(x):
    return x + 0.3 * np.sin(97.0 * x[:, ::-1])


def test_every_issue_metric_is_registered_with_the_shared_signature():
    assert M.registry.names() == ["beta_vae", "dci", "factor_vae", "mig", "modularity", "sap"]
    for name in M.registry.names():
        assert "num_train" in M.registry.options(name) and "batch_size" in M.registry.options(name)
    assert M.registry.options("mig")["num_train"].default == 10000
    assert M.registry.options("dci")["num_test"].default == 5000
    assert M.registry.options("factor_vae")["prune_threshold"].default == 0.05


def test_compute_reports_mean_and_seed_spread_of_the_per_seed_runs():
    out = M.compute("mig,sap", DATASET, noisy_identity, seeds=(0, 1, 2), num_train=300, num_test=200)
    assert list(out) == ["mig", "sap"]
    direct = [M.compute_mig(DATASET, noisy_identity, np.random.RandomState(s), num_train=300)["discrete_mig"]
              for s in (0, 1, 2)]
    mig = out["mig"]["scores"]["discrete_mig"]
    assert mig["values"] == direct
    assert mig["mean"] == pytest.approx(np.mean(direct))
    assert mig["std"] == pytest.approx(np.std(direct, ddof=1))
    assert mig["stderr"] == pytest.approx(np.std(direct, ddof=1) / math.sqrt(3))
    assert mig["std"] > 0  # other seeds draw other points
    assert out["mig"]["seeds"] == [0, 1, 2] and len(out["mig"]["seconds"]) == 3
    assert out["sap"]["options"]["num_test"] == 200 and out["mig"]["options"]["num_bins"] == 20


def test_compute_routes_shared_and_per_metric_options():
    out = M.compute(["mig", "sap"], DATASET, noisy_identity, seeds=[0], num_train=300,
                    sap={"num_train": 200, "num_test": 100})
    assert out["mig"]["options"]["num_train"] == 300
    assert out["sap"]["options"]["num_train"] == 200
    assert out["mig"]["scores"]["discrete_mig"]["std"] is None  # one seed: no spread


def test_unknown_names_and_options_raise_spec_errors_with_the_choices():
    with pytest.raises(SpecError, match="valid choices: beta_vae, dci, factor_vae, mig, modularity, sap"):
        M.compute("mig,nope", DATASET, noisy_identity)
    with pytest.raises(SpecError, match="num_bins"):
        M.compute("sap", DATASET, noisy_identity, num_bins=10)        # only mig/modularity have it
    with pytest.raises(SpecError, match="metrics.mig.bogus"):
        M.compute("mig", DATASET, noisy_identity, mig={"bogus": 1})
    with pytest.raises(SpecError, match="seeds"):
        M.compute("mig", DATASET, noisy_identity, seeds=[])


def test_bad_inputs_are_named():
    rs = np.random.RandomState(0)
    with pytest.raises(SpecError, match="mig.num_train"):
        M.compute_mig(DATASET, noisy_identity, rs, num_train=0)
    with pytest.raises(SpecError, match="random_state"):
        M.compute_mig(DATASET, noisy_identity, 0)
    with pytest.raises(DataError, match="lacks .*sample_factors"):
        M.compute_mig(object(), noisy_identity, rs)
    with pytest.raises(DataError, match=r"\(batch, latent_dim\)"):
        M.compute_mig(DATASET, lambda x: x[:, 0], rs, num_train=100)
    with pytest.raises(DataError, match="NaN"):
        M.compute_mig(DATASET, lambda x: np.full_like(x, np.nan), rs, num_train=100)
    with pytest.raises(SpecError, match="dci.num_train"):  # too few points for a classifier
        M.compute_dci(FactorsAsObservations((1, 2)), noisy_identity, rs, num_train=5, num_test=5)


def test_factor_vae_prunes_latents_below_the_threshold():
    """A latent with std 0.01 < 0.05 never votes: the score equals the one without it."""
    def with_quiet(x):
        return np.concatenate([x, 0.01 * x[:, :1]], axis=1)

    opts = {"num_train": 200, "num_eval": 100, "num_variance_estimate": 500}
    out = M.compute_factor_vae(DATASET, with_quiet, np.random.RandomState(0), **opts)
    assert out["num_active_dims"] == 2 and out["eval_accuracy"] == 1.0
    out = M.compute_factor_vae(DATASET, lambda x: 0.01 * x, np.random.RandomState(0), **opts)
    assert out == {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}


def test_representation_fn_is_called_in_large_batches():
    sizes = []

    def spy(x):
        sizes.append(len(x))
        return x

    M.compute_mig(DATASET, spy, np.random.RandomState(0), num_train=5000, batch_size=64)
    assert sizes == [2048, 2048, 904]  # ENCODE_ROWS a call, whatever the metric's batch_size
    sizes.clear()
    M.compute_mig(DATASET, spy, np.random.RandomState(0), num_train=5000, batch_size=3000)
    assert sizes == [3000, 2000]


def test_encoder_mean_is_the_guide_mean_of_a_linear_encoder():
    vae = linear_gaussian_vae(latent_dim=2, data_dim=5)
    head = vae.guide_head.linear
    a = torch.arange(10.0).reshape(2, 5) / 10
    with torch.no_grad():
        head.weight.zero_()
        head.weight[:2] = a
        head.bias.zero_()
        head.bias[:2] = torch.tensor([0.5, -1.0])
    vae.train()
    x = np.random.RandomState(0).rand(7, 5).astype(np.float32)
    z = M.encoder_mean(vae)(x)
    np.testing.assert_allclose(z, x @ a.numpy().T + [0.5, -1.0], rtol=1e-5, atol=1e-6)
    assert vae.training  # the mode is restored
    with pytest.raises(DataError, match="expects"):
        M.encoder_mean(vae)(np.zeros((3, 4), dtype=np.float32))


def test_metrics_drawing_the_same_points_encode_them_once():
    calls = []

    def counting(x):
        calls.append(len(x))
        return noisy_identity(x)

    opts = {"num_train": 3000, "num_test": 2100}
    reused = M.compute("mig,sap,modularity", DATASET, counting, seeds=[0], **opts)
    assert len(calls) == 2 + 2  # calls of 2048: 2 for the 3000 training points, 2 for 2100 test points
    calls.clear()
    fresh = M.compute("mig,sap,modularity", DATASET, counting, seeds=[0], reuse_codes=False, **opts)
    assert len(calls) == 2 + (2 + 2) + (2 + 2)
    assert [r["scores"] for r in reused.values()] == [f["scores"] for f in fresh.values()]
