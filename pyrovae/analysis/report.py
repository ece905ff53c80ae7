"""``report.md``: every number and figure of an analysis, in reading order.

Written from the results dict that :func:`pyrovae.analysis.analyze` also saves as
``analysis.json``; figures are linked relative to the report, so the run directory can be
moved or zipped and still read top to bottom.
"""

from __future__ import annotations

import math
from pathlib import Path

from ..evaluate import format_table


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if math.isnan(v) else ("−∞" if v == float("-inf") else f"{v:.{digits}f}")
    return str(v)


def _figure(lines: list[str], figures: dict, key: str, caption: str, root: Path) -> None:
    path = figures.get(key)
    if path is None:
        return
    rel = Path(path).resolve().relative_to(root.resolve()) if Path(path).is_absolute() else Path(path)
    lines += [f"![{caption}]({rel.as_posix()})", "", f"*{caption}*", ""]


def render(results: dict, figures: dict, root: Path) -> str:
    """The report's Markdown text; ``figures`` maps names to PNG paths under ``root``."""
    ev, psis, mcmc, ppc = (results.get(k) for k in ("evaluation", "psis", "mcmc", "ppc"))
    lines = [f"# Analysis of `{results['run_dir']}`", "",
             f"Model: {results.get('model', '')}. Trained {results.get('epoch')} epochs. "
             f"Split analysed: **{results['split']}**. All numbers in nats per example unless "
             f"stated; ± is one standard error.", ""]
    if ev:
        lines += ["## Evaluation", "", "```", format_table(ev), "```", "",
                  "log p(x) is importance sampled with the guide as proposal; the gap log p(x) − ELBO "
                  "is what a better guide could still win. When the PSIS k̂ below is large, the "
                  "importance-sampled value is itself unreliable.", ""]
        lines += ["## Posterior collapse", "",
                  f"{ev.get('active_units')} of {ev.get('latent_dim')} latent dimensions are active "
                  f"(Cov_x E_q[z_j] > {ev.get('active_threshold')}); mutual information I(x; z) = "
                  f"{_fmt(ev.get('mutual_info'))} ± {_fmt(ev.get('mutual_info_se'))} nats "
                  f"(at most log N = {_fmt(ev.get('mutual_info_max'), 2)}). A dimension with KL ≈ 0 "
                  f"carries no information about x: the decoder ignores it.", ""]
        _figure(lines, figures, "kl_bars", "KL(q(z_j|x) || p(z_j)) per latent dimension (nats), "
                "mean over examples ± 1 s.e.; active units coloured", root)
    if psis:
        lines += ["## Can the guide be trusted? PSIS k̂", "",
                  f"For each of {psis['n']} examples, {psis['num_draws']} draws of q(z|x) and their "
                  f"importance ratios p(x, z)/q(z|x); the Pareto shape k̂ of the ratios' tail says how "
                  f"well q(z|x) covers the posterior (Yao et al. 2018). Threshold "
                  f"min(1 − 1/log10 S, 0.7) = {psis['threshold']:.2f}.", "",
                  f"**{100 * psis['fraction_above_threshold']:.1f} %** of examples are above it "
                  f"(median k̂ {_fmt(psis['khat_median'], 2)}, max {_fmt(psis['khat_max'], 2)}).", "",
                  "| k̂ band | meaning | examples |", "|---|---|---|"]
        meaning = {"k<0.5": "good proposal", "0.5<=k<0.7": "usable, estimates noisier",
                   "0.7<=k<1": "unreliable: IS and guide expectations can be far off",
                   "k>=1": "the ratios have no finite mean"}
        lines += [f"| {b} | {meaning[b]} | {c} |" for b, c in psis["bands"].items()]
        if psis.get("constant_weights"):
            lines += ["", f"{psis['constant_weights']} examples have equal weights (k̂ = −∞): the guide "
                      "is their exact posterior."]
        lines += ["", "Worst examples (index in the split: k̂): "
                  + ", ".join(f"{w['index']}: {_fmt(w['khat'], 2)}" for w in psis["worst"][:10]), ""]
        _figure(lines, figures, "khat", "Pareto k̂ per example with the 0.5, threshold and 0.7 lines", root)
        _figure(lines, figures, "worst_khat", "The examples the guide covers worst (largest k̂)", root)
    if mcmc:
        lines += ["## MCMC refinement of chosen examples", "",
                  "NUTS on z with the decoder fixed (`vae.model` under Pyro's MCMC), several chains, "
                  "compared with the guide. R-hat near 1 and large ESS say the chains agree.", ""]
        lines += _mcmc_table(mcmc)
        _figure(lines, figures, "mcmc", "NUTS posterior marginals (several chains) against the guide's", root)
    if ppc:
        lines += ["## Posterior predictive check", "",
                  f"Statistic T = {ppc['description']} per example, against its distribution under "
                  f"x̃ ~ p(x|z), z ~ q(z|x) ({ppc['draws_per_example']} draws per example). "
                  f"{100 * ppc['fraction_outside_95']:.1f} % of {ppc['n']} examples have a posterior "
                  f"predictive p-value outside [0.025, 0.975] (about 5 % if the model reproduces T); "
                  f"p-value quartiles {', '.join(_fmt(q, 2) for q in ppc['p_value_quartiles'])}. "
                  f"Mean T observed {_fmt(ppc['observed_mean'], 4)}, predicted "
                  f"{_fmt(ppc['predictive_mean'], 4)}.", ""]
        _figure(lines, figures, "ppc_dist", "T over examples: observed (black) vs predictive draws", root)
        _figure(lines, figures, "ppc_pit", "PIT ECDF of the per-example p-values (uniform = calibrated)",
                root)
    lines += ["## The latent space", ""]
    _figure(lines, figures, "scatter", "Encoder means E_q[z|x] (PCA to 2-D when z has more dimensions)", root)
    _figure(lines, figures, "traversals", "Latent traversals: one dimension varied at a time", root)
    _figure(lines, figures, "interpolation", "Interpolation between two inputs' encoder means", root)
    _figure(lines, figures, "samples", "Samples E[x|z], z ~ p(z)", root)
    if results.get("netcdf"):
        lines += ["## The ArviZ export", "",
                  f"`{results['netcdf']}` holds the posterior z (chain, draw, obs, z_dim), the "
                  "posterior predictive x̃, the observed x, log p(x|z) and the importance log ratios:",
                  "", "```python", "import arviz as az",
                  f"dt = az.from_netcdf('{results['netcdf']}')",
                  "az.summary(dt, var_names=['z'])", "```", ""]
    if results.get("seconds"):
        lines += ["", "Time per step (wall-clock seconds): "
                  + ", ".join(f"{k} {v:.1f}" for k, v in results["seconds"].items()) + "."]
    number = iter(range(1, 100))
    return "\n".join(f"## {next(number)}. {ln[3:]}" if ln.startswith("## ") else ln for ln in lines)


MCMC_COLUMNS = (("inference gap", "inference_gap"), ("approximation gap", "approximation_gap"),
                ("amortization gap", "amortization_gap"))


def _mcmc_table(mcmc: dict) -> list[str]:
    rows = mcmc.get("examples") or []
    if not rows:
        return [mcmc.get("notes", ""), ""]
    out = ["| example | log p(x) | " + " | ".join(c for c, _ in MCMC_COLUMNS)
           + " | max abs mean diff (NUTS sd) | guide/NUTS sd ratio | max R-hat | min bulk ESS |",
           "|---" * (len(MCMC_COLUMNS) + 6) + "|"]
    for r in rows:
        gaps = " | ".join(f"{_fmt(r.get(k))} ± {_fmt(r.get(k + '_se'))}" for _, k in MCMC_COLUMNS)
        out.append(f"| {r.get('index')} | {_fmt(r.get('log_px'))} ± {_fmt(r.get('log_px_se'))} | {gaps} | "
                   f"{_fmt(r.get('max_abs_mean_difference'), 2)} | {_fmt(r.get('sd_ratio_min'), 2)} – "
                   f"{_fmt(r.get('sd_ratio_max'), 2)} | {_fmt(r.get('rhat_max'), 3)} | "
                   f"{_fmt(r.get('ess_bulk_min'), 0)} |")
    if mcmc.get("notes"):
        out += ["", mcmc["notes"]]
    return out + [""]


def write_report(results: dict, figures: dict, path) -> Path:
    """Write ``report.md`` at ``path`` (atomically)."""
    from ..runs import write_text

    path = Path(path)
    write_text(path, render(results, figures, path.parent) + "\n")
    return path
