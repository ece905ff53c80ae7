"""Pareto-smoothed importance sampling diagnostics of the guide (Yao, Vehtari, Simpson &
Gelman 2018, "Yes, but did it work?").

For each example x, S draws z_s ~ q(z|x) give log ratios r_s = log p(x, z_s) - log q(z_s|x).
A generalised Pareto fit to the largest weights exp(r_s) has shape k̂: the weights' tail,
hence how far q(z|x) is from the posterior p(z|x) in the direction that matters for
importance sampling. k̂ < 0.5: the guide is a good proposal; above min(1 - 1/log10 S, 0.7)
the importance-sampled log p(x) and any posterior expectation from the guide are not to
be trusted for that example. k̂ comes from ArviZ's ``psislw`` (which smooths weights
∝ exp(-input), so it is given log q - log p).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..importance import log_weights

CONSTANT = float("-inf")
"""k̂ of an example whose weights are all equal (the guide is its exact posterior): no tail."""

FLAT = 1e-3
"""Log ratios spread less than this (nats; weights within 0.1 % of each other) count as
equal: what is left is float32 rounding, which no tail fit can read."""


def khat_threshold(num_draws: int) -> float:
    """The sample-size dependent k̂ threshold min(1 - 1/log10 S, 0.7)."""
    return min(1.0 - 1.0 / math.log10(num_draws), 0.7)


def pareto_khat(log_ratio: np.ndarray) -> np.ndarray:
    """k̂ per row of ``log_ratio`` (examples, draws) through ArviZ; -inf for rows whose ratios
    are equal up to :data:`FLAT` (there is no tail to fit)."""
    log_ratio = np.asarray(log_ratio, dtype=np.float64)
    k = np.full(log_ratio.shape[0], CONSTANT)
    fit = log_ratio.max(1) - log_ratio.min(1) > FLAT
    if fit.any():
        import arviz_stats  # noqa: F401  (registers the .azstats accessor)

        da = xr.DataArray(-log_ratio[fit], dims=["obs", "draw"])  # psislw smooths exp(-input)
        _, kh = da.azstats.psislw(dim=["draw"])
        k[fit] = kh.values
    return k


@dataclass
class PSISResult:
    """k̂ per example (``khat``) of the guide as a proposal for the posterior, from
    ``num_draws`` draws each; ``index``: the examples' positions in their split."""

    khat: np.ndarray
    num_draws: int
    index: np.ndarray
    threshold: float = field(init=False)

    def __post_init__(self):
        self.threshold = khat_threshold(self.num_draws)

    @property
    def fraction_above(self) -> float:
        """Fraction of examples with k̂ above the threshold."""
        return float(np.mean(self.khat > self.threshold))

    def worst(self, m: int = 16) -> np.ndarray:
        """Positions (into ``khat``) of the m examples with the largest k̂, worst first."""
        return np.argsort(-self.khat, kind="stable")[:m]

    def counts(self) -> dict:
        """How many examples fall in each of the usual k̂ bands."""
        k = self.khat
        return {"k<0.5": int((k < 0.5).sum()), "0.5<=k<0.7": int(((k >= 0.5) & (k < 0.7)).sum()),
                "0.7<=k<1": int(((k >= 0.7) & (k < 1)).sum()), "k>=1": int((k >= 1).sum())}

    def to_dict(self, m: int = 16) -> dict:
        finite = self.khat[np.isfinite(self.khat)]
        w = self.worst(m)
        return {"num_draws": self.num_draws, "threshold": self.threshold, "n": int(self.khat.size),
                "fraction_above_threshold": self.fraction_above, "bands": self.counts(),
                "khat_median": float(np.median(self.khat)) if self.khat.size else None,
                "khat_max": float(finite.max()) if finite.size else None,
                "constant_weights": int((~np.isfinite(self.khat)).sum()),
                "worst": [{"index": int(self.index[i]), "khat": float(self.khat[i])} for i in w]}


@torch.no_grad()
def psis_diagnostics(vae, x, y=None, *, num_draws: int = 1000, batch_size: int = 64,
                     index=None) -> PSISResult:
    """k̂ of q(z|x) for every example of ``x`` (labels ``y`` for models that take them),
    from ``num_draws`` guide draws per example."""
    if num_draws < 10:
        raise ValueError(f"num_draws must be at least 10 for a Pareto tail fit, got {num_draws!r}")
    ys = [None] * -(-x.shape[0] // batch_size) if y is None else y.to(x.device).split(batch_size)
    ks = []
    with vae.unregistered():
        for xb, yb in zip(x.split(batch_size), ys, strict=True):
            lw = log_weights(vae, xb, yb, num_particles=num_draws)  # (S, B)
            ks.append(pareto_khat(lw.T.double().cpu().numpy()))
    index = np.arange(x.shape[0]) if index is None else np.asarray(index)
    return PSISResult(np.concatenate(ks) if ks else np.zeros(0), num_draws, index)


def khat_figure(result: PSISResult, path) -> Path:
    """k̂ per example with the 0.5, threshold and 0.7 lines: the guide's reliability map."""
    import matplotlib.pyplot as plt

    from .. import plots  # noqa: F401  (selects the Agg backend)

    k = np.where(np.isfinite(result.khat), result.khat, np.nan)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.scatter(result.index, k, s=8, c=np.where(k > result.threshold, "tab:red", "tab:blue"))
    for level, style in ((0.5, ":"), (result.threshold, "--"), (0.7, "-")):
        ax.axhline(level, color="grey", ls=style, lw=1)
    ax.text(1.0, result.threshold, f" threshold {result.threshold:.2f}", transform=ax.get_yaxis_transform(),
            va="bottom", ha="right", fontsize=8)
    ax.set_xlabel("example (index in the split)")
    ax.set_ylabel("Pareto k̂")
    ax.set_title(f"PSIS k̂ of the guide, {result.num_draws} draws per example: "
                 f"{100 * result.fraction_above:.1f}% above {result.threshold:.2f}", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
