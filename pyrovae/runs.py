"""Run directories: the resolved spec, atomic checkpoints, metrics, and ``load``.

    RUN/config.yaml      the fully resolved spec
    RUN/checkpoint.pt    module + optimizer state, spec, epoch, RNG state, history
    RUN/metrics.jsonl    one JSON object per epoch

Every file is written to a temporary name and renamed, so a crash never leaves a
half-written checkpoint; checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import RunDirError

CONFIG, CHECKPOINT, METRICS = "config.yaml", "checkpoint.pt", "metrics.jsonl"
FORMAT = 1


def atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path`` (same directory, atomic)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: p.write_text(text))


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[0],
        "numpy": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((state["python_pos"], tuple(state["python"]), None))
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, *, vae, optimizer, epoch: int, history: list,
                    objective: dict | None = None) -> None:
    """Write ``checkpoint.pt`` atomically: the VAE, its optimizer, the objective's own
    state (an auxiliary network, if any), the epoch, the RNG states and the history."""
    blob = {
        "format": FORMAT,
        "spec": vae.spec.to_dict(),
        "data_shape": list(vae.data_shape),
        "model": vae.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "objective": objective or {},
        "epoch": epoch,
        "rng": rng_state(),
        "history": history,
        "component_modules": component_modules(vae.spec),
    }
    atomic_write(Path(run_dir) / CHECKPOINT, lambda p: torch.save(blob, p))


def component_modules(spec) -> dict[str, str]:
    """Key path -> module that registered the component named there."""
    from .assemble import REGISTRIES

    return {key: REGISTRIES[key].module_of(comp.name) for key, comp in spec.components()}


def import_components(spec, modules: dict[str, str], run_dir) -> None:
    """Make sure every component of a saved spec is registered, importing the module
    that registered it when the run was saved; a clear error says what to import."""
    from .assemble import REGISTRIES

    for key, comp in spec.components():
        registry = REGISTRIES[key]
        if comp.name in registry:
            continue
        module = modules.get(key, "")
        if module and module != "__main__":
            try:
                importlib.import_module(module)
            except ImportError:
                pass
            if comp.name in registry:
                continue
        where = ("a script run as __main__" if module == "__main__"
                 else f"module {module!r}" if module else "an unknown module")
        raise RunDirError(
            f"run {str(run_dir)!r} uses {registry.kind} {comp.name!r} ({key}), registered by "
            f"{where}, which is not registered now. Import the module that defines it "
            f"(or run the code that registers it) before loading the run.")


def read_checkpoint(run_dir, map_location="cpu") -> dict:
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise RunDirError(f"{str(run_dir)!r} is not a run directory: it has no {CHECKPOINT}")
    return torch.load(path, map_location=map_location, weights_only=True)


def write_metrics(run_dir: Path, history: list) -> None:
    write_text(Path(run_dir) / METRICS, "".join(json.dumps(h) + "\n" for h in history))


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / METRICS
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] \
        if path.exists() else []


def load(run_dir, *, device: str | torch.device = "cpu"):
    """The trained VAE of a run directory, rebuilt from its saved spec (no user script).

    ``vae.model``/``vae.guide`` are ready for Pyro; ``vae.spec`` is the resolved spec.
    """
    from .assemble import build_vae
    from .spec import Spec

    ckpt = read_checkpoint(run_dir)
    spec = Spec.from_dict(ckpt["spec"])
    import_components(spec, ckpt.get("component_modules", {}), run_dir)
    vae = build_vae(spec, ckpt["data_shape"])
    vae.load_state_dict(ckpt["model"])
    vae.run_dir = Path(run_dir)
    vae.epoch = ckpt["epoch"]
    return vae.to(device).eval()


def new_run_dir(base: str | Path, name: str) -> Path:
    """A fresh directory ``base/name-N`` (N counting up), never an existing one."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1, 100000):
        path = base / f"{name}-{i:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise RunDirError(f"no free run directory name under {str(base)!r}")


def prepare_out_dir(out: str | Path) -> Path:
    """Create ``out`` for a new run; refuse one that already holds a run."""
    out = Path(out)
    if out.exists() and any((out / f).exists() for f in (CHECKPOINT, CONFIG, METRICS)):
        raise RunDirError(
            f"--out {str(out)!r} already holds a run; nothing was changed. Use "
            f"'pyrovae train --resume {out}' to continue it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out
