"""Evaluation: the ELBO and its parts per example, read off Pyro traces of
``vae.guide`` and ``vae.model`` (so any prior, guide and likelihood works).

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

The KL is analytic where torch knows it for the (q, p) pair, else the one-sample
Monte Carlo estimate log q(z|x) - log p(z). :func:`evaluate` adds the importance-sampled
log p(x) (:mod:`pyrovae.importance`), its gap to the ELBO and the posterior-collapse
diagnostics (:mod:`pyrovae.diagnostics`). Summaries are means over examples with the
standard error of the mean (std / sqrt(n)), in nats per example and, for images, bits
per dimension.

Models that use labels: a conditional VAE is evaluated on log p(x|y), its model and
guide given the split's labels (``vae.evaluation_labels``); the semi-supervised M2
computes its own parts with y summed out (``vae.elbo_parts``) and adds its classifier's
accuracy (``vae.evaluation_metrics``).
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
from pyro import poutine
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import kl_divergence

from .data import Data
from .diagnostics import ACTIVE_THRESHOLD, active_units, kl_per_dimension, latent_pairs, mutual_information
from .importance import log_marginal


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


def elbo_summary(vae, data: Data, *, split: str = "test", batch_size: int = 1024,
                 seed: int | None = 0) -> dict:
    """ELBO, reconstruction and KL (nats per example, with standard errors) on a split:
    the cheap part of :func:`evaluate` that the trainer records every epoch.

    For a model that uses labels: a conditional VAE's ELBO bounds log p(x|y) (the split's
    labels given); M2's bounds log p(x) with y summed out, and ``accuracy`` (fraction of
    the split's labelled examples that argmax q(y|x) gets right) comes with its binomial
    standard error ``accuracy_se``.
    """
    return _elbo(vae, data, split, seed, batch_size)[0]


def _elbo(vae, data: Data, split: str, seed, batch_size: int):
    """(summary, per-example parts, x, the labels the model is given)."""
    x = data.split(split).to(vae.device)
    labels = getattr(data, f"{split}_labels")
    given = getattr(vae, "evaluation_labels", lambda d, s: None)(data, split)
    with _evaluating(vae, x, seed):
        parts = elbo_parts(vae, x, given, batch_size=batch_size)
        extra = getattr(vae, "evaluation_metrics", lambda x, y: {})(x, labels)
    return {"split": split, **summarize(parts, vae.data_shape), **extra}, parts, x, given


def evaluate(vae, data: Data, *, split: str = "test", num_particles: int = 1000, seed: int | None = 0,
             batch_size: int = 256, mi_examples: int = 2000, active_threshold: float = ACTIVE_THRESHOLD,
             per_example: bool = False) -> dict:
    """Everything :func:`elbo_summary` gives, plus the importance-sampled log-likelihood and
    the posterior-collapse diagnostics (nats per example, each with its standard error).

    * ``log_px``: mean over examples of log (1/K) Σ_k p(x, z_k)/q(z_k|x), K = ``num_particles``
      draws of the guide (0 skips it); ``log_px_se`` its standard error over examples;
      ``log_px_mc_se`` the Monte Carlo part alone, sqrt(Σ_i se_i²)/n from the per-example
      delta-method errors; ``gap`` = log_px - ELBO, paired per example (``gap_se``).
    * ``kl_per_dim``: KL of the 1-D marginals of q(z|x) and p(z), mean over examples
      (``kl_per_dim_se``); null when a flow has no closed-form marginals.
    * ``active_units``: dimensions with Cov_x(E_q[z_j|x]) > ``active_threshold``
      (``encoder_mean_variance`` per dimension).
    * ``mutual_info``: I(x; z) under the aggregate posterior of up to ``mi_examples`` examples
      (a seeded subset), at most log N (``mutual_info_max``).
    * bits/dim of -ELBO and -log_px for multi-dimensional (image) data.

    ``per_example=True`` adds the per-example tensors under ``per_example``.
    """
    if num_particles < 0 or num_particles > 100_000:
        raise ValueError(f"num_particles must be in [0, 100000], got {num_particles!r}")
    out, parts, x, given = _elbo(vae, data, split, seed, 1024)
    dims = math.prod(vae.data_shape)
    examples = {"elbo": parts["elbo"]}
    with _evaluating(vae, x, None if seed is None else seed + 1):
        if num_particles:
            est, se = _log_marginal(vae, x, given, num_particles, batch_size)
            examples.update(log_px=est, log_px_mc_se=se)
            out["num_particles"] = num_particles
            out["log_px"], out["log_px_se"] = mean_se(est)
            out["log_px_mc_se"] = se.pow(2).sum().sqrt().item() / se.numel()
            out["gap"], out["gap_se"] = mean_se(est - parts["elbo"].double())
            if dims > 1:
                out["neg_log_px_bits_per_dim"] = -out["log_px"] / (dims * math.log(2))
                out["neg_log_px_bits_per_dim_se"] = out["log_px_se"] / (dims * math.log(2))
    with _evaluating(vae, x, None if seed is None else seed + 2):  # independent of K
        out.update(_latent_diagnostics(vae, x, given, batch_size, mi_examples, active_threshold, seed))
    if per_example:
        out["per_example"] = examples
    return out


def _log_marginal(vae, x, y, num_particles: int, batch_size: int):
    ys = [None] * -(-x.shape[0] // batch_size) if y is None else y.to(x.device).split(batch_size)
    pieces = [log_marginal(vae, xb, yb, num_particles=num_particles)
              for xb, yb in zip(x.split(batch_size), ys, strict=True)]
    return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])


def _latent_diagnostics(vae, x, y, batch_size: int, mi_examples: int, threshold: float, seed) -> dict:
    kls, means, analytic = [], [], True
    for q, p, _ in latent_pairs(vae, x, y, batch_size=batch_size):
        kl, exact = kl_per_dimension(q, p)
        analytic &= exact
        kls.append(kl)
        means.append(q.mean)
    out = {"latent_dim": vae.latent_dim}
    if all(k is not None for k in kls):
        kl = torch.cat(kls).double()
        out["kl_per_dim"] = kl.mean(0).tolist()
        out["kl_per_dim_se"] = (kl.std(0) / math.sqrt(kl.shape[0])).tolist() if kl.shape[0] > 1 else None
        out["kl_per_dim_estimator"] = "analytic" if analytic else "monte_carlo"
    else:
        out["kl_per_dim"] = None
        out["kl_per_dim_note"] = "the guide or prior has no closed-form 1-D marginals (a flow)"
    count, var = active_units(torch.cat(means), threshold)
    out.update(active_units=count, active_threshold=threshold, encoder_mean_variance=var.tolist())
    # MI on a seeded subset: its cost grows as N²
    n = x.shape[0]
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed or 0))[:mi_examples].sort().values
    idx = idx.to(x.device)
    sub_y = None if y is None else y.to(x.device)[idx]
    qs, zs = [], []
    for q, _, z in latent_pairs(vae, x[idx], sub_y, batch_size=batch_size):
        qs.append(q)
        zs.append(z)
    with torch.no_grad():
        terms = mutual_information(qs, zs)
    out["mutual_info"], out["mutual_info_se"] = mean_se(terms)
    out["mutual_info_examples"] = int(idx.numel())
    out["mutual_info_max"] = math.log(idx.numel())
    return out


@contextmanager
def _evaluating(vae, x, seed):
    """Eval mode and a forked RNG seeded with ``seed`` (the caller's stream is untouched)."""
    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]):
            if seed is not None:
                torch.manual_seed(seed)
            yield
    finally:
        vae.train(was_training)


def format_table(res: dict) -> str:
    """The evaluation as a readable table (nats per example, ± one standard error)."""
    lines = [f"{res['split']} split, {res['n']} examples"
             + (f", epoch {res['epoch']}" if res.get("epoch") is not None else "")
             + " (nats per example, ± 1 standard error)"]

    def row(label, key, fmt=".3f"):
        if res.get(key) is not None:
            se = res.get(key + "_se")
            lines.append(f"  {label:<48} {res[key]:>10{fmt}}" + (f" ± {se:{fmt}}" if se is not None else ""))

    if "log_px" in res:
        row(f"log p(x), importance sampled (K = {res['num_particles']})", "log_px")
        lines.append(f"  {'   Monte Carlo part of its standard error':<48} {res['log_px_mc_se']:>10.4f}")
    row("ELBO", "elbo")
    row("reconstruction E_q log p(x|z)", "recon")
    row(f"KL(q(z|x) || p(z)) [{res['kl_estimator']}]", "kl")
    if "gap" in res:
        row("gap log p(x) - ELBO", "gap")
    row("-ELBO in bits per dimension", "neg_elbo_bits_per_dim", ".4f")
    row("-log p(x) in bits per dimension", "neg_log_px_bits_per_dim", ".4f")
    row(f"mutual information I(x; z) (at most {res.get('mutual_info_max', 0):.2f})", "mutual_info")
    if "active_units" in res:
        lines.append(f"  {'active units (Cov_x E_q[z_j] > ' + str(res['active_threshold']) + ')':<48} "
                     f"{res['active_units']:>10d} of {res['latent_dim']}")
    if res.get("kl_per_dim") is not None:
        lines.append(f"  KL per latent dimension [{res['kl_per_dim_estimator']}], with Var_x E_q[z_j]:")
        for j, (k, v) in enumerate(zip(res["kl_per_dim"], res["encoder_mean_variance"], strict=True)):
            se = res["kl_per_dim_se"][j] if res.get("kl_per_dim_se") else float("nan")
            lines.append(f"    z[{j}]  KL {k:8.3f} ± {se:.3f} nats   variance of mean {v:8.4f}")
    elif "kl_per_dim_note" in res:
        lines.append(f"  KL per latent dimension: not available ({res['kl_per_dim_note']})")
    if "accuracy" in res:
        row("classifier accuracy q(y|x) (fraction correct)", "accuracy", ".4f")
    return "\n".join(lines)
