"""The `pyrovae` command as a user runs it (subprocesses, like a shell)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pyrovae.cli import main

SMALL = ["--set", "train.epochs=2", "--set", "model.latent_dim=2",
         "--set", "model.encoder.hidden=[16]", "--set", "model.decoder.hidden=[16]"]


def pyrovae(*args, cwd):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "pyrovae", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cli")
    r = pyrovae("train", *SMALL, "--out", "run", "--quiet", cwd=cwd)
    assert r.returncode == 0, r.stderr
    return cwd / "run", r


def test_train_writes_the_run_directory(run):
    run_dir, r = run
    for f in ("config.yaml", "checkpoint.pt", "metrics.jsonl", "samples.png",
              "reconstructions.png", "loss.png"):
        assert (run_dir / f).exists(), f
    assert "nats per example" in r.stdout
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    assert "latent_dim: 2" in (run_dir / "config.yaml").read_text()


def test_sample_png_and_npy(run, tmp_path):
    run_dir, _ = run
    r = pyrovae("sample", str(run_dir), "-n", "7", "--out", str(tmp_path / "s.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    r = pyrovae("sample", str(run_dir), "-n", "7", "--out", str(tmp_path / "s.npy"), cwd=tmp_path)
    import numpy as np
    a = np.load(tmp_path / "s.npy")
    assert a.shape == (7, 1, 8, 8) and 0 <= a.min() and a.max() <= 1


def test_evaluate_prints_units_and_writes_json(run):
    run_dir, _ = run
    r = pyrovae("evaluate", str(run_dir), cwd=run_dir)
    assert r.returncode == 0, r.stderr
    assert "nats per example" in r.stdout and "bits per dimension" in r.stdout
    res = json.loads((run_dir / "evaluation.json").read_text())
    assert res["elbo"] == pytest.approx(res["recon"] - res["kl"], rel=1e-6)
    assert res["elbo_se"] > 0 and res["n"] == 359 and res["epoch"] == 2


def test_resume_continues_and_refuses_to_overwrite(run, tmp_path):
    run_dir, _ = run
    r = pyrovae("train", *SMALL, "--out", str(run_dir), cwd=tmp_path)
    assert r.returncode == 2 and "already holds a run" in r.stderr and "Traceback" not in r.stderr
    r = pyrovae("train", "--resume", str(run_dir), "--set", "model.latent_dim=5", cwd=tmp_path)
    assert r.returncode == 2 and "only train.* keys" in r.stderr and "model" in r.stderr
    before = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    r = pyrovae("train", "--resume", str(run_dir), "--set", "train.epochs=3", "--quiet", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == before + 1 == 3
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args, words", [
    (["--set", "model.prior=gauss"], ["model.prior", "'gauss'", "standard_normal"]),
    (["--set", "train.epoch=3"], ["train.epoch", "epochs"]),
    (["--set", "model.likelihood.sigma=2"], ["model.likelihood.sigma", "valid choices"]),
    (["--config", "missing.yaml"], ["missing.yaml", "does not exist"]),
    (["--set", "train.device=cuda:7"], ["train.device", "CUDA"]),
])
def test_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, args, words):
    monkeypatch.chdir(tmp_path)
    assert main(["train", *args, "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyrovae: error:") and len(err.strip().splitlines()) == 1
    for w in words:
        assert w in err, (w, err)
    assert not (tmp_path / "x" / "checkpoint.pt").exists()


def test_list_shows_every_component_with_options(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("bernoulli", "normal", "standard_normal", "diagonal_normal", "mlp", "conv",
                 "digits", "mnist", "array", "elbo", "scale = 0.1", "estimator"):
        assert name in out, name


def test_default_out_dir_counts_up(tmp_path):
    for _ in range(2):
        assert pyrovae("train", *SMALL[:2], "--quiet", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["digits-001", "digits-002"]
    assert Path(tmp_path / "runs" / "digits-002" / "checkpoint.pt").exists()


def test_list_one_kind_aligns_names_and_rejects_unknown_kinds(capsys):
    from pyrovae.assemble import REGISTRIES

    assert main(["list", "prior"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "model.prior  (prior)"
    rows = [ln for ln in lines[1:] if ln.startswith("  ") and not ln.startswith("      ")]
    assert sorted(r.split()[0] for r in rows) == REGISTRIES["model.prior"].names()
    starts = {len(r) - len(r[2:].split(maxsplit=1)[1]) for r in rows}
    assert len(starts) == 1  # every description starts in the same column
    assert main(["list", "priors"]) == 2
    err = capsys.readouterr().err
    assert "'priors'" in err and "likelihood" in err and len(err.strip().splitlines()) == 1
