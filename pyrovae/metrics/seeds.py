"""Run named metrics over several seeds and report each score's mean and seed variation.

Each metric runs once per seed with ``numpy.random.RandomState(seed)``; a score is reported
as the mean over seeds, the per-seed values, their standard deviation (ddof = 1) and the
standard error of the mean (std / sqrt(number of seeds)).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterable
from numbers import Integral

import numpy as np

from ..errors import SpecError
from .base import registry

SHARED_POINTS = frozenset({"mig", "dci", "sap", "modularity"})
"""Metrics that start by drawing i.i.d. (factors, observation) points in the same way."""


def compute(names, dataset, representation_fn, seeds=(0, 1, 2), *, reuse_codes: bool = True,
            **options) -> dict:
    """Each metric in ``names`` (a list or ``"mig,dci"``) on ``dataset`` for every seed.

    ``options``: ``option=value`` goes to every named metric that has that option (e.g.
    ``num_train=2000``); ``metric_name={...}`` gives one metric its own options, which win.
    ``reuse_codes``: the metrics in :data:`SHARED_POINTS` draw the same points for the same seed,
    so within a seed a batch of observations one of them has encoded is not encoded again (40,000
    of their 55,000 encodings at the defaults); this assumes ``representation_fn`` is a function
    of its input (the encoder mean is). Returns ``{name: {"scores": {score: {"mean", "std",
    "stderr", "values"}}, "seeds": [...], "seconds": [wall-clock seconds per seed], "options":
    {resolved options}}}``; ``std`` and ``stderr`` are None with a single seed.
    """
    names = metric_names(names)
    seeds = _check_seeds(seeds)
    resolved = resolve_options(names, options)
    memos: dict[int, ReusedCodes] = {}
    out = {}
    for name in names:
        metric = registry.get(name, key="metrics")
        opts = resolved[name]
        runs, seconds = [], []
        for seed in seeds:
            fn = representation_fn
            if reuse_codes and name in SHARED_POINTS:
                fn = memos.setdefault(seed, ReusedCodes(representation_fn))
            start = time.perf_counter()
            runs.append(metric(dataset, fn, np.random.RandomState(seed), **opts))
            seconds.append(time.perf_counter() - start)
        out[name] = {"scores": {score: summarize([run[score] for run in runs]) for score in runs[0]},
                     "seeds": list(seeds), "seconds": seconds, "options": opts}
    return out


class ReusedCodes:
    """``representation_fn`` that returns the stored codes for a batch of observations it has seen
    (same bytes, shape and dtype) instead of encoding it again."""

    def __init__(self, representation_fn):
        self.representation_fn = representation_fn
        self.codes: dict[tuple, np.ndarray] = {}
        self.calls = self.reused = 0

    def __call__(self, observations):
        x = np.ascontiguousarray(observations)
        key = (x.shape, x.dtype.str, hashlib.blake2b(x.data, digest_size=20).digest())
        self.calls += 1
        if key in self.codes:
            self.reused += 1
        else:
            self.codes[key] = np.asarray(self.representation_fn(observations))
        return self.codes[key].copy()


def summarize(values) -> dict:
    """Mean, per-seed values, seed standard deviation (ddof = 1) and standard error of the mean."""
    values = [float(v) for v in values]
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "std": None, "stderr": None, "values": values}
    std = float(np.std(values, ddof=1))
    return {"mean": mean, "std": std, "stderr": std / math.sqrt(len(values)), "values": values}


def metric_names(names) -> list[str]:
    """``"mig,dci"`` or ``["mig", "dci"]`` as a checked list; unknown names raise :class:`SpecError`."""
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    elif isinstance(names, Iterable):
        names = list(names)
    else:
        raise SpecError("metrics", "must be a list of metric names or a comma-separated string",
                        value=names, choices=registry.names())
    if not names:
        raise SpecError("metrics", "no metric named", value=names, choices=registry.names())
    for name in names:
        registry.get(name, key="metrics")
    if len(set(names)) != len(names):
        raise SpecError("metrics", "a metric is named twice", value=names)
    return names


def resolve_options(names, options: dict) -> dict[str, dict]:
    """Each named metric's checked options (see :func:`compute`); a bad name, option or value
    raises :class:`SpecError` before anything is computed."""
    names = metric_names(names)
    per_metric = _split_options(names, options)
    return {name: registry.check_options(name, per_metric[name], key=f"metrics.{name}") for name in names}


def _check_seeds(seeds) -> list[int]:
    seeds = [seeds] if isinstance(seeds, Integral) else list(seeds) if isinstance(seeds, Iterable) else None
    if not seeds or any(isinstance(s, bool) or not isinstance(s, Integral) or s < 0 for s in seeds):
        raise SpecError("seeds", "must be a non-empty list of integers >= 0", value=seeds)
    return [int(s) for s in seeds]


def _split_options(names: list[str], options: dict) -> dict[str, dict]:
    """Route shared options to the metrics that have them; per-metric tables override."""
    accepted = {name: set(registry.options(name)) for name in names}
    per_metric = {name: {} for name in names}
    for key, value in options.items():
        if key in registry:
            if key not in names:
                raise SpecError(f"metrics.{key}", "options given for a metric that is not run",
                                value=key, choices=names)
            if not isinstance(value, dict):
                raise SpecError(f"metrics.{key}", "per-metric options must be a dict", value=value)
            continue
        takers = [name for name in names if key in accepted[name]]
        if not takers:
            raise SpecError(f"metrics.{key}", "no metric run here has this option", value=key,
                            choices=sorted(set().union(*accepted.values())))
        for name in takers:
            per_metric[name][key] = value
    for name in names:
        per_metric[name].update(options.get(name, {}))
    return per_metric


def format_table(found: dict) -> str:
    """:func:`compute`'s result as a table: each score's mean ± seed standard deviation (scores
    are fractions or normalised to [0, 1]; modularity and explicitness too), the per-seed values
    and the seconds per seed."""
    lines = ["disentanglement metrics (encoder mean; mean ± standard deviation over metric seeds)"]
    for name, r in found.items():
        secs = ", ".join(f"{s:.1f}" for s in r["seconds"])
        lines.append(f"  {name}  (seeds {r['seeds']}; {secs} seconds)")
        for score, v in r["scores"].items():
            spread = f" ± {v['std']:.3f}" if v["std"] is not None else ""
            values = ", ".join(f"{x:.3f}" for x in v["values"])
            lines.append(f"    {score:<28} {v['mean']:>7.3f}{spread}   [{values}]")
    return "\n".join(lines)
