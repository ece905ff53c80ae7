"""Evaluation: the ELBO and its parts per example, read off Pyro traces of
``vae.guide`` and ``vae.model`` (so any prior, guide and likelihood works).

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

The KL is analytic where torch knows it for the (q, p) pair, else the one-sample
Monte Carlo estimate log q(z|x) - log p(z). Summaries are means over examples with
the standard error of the mean (std / sqrt(n)), in nats per example and, for
images, bits per dimension.

Models that use labels: a conditional VAE is evaluated on log p(x|y), its model and
guide given the split's labels (``vae.evaluation_labels``); the semi-supervised M2
computes its own parts with y summed out (``vae.elbo_parts``) and adds its classifier's
accuracy (``vae.evaluation_metrics``).
"""

from __future__ import annotations

import math

import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

from .data import Data


def _per_example(log_prob: torch.Tensor, n: int) -> torch.Tensor:
    """Reduce a site's log-density to one number per example of the ``data`` plate."""
    if log_prob.dim() == 0:  # a site outside the data plate: share it equally
        return log_prob.expand(n) / n
    return log_prob.reshape(-1, n).sum(0)


def elbo_parts(vae, x: torch.Tensor, y: torch.Tensor | None = None, *,
               batch_size: int = 1024) -> dict[str, torch.Tensor]:
    """Per-example ``recon`` = log p(x|z) at z ~ q, ``kl`` and ``elbo`` = recon - kl (nats).

    ``y``: labels that ``vae.model``/``vae.guide`` take with x (a conditional VAE). A model
    with its own ``elbo_parts`` method (M2, which sums y out) computes them itself.
    """
    own = getattr(vae, "elbo_parts", None)
    if own is not None:
        with vae.unregistered():
            return own(x, y, batch_size=batch_size)
    recon, kl, analytic = [], [], True
    ys = [None] * -(-x.shape[0] // batch_size) if y is None else y.to(x.device).split(batch_size)
    with torch.no_grad(), vae.unregistered():
        for xb, yb in zip(x.split(batch_size), ys, strict=True):
            n = xb.shape[0]
            guide_tr = prune_subsample_sites(poutine.trace(vae.guide).get_trace(xb, yb))
            model_tr = prune_subsample_sites(
                poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(xb, yb))
            r = xb.new_zeros(n)
            k = xb.new_zeros(n)
            for name, site in model_tr.nodes.items():
                if site["type"] != "sample":
                    continue
                if site["is_observed"]:
                    r = r + _per_example(site["fn"].log_prob(site["value"]), n)
                elif name in guide_tr.nodes:
                    q = guide_tr.nodes[name]["fn"]
                    try:
                        k = k + _per_example(kl_divergence(q, site["fn"]), n)
                    except NotImplementedError:
                        analytic = False
                        z = site["value"]
                        k = k + _per_example(q.log_prob(z) - site["fn"].log_prob(z), n)
            recon.append(r)
            kl.append(k)
    recon, kl = torch.cat(recon), torch.cat(kl)
    return {"recon": recon, "kl": kl, "elbo": recon - kl, "kl_analytic": analytic}


def mean_se(values: torch.Tensor) -> tuple[float, float]:
    """Mean and its standard error std/sqrt(n)."""
    v = values.double()
    n = v.numel()
    se = v.std(unbiased=True).item() / math.sqrt(n) if n > 1 else float("nan")
    return v.mean().item(), se


def summarize(parts: dict[str, torch.Tensor], data_shape) -> dict:
    """Means with standard errors; adds bits/dim of -ELBO for multi-dimensional data."""
    out = {"n": int(parts["elbo"].numel()), "unit": "nats per example",
           "kl_estimator": "analytic" if parts["kl_analytic"] else "monte_carlo"}
    for k in ("elbo", "recon", "kl"):
        out[k], out[k + "_se"] = mean_se(parts[k])
    dims = math.prod(data_shape)
    out["neg_elbo_bits_per_dim"] = -out["elbo"] / (dims * math.log(2))
    out["neg_elbo_bits_per_dim_se"] = out["elbo_se"] / (dims * math.log(2))
    return out


def evaluate(vae, data: Data, *, split: str = "test", batch_size: int = 1024,
             seed: int | None = 0) -> dict:
    """ELBO, reconstruction and KL (nats per example, with standard errors) on a split.

    For a model that uses labels: a conditional VAE's ELBO bounds log p(x|y) (the split's
    labels given); M2's bounds log p(x) with y summed out, and ``accuracy`` (fraction of
    the split's labelled examples that argmax q(y|x) gets right) comes with its binomial
    standard error ``accuracy_se``.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    x = getattr(data, split).to(vae.device)
    labels = getattr(data, f"{split}_labels")
    given = getattr(vae, "evaluation_labels", lambda d, s: None)(data, split)
    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            if seed is not None:
                torch.manual_seed(seed)
            parts = elbo_parts(vae, x, given, batch_size=batch_size)
            extra = getattr(vae, "evaluation_metrics", lambda x, y: {})(x, labels)
    finally:
        vae.train(was_training)
    return {"split": split, **summarize(parts, vae.data_shape), **extra}
