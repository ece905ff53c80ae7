"""The shared machinery of objectives: site scaling (0 included), recorded sites,
penalties as pyro.factor, and every registered objective reachable from the CLI."""

import json
import math

import pyro
import pytest
import torch
from pyro import poutine

import pyrovae
from pyrovae.cli import main
from pyrovae.objectives import Objective, record_sites, registry, scale_sites

from .conftest import linear_gaussian_vae, small_spec


def site_log_probs(model, guide, x):
    guide_tr = poutine.trace(guide).get_trace(x)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x)
    return guide_tr, model_tr


def test_scale_sites_scales_one_site_and_masks_it_at_zero():
    vae = linear_gaussian_vae()
    x = torch.randn(4, 5)
    pyro.set_rng_seed(0)
    g, m = site_log_probs(vae.model, vae.guide, x)
    pyro.set_rng_seed(0)
    g2, m2 = site_log_probs(scale_sites({"z": 0.25})(vae.model), scale_sites({"z": 0.25})(vae.guide), x)
    for tr, tr2 in ((g, g2), (m, m2)):
        assert torch.allclose(tr2.log_prob_sum(), tr.log_prob_sum() - 0.75 * tr.nodes["z"]["log_prob_sum"])
    pyro.set_rng_seed(0)
    g0, m0 = site_log_probs(scale_sites({"z": 0})(vae.model), scale_sites({"z": 0})(vae.guide), x)
    assert g0.log_prob_sum().item() == 0.0  # the guide has only z: nothing is left
    assert torch.allclose(m0.log_prob_sum(), m.nodes["x"]["log_prob_sum"])
    with pytest.raises(ValueError, match=">= 0"):
        scale_sites({"z": -1.0})


def test_record_sites_keeps_the_distribution_and_value():
    vae = linear_gaussian_vae()
    x = torch.randn(3, 5)
    record = {}
    with record_sites(["z"], record):
        z = vae.guide(x)
    fn, value = record["z"]
    assert value is z and fn.batch_shape == (3,) and fn.event_shape == (2,)


def test_penalized_adds_the_penalty_times_num_data_as_a_factor():
    vae = linear_gaussian_vae()
    objective = Objective(vae)
    seen = {}

    def penalty(record, x):
        q, z = record["z"]["q"]
        p, z_model = record["z"]["p"]
        seen.update(q=q, z=z, z_model=z_model)
        return z.pow(2).mean()

    model, guide = objective.penalized(penalty, name="test_penalty")
    x = torch.randn(4, 5)
    pyro.set_rng_seed(0)
    g, m = site_log_probs(model, guide, x)
    assert seen["z_model"] is seen["z"]  # the model replays the guide's z
    factor = m.nodes["test_penalty"]
    assert torch.allclose(factor["fn"].log_prob(factor["value"]), -seen["z"].pow(2).mean() * 4)
    # num_data scales it like the ELBO's minibatch terms
    pyro.set_rng_seed(0)
    g, m = site_log_probs(lambda x: model(x, num_data=40), lambda x: guide(x, num_data=40), x)
    factor = m.nodes["test_penalty"]
    assert torch.allclose(factor["fn"].log_prob(factor["value"]), -seen["z"].pow(2).mean() * 40)


@pytest.mark.parametrize("name", registry.names())
def test_every_objective_trains_from_the_cli(name, tmp_path, capsys):
    args = ["train", "--set", f"objective.name={name}", "--set", "train.epochs=2",
            "--set", "model.latent_dim=2", "--set", "model.encoder.hidden=[16]",
            "--set", "model.decoder.hidden=[16]", "--set", "train.batch_size=256",
            "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for r in records:
        assert math.isfinite(r["train_objective"]) and math.isfinite(r["test_elbo"])


@pytest.mark.parametrize("objective, option, guide", [
    ("elbo", "objective.free_bits=0.5", "full_rank"),
    ("beta_tcvae", None, "flow"),
    ("dip_vae", "objective.kind=ii", "flow"),
])
def test_a_conditional_model_with_an_unsuitable_guide_is_refused_at_build(small_data, objective, option,
                                                                          guide):
    over = {"model.variant": "cvae", "model.guide": guide, "objective": objective}
    if option:
        k, v = option.split("=")
        over[k] = v
    with pytest.raises(pyrovae.SpecError, match="objective"):
        pyrovae.build(small_spec(**over), data=small_data)


@pytest.mark.parametrize("name", ["info_vae", "wae"])
def test_mmd_objectives_train_through_a_one_example_batch(small_data, name):
    # 200 examples in batches of 199: the last batch has one example (no unbiased MMD²)
    vae = pyrovae.build(small_spec(objective=name), data=small_data)
    history = pyrovae.fit(vae, small_data, epochs=1, batch_size=199, progress=False)
    assert math.isfinite(history[-1]["train_objective"])


def test_warmup_epochs_zero_means_no_warmup(small_data):
    vae = pyrovae.build(small_spec(**{"objective.warmup": "linear", "objective.warmup_epochs": 0}),
                        data=small_data)
    from pyrovae.assemble import build_objective
    assert build_objective(vae).current_beta == 1.0
    with pytest.raises(pyrovae.SpecError, match="warmup_epochs"):
        pyrovae.build(small_spec(**{"objective.warmup": "cyclical", "objective.warmup_epochs": 0}),
                      data=small_data)
