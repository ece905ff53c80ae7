"""Training speed: pyrovae's ``fit`` against two baselines, in ms per epoch on digits.

What it measures
    Milliseconds per training epoch on the digits training split (1438 examples, 12
    batches of <= 128) for the default model (MLP encoder [256, 128], decoder
    [128, 256], Bernoulli likelihood, z = 8, Adam lr 1e-3), with three loops that train
    IDENTICAL networks (each repeat builds a fresh VAE with ``pyrovae.build`` and the
    same seed; the baselines use that VAE's ``encoder``/``guide_head``/``decoder``):

    (a) pyrovae   ``pyrovae.fit``; the time is the history's per-epoch ``seconds``,
                  which covers the training steps only, not fit's per-epoch test ELBO.
    (b) torch     a hand-written loop: the same on-device index batching
                  (randperm(n).split(128)) and ``pyrovae.train.make_optimizer``, with the
                  ELBO written in torch (one reparameterised z from q, log q - log p(z)
                  - Bernoulli log-lik via binary_cross_entropy_with_logits, x N/B).
    (c) tutorial  the Pyro VAE tutorial's loop: DataLoader(TensorDataset, shuffle=True,
                  batch_size=128), SVI(vae.model, vae.guide, pyro.optim.Adam, Trace_ELBO),
                  ``svi.step(x)``.

    Before timing, the script checks that (a) and (b) compute the same loss under the
    same seed (so (b) is the same estimator, not a cheaper one), warms every loop up,
    then runs ``--repeats`` rounds; each round runs each loop for ``--epochs`` epochs,
    in a rotating order (interleaved, so drifts in machine speed hit all three alike).

How to read the output
    One line per loop: the median ms per epoch over all timed epochs, and in brackets
    the lowest and highest per-round median. Then the ratios pyrovae/torch and
    pyrovae/tutorial: the ratio of the pooled medians, and in brackets the range of
    the per-round ratios, and the ratio of each loop's fastest round (the figure least
    disturbed by other processes on a shared machine). A ratio above 1 means pyrovae's
    fit is slower; e.g. 1.30 means 30% more time per epoch. "fit wall" is fit's whole
    time per call divided by its epochs: setup and the per-epoch test ELBO included
    (information only; not used in the ratios).

    With two torch threads on a 2-core machine that other processes also use, every op
    waits for a descheduled thread and all times inflate many-fold; ``--threads 1``
    is much steadier there (the ratios hold either way, the absolute ms do not).

    python benchmarks/speed.py                          # default: under a minute on 2 cores
    python benchmarks/speed.py --epochs 5 --repeats 2   # quick check
    python benchmarks/speed.py --threads 1 --no-validation
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pyro
import torch
from _common import build, handwritten_loss, same_weights, train_handwritten, train_tutorial, versions

import pyrovae

LOOPS = ("pyrovae", "torch", "tutorial")


def run_fit(data, epochs, seed, device):
    vae = build(data, seed, device)
    t0 = time.perf_counter()
    hist = pyrovae.fit(vae, data, epochs=epochs, progress=False, seed=seed, device=device)
    wall = time.perf_counter() - t0
    return [h["seconds"] for h in hist], wall / epochs


def run_loop(name, data, epochs, seed, device):
    """Seconds per epoch of one loop on a fresh VAE; plus fit's wall time per epoch."""
    if name == "pyrovae":
        return run_fit(data, epochs, seed, device)
    vae = build(data, seed, device)
    if name == "torch":
        return train_handwritten(vae, data.train.to(device), epochs, seed), None
    return train_tutorial(vae, data.train, epochs, seed), None


def check_same_loss(data, seed, device) -> float:
    """(a) and (b) must give the same loss for the same batch and the same noise."""
    vae = build(data, seed, device)
    x = data.train[:128].to(device)
    n = data.train.shape[0]
    objective = pyrovae.objectives.registry.build("elbo", {}, "objective", vae)
    with vae.unregistered():
        torch.manual_seed(123)
        a = objective.loss(x, num_data=n)
    torch.manual_seed(123)
    b = handwritten_loss(vae, x, n)
    rel = abs(a.item() - b.item()) / abs(a.item())
    if rel > 1e-5:
        raise AssertionError(f"hand-written loss {b.item()} != pyrovae loss {a.item()}")
    return rel


def fmt(ms: list[float]) -> str:
    return f"{statistics.median(ms):8.1f}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=30, help="timed epochs per loop per round")
    p.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    p.add_argument("--warmup", type=int, default=3, help="untimed epochs per loop first")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="torch.set_num_threads for all loops (default: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-validation", action="store_true",
                   help="pyro.enable_validation(False) for all loops (Pyro's default is on)")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.no_validation:
        pyro.enable_validation(False)
    data = pyrovae.data.digits()
    n = data.train.shape[0]
    print(versions(args.device))
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          f"(other processes skew timings; interleaving spreads that over all loops)")
    print(f"digits train {n} examples x {tuple(data.shape)}, batch 128 "
          f"({-(-n // 128)} steps per epoch); {args.repeats} rounds x {args.epochs} epochs "
          f"per loop, {args.warmup} warm-up epochs")

    a, b = build(data, args.seed, args.device), build(data, args.seed, args.device)
    assert same_weights(a, b), "two builds with one seed gave different weights"
    rel = check_same_loss(data, args.seed, args.device)
    print(f"check: same initial weights in every loop; hand-written loss == pyrovae loss "
          f"(relative difference {rel:.1e})")

    for name in LOOPS:  # warm-up: allocator, kernels, Pyro's first-call plate-nesting guess
        run_loop(name, data, args.warmup, args.seed, args.device)

    ms = {k: [] for k in LOOPS}
    per_round = {k: [] for k in LOOPS}
    fit_wall = []
    for r in range(args.repeats):
        order = LOOPS[r % 3:] + LOOPS[:r % 3]
        for name in order:
            times, wall = run_loop(name, data, args.epochs, args.seed + r, args.device)
            t = [1000 * s for s in times]
            ms[name] += t
            per_round[name].append(statistics.median(t))
            if wall is not None:
                fit_wall.append(1000 * wall)

    print()
    print("ms per epoch (median over all timed epochs; [min, max] of per-round medians)")
    labels = {"pyrovae": "(a) pyrovae fit", "torch": "(b) hand-written torch",
              "tutorial": "(c) Pyro tutorial SVI"}
    for k in LOOPS:
        print(f"  {labels[k]:<24}{fmt(ms[k])} ms per epoch  "
              f"[{min(per_round[k]):.1f}, {max(per_round[k]):.1f}]")
    print(f"  {'fit wall (info)':<24}{fmt(fit_wall)} ms per epoch  "
          f"(fit's whole time incl. per-epoch test ELBO)")
    print(f"  load average after: {os.getloadavg()[0]:.2f}")
    med = {k: statistics.median(v) for k, v in ms.items()}
    print()
    for other in ("torch", "tutorial"):
        rr = [x / y for x, y in zip(per_round["pyrovae"], per_round[other], strict=True)]
        best = min(per_round["pyrovae"]) / min(per_round[other])
        print(f"  pyrovae / {other:<9} {med['pyrovae'] / med[other]:.2f}x  "
              f"[per-round {min(rr):.2f}, {max(rr):.2f}; fastest rounds {best:.2f}x]")


if __name__ == "__main__":
    main()
