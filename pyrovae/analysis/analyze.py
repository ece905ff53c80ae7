"""``analyze``: the whole posterior analysis of a trained VAE, written to a run directory.

Steps, on (up to ``max_examples`` of) one split:

1. :func:`pyrovae.evaluate` (importance-sampled log p(x), ELBO parts, collapse diagnostics);
2. PSIS k̂ of the guide per example (:mod:`.psis`);
3. the ArviZ DataTree export, saved as ``posterior.nc`` (:mod:`.export`);
4. a posterior predictive check of one statistic per example (:mod:`.ppc`);
5. NUTS on z for a few examples, the worst-k̂ ones and a typical one (:mod:`.mcmc`);
6. figures (:mod:`.figures`) and ``report.md`` linking everything (:mod:`.report`).

Outputs go to ``RUN_DIR/analysis/`` (figures, ``posterior.nc``, ``analysis.json``) and
``RUN_DIR/report.md``; each file is written atomically, so an interrupted analysis never
leaves a half-written one behind.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from ..evaluate import evaluate
from ..runs import atomic_write
from . import export, figures, ppc, psis, report

OUT = "analysis"


def _json_safe(v):
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items() if k != "per_example"}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.floating, np.integer)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("-inf" if v < 0 else "inf")
    return v


def choose_mcmc_examples(khat: np.ndarray, count: int) -> np.ndarray:
    """Positions of ``count`` examples for NUTS: the worst k̂ first, then one with the median k̂."""
    if count <= 0 or khat.size == 0:
        return np.zeros(0, dtype=int)
    order = np.argsort(-np.where(np.isfinite(khat), khat, -1e9), kind="stable")
    chosen = list(order[:max(1, count - 1)])
    median = order[len(order) // 2]
    if count > 1 and median not in chosen:
        chosen.append(median)
    return np.array(chosen[:count])


def analyze(vae, data, run_dir, *, split: str = "test", max_examples: int = 500, num_particles: int = 1000,
            num_draws: int = 1000, export_draws: int = 100, export_chains: int = 4,
            statistic: str | None = None, mcmc_examples: int = 4, mcmc_chains: int = 4,
            mcmc_samples: int = 500, mcmc_warmup: int = 500, mcmc_chain_method: str = "sequential",
            seed: int = 0, progress=print) -> dict:
    """Run every analysis step on ``data``'s ``split`` and write the report; returns the results.

    ``max_examples``: the first that many examples of the split are analysed (the split is
    already in random order). ``num_particles``: K of the importance-sampled log p(x);
    ``num_draws``: guide draws per example for k̂; ``export_draws`` x ``export_chains``:
    draws per example in ``posterior.nc``; ``statistic``: the PPC statistic (default by
    likelihood: ``sum`` for counts, else ``mean``); ``mcmc_examples`` (0 skips NUTS), chains,
    samples and warm-up per chain, ``mcmc_chain_method`` (``sequential``: independent chains;
    ``vectorized``: faster, chains share step sizes).
    """
    run_dir = Path(run_dir)
    out = run_dir / OUT
    out.mkdir(parents=True, exist_ok=True)
    say = progress or (lambda *a: None)
    x_all = data.split(split)
    n = min(int(max_examples), x_all.shape[0])
    if n < 1:
        raise ValueError(f"the {split} split has no examples to analyse")
    x = x_all[:n].to(vae.device)
    labels_all = getattr(data, f"{split}_labels")
    labels = None if labels_all is None else labels_all[:n]
    given_all = getattr(vae, "evaluation_labels", lambda d, s: None)(data, split)
    given = None if given_all is None else given_all[:n].to(vae.device)
    model_name = f"{vae.spec.model.variant.name} VAE, z = {vae.latent_dim}, likelihood " \
                 f"{vae.spec.model.likelihood.name}, prior {vae.spec.model.prior.name}, " \
                 f"guide {vae.spec.model.guide.name}, objective {vae.spec.objective.name}"
    results = {"run_dir": str(run_dir), "split": split, "n": n, "epoch": getattr(vae, "epoch", None),
               "model": model_name, "unit": "nats per example"}
    figs: dict[str, Path] = {}
    seconds: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(step: str) -> None:  # wall-clock seconds of the step just finished
        now = time.perf_counter()
        seconds[step] = round(now - clock[0], 2)
        clock[0] = now

    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            torch.manual_seed(seed)
            say(f"evaluate: log p(x) with K = {num_particles}, ELBO parts, collapse diagnostics ...")
            ev = evaluate(vae, _first(data, split, n), split=split, num_particles=num_particles, seed=seed)
            ev["epoch"] = results["epoch"]
            results["evaluation"] = ev
            lap("evaluate")

            say(f"PSIS k̂ of the guide: {num_draws} draws for each of {n} examples ...")
            ps = psis.psis_diagnostics(vae, x, given, num_draws=num_draws)
            results["psis"] = ps.to_dict()
            figs["khat"] = psis.khat_figure(ps, out / "khat.png")
            worst = ps.worst(min(16, n))
            figs["worst_khat"] = figures.examples_figure(
                x[torch.as_tensor(worst, device=x.device)], out / "worst_khat.png",
                captions=[f"#{ps.index[i]} k̂ {ps.khat[i]:.2f}" for i in worst],
                title="examples with the largest PSIS k̂ (the guide covers their posterior worst)")
            lap("psis")

            m = min(n, 200)
            say(f"ArviZ export: {export_chains} x {export_draws} guide draws for {m} examples ...")
            dt = export.to_datatree(vae, x[:m], None if given is None else given[:m], num_draws=export_draws,
                                    num_chains=export_chains, labels=None if labels is None else labels[:m],
                                    attrs={"run_dir": str(run_dir), "split": split})
            export.save_netcdf(dt, out / "posterior.nc")
            results["netcdf"] = f"{OUT}/posterior.nc"
            lap("export")

            stat = statistic or ppc.default_statistic(vae.spec.model.likelihood.name)
            say(f"posterior predictive check of T = {ppc.STATISTICS[stat][0]} ...")
            results["ppc"] = ppc.check(dt, stat)
            for p in ppc.figures(dt, out, stat):
                figs[p.stem] = p
            lap("ppc")

            if mcmc_examples > 0 and getattr(vae, "enumerates", False):
                results["mcmc"] = {"notes": "skipped: NUTS needs continuous latents, and this model's y "
                                            "is discrete (model.variant m2)"}
            elif mcmc_examples > 0:
                from . import mcmc
                chosen = choose_mcmc_examples(ps.khat, mcmc_examples)
                say(f"NUTS on z for examples {', '.join(str(int(ps.index[i])) for i in chosen)} "
                    f"({mcmc_chains} chains x {mcmc_warmup} + {mcmc_samples}) ...")
                idx = torch.as_tensor(chosen, device=x.device)
                ref = mcmc.refine(vae, x[idx], None if given is None else given[idx], num_chains=mcmc_chains,
                                  num_samples=mcmc_samples, warmup_steps=mcmc_warmup, seed=seed,
                                  num_particles=num_particles, obs_index=ps.index[chosen],
                                  chain_method=mcmc_chain_method)
                results["mcmc"] = ref.to_dict()
                figs["mcmc"] = mcmc.figure(ref, out / "mcmc.png")
            lap("mcmc")

            say("figures ...")
            figs.update(_latent_figures(vae, x, given, labels, ev, out, seed))
            lap("figures")
    finally:
        vae.train(was_training)
    results["seconds"] = seconds
    atomic_write(out / "analysis.json",
                 lambda p: p.write_text(json.dumps(_json_safe(results), indent=2) + "\n"))
    results["figures"] = {k: str(v) for k, v in figs.items()}
    results["report"] = str(report.write_report(results, figs, run_dir / "report.md"))
    return results


def _first(data, split: str, n: int):
    """``data`` with ``split`` cut to its first n examples (labels too)."""
    from dataclasses import replace

    labels = getattr(data, f"{split}_labels")
    return replace(data, **{split: getattr(data, split)[:n],
                            f"{split}_labels": None if labels is None else labels[:n]})


def _latent_figures(vae, x, given, labels, ev, out: Path, seed: int) -> dict:
    figs = {}
    kl = ev.get("kl_per_dim")
    if kl is not None:
        var = np.asarray(ev["encoder_mean_variance"])
        figs["kl_bars"] = figures.kl_bars_figure(kl, out / "kl_per_dim.png", kl_se=ev.get("kl_per_dim_se"),
                                                 active=var > ev["active_threshold"])
    with torch.no_grad():
        means = torch.cat([vae.encode(xb, None if given is None else given[i:i + 256]).mean
                           for i, xb in zip(range(0, x.shape[0], 256), x.split(256), strict=True)])
    figs["scatter"] = figures.latent_scatter_figure(means.cpu(), out / "latent_scatter.png", labels=labels)
    y0 = None if given is None else given[:1]  # a conditional model: the first example's label
    figs["traversals"] = figures.traversal_figure(vae, x[:1], out / "traversals.png", y=y0, kl_per_dim=kl)
    figs["interpolation"] = figures.interpolation_figure(vae, x[:1], x[1:2] if x.shape[0] > 1 else x[:1],
                                                         out / "interpolation.png", y=y0)
    figs["samples"] = figures.sample_grid_figure(vae, out / "samples.png", seed=seed)
    return figs
