"""Disentanglement sweep on shapes_small: β-VAE, β-TCVAE and FactorVAE, scored by six metrics.

Each method is trained at a few strengths of its disentangling pressure (β of β-VAE and
β-TCVAE, γ of FactorVAE) and several training seeds; each model's encoder mean E_q[z|x] is
scored by ``pyrovae.metrics.compute`` over several metric seeds. An untrained network of the
same architecture is scored too, as the floor a random encoder reaches. Written to --out:

    runs/<model>/            a run directory per model (pyrovae evaluate / sample / analyze it)
    results.csv, results.md  a row per model: test ELBO and KL (nats per example), active units,
                             every score (mean ± s.e. over metric seeds)
    summary.md               a row per method and strength: mean ± s.e. over training seeds
    metrics.png              each metric against β or γ, a line per method, ±1 s.e. over training seeds
    traversals/<model>.png   latent traversals of one test image, rows sorted by KL per dimension

    python examples/disentanglement_sweep.py          # 3 methods x 3 strengths x 2 seeds, 19 models:
                                                      # ~23 CPU-minutes (40 min on a shared 2-core machine)
    python examples/disentanglement_sweep.py --smoke  # one strength per method, tiny; for CI (~40 CPU-s)

The sample sizes of the metrics here are 10-33x below disentanglement_lib's (10,000 training
and 5,000 test points), which keeps a model's scoring to under a minute; the spread over metric
seeds in the tables shows what that costs in variance. Set them with --metric-set.
"""

from __future__ import annotations

import argparse
import csv
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from matplotlib.ticker import NullLocator

import pyrovae
import pyrovae.metrics
from pyrovae.analysis.figures import traversal_figure
from pyrovae.plots import plt

METHODS = {  # method: (objective, the option swept, label)
    "beta_vae": ("elbo", "beta", "β-VAE"),
    "beta_tcvae": ("beta_tcvae", "beta", "β-TCVAE"),
    "factor_vae": ("factor_vae", "gamma", "FactorVAE"),
}
HEADLINE = {  # metric: (the score plotted and summarised, its label)
    "beta_vae": ("eval_accuracy", "BetaVAE score"),
    "factor_vae": ("eval_accuracy", "FactorVAE score"),
    "mig": ("discrete_mig", "MIG"),
    "dci": ("disentanglement", "DCI disentanglement"),
    "sap": ("sap_score", "SAP"),
    "modularity": ("modularity_score", "modularity"),
}
METRIC_OPTIONS = {  # sample sizes (disentanglement_lib: 10,000 training, 5,000 test points)
    "full": {"num_train": 1000, "num_test": 500, "num_eval": 500, "num_variance_estimate": 1000,
             "dci": {"num_train": 500, "num_test": 250}, "beta_vae": {"num_train": 300, "num_eval": 200}},
    "smoke": {"num_train": 100, "num_test": 50, "num_eval": 50, "num_variance_estimate": 100,
              "beta_vae": {"num_train": 30, "num_eval": 30, "batch_size": 16}},
}


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="disentanglement-sweep", help="output folder (default: %(default)s)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated, of: " + ", ".join(METHODS))
    p.add_argument("--betas", type=floats, default=[1.0, 4.0, 8.0], help="β of β-VAE and β-TCVAE (1,4,8)")
    p.add_argument("--gammas", type=floats, default=[10.0, 30.0, 50.0], help="γ of FactorVAE (10,30,50)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds per setting, 0..N-1 (2)")
    p.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    p.add_argument("--latent-dim", type=int, default=8, help="latent dimensions (8)")
    p.add_argument("--num-train", type=int, default=None,
                   help="training images of shapes_small (default: all 4,108 not in the test split)")
    p.add_argument("--metrics", default=",".join(HEADLINE), help="comma-separated metric names")
    p.add_argument("--metric-seeds", type=int, default=None,
                   help="metric seeds per model, 0..N-1 (2; 1 with --smoke)")
    p.add_argument("--metric-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a metric option for every metric that has it (num_train=2000) or for one "
                        "(dci.num_train=2000); repeatable")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the networks are small)")
    p.add_argument("--smoke", action="store_true",
                   help="one strength per method, one seed, 1 epoch on 300 images, tiny metric samples, "
                        "one metric seed")
    args = p.parse_args(argv)
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        p.error(f"--methods: unknown {unknown or args.methods}; choose from {', '.join(METHODS)}")
    for option, values in (("betas", args.betas), ("gammas", args.gammas)):
        if not values or min(values) <= 0:
            p.error(f"--{option} must be positive numbers, got {values}")
    if args.metric_seeds is None:  # DCI's boosted trees cost ~5 CPU-s a seed at any sample size
        args.metric_seeds = 1 if args.smoke else 2
    for name in ("seeds", "epochs", "latent_dim", "metric_seeds", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.smoke:
        args.betas, args.gammas = args.betas[-1:], args.gammas[-1:]
        args.seeds, args.epochs, args.num_train = 1, 1, args.num_train or 300
    try:
        args.metrics = pyrovae.metrics.metric_names(args.metrics)
    except pyrovae.SpecError as e:
        p.error(f"--metrics: {e}")
    args.metric_options = metric_options(args, p)
    return args


def metric_options(args, parser) -> dict:
    """The preset sample sizes for the metrics run, with the --metric-set overrides."""
    preset = METRIC_OPTIONS["smoke" if args.smoke else "full"]
    options = {k: dict(v) if isinstance(v, dict) else v for k, v in preset.items()
               if k in args.metrics or not isinstance(v, dict)}
    accepted = {m: set(pyrovae.metrics.registry.options(m)) for m in args.metrics}
    for item in args.metric_set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--metric-set wants KEY=VALUE, got {item!r}")
        metric, dot, option = key.strip().rpartition(".")
        if dot and metric not in args.metrics:
            parser.error(f"--metric-set {item!r}: {metric!r} is not among the metrics run ({args.metrics})")
        valid = accepted[metric] if dot else set().union(*accepted.values())
        if option not in valid:
            where = f"metric {metric!r} has no option" if dot else "no metric run here has the option"
            parser.error(f"--metric-set {item!r}: {where} {option!r} (valid: {', '.join(sorted(valid))})")
        if not dot:  # a shared option replaces the preset's per-metric values of it too
            for own in options.values():
                if isinstance(own, dict):
                    own.pop(option, None)
        (options.setdefault(metric, {}) if dot else options)[option] = yaml.safe_load(value)
    shared = set().union(*accepted.values())
    return {k: v for k, v in options.items() if isinstance(v, dict) or k in shared}


def spec_for(objective: dict, seed: int, args) -> dict:
    """A conv VAE for 32x32 binary sprites: Bernoulli likelihood, standard normal prior."""
    conv = {"name": "conv", "channels": [16, 32, 32], "hidden": 128}
    return {"data": {"name": "shapes_small", "num_train": args.num_train},
            "model": {"latent_dim": args.latent_dim, "encoder": conv,
                      "decoder": {**conv, "channels": conv["channels"][::-1]}, "likelihood": "bernoulli"},
            "objective": objective,
            "train": {"epochs": args.epochs, "batch_size": 64, "lr": 2e-3, "seed": seed}}


def settings(args):
    """(model name, method, strength, seed, objective) for every model of the sweep."""
    for method in args.methods:
        objective, option, _ = METHODS[method]
        for value in args.betas if option == "beta" else args.gammas:
            for seed in range(args.seeds):
                yield (f"{method}_{option}{value:g}_seed{seed}", method, value, seed,
                       {"name": objective, option: value})


def score(vae, data, args) -> dict:
    """The metrics of ``vae``'s encoder mean: score -> (mean, s.e.) over the metric seeds."""
    results = pyrovae.metrics.compute(args.metrics, data.ground_truth, pyrovae.metrics.encoder_mean(vae),
                                      seeds=range(args.metric_seeds), **args.metric_options)
    return {f"{metric}.{name}": (s["mean"], s["stderr"]) for metric, r in results.items()
            for name, s in r["scores"].items()}


def run_model(name, method, value, seed, objective, data, args, out: Path) -> dict:
    vae = pyrovae.build(spec_for(objective, seed, args), data=data)
    start = time.process_time()
    pyrovae.fit(vae, data, run_dir=out / "runs" / name, progress=False)
    train_cpu = time.process_time() - start
    ev = pyrovae.evaluate(vae, data, num_particles=0)  # ELBO parts and KL per dimension; no IS
    traversal_figure(vae, data.examples(data.test[:1]), out / "traversals" / f"{name}.png",
                     kl_per_dim=ev["kl_per_dim"])
    start = time.process_time()
    scores = score(vae, data, args)
    row = {"model": name, "method": method, "strength": value, "seed": seed, "test_elbo": ev["elbo"],
           "test_elbo_se": ev["elbo_se"], "test_kl": ev["kl"], "test_kl_se": ev["kl_se"],
           "active_units": ev["active_units"], "train_cpu_s": train_cpu,
           "metrics_cpu_s": time.process_time() - start, "scores": scores}
    print(f"{name}: test ELBO {ev['elbo']:.2f} ± {ev['elbo_se']:.2f} nats per example, KL {ev['kl']:.2f} ± "
          f"{ev['kl_se']:.2f} nats per example, {ev['active_units']} of {vae.latent_dim} units active; "
          + ", ".join(f"{HEADLINE[m][1]} {scores[f'{m}.{HEADLINE[m][0]}'][0]:.3f}" for m in args.metrics
                      if m in HEADLINE)
          + f" (CPU: train {row['train_cpu_s']:.0f} s, metrics {row['metrics_cpu_s']:.0f} s)", flush=True)
    return row


def untrained_row(data, args) -> dict:
    """The scores of a network of the same architecture at its random initialisation."""
    vae = pyrovae.build(spec_for({"name": "elbo"}, 0, args), data=data)
    ev = pyrovae.evaluate(vae, data, num_particles=0)
    start = time.process_time()
    scores = score(vae, data, args)
    return {"model": "untrained_seed0", "method": "untrained", "strength": math.nan, "seed": 0,
            "test_elbo": ev["elbo"], "test_elbo_se": ev["elbo_se"], "test_kl": ev["kl"],
            "test_kl_se": ev["kl_se"], "active_units": ev["active_units"], "train_cpu_s": 0.0,
            "metrics_cpu_s": time.process_time() - start, "scores": scores}


# ---- tables ----------------------------------------------------------------------------------
def pm(mean, se, digits: int = 3) -> str:
    return f"{mean:.{digits}f}" + ("" if se is None or math.isnan(se) else f" ± {se:.{digits}f}")


def write_csv(rows, path: Path) -> None:
    names = list(rows[0]["scores"])
    fields = [k for k in rows[0] if k != "scores"] + [c for n in names for c in (n, n + "_se")]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fields)
        w.writeheader()
        for r in rows:
            flat = {k: v for k, v in r.items() if k != "scores"}
            for n, (mean, se) in r["scores"].items():
                flat[n], flat[n + "_se"] = mean, "" if se is None else se
            w.writerow(flat)


def label(method: str, value) -> str:
    if method == "untrained":
        return "untrained (random weights)"
    _, option, text = METHODS[method]
    return f"{text} {'β' if option == 'beta' else 'γ'}={value:g}"


def models_table(rows, metrics, metric_seeds: int) -> str:
    head = ["model", "seed", "test ELBO (nats per example)", "KL (nats per example)", "active units",
            *(HEADLINE[m][1] for m in metrics)]
    lines = [f"Scores: mean ± s.e. over {metric_seeds} metric seeds (unitless, in [0, 1]); "
             "ELBO and KL: mean ± s.e. over the test images.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [label(r["method"], r["strength"]), str(r["seed"]), pm(r["test_elbo"], r["test_elbo_se"], 2),
                 pm(r["test_kl"], r["test_kl_se"], 2), str(r["active_units"]),
                 *(pm(*r["scores"][f"{m}.{HEADLINE[m][0]}"]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def summarize(rows, metrics) -> list[dict]:
    """Per method and strength: each headline score and the test ELBO, mean and s.e. over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["strength"]), []).append(r)
    out = []
    for (method, value), rs in groups.items():
        entry = {"method": method, "strength": value, "seeds": len(rs)}
        keys = ["test_elbo"] + [f"{m}.{HEADLINE[m][0]}" for m in metrics]
        for key in keys:
            v = np.array([r[key] if key == "test_elbo" else r["scores"][key][0] for r in rs])
            entry[key] = (float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None)
        out.append(entry)
    return out


def summary_table(summary, metrics) -> str:
    head = ["method", "training seeds", "test ELBO (nats per example)", *(HEADLINE[m][1] for m in metrics)]
    lines = ["Mean ± s.e. over training seeds of each model's score (itself a mean over metric seeds).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in summary:
        cells = [label(s["method"], s["strength"]), str(s["seeds"]), pm(*s["test_elbo"], 2),
                 *(pm(*s[f"{m}.{HEADLINE[m][0]}"]) for m in metrics)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(summary, metrics, path: Path, seeds: int, metric_seeds: int) -> None:
    """A panel per metric: score against β or γ (log axis), a line per method, ±1 s.e. over seeds."""
    shown = [m for m in metrics if m in HEADLINE]
    ncol = min(3, len(shown))
    nrow = -(-len(shown) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax, metric in zip(axes.flat, shown, strict=False):
        key = f"{metric}.{HEADLINE[metric][0]}"
        for method in METHODS:
            pts = sorted((s["strength"], *s[key]) for s in summary if s["method"] == method)
            if pts:
                x, y, se = zip(*pts, strict=True)
                err = None if se[0] is None else se
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label(method, 0).split(" ")[0])
        floor = [s[key][0] for s in summary if s["method"] == "untrained"]
        if floor:
            ax.axhline(floor[0], color="gray", ls="--", lw=1, label="untrained")
        ax.set_xscale("log")
        ticks = sorted({s["strength"] for s in summary if s["method"] != "untrained"})
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=8)
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_ylim(bottom=0)
        ax.set_title(HEADLINE[metric][1], fontsize=10)
        ax.set_xlabel("β (β-VAE, β-TCVAE) or γ (FactorVAE)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(shown):]:
        ax.set_axis_off()
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"disentanglement on shapes_small: mean over {seeds} training seed(s)"
                 + (", ±1 s.e." if seeds > 1 else "")
                 + f"; each model scored over {metric_seeds} metric seed(s)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = pyrovae.data.load("shapes_small", {"num_train": args.num_train})
    gt = data.ground_truth
    print(f"{gt}: {len(data.train)} training, {len(data.test)} test images; metrics {args.metrics} "
          f"with {args.metric_options}")
    start = time.perf_counter()
    rows = [run_model(*setting, data, args, out) for setting in settings(args)]
    rows.append(untrained_row(data, args))
    write_csv(rows, out / "results.csv")
    table = models_table(rows, args.metrics, args.metric_seeds)
    (out / "results.md").write_text(table)
    summary = summarize(rows, args.metrics)
    (out / "summary.md").write_text(summary_table(summary, args.metrics))
    plot(summary, args.metrics, out / "metrics.png", args.seeds, args.metric_seeds)
    print("\n" + table + "\n" + summary_table(summary, args.metrics))
    print(f"{len(rows)} models in {time.perf_counter() - start:.0f} s (wall clock); "
          f"tables, figures and runs in {out}/")


if __name__ == "__main__":
    main()
