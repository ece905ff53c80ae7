"""``pyrovae evaluate --metrics``: disentanglement metrics of a run trained on ground-truth data."""

import json

import pytest

from pyrovae.cli import main

SHAPES = ["--set", "data.name=shapes_small", "--set", "data.num_train=300", "--set", "data.num_test=60",
          "--set", "train.epochs=1", "--set", "model.latent_dim=4", "--set", "model.encoder.hidden=[32]",
          "--set", "model.decoder.hidden=[32]"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gt") / "shapes"
    assert main(["train", "--out", str(out), "--quiet", *SHAPES]) == 0
    return out


def test_metrics_are_reported_with_their_seed_spread(shapes_run, capsys):
    rc = main(["evaluate", str(shapes_run), "--num-particles", "0", "--metrics", "mig,sap,modularity",
               "--metric-seeds", "2", "--metric-set", "num_train=300", "--metric-set", "num_test=100",
               "--metric-set", "mig.num_train=200"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "discrete_mig" in out and "sap_score" in out and "modularity_score" in out
    res = json.loads((shapes_run / "evaluation.json").read_text())["disentanglement"]
    assert res["mig"]["seeds"] == [0, 1] and res["mig"]["options"]["num_train"] == 200
    assert res["sap"]["options"]["num_train"] == 300
    mig = res["mig"]["scores"]["discrete_mig"]
    assert len(mig["values"]) == 2 and mig["std"] is not None and 0 <= mig["mean"] <= 1


@pytest.mark.parametrize("args, message", [
    (["--metrics", "mig,nonsense"], "valid choices"),
    (["--metrics", "mig", "--metric-set", "no_such_option=1"], "no metric run here has this option"),
    (["--metrics", "mig", "--metric-set", "justtext"], "--metric-set expects key=value"),
])
def test_bad_metric_requests_are_one_line_errors(shapes_run, capsys, args, message):
    assert main(["evaluate", str(shapes_run), "--num-particles", "0", *args]) == 2
    assert message in capsys.readouterr().err


def test_metrics_need_ground_truth_data(tmp_path, capsys):
    out = tmp_path / "digits"
    assert main(["train", "--out", str(out), "--quiet", "--set", "train.epochs=1"]) == 0
    assert main(["evaluate", str(out), "--num-particles", "0", "--metrics", "mig"]) == 2
    assert "known generating factors" in capsys.readouterr().err
