"""The guides' code blocks run as written, in order; the examples run with --smoke."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDES = sorted((ROOT / "guides").glob("*.md"))
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)


def blocks(path: Path):
    return BLOCK.findall(path.read_text())


def _env():
    bindir = str(Path(sys.executable).parent)  # where `pyrovae` is installed with this Python
    return dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
                MPLBACKEND="Agg", PYTHONUNBUFFERED="1")


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.name)
def test_guide_code_blocks_run(guide, tmp_path, monkeypatch):
    found = blocks(guide)
    assert found, f"{guide.name} has no code blocks"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__guide__"}
    for i, (lang, code) in enumerate(found):
        if lang == "python":
            exec(compile(code, f"{guide.name}[block {i}]", "exec"), namespace)
        else:
            r = subprocess.run(["bash", "-euo", "pipefail", "-c", code], env=_env(),
                               capture_output=True, text=True, timeout=300)
            assert r.returncode == 0, f"{guide.name} block {i}:\n{code}\n{r.stdout}\n{r.stderr}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_smoke(example, tmp_path):
    r = subprocess.run([sys.executable, str(example), "--smoke"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nats per example" in r.stdout
