import json

import pytest
import torch

import pyrovae
from pyrovae import runs
from pyrovae.errors import TrainingDiverged

from .conftest import small_spec


def params(vae):
    return {n: p.detach().clone() for n, p in vae.state_dict().items()}


def test_same_seed_same_final_parameters(small_data):
    a = pyrovae.build(small_spec(), data=small_data)
    pyrovae.fit(a, small_data, progress=False)
    b = pyrovae.build(small_spec(), data=small_data)
    pyrovae.fit(b, small_data, progress=False)
    c = pyrovae.build(small_spec(**{"train.seed": 1}), data=small_data)
    pyrovae.fit(c, small_data, progress=False)
    pa, pb, pc = params(a), params(b), params(c)
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert any(not torch.equal(pa[k], pc[k]) for k in pa)


def test_history_units_and_elbo_decomposition(small_data):
    vae = pyrovae.build(small_spec(), data=small_data)
    hist = pyrovae.fit(vae, small_data, epochs=3, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for h in hist:
        assert h["unit"] == "nats per example"
        assert h["test_elbo"] == pytest.approx(h["test_recon"] - h["test_kl"], rel=1e-6)
        assert h["test_elbo_se"] > 0 and h["seconds"] > 0
        assert h["train_elbo"] == h["train_objective"]
    assert hist[-1]["train_objective"] > hist[0]["train_objective"]


def test_run_dir_contents_and_weights_only_checkpoint(tmp_path, small_data):
    vae = pyrovae.build(small_spec(), data=small_data)
    pyrovae.fit(vae, small_data, run_dir=tmp_path, progress=False)
    for f in ("config.yaml", "checkpoint.pt", "metrics.jsonl", "samples.png",
              "reconstructions.png", "loss.png"):
        assert (tmp_path / f).stat().st_size > 0, f
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and set(ckpt) >= {"model", "optimizer", "spec", "rng", "history"}
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert pyrovae.Spec.load(tmp_path / "config.yaml").to_dict() == ckpt["spec"]
    assert not list(tmp_path.glob(".*tmp"))  # no temp files left behind
    loaded = pyrovae.load(tmp_path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in vae.state_dict().items())
    assert loaded.spec.to_dict() == vae.spec.to_dict()


def test_resume_equals_uninterrupted_run(tmp_path, small_data):
    full = pyrovae.build(small_spec(**{"train.epochs": 4}), data=small_data)
    h_full = pyrovae.fit(full, small_data, progress=False)

    part = pyrovae.build(small_spec(**{"train.epochs": 2}), data=small_data)
    pyrovae.fit(part, small_data, run_dir=tmp_path, progress=False)
    resumed = pyrovae.load(tmp_path)
    h = pyrovae.fit(resumed, small_data, run_dir=tmp_path, resume=True, epochs=4, progress=False)
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    pf, pr = params(full), params(resumed)
    assert all(torch.allclose(pf[k], pr[k], atol=1e-6) for k in pf)
    assert h[-1]["train_objective"] == pytest.approx(h_full[-1]["train_objective"], abs=1e-4)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


def test_nan_stops_training_and_keeps_the_last_checkpoint(tmp_path, small_data):
    vae = pyrovae.build(small_spec(), data=small_data)
    pyrovae.fit(vae, small_data, run_dir=tmp_path, progress=False)
    before = (tmp_path / "checkpoint.pt").read_bytes()
    with torch.no_grad():
        vae.decoder.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged) as e:
        pyrovae.fit(vae, small_data, run_dir=tmp_path, resume=False, epochs=3, progress=False)
    msg = str(e.value)
    assert "nan" in msg and "epoch 1" in msg and "train.lr" in msg
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    ckpt = runs.read_checkpoint(tmp_path)
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


def test_unknown_train_option_is_a_spec_error(small_vae, small_data):
    with pytest.raises(pyrovae.SpecError) as e:
        pyrovae.fit(small_vae, small_data, epoch=3)
    assert e.value.key == "train.epoch" and "epochs" in str(e.value)


def test_trace_meanfield_elbo_and_beta_train(small_data):
    spec = small_spec(**{"objective.estimator": "trace_meanfield_elbo", "objective.beta": 2.0})
    vae = pyrovae.build(spec, data=small_data)
    h = pyrovae.fit(vae, small_data, progress=False)
    assert "train_elbo" not in h[-1]  # with β != 1 the objective is not the ELBO
    assert torch.isfinite(torch.tensor(h[-1]["test_elbo"]))


def test_beta_scales_exactly_the_latent_site(small_vae, small_data):
    from pyro import poutine

    from pyrovae.assemble import build_objective
    small_vae.spec = pyrovae.Spec.load(small_vae.spec, ["objective.beta=3.0"])
    obj = build_objective(small_vae)
    x = small_data.train[:5]
    gtr = poutine.trace(obj.guide).get_trace(x)
    mtr = poutine.trace(poutine.replay(obj.model, trace=gtr)).get_trace(x)
    assert gtr.nodes["z"]["scale"] == 3.0 and mtr.nodes["z"]["scale"] == 3.0
    assert mtr.nodes["x"]["scale"] == 1.0


def test_plain_tensor_data_is_accepted(small_vae, small_data):
    h = pyrovae.fit(small_vae, (small_data.train, small_data.test), epochs=1, progress=False)
    assert "test_elbo" in h[0]
    h = pyrovae.fit(small_vae, small_data.train, epochs=1, progress=False)
    assert "test_elbo" not in h[0]


def test_first_step_is_validated_so_a_component_shape_bug_is_caught(small_data):
    import pyro.distributions as dist

    @pyrovae.likelihoods.register("test_forgot_to_event")
    class Forgot(pyrovae.likelihoods.Likelihood):
        """A buggy user likelihood: no .to_event, so its batch shape is wrong."""

        def forward(self, params):
            return dist.Normal(self.split(params)[0], 1.0)

        def mean(self, params):
            return self.split(params)[0]

    try:
        vae = pyrovae.build(small_spec(**{"model.likelihood": "test_forgot_to_event"}),
                            data=small_data)
        with pytest.raises(ValueError, match="plate"):
            pyrovae.fit(vae, small_data, epochs=1, progress=False)
    finally:
        pyrovae.likelihoods.registry._entries.pop("test_forgot_to_event")
