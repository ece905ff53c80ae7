"""Quality: does pyrovae's ``fit`` reach the same test ELBO as the Pyro tutorial's loop?

What it measures
    For each seed, two copies of the default model (MLP encoder [256, 128], decoder
    [128, 256], Bernoulli likelihood, z = 8) are built with ``pyrovae.build`` from the
    same seed, so they start from the same weights (checked). One is trained with
    ``pyrovae.fit`` (on-device index batching, torch Adam, Trace_ELBO loss scaled by
    N/B), the other with the Pyro VAE tutorial's loop (DataLoader(shuffle=True),
    SVI + pyro.optim.Adam + Trace_ELBO, ``svi.step(x)``), both for ``--epochs`` epochs,
    batch 128, lr 1e-3. Both are then scored on the same digits test split (359
    examples) with ``pyrovae.evaluate.elbo_summary`` (ELBO with analytic KL, one z draw per
    example, evaluation seed fixed).

How to read the output
    Per seed: each model's test ELBO in nats per example (higher is better) ± its
    standard error over test examples, and "fit - tutorial": the mean of the paired
    per-example differences (same examples, same evaluation noise via the same seed
    in ``pyrovae.evaluate.elbo_parts``) ± the standard error of that mean. A difference
    within about 2 SE of 0 means this test split cannot tell the two apart for that
    seed. The paired SE is much smaller than the per-model SEs because most of the
    spread is between examples, which the pairing cancels. With several seeds, the
    last line averages the per-seed differences, ± the SE across seeds (this one also
    includes training noise: the two loops see different batch orders).

    python benchmarks/quality_vs_tutorial.py              # 300 epochs, seeds 0-2: ~2 min on 2 cores
    python benchmarks/quality_vs_tutorial.py --repeats 10 # seeds 0-9
    python benchmarks/quality_vs_tutorial.py --epochs 5 --repeats 1   # quick check
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import pyro
import torch
from _common import build, same_weights, train_tutorial, versions

import pyrovae
from pyrovae.evaluate import elbo_parts, elbo_summary, mean_se


def test_parts(vae, x, seed):
    """Per-example test ELBO exactly as ``elbo_summary(vae, data, split="test", seed=seed)``."""
    was = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            torch.manual_seed(seed)
            return elbo_parts(vae, x)["elbo"]
    finally:
        vae.train(was)


def one_seed(data, seed, epochs, device, eval_seed):
    vae_fit, vae_tut = build(data, seed, device), build(data, seed, device)
    assert same_weights(vae_fit, vae_tut), "same seed, different initial weights"
    init = {k: v.clone() for k, v in vae_tut.state_dict().items()}

    t0 = time.perf_counter()
    pyrovae.fit(vae_fit, data, epochs=epochs, progress=False, seed=seed, device=device)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    train_tutorial(vae_tut, data.train, epochs, seed)
    t_tut = time.perf_counter() - t0
    pyro.clear_param_store()
    # the tutorial trained vae_tut's own parameters (not copies in the param store)
    assert any(not torch.equal(init[k], v) for k, v in vae_tut.state_dict().items())

    ev = {name: elbo_summary(vae, data, split="test", seed=eval_seed)
          for name, vae in (("fit", vae_fit), ("tutorial", vae_tut))}
    x = data.test.to(device)
    e_fit, e_tut = test_parts(vae_fit, x, eval_seed), test_parts(vae_tut, x, eval_seed)
    assert math.isclose(e_fit.double().mean().item(), ev["fit"]["elbo"], rel_tol=1e-9)
    diff, diff_se = mean_se(e_fit - e_tut)
    return ev, diff, diff_se, t_fit, t_tut


def warm_up(data, device):
    """One epoch of each loop on throwaway models: the first optimizer step in a process
    pays several seconds of torch imports, which would otherwise land on whichever loop
    runs first and make the "trained in" times unfair."""
    pyrovae.fit(build(data, 0, device), data, epochs=1, progress=False, seed=0, device=device)
    train_tutorial(build(data, 0, device), data.train, 1, 0)
    pyro.clear_param_store()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=300, help="training epochs for both loops")
    p.add_argument("--repeats", type=int, default=3, help="number of seeds (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the test ELBO's z draws")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    data = pyrovae.data.digits()
    print(versions(args.device))
    print(f"digits: train {data.train.shape[0]}, test {data.test.shape[0]} examples; "
          f"{args.epochs} epochs, batch 128, lr 1e-3; test ELBO in nats per example "
          f"(higher is better), ± standard error")
    print()
    warm_up(data, args.device)
    diffs = []
    for r in range(args.repeats):
        seed = args.seed + r
        ev, diff, diff_se, t_fit, t_tut = one_seed(data, seed, args.epochs, args.device,
                                                   args.eval_seed)
        diffs.append(diff)
        print(f"seed {seed}:")
        for name, t in (("fit", t_fit), ("tutorial", t_tut)):
            e = ev[name]
            print(f"  {name:<16}test ELBO {e['elbo']:9.3f} ± {e['elbo_se']:.3f} nats per example"
                  f"  (recon {e['recon']:.2f}, KL {e['kl']:.2f}; trained in {t:.1f} s)")
        print(f"  {'fit - tutorial':<16}         {diff:+9.3f} ± {diff_se:.3f} nats per example"
              f"  (paired, {diff / diff_se:+.1f} SE)")
    if len(diffs) > 1:
        m = statistics.mean(diffs)
        se = statistics.stdev(diffs) / math.sqrt(len(diffs))
        print()
        print(f"over {len(diffs)} seeds: fit - tutorial = {m:+.3f} ± {se:.3f} nats per example "
              f"(mean ± SE across seeds)")


if __name__ == "__main__":
    main()
