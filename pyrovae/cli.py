"""The ``pyrovae`` command: train, sample, evaluate, analyze, list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .errors import PyrovaeError, SpecError


def _train(args) -> int:
    from . import assemble as builder
    from . import runs
    from .spec import Spec
    from .train import fit

    if args.resume:
        run_dir = Path(args.resume)
        if args.config or args.out:
            raise PyrovaeError("--resume continues a run with its own config; drop --config/--out")
        ckpt = runs.read_checkpoint(run_dir)
        runs.import_components(Spec.from_dict(ckpt["spec"]), ckpt.get("component_modules", {}), run_dir)
        spec = Spec.load(ckpt["spec"], args.set)
        saved = Spec.from_dict(ckpt["spec"]).to_dict()  # today's spec shape (new keys get defaults)
        changed = [k for k, v in spec.to_dict().items() if k != "train" and v != saved.get(k)]
        if changed:
            raise PyrovaeError(
                f"--resume continues the saved model: only train.* keys may change, "
                f"but --set changes {', '.join(changed)}")
        vae = builder.build_vae(builder.resolve(spec), ckpt["data_shape"])
        data = builder.load_data(vae.spec)
        if ckpt["epoch"] >= vae.spec.train.epochs:
            print(f"run already trained {ckpt['epoch']} of {vae.spec.train.epochs} epochs; "
                  f"raise it with --set train.epochs=N", file=sys.stderr)
            return 0
    else:
        spec = builder.resolve(Spec.load(args.config, args.set))
        data = builder.load_data(spec)
        vae = builder.build(spec, data=data)
        run_dir = (runs.prepare_out_dir(args.out) if args.out
                   else runs.new_run_dir("runs", spec.data.name))
    print(f"run directory: {run_dir}", file=sys.stderr)
    history = fit(vae, data, run_dir=run_dir, resume=bool(args.resume), progress=not args.quiet)
    last = history[-1] if history else {}
    if "test_elbo" in last:
        print(f"epoch {last['epoch']}: test ELBO {last['test_elbo']:.3f} ± {last['test_elbo_se']:.3f} "
              f"nats per example (train objective {last['train_objective']:.3f}; "
              f"{sum(h['seconds'] for h in history):.1f} seconds of training)")
    print(f"wrote {run_dir}/: config.yaml checkpoint.pt metrics.jsonl samples.png "
          f"reconstructions.png loss.png")
    return 0


def _parse_label(text: str):
    """``--label``: a class index (``3``) or comma-separated attribute values (``0.5,1,0``)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise PyrovaeError(f"--label {text!r}: expected a class index such as 3 or comma-separated "
                           f"numbers such as 0.5,1,0") from None
    if len(values) == 1 and values[0].is_integer() and "." not in text:
        return int(values[0])
    return values


def _sample(args) -> int:
    import numpy as np
    import torch

    from .plots import save_grid
    from .runs import load

    vae = load(args.run_dir)
    if args.n < 1:
        raise PyrovaeError(f"-n must be a positive integer, got {args.n}")
    out = Path(args.out)
    if out.suffix not in (".png", ".npy", ".pt"):
        raise PyrovaeError(f"--out {str(out)!r}: unknown file type {out.suffix!r} "
                           f"(valid choices: .png, .npy, .pt)")
    label = None if args.label is None else _parse_label(args.label)
    torch.manual_seed(args.seed)
    try:
        with torch.no_grad():
            x = vae.sample(args.n, y=label, mean=not args.draw)
    except ValueError as e:  # a label for an unconditional model, none for a cvae, a bad label
        raise PyrovaeError(f"sample: {e}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    given = "" if label is None else f", y = {args.label}"
    if out.suffix == ".png":
        save_grid(x, out, ncol=min(10, args.n),
                  title=f"{args.n} {'draws x' if args.draw else 'means E[x|z]'}{given}, z ~ p(z)")
    elif out.suffix == ".npy":
        np.save(out, x.cpu().numpy())
    else:
        torch.save(x.cpu(), out)
    print(f"wrote {args.n} samples{given} to {out}")
    return 0


def _evaluate(args) -> int:
    from .assemble import check_data, load_data
    from .evaluate import evaluate, format_table
    from .runs import load, write_text

    if not 0 <= args.num_particles <= 100_000:
        raise PyrovaeError(f"--num-particles must be in [0, 100000] (0 skips importance sampling), "
                           f"got {args.num_particles}")
    metric_options = _metric_options(args.metric_set)
    vae = load(args.run_dir)
    data = load_data(vae.spec)
    check_data(vae, data)
    if args.metrics is not None:
        from . import metrics

        names = metrics.metric_names(args.metrics)  # bad names and options fail before the slow part
        metrics.resolve_options(names, metric_options)
        if data.ground_truth is None:
            raise PyrovaeError(
                f"--metrics needs data with known generating factors (data.name dsprites, shapes_small, "
                f"shapes3d or mpi3d); this run's data is {vae.spec.data.name!r}")
    res = evaluate(vae, data, split=args.split, seed=args.seed, num_particles=args.num_particles)
    res["run_dir"], res["epoch"] = str(args.run_dir), vae.epoch
    print(format_table(res))
    if args.metrics is not None:
        if args.metric_seeds < 1:
            raise PyrovaeError(f"--metric-seeds must be at least 1, got {args.metric_seeds}")
        seeds = list(range(args.seed, args.seed + args.metric_seeds))
        print(f"disentanglement metrics on the encoder mean, seeds {seeds} ...", file=sys.stderr)
        found = metrics.compute(names, data.ground_truth, metrics.encoder_mean(vae), seeds=seeds,
                                **metric_options)
        res["disentanglement"] = found
        print(metrics.format_table(found))
    write_text(Path(args.run_dir) / "evaluation.json", json.dumps(res, indent=2) + "\n")
    print(f"wrote {Path(args.run_dir) / 'evaluation.json'}")
    return 0


def _metric_options(items: list[str]) -> dict:
    """``--metric-set num_train=2000 --metric-set dci.num_train=1000`` as compute()'s options."""
    from .spec import apply_override

    out: dict = {}
    for item in items:
        if "=" not in item:
            raise PyrovaeError(f"--metric-set expects key=value or metric.key=value, got {item!r}")
        out = apply_override(out, item)
    return out


def _analyze(args) -> int:
    from .analysis.analyze import analyze
    from .analysis.ppc import STATISTICS
    from .assemble import check_data, load_data
    from .runs import load

    for name, low in (("max_examples", 1), ("num_particles", 1), ("num_draws", 10), ("export_draws", 1),
                      ("mcmc_examples", 0), ("mcmc_chains", 1), ("mcmc_samples", 10), ("mcmc_warmup", 0)):
        if getattr(args, name) < low:
            flag = "--" + name.replace("_", "-")
            raise PyrovaeError(f"{flag} must be at least {low}, got {getattr(args, name)}")
    if args.statistic is not None and args.statistic not in STATISTICS:
        raise PyrovaeError(f"--statistic {args.statistic!r} (valid choices: {', '.join(STATISTICS)})")
    vae = load(args.run_dir)
    data = load_data(vae.spec)
    check_data(vae, data)
    res = analyze(vae, data, args.run_dir, split=args.split, max_examples=args.max_examples,
                  num_particles=args.num_particles, num_draws=args.num_draws, export_draws=args.export_draws,
                  statistic=args.statistic, mcmc_examples=args.mcmc_examples, mcmc_chains=args.mcmc_chains,
                  mcmc_samples=args.mcmc_samples, mcmc_warmup=args.mcmc_warmup,
                  mcmc_chain_method=args.mcmc_chain_method, seed=args.seed,
                  progress=lambda m: print(m, file=sys.stderr))
    ps = res["psis"]
    print(f"PSIS k̂ of the guide: {100 * ps['fraction_above_threshold']:.1f}% of {ps['n']} examples above "
          f"{ps['threshold']:.2f}; log p(x) {res['evaluation']['log_px']:.3f} ± "
          f"{res['evaluation']['log_px_se']:.3f} nats per example")
    print(f"wrote {res['report']} and {Path(args.run_dir) / 'analysis'}/ "
          f"(figures, posterior.nc, analysis.json)")
    return 0


def _list(args) -> int:
    from . import metrics
    from .assemble import REGISTRIES

    registries = {**REGISTRIES, "metrics": metrics.registry}  # evaluate --metrics names
    short = {k: k.split(".")[-1] for k in registries}
    chosen = {k: r for k, r in registries.items() if args.kind in (None, k, short[k], r.kind)}
    if not chosen:
        raise SpecError("list", f"unknown component kind {args.kind!r}", value=args.kind,
                        choices=list(short.values()))
    width = max(len(n) for r in chosen.values() for n in r.names()) + 2
    for key, reg in chosen.items():
        print(f"{key}  ({reg.kind})")
        for name in reg.names():
            opts = reg.options(name)
            print(f"  {name:<{width}}{reg.describe(name)}")
            for o in opts.values():
                print(f"      {o.name} = {'(required)' if o.required else json.dumps(o.default)}")
        print()
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pyrovae", description="Variational autoencoders as Pyro programs.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a VAE (default: MLP VAE on the embedded digits)")
    t.add_argument("--config", help="spec file (.yaml, .toml or .json)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a spec key, e.g. --set model.latent_dim=16 (repeatable)")
    t.add_argument("--out", help="run directory (default: runs/<data>-NNN)")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)
    s = sub.add_parser("sample", help="draw samples from a trained VAE")
    s.add_argument("run_dir")
    s.add_argument("-n", type=int, default=64, help="number of samples")
    s.add_argument("--out", required=True, help="output file: .png grid, .npy or .pt array")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of E[x|z]")
    s.add_argument("-y", "--label", metavar="Y",
                   help="condition on label Y (model.variant cvae or m2): a class index, or "
                        "comma-separated attribute values for a cvae with labels: attributes")
    s.set_defaults(func=_sample)
    e = sub.add_parser("evaluate", help="log p(x) (importance sampled), ELBO parts and collapse diagnostics")
    e.add_argument("run_dir")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--num-particles", type=int, default=1000, metavar="K",
                   help="importance samples per example for log p(x) (default 1000; 0 skips it)")
    e.add_argument("--metrics", metavar="NAMES",
                   help="disentanglement metrics for ground-truth data, comma-separated: beta_vae, "
                        "factor_vae, mig, dci, sap, modularity")
    e.add_argument("--metric-seeds", type=int, default=3, metavar="N",
                   help="run each metric with seeds SEED..SEED+N-1 and report the spread (default 3)")
    e.add_argument("--metric-set", action="append", default=[], metavar="KEY=VALUE",
                   help="a metric option for every metric that has it (num_train=2000) or for one "
                        "(dci.num_train=1000); repeatable")
    e.set_defaults(func=_evaluate)
    a = sub.add_parser("analyze", help="posterior analysis: PSIS k̂, ArviZ netCDF, PPC, NUTS, figures, "
                                        "report.md")
    a.add_argument("run_dir")
    a.add_argument("--split", choices=["train", "test"], default="test")
    a.add_argument("--max-examples", type=int, default=500, help="analyse the split's first N examples")
    a.add_argument("--num-particles", type=int, default=1000, metavar="K",
                   help="importance samples per example for log p(x)")
    a.add_argument("--num-draws", type=int, default=1000, metavar="S", help="guide draws per example for k̂")
    a.add_argument("--export-draws", type=int, default=100, help="draws per chain (4 chains) in posterior.nc")
    a.add_argument("--statistic",
                   help="posterior predictive statistic: mean, sum or sd (default by likelihood)")
    a.add_argument("--mcmc-examples", type=int, default=4, help="examples refined by NUTS (0: none)")
    a.add_argument("--mcmc-chains", type=int, default=4)
    a.add_argument("--mcmc-samples", type=int, default=500, help="NUTS draws per chain after warm-up")
    a.add_argument("--mcmc-warmup", type=int, default=500, help="NUTS warm-up steps per chain")
    a.add_argument("--mcmc-chain-method", choices=["sequential", "vectorized"], default="sequential",
                   help="independent chains one after another, or one vectorized run (~2.5x faster; "
                        "the chains share step sizes)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=_analyze)
    ls = sub.add_parser("list", help="every registered component with its options")
    ls.add_argument("kind", nargs="?", help="only this kind: data, encoder, decoder, likelihood, prior, "
                    "guide, objective, variant or metric")
    ls.set_defaults(func=_list)
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except PyrovaeError as e:
        print(f"pyrovae: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pyrovae: interrupted; the last checkpoint written is intact", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
