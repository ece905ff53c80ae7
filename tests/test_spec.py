import pytest

import pyrovae
from pyrovae.errors import SpecError
from pyrovae.spec import Component, Spec, apply_override


def test_defaults_match_design():
    s = Spec()
    assert s.data.name == "digits"
    assert s.model.latent_dim == 8
    assert s.model.encoder == Component("mlp", {"hidden": [256, 128]})
    assert s.model.likelihood.name == "bernoulli"
    assert s.objective.name == "elbo"
    assert s.train.device == "auto"


def test_component_bare_name_or_table():
    s = Spec.from_dict({"model": {"prior": "standard_normal",
                                  "likelihood": {"name": "normal", "scale": 0.3}}})
    assert s.model.prior == Component("standard_normal")
    assert s.model.likelihood == Component("normal", {"scale": 0.3})
    assert s.to_dict()["model"]["likelihood"] == {"name": "normal", "scale": 0.3}


def test_yaml_and_toml_files_load_the_same(tmp_path):
    (tmp_path / "a.yaml").write_text(
        "model:\n  latent_dim: 4\n  likelihood: {name: normal, scale: 0.2}\ntrain: {lr: 1.0e-2}\n")
    (tmp_path / "a.toml").write_text(
        "[model]\nlatent_dim = 4\nlikelihood = {name = 'normal', scale = 0.2}\n[train]\nlr = 0.01\n")
    a, b = Spec.load(tmp_path / "a.yaml"), Spec.load(tmp_path / "a.toml")
    assert a.to_dict() == b.to_dict()
    assert a.model.latent_dim == 4 and a.train.lr == 0.01


def test_dump_round_trips(tmp_path):
    s = pyrovae.resolve({"model": {"latent_dim": 3}, "objective": {"name": "elbo", "beta": 2}})
    s.dump(tmp_path / "c.yaml")
    assert Spec.load(tmp_path / "c.yaml").to_dict() == s.to_dict()


def test_resolve_fills_component_defaults():
    s = pyrovae.resolve({})
    assert s.model.encoder.options == {"hidden": [256, 128], "activation": "relu", "dropout": 0.0}
    assert {"beta": 1.0, "estimator": "trace_elbo", "num_particles": 1, "warmup": "none",
            "free_bits": 0.0}.items() <= s.objective.options.items()
    assert s.data.options["test_fraction"] == 0.2


def test_overrides():
    d = apply_override({}, "model.latent_dim=16")
    d = apply_override(d, "model.likelihood.scale=0.5")  # option on a default bare name
    d = apply_override(d, "train.lr=3e-4")
    s = Spec.from_dict(d)
    assert s.model.latent_dim == 16
    assert s.model.likelihood == Component("bernoulli", {"scale": 0.5})
    assert s.train.lr == pytest.approx(3e-4)
    # a new name replaces the whole component: old options need not apply to it
    d = apply_override({"model": {"encoder": {"name": "mlp", "hidden": [8]}}}, "model.encoder=conv")
    assert Spec.from_dict(d).model.encoder == Component("conv")


@pytest.mark.parametrize("spec, key, words", [
    ({"modle": {}}, "modle", ["unknown key", "model", "train"]),
    ({"model": {"latent": 3}}, "model.latent", ["unknown key", "latent_dim"]),
    ({"train": {"epochs": "many"}}, "train.epochs", ["must be int", "many"]),
    ({"train": {"epochs": 0}}, "train.epochs", ["positive"]),
    ({"train": {"device": "tpu"}}, "train.device", ["tpu", "cuda"]),
    ({"model": {"prior": 3}}, "model.prior", ["component name"]),
    ({"model": {"prior": {"scale": 1}}}, "model.prior", ["'name'"]),
])
def test_bad_values_name_the_key(spec, key, words):
    with pytest.raises(SpecError) as e:
        Spec.from_dict(spec)
    assert e.value.key == key
    for w in words:
        assert w in str(e.value)


def test_unknown_component_name_and_option():
    with pytest.raises(SpecError) as e:
        pyrovae.resolve({"model": {"prior": "gaussian"}})
    assert e.value.key == "model.prior"
    assert "'gaussian'" in str(e.value) and "standard_normal" in str(e.value)
    with pytest.raises(SpecError) as e:
        pyrovae.resolve({"model": {"likelihood": {"name": "normal", "sigma": 1}}})
    assert e.value.key == "model.likelihood.sigma"
    assert "scale" in str(e.value)


def test_bad_option_value_is_reported_with_key():
    with pytest.raises(SpecError) as e:
        pyrovae.build({"model": {"likelihood": {"name": "normal", "scale": -1}}}, data_shape=(4,))
    assert e.value.key == "model.likelihood" and "positive" in str(e.value)
    with pytest.raises(SpecError) as e:
        pyrovae.build({"objective": {"name": "elbo", "estimator": "tracegraph"}}, data_shape=(4,))
    assert e.value.key == "objective" and "trace_meanfield_elbo" in str(e.value)
    with pytest.raises(SpecError, match="beta"):
        pyrovae.build({"objective": {"name": "elbo", "beta": -1}}, data_shape=(4,))


def test_conv_on_wrong_shape_says_why():
    with pytest.raises(SpecError) as e:
        pyrovae.build({"model": {"encoder": "conv"}}, data_shape=(1, 8, 8))
    assert e.value.key == "model.encoder" and "28" in str(e.value) and "mlp" in str(e.value)
