"""Cost of the six disentanglement metrics on dsprites, encoding included: the 2-minute goal.

Goal: all metrics for one model on dsprites, including encoding the points they need, in
under 120 seconds on 2 CPU cores.

For the 64x64 conv VAE (latent 10, bernoulli; untrained by default, codes standardised: the
cost does not depend on the weights) on the rendered dsprites grid it measures

* the renderer's and the encoder mean's images/s (and CPU-ms per image) at 1 and ``--threads``
  torch threads, in calls of ``ENCODE_ROWS`` images as the metrics make them, and in pieces of
  ``--chunk`` rows (the proposed fix below);
* each metric alone, seed 0, at ``--scale`` times disentanglement_lib's sample sizes (all num_*
  options), wall and CPU seconds (``time.process_time``, all threads) split into encoding,
  rendering and the rest. Seconds at the reference sizes are EXTRAPOLATED as t / scale unless
  the scale is 1; a second scale of one metric (``--check``, DCI: fixed cost per tree) tests that;
* the ``fast`` preset (:data:`FAST`) end to end with ``pyrovae.metrics.compute(..., seeds=[0])``,
  encoding included, against the 120 s goal: as pyrovae is, and with the encoder fed ``--chunk``
  rows at a time at ``--chunk-threads``;
* with ``--spread``: the seed std of each headline score (3 seeds) at the fast sizes and at
  ``--spread-factor`` times them, for the metrics the preset shrinks: the preset's price.

Proposed fix: a 2048-image forward pass of the conv encoder is memory-bound (each first-layer
activation is 268 MB); pieces of 64 images stay in cache and run ~2.5x faster per image at one
torch thread, and at two on otherwise idle cores. Two threads with small pieces stall whenever
another process holds a core (an OpenMP barrier per layer), so the fix runs at ``--chunk-threads``
1 by default. CPU seconds approximately bound the wall time an idle 2-core machine needs.

    python benchmarks/disentanglement_metrics.py                    # ~10 min on 2 shared cores
    python benchmarks/disentanglement_metrics.py --spread --train-epochs 1 --train-size 5000
    python benchmarks/disentanglement_metrics.py --scale dci=1.0    # measure DCI at the reference
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import numpy as np
import torch
from _common import versions

import pyrovae
import pyrovae.metrics as metrics
from pyrovae.metrics.seeds import SHARED_POINTS
from pyrovae.metrics.utils import ENCODE_ROWS

GOAL_S = 120.0
ORDER = ["beta_vae", "factor_vae", "mig", "dci", "sap", "modularity"]
SCALE = {"beta_vae": 0.01, "factor_vae": 0.02, "mig": 1.0, "dci": 0.2, "sap": 1.0, "modularity": 1.0}
FAST = {"beta_vae": {"num_train": 120, "num_eval": 80},
        "factor_vae": {"num_train": 150, "num_eval": 100, "num_variance_estimate": 5000},
        "dci": {"num_train": 800, "num_test": 400}}  # mig, sap, modularity: the reference sizes
HEADLINE = {"beta_vae": "eval_accuracy", "factor_vae": "eval_accuracy", "mig": "discrete_mig",
            "dci": "disentanglement", "sap": "sap_score", "modularity": "modularity_score"}
SIZE_KEYS = ("num_train", "num_test", "num_eval", "num_variance_estimate")


class Timed:
    """A callable that adds its wall and CPU seconds and the rows it was given to running totals."""

    def __init__(self, fn):
        self.fn, self.wall, self.cpu, self.rows = fn, 0.0, 0.0, 0

    def __call__(self, x, *args):
        t, c = time.perf_counter(), time.process_time()
        out = self.fn(x, *args)
        self.wall += time.perf_counter() - t
        self.cpu += time.process_time() - c
        self.rows += len(x)
        return out


def sizes(options: dict) -> dict:
    return {k: v for k, v in options.items() if k in SIZE_KEYS}


def reference(name: str) -> dict:
    """The metric's default sample sizes (disentanglement_lib's)."""
    return sizes(metrics.resolve_options([name], {})[name])


def scaled(name: str, scale: float) -> dict:
    return {k: max(2, round(v * scale)) for k, v in reference(name).items()}


def show(opts: dict) -> str:
    return " ".join(f"{k[4:]}={v}" for k, v in opts.items())


def threads_label(n: int) -> str:
    return f"{n} torch thread{'s' * (n > 1)}"


def standardized(fn, dataset):
    """``fn``'s codes shifted and scaled per latent to mean 0, std 1 on 2048 fixed points. An untrained
    encoder's means vary by ~0.001, below FactorVAE's pruning threshold (std 0.05), so that metric
    would stop before its votes; the shift and scale cost nothing and change no other timing."""
    z = fn(dataset.sample_observations(ENCODE_ROWS, np.random.RandomState(2)))
    mean, std = z.mean(axis=0), z.std(axis=0)
    return lambda x: (fn(x) - mean) / std


def pieces(fn, rows: int):
    """``fn`` applied to ``rows`` observations at a time: the proposed fix, from outside."""
    return lambda x: np.concatenate([fn(x[a:a + rows]) for a in range(0, len(x), rows)])


def throughput(dataset, fn, threads: int, chunk: int, num: int = 2 * ENCODE_ROWS) -> None:
    """Renderer images/s; encoder images/s (median and best of 3) and CPU-ms per image (median)."""
    factors = dataset.sample_factors(num, np.random.RandomState(1))
    t = time.perf_counter()
    obs = dataset.sample_observations_from_factors(factors)
    print(f"renderer: {num / (time.perf_counter() - t):,.0f} images/s")
    variants = [(f"calls of {ENCODE_ROWS}", fn)]
    variants += [(f"pieces of {chunk}", pieces(fn, chunk))] if chunk else []
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        for label, f in variants:
            f(obs[:64])  # warm-up
            rates, cpus = [], []
            for _ in range(3):
                enc = Timed(f)
                for a in range(0, num, ENCODE_ROWS):
                    enc(obs[a:a + ENCODE_ROWS])
                rates.append(num / enc.wall)
                cpus.append(1e3 * enc.cpu / num)
            print(f"encoder mean, {threads_label(n)}, {label:<15}: {np.median(rates):6,.0f} images/s "
                  f"(best {max(rates):,.0f}), {np.median(cpus):.2f} CPU-ms per image")
    torch.set_num_threads(threads)


def measure_each(dataset, fn, jobs) -> dict:
    """Each (metric, scale) alone, seed 0: {metric: [(scale, wall s, CPU s, images encoded), ...]}."""
    print(f"  {'metric':<11} {'scale':>5} {'sizes':<34} {'images':>8} {'wall':>7} {'CPU':>7} {'enc':>6} "
          f"{'render':>6} {'rest':>6}")
    runs = {}
    for name, scale in jobs:
        enc, data = Timed(fn), copy.copy(dataset)  # the copy's renderer is timed
        data.sample_observations_from_factors = Timed(dataset.sample_observations_from_factors)
        t, c = time.perf_counter(), time.process_time()
        result = metrics.registry.get(name)(data, enc, np.random.RandomState(0), **scaled(name, scale))
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        runs.setdefault(name, []).append((scale, wall, cpu, enc.rows))
        rend = data.sample_observations_from_factors.wall
        print(f"  {name:<11} {scale:5.3g} {show(scaled(name, scale)):<34} {enc.rows:8,d} {wall:7.1f} "
              f"{cpu:7.1f} {enc.wall:6.1f} {rend:6.1f} {wall - enc.wall - rend:6.1f}   "
              f"{HEADLINE[name]} {result[HEADLINE[name]]:.3f}")
    return runs


def linearity(name: str, runs: list) -> None:
    (s1, w1, c1, _), (s2, w2, c2, _) = runs
    line_w, line_c = w1 + (w1 - w2) / (s1 - s2) * (1 - s1), c1 + (c1 - c2) / (s1 - s2) * (1 - s1)
    print(f"  linearity, {name}: scale x{s1 / s2:.2f} -> wall x{w1 / w2:.2f}, CPU x{c1 / c2:.2f}; at the "
          f"reference t / scale gives {w1 / s1:.0f} / {w2 / s2:.0f} s wall and {c1 / s1:.0f} / {c2 / s2:.0f} "
          f"CPU-s, the line through both {line_w:.0f} s wall, {line_c:.0f} CPU-s")


def fast_preset(dataset, fn, threads: int, label: str) -> tuple[dict, float]:
    """The fast preset end to end, all six metrics, seed 0: (compute()'s result, wall seconds)."""
    torch.set_num_threads(threads)
    enc = Timed(fn)
    t, c = time.perf_counter(), time.process_time()
    fast = metrics.compute(ORDER, dataset, enc, seeds=[0], **FAST)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    per = ", ".join(f"{n} {fast[n]['seconds'][0]:.1f}" for n in ORDER)
    scores = ", ".join(f"{n} {fast[n]['scores'][HEADLINE[n]]['mean']:.3f}" for n in ORDER)
    print(f"\nfast preset, compute(all six, seeds=[0]), {label}, {threads_label(threads)}: {wall:.1f} s wall "
          f"= {wall / GOAL_S:.2f}x the goal, {cpu:.1f} CPU-s = {cpu / GOAL_S:.2f}x; encoding {enc.rows:,d} "
          f"images {enc.wall:.1f} s wall (load average now {os.getloadavg()[0]:.1f})\n"
          f"  seconds per metric: {per}\n  headline scores: {scores}")
    return fast, wall


def summary(runs: dict, fast: dict, fast_wall: float, fixed_wall: float | None) -> None:
    print(f"\nsummary (seconds; reference = disentanglement_lib's sizes; 'extrap.' = t / scale from the "
          f"scaled run above, 'measured' = run at scale 1)\n  {'metric':<11} {'reference sizes':<38} "
          f"{'images':>10} {'wall at ref':>18} {'CPU-s at ref':>12}  {'fast sizes':<38} {'fast wall':>9}")
    total_wall = total_cpu = ref_rows = 0.0
    for name in ORDER:
        scale, wall, cpu, rows = runs[name][0]
        total_wall, total_cpu = total_wall + wall / scale, total_cpu + cpu / scale
        ref_rows += rows / scale
        kind, fast_sizes = "measured" if scale == 1 else "extrap.", show(sizes(fast[name]["options"]))
        print(f"  {name:<11} {show(reference(name)):<38} {rows / scale:10,.0f} {wall / scale:8.0f} {kind:>9} "
              f"{cpu / scale:12.0f}  {fast_sizes:<38} {fast[name]['seconds'][0]:9.1f}")
    print(f"  {'total':<11} {'':<38} {ref_rows:10,.0f} {total_wall:8.0f} {'':>9} {total_cpu:12.0f}  "
          f"{'':<38} {fast_wall:9.1f}")
    # mig, dci, sap and modularity draw the same points for a seed: compute() encodes the largest set once
    shared_rows = [runs[n][0][3] / runs[n][0][0] for n in ORDER if n in SHARED_POINTS]
    shared = sum(shared_rows) - max(shared_rows)
    rate = runs["mig"][0][3] / runs["mig"][0][1]  # images/s, everything else MIG does included
    ref = total_wall - shared / rate
    print(f"  compute() at the reference sizes skips {shared:,.0f} repeated encodings "
          f"(~{shared / rate:.0f} s at MIG's {rate:,.0f} images/s): ~{ref:.0f} s wall = "
          f"{ref / GOAL_S:.1f}x the {GOAL_S:.0f} s goal (an extrapolation)")
    fixed = "" if fixed_wall is None else f"; with the encoder fed in pieces {fixed_wall / GOAL_S:.2f}x"
    print(f"  fast preset (measured): {fast_wall:.0f} s = {fast_wall / GOAL_S:.2f}x the goal{fixed}")


def spread(dataset, fn, factor: int) -> None:
    """Seed std (3 seeds) of each shrunk metric's headline score at the fast sizes and factor x them."""
    print(f"\nseed spread (3 seeds) of the headline scores: fast sizes vs {factor}x them\n"
          f"  {'metric':<11} {'score':<16} {'fast: mean ± std':>18} {f'{factor}x: mean ± std':>18} "
          f"{'std ratio':>9} {'seconds per seed':>17}")
    for name in FAST:
        rows = []
        for opts in (FAST[name], {k: v * factor for k, v in FAST[name].items()}):
            r = metrics.compute([name], dataset, fn, seeds=[0, 1, 2], **{name: opts})[name]
            rows.append((r["scores"][HEADLINE[name]], np.mean(r["seconds"])))
        (a, ta), (b, tb) = rows
        ratio = a["std"] / b["std"] if b["std"] > 0 else float("inf")
        print(f"  {name:<11} {HEADLINE[name]:<16} {a['mean']:8.3f} ± {a['std']:.3f}    "
              f"{b['mean']:8.3f} ± {b['std']:.3f}    {ratio:9.2f} {ta:8.1f} / {tb:6.1f}")
    print(f"  (the std of 3 values is itself uncertain by ~50 %; sampling noise alone predicts a ratio "
          f"~sqrt({factor}) = {factor ** 0.5:.1f})")


def parse_scales(items) -> dict:
    out = dict(SCALE)
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in SCALE or not value:
            raise SystemExit(f"--scale takes METRIC=FRACTION with METRIC in {', '.join(ORDER)}; got {item!r}")
        out[name] = float(value)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", nargs="*", metavar="METRIC=FRACTION", help=f"defaults {SCALE}")
    p.add_argument("--check", default="dci=0.1", metavar="METRIC=FRACTION",
                   help="a second scale for one metric, to check the proportional extrapolation ('' skips)")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--chunk", type=int, default=64, help="rows per encoder call, the fix (0 skips)")
    p.add_argument("--chunk-threads", type=int, default=1, help="torch threads for the fast preset with it")
    p.add_argument("--train-epochs", type=int, default=0, help="train on a dsprites subset first")
    p.add_argument("--train-size", type=int, default=20000)
    p.add_argument("--spread", action="store_true", help="also the seed spread, fast vs larger sizes")
    p.add_argument("--spread-factor", type=int, default=4)
    args = p.parse_args()
    scales = parse_scales(args.scale)
    torch.set_num_threads(args.threads)

    data = pyrovae.data.load("dsprites", {"source": "render", "num_train": args.train_size, "num_test": 1000})
    dataset = data.ground_truth
    spec = {"data": "dsprites",
            "model": {"latent_dim": 10, "encoder": "conv", "decoder": "conv", "likelihood": "bernoulli"},
            "train": {"epochs": max(args.train_epochs, 1), "batch_size": 64, "lr": 1e-3, "seed": 0}}
    vae = pyrovae.build(spec, data=data)
    print(versions("cpu"))
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"dsprites rendered ({dataset}); conv VAE latent 10")
    if args.train_epochs:
        t = time.perf_counter()
        pyrovae.fit(vae, data, progress=False, epochs=args.train_epochs)
        print(f"trained {args.train_epochs} epochs on {args.train_size} images: "
              f"{time.perf_counter() - t:.0f} s")
    fn = metrics.encoder_mean(vae)
    if not args.train_epochs:
        fn = standardized(fn, dataset)
        print("untrained: codes standardised per latent (see standardized())")
    throughput(dataset, fn, args.threads, args.chunk)

    print(f"\neach metric alone, seed 0, {threads_label(args.threads)}, at scale x the reference sizes "
          f"(seconds; 'enc' encoding, 'render' rendering, 'rest' classifiers etc.)")
    check_name, _, check_scale = args.check.partition("=")
    jobs = [(n, scales[n]) for n in ORDER] + ([(check_name, float(check_scale))] if args.check else [])
    runs = measure_each(dataset, fn, jobs)
    if args.check:
        linearity(check_name, runs[check_name])

    fast, fast_wall = fast_preset(dataset, fn, args.threads, "as pyrovae is")
    fixed_wall = None
    if args.chunk:
        fixed_wall = fast_preset(dataset, pieces(fn, args.chunk), args.chunk_threads,
                                 f"encoder fed {args.chunk} rows at a time")[1]
    summary(runs, fast, fast_wall, fixed_wall)
    if args.spread:  # the encoder as fast as it goes here: the spread, not the time, is the point
        torch.set_num_threads(args.chunk_threads if args.chunk else args.threads)
        spread(dataset, pieces(fn, args.chunk) if args.chunk else fn, args.spread_factor)


if __name__ == "__main__":
    main()
