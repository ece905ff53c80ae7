"""Posterior predictive checks with a test statistic per example.

For each example x_i and draws x̃ ~ p(x|z), z ~ q(z|x_i) (the guide standing in for the
posterior), a statistic T (mean intensity, total count, spread) of x_i is set against the
distribution of T(x̃). The per-example posterior predictive p-value
p_i = P(T(x̃) > T(x_i)) + ½ P(T(x̃) = T(x_i)) is near 0 or 1 where the model cannot
reproduce that example's T; for a calibrated model the p-values are roughly uniform
(about 5 % fall outside [0.025, 0.975]). Plots through arviz-plots: the distribution of T
over examples (observed against predictive draws) and the PIT ECDF of the p-values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

STATISTICS = {
    "mean": ("mean intensity", lambda a, axes: a.mean(axis=axes)),
    "sum": ("total count", lambda a, axes: a.sum(axis=axes)),
    "sd": ("standard deviation over the example's values", lambda a, axes: a.std(axis=axes)),
}
"""Test statistics T by name: (description, function of an array and the example's axes)."""


def default_statistic(likelihood_name: str) -> str:
    """``sum`` (count total) for count likelihoods, else ``mean`` (mean intensity)."""
    return "sum" if likelihood_name in ("poisson", "negative_binomial", "zinb") else "mean"


def statistic_datatree(dt, statistic: str = "mean"):
    """A DataTree with T of the observed examples (``observed_data``) and of every
    predictive draw (``posterior_predictive``), from an export's ``x`` variables."""
    import arviz as az

    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r} (valid choices: {', '.join(STATISTICS)})")
    f = STATISTICS[statistic][1]
    obs = dt["observed_data"]["x"]
    pred = dt["posterior_predictive"]["x"]
    event = [d for d in obs.dims if d != "obs"]
    t_obs = f(obs.values, tuple(obs.get_axis_num(event))) if event else obs.values
    t_pred = f(pred.values, tuple(pred.get_axis_num(event))) if event else pred.values
    return az.from_dict({"posterior_predictive": {"T": t_pred}, "observed_data": {"T": t_obs}},
                        dims={"T": ["obs"]}, coords={"obs": obs["obs"].values})


def p_values(tdt) -> np.ndarray:
    """Per-example mid p-values P(T(x̃) > T(x)) + ½ P(T(x̃) = T(x))."""
    pred = tdt["posterior_predictive"]["T"].values  # (chain, draw, obs)
    obs = tdt["observed_data"]["T"].values
    pred = pred.reshape(-1, pred.shape[-1])
    return (pred > obs).mean(0) + 0.5 * (pred == obs).mean(0)


def check(dt, statistic: str = "mean") -> dict:
    """Summary of the check: the statistic, p-value quantiles and the fraction of examples
    outside [0.025, 0.975] (about 0.05 when the model is calibrated for T)."""
    tdt = statistic_datatree(dt, statistic)
    p = p_values(tdt)
    t_obs = tdt["observed_data"]["T"].values
    t_pred = tdt["posterior_predictive"]["T"].values
    return {"statistic": statistic, "description": STATISTICS[statistic][0], "n": int(p.size),
            "fraction_outside_95": float(np.mean((p < 0.025) | (p > 0.975))),
            "p_value_quartiles": [float(q) for q in np.quantile(p, [0.25, 0.5, 0.75])],
            "observed_mean": float(t_obs.mean()), "predictive_mean": float(t_pred.mean()),
            "draws_per_example": int(t_pred.shape[0] * t_pred.shape[1])}


def figures(dt, out_dir, statistic: str = "mean") -> list[Path]:
    """ppc_dist.png (T over examples: observed against predictive draws) and ppc_pit.png
    (PIT ECDF of the per-example p-values with its simultaneous band), via arviz-plots."""
    import arviz_plots as azp
    import matplotlib.pyplot as plt

    tdt = statistic_datatree(dt, statistic)
    what = STATISTICS[statistic][0]
    out_dir = Path(out_dir)
    paths = []
    for name, plot, title in (
            ("ppc_dist.png", azp.plot_ppc_dist,
             f"T = {what}: observed examples vs posterior predictive draws"),
            ("ppc_pit.png", azp.plot_ppc_pit,
             f"PIT of each example's T = {what} in its predictive distribution")):
        pc = plot(tdt, var_names=["T"])
        fig = pc.viz["figure"].item()
        fig.suptitle(title, fontsize=10)
        if name == "ppc_dist.png" and fig.axes:
            fig.axes[0].set_xlabel(f"T = {what} (units of the data)")
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths
