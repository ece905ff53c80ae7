"""MCMC refinement of a trained VAE's latents: NUTS on z with the decoder fixed, compared
with the amortized guide.

``vae.model`` itself is the target: the decoder's weights are parameters, not sample sites,
so under Pyro's ``MCMC(NUTS(vae.model))`` they are constants and the chain samples
p(z | x) ∝ p(z) p(x | z) for the chosen examples jointly (independent given the decoder).
Chains are stacked as (chain, draw, obs, z_dim) into an ArviZ DataTree; R-hat
(rank-normalised split) and bulk/tail ESS come from ArviZ. No multiprocessing:

* ``chain_method="sequential"`` (default): one ``MCMC(num_chains=1)`` run per chain, one after
  another, each seeded and started at its own draw of the guide: independent chains.
* ``"vectorized"``: one run on the examples repeated ``num_chains`` times, copy c being chain c.
  The target is the product of the copies' posteriors, so every copy's draws have the right
  distribution, but the copies share the step size, the tree lengths and the multinomial
  choice along each trajectory: the chains are not independent, only started apart. About
  2.5x faster on CPU (Pyro's per-gradient overhead is paid once for all chains).

Sampler: NUTS with its default tree depth (10), step size adapted to an acceptance statistic
of 0.8 and a *diagonal* mass matrix adapted in Stan's windows. Diagonal, because the one site
z holds all n·L coordinates of the chosen examples and Pyro can only make the whole site
dense: the dense matrix estimates (n·L)² entries, almost all zero (the examples are
independent), from a few hundred warm-up draws. On a digits VAE (4 examples x 8 latents) the
dense run needed ~86 gradients per draw against ~10 with the diagonal one, at the same ESS.
``dense_mass=True`` is there for one or two examples with strongly correlated z. The potential
runs eagerly by default. ``jit=True`` compiles it (decoder weights frozen for it): ~1.7x
faster for a 1000-step chain on a digits VAE (18 s against 30 s), but the first compilation
in a process cost up to a minute on a loaded 2-core machine, so short runs got 10x slower;
a model the tracer cannot handle falls back to eager mode with a warning.

Moment differences per example and latent dimension: ``mean_difference`` =
(E_q[z] - E_NUTS[z]) / sd_NUTS(z), in posterior standard deviations, and ``sd_ratio`` =
sd_q(z) / sd_NUTS(z) (< 1: the guide is over-confident).

Gaps (Cremer, Li and Duvenaud 2018) between log p(x), the best guide of the family for each
example alone (q*) and the amortized guide: :mod:`.gaps`.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import arviz as az
import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.infer import MCMC, NUTS
from pyro.infer.autoguide.initialization import init_to_value
from pyro.poutine.util import prune_subsample_sites
from torch.distributions import biject_to, constraints

from ..errors import DataError, SpecError
from ..importance import particle_plate, per_particle_example, site_log_prob
from .gaps import LATENT, MAX_ELEMENTS, WHO, inference_gaps, numpy_array

CHAIN_METHODS = ("sequential", "vectorized")
UNITS = {"log_px, elbo, *_gap": "nats per example", "mean_difference": "NUTS posterior sd",
         "sd_ratio": "guide sd / NUTS sd", "ess": "draws", "rhat": "dimensionless", "seconds": "s"}
NOTES = ("Gaps in nats per example (Cremer et al. 2018): inference gap = log p(x) - ELBO(amortized guide) = "
         "approximation gap [log p(x) - ELBO(q*)] + amortization gap [ELBO(q*) - ELBO(amortized)], q* the "
         "guide family's best member for that example alone (its distribution parameters optimised per "
         "example); each ± its Monte Carlo s.e. max_abs_mean_difference: largest |E_q z - E_NUTS z| over "
         "dimensions in NUTS posterior sds; sd_ratio: guide sd / NUTS sd (min, max over dimensions). "
         "R-hat: rank-normalised split R-hat, max over dimensions; ESS: min over dimensions.")


@dataclass
class Refinement:
    """NUTS draws of z for chosen examples and the guide measured against them (module doc).

    Per-example arrays have shape (n,), per-dimension ones (n, latent_dim); log p(x), ELBOs
    and gaps are in nats, each with its Monte Carlo standard error (``*_se``). ``elbo_local``
    and the approximation and amortization gaps are None when ``local_steps=0``.
    """

    posterior: object  # arviz DataTree: posterior z (chain, draw, obs, z_dim); sample_stats
    index: np.ndarray
    nuts_mean: np.ndarray
    nuts_sd: np.ndarray
    nuts_mean_mcse: np.ndarray
    rhat_max: np.ndarray
    ess_bulk_min: np.ndarray
    ess_tail_min: np.ndarray
    guide_mean: np.ndarray
    guide_sd: np.ndarray
    guide_moments: str
    divergences: list[int]
    step_size: list[float]
    elbo: np.ndarray
    elbo_se: np.ndarray
    log_px: np.ndarray
    log_px_se: np.ndarray
    log_px_proposal: str
    log_px_amortized: np.ndarray
    log_px_amortized_se: np.ndarray
    inference_gap: np.ndarray
    inference_gap_se: np.ndarray
    elbo_local: np.ndarray | None = None
    elbo_local_se: np.ndarray | None = None
    approximation_gap: np.ndarray | None = None
    approximation_gap_se: np.ndarray | None = None
    amortization_gap: np.ndarray | None = None
    amortization_gap_se: np.ndarray | None = None
    guide_draws: np.ndarray | None = None  # (K, n, latent_dim) from q_φ, for the figure
    local_draws: np.ndarray | None = None  # (K, n, latent_dim) from q*
    settings: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)

    @property
    def nuts_draws(self) -> np.ndarray:
        """z as (chain, draw, obs, z_dim)."""
        return self.posterior["posterior"][LATENT].values

    @property
    def mean_difference(self) -> np.ndarray:
        """(E_q[z] - E_NUTS[z]) / sd_NUTS(z), per example and dimension."""
        return (self.guide_mean - self.nuts_mean) / self.nuts_sd

    @property
    def sd_ratio(self) -> np.ndarray:
        """sd_q(z) / sd_NUTS(z), per example and dimension."""
        return self.guide_sd / self.nuts_sd

    def summary(self) -> list[dict]:
        """One row per example: log p(x), ELBOs and gaps (nats, each with ``_se``), the worst
        moment differences, max R-hat and min ESS (NaN becomes None)."""
        keys = ["log_px", "elbo", "elbo_local", "inference_gap", "approximation_gap", "amortization_gap"]
        rows = []
        for i, idx in enumerate(self.index):
            row = {"index": int(idx)}
            for k in keys:
                if getattr(self, k) is not None:
                    row[k], row[k + "_se"] = getattr(self, k)[i], getattr(self, k + "_se")[i]
            row.update(max_abs_mean_difference=np.abs(self.mean_difference[i]).max(),
                       sd_ratio_min=self.sd_ratio[i].min(), sd_ratio_max=self.sd_ratio[i].max(),
                       rhat_max=self.rhat_max[i], ess_bulk_min=self.ess_bulk_min[i],
                       ess_tail_min=self.ess_tail_min[i])
            rows.append({k: v if k == "index" else _number(v) for k, v in row.items()})
        return rows

    def table(self) -> str:
        """The summary as text: nats ± 1 s.e.; moment differences in NUTS posterior sds."""
        s = self.settings
        split = self.amortization_gap is not None
        lines = [f"NUTS on z: {s['num_chains']} chains ({s['chain_method']}) x ({s['warmup_steps']} warm-up"
                 f" + {s['num_samples']} draws), {sum(self.divergences)} divergences. Nats per example ± 1 "
                 f"s.e.; log p(x) importance sampled, K = {s['num_particles']}, proposal "
                 f"{self.log_px_proposal}.",
                 f"{'example':>8} {'log p(x)':>16} {'ELBO':>16} {'inference gap':>16}"
                 + (f" {'approx. gap':>16} {'amort. gap':>16}" if split else "")
                 + f" {'max|Δmean|/sd':>13} {'sd q/NUTS':>11} {'R-hat':>6} {'ESS bulk':>8}"]
        for r in self.summary():
            gaps = ["inference_gap"] + (["approximation_gap", "amortization_gap"] if split else [])
            sd = f"{r['sd_ratio_min']:.2f}-{r['sd_ratio_max']:.2f}"
            lines.append(f"{r['index']:>8} " + " ".join(_pm(r, k) for k in ["log_px", "elbo", *gaps])
                         + f" {r['max_abs_mean_difference']:>13.2f} {sd:>11}"
                         f" {_fmt(r['rhat_max'], '.3f'):>6} {_fmt(r['ess_bulk_min'], '.0f'):>8}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: ``examples`` (the summary rows), per-dimension moments, chains,
        settings, seconds, units and ``notes`` on the definitions (NaN becomes None)."""
        per_dim = {k: getattr(self, k) for k in ("nuts_mean", "nuts_sd", "nuts_mean_mcse", "guide_mean",
                                                 "guide_sd", "mean_difference", "sd_ratio")}
        return {"examples": self.summary(),
                "per_dimension": {k: _listed(v) for k, v in per_dim.items()},
                "guide_moments": self.guide_moments, "log_px_proposal": self.log_px_proposal,
                "log_px_amortized": _listed(self.log_px_amortized),
                "log_px_amortized_se": _listed(self.log_px_amortized_se),
                "chains": {"divergences": list(self.divergences), "step_size": list(self.step_size)},
                "settings": dict(self.settings), "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
                "units": dict(UNITS), "notes": NOTES}


def refine(vae, x, y=None, *, num_chains: int = 4, num_samples: int = 500, warmup_steps: int = 500,
           seed: int = 0, num_particles: int = 1000, local_steps: int = 300, local_particles: int = 64,
           local_lr: float = 0.05, chain_method: str = "sequential", dense_mass: bool = False,
           jit: bool = False, obs_index=None) -> Refinement:
    """NUTS on z for the examples ``x`` (shape (n, *data_shape)) with the decoder fixed, and the
    guide measured against it: moments, R-hat/ESS and the inference gaps in nats.

    ``y``: the labels a conditional model takes with x. ``num_chains`` chains of
    ``warmup_steps`` + ``num_samples`` iterations (``chain_method``: ``sequential`` or
    ``vectorized``), each started at a draw of the guide; ``num_particles`` draws per
    importance-sampled estimate; q* from ``local_steps`` Adam steps (0 skips q* and the gap
    split); ``obs_index`` labels the examples (default 0..n-1). Seeded by ``seed``; the
    caller's RNG, the param store and the VAE's train mode and gradients are left as found.
    """
    for name, value, low in (("num_chains", num_chains, 1), ("num_samples", num_samples, 1),
                             ("warmup_steps", warmup_steps, 0), ("num_particles", num_particles, 2),
                             ("local_steps", local_steps, 0), ("local_particles", local_particles, 1)):
        _check_count(name, value, low)
    if isinstance(local_lr, bool) or not isinstance(local_lr, int | float) or not 0 < local_lr < math.inf:
        raise SpecError("local_lr", f"must be a positive number, got {local_lr!r}", value=local_lr)
    if chain_method not in CHAIN_METHODS:
        raise SpecError("chain_method", f"unknown chain method {chain_method!r}", value=chain_method,
                        choices=CHAIN_METHODS)
    x, y = _checked_data(vae, x, y)
    index = _checked_index(obs_index, x.shape[0])
    seeds = iter(np.random.SeedSequence(int(seed)).generate_state(num_chains + 3).tolist())
    seconds = {}
    with torch.random.fork_rng(devices=[] if x.device.type == "cpu" else [x.device]), _frozen(vae):
        support = _checked_model(vae, x, y)
        t = time.perf_counter()
        z, stats = run_nuts(vae, x, y, num_chains=num_chains, num_samples=num_samples,
                            warmup_steps=warmup_steps, seeds=[next(seeds) for _ in range(num_chains)],
                            dense_mass=dense_mass, jit=jit, chain_method=chain_method, support=support)
        seconds["nuts"] = time.perf_counter() - t
        posterior = to_datatree(vae, x, y, z, stats, index)
        t = time.perf_counter()
        gaps = inference_gaps(vae, x, y, num_particles=num_particles, seeds=[next(seeds) for _ in range(3)],
                              local_steps=local_steps, local_particles=local_particles, local_lr=local_lr)
        seconds["gaps"] = time.perf_counter() - t
        q = _guide_distribution(vae, x, y)
    guide_mean, guide_sd, how = _guide_moments(q, gaps["guide_draws"])
    settings = dict(num_chains=num_chains, num_samples=num_samples, warmup_steps=warmup_steps,
                    chain_method=chain_method, seed=seed, num_particles=num_particles,
                    local_steps=local_steps, local_particles=local_particles, local_lr=local_lr,
                    dense_mass=dense_mass, jit=stats["jit"], max_tree_depth=10, target_accept_prob=0.8)
    return Refinement(posterior=posterior, index=index, **_chain_diagnostics(posterior),
                      guide_mean=guide_mean, guide_sd=guide_sd, guide_moments=how,
                      divergences=stats["divergences"], step_size=stats["step_size"], **gaps,
                      settings=settings, seconds=seconds)


# ---- NUTS ---------------------------------------------------------------------------------------
def run_nuts(vae, x, y, *, num_chains: int, num_samples: int, warmup_steps: int, seeds, dense_mass: bool,
             jit: bool, chain_method: str = "sequential", support=constraints.real_vector
             ) -> tuple[torch.Tensor, dict]:
    """z as (chain, draw, n, latent_dim) from ``MCMC(NUTS(vae.model))``, each chain started at
    its own draw of the guide (``chain_method``: see the module doc); ``support``: z's (a
    mixture's is unwrapped to its components', which Pyro cannot biject to otherwise). Call
    inside :func:`_frozen` (decoder weights constant, no param store)."""
    while isinstance(support, constraints.MixtureSameFamilyConstraint):
        support = support.base_constraint
    to_free = biject_to(support).inv  # constrained z -> unconstrained
    run = (to_free, num_samples, warmup_steps, dense_mass)
    if chain_method == "vectorized":
        n = x.shape[0]
        z, div, step, jit = _jit_or_eager(vae, _repeat(x, num_chains), _repeat(y, num_chains), seeds[0], run,
                                          jit)
        z = z.reshape(num_samples, num_chains, n, -1).transpose(0, 1)
        return z, {"divergences": [len(div)] * num_chains, "divergent_draws": [div] * num_chains,
                   "step_size": [step] * num_chains, "jit": jit}
    chains, divergent, steps = [], [], []
    for s in seeds:
        z, div, step, jit = _jit_or_eager(vae, x, y, s, run, jit)
        chains.append(z)
        divergent.append(div)
        steps.append(step)
    return torch.stack(chains), {"divergences": [len(d) for d in divergent], "divergent_draws": divergent,
                                 "step_size": steps, "jit": jit}


def _jit_or_eager(vae, x, y, seed, run, jit):
    """One NUTS run (:func:`_one_run`), JIT-compiled if asked; if the tracer cannot handle
    the model, the same run in eager mode, with a warning. (z, divergent draws, step size, jit)."""
    if jit:
        try:
            return (*_one_run(vae, x, y, seed, *run, True), True)
        except RuntimeError as err:
            warnings.warn(f"NUTS: JIT compilation of vae.model failed ({str(err).splitlines()[0]}); "
                          "running without it", RuntimeWarning, stacklevel=3)
    return (*_one_run(vae, x, y, seed, *run, False), False)


def _one_run(vae, x, y, seed, to_free, num_samples, warmup_steps, dense_mass, jit):
    """(z (num_samples, n, L), indices of divergent draws, adapted step size) of one NUTS run
    started at a draw of the guide; ``to_free`` maps z to NUTS's unconstrained space."""
    torch.manual_seed(seed)
    start = _guide_distribution(vae, x, y).sample()
    step = []

    def record(kernel, params, stage, i):
        if stage == "Sample" and not step:
            step.append(float(kernel.step_size))

    kernel = NUTS(vae.model, full_mass=dense_mass, jit_compile=jit, ignore_jit_warnings=True,
                  transforms={LATENT: to_free}, init_strategy=init_to_value(values={LATENT: start}))
    mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps, num_chains=1,
                initial_params={LATENT: to_free(start)}, disable_progbar=True, hook_fn=record)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*torch.jit.trace.* is deprecated", category=FutureWarning)
        mcmc.run(x, y)
    z = mcmc.get_samples()[LATENT].detach()
    divergent = mcmc.diagnostics().get("divergences", {}).get("chain 0", [])
    return z, [int(t) for t in divergent], step[0] if step else float("nan")


def to_datatree(vae, x, y, z: torch.Tensor, stats: dict, index: np.ndarray):
    """ArviZ DataTree: posterior ``z`` (chain, draw, obs, z_dim); sample_stats ``lp`` =
    log p(x_i, z_i) in nats (chain, draw, obs) and ``diverging`` (chain, draw)."""
    c, s, n, d = z.shape
    flat = z.reshape(c * s, n, d)
    lp = torch.cat([_log_joint(vae, x, y, part) for part in flat.split(_per_pass(x))]).reshape(c, s, n)
    diverging = np.zeros((c, s), dtype=bool)
    for chain, draws in enumerate(stats["divergent_draws"]):
        diverging[chain, [t for t in draws if 0 <= t < s]] = True
    attrs = {"inference_library": "pyro", "inference_library_version": pyro.__version__, "sampler": "NUTS",
             "num_divergences": list(stats["divergences"]), "step_size": list(stats["step_size"]),
             "jit": int(stats["jit"])}
    return az.from_dict({"posterior": {LATENT: numpy_array(z)},
                         "sample_stats": {"lp": numpy_array(lp), "diverging": diverging}},
                        dims={LATENT: ["obs", "z_dim"], "lp": ["obs"]},
                        coords={"obs": index, "z_dim": np.arange(d)},
                        attrs={"posterior": attrs, "sample_stats": {"lp_meaning": "log p(x_i, z_i) in nats"}})


@torch.no_grad()
def _log_joint(vae, x, y, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) per draw and example, (S, n), from ``vae.model`` conditioned on z (S, n, L)."""
    shape = z.shape[:2]
    tr = prune_subsample_sites(poutine.trace(poutine.condition(
        particle_plate(vae.model, shape[0]), data={LATENT: z})).get_trace(x, y))
    return sum(per_particle_example(site_log_prob(site), site, shape, who=WHO)
               for site in tr.nodes.values() if site["type"] == "sample")


def _chain_diagnostics(posterior) -> dict:
    """Pooled NUTS mean, sd and the mean's MCSE per (obs, z_dim); R-hat (NaN for one chain),
    bulk and tail ESS reduced over z_dim to the worst value."""
    z = posterior["posterior"][LATENT].values
    pooled = z.reshape(-1, *z.shape[2:])

    def stat(fn, **kw):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(fn(posterior, var_names=[LATENT], **kw)[LATENT].values, dtype=float)

    return {"nuts_mean": pooled.mean(0), "nuts_sd": pooled.std(0, ddof=1), "nuts_mean_mcse": stat(az.mcse),
            "rhat_max": np.full(z.shape[2], np.nan) if z.shape[0] < 2 else stat(az.rhat).max(-1),
            "ess_bulk_min": stat(az.ess).min(-1), "ess_tail_min": stat(az.ess, method="tail").min(-1)}


# ---- the guide ----------------------------------------------------------------------------------
def _guide_distribution(vae, x, y):
    """q(z|x) for the batch: the distribution at the guide's z site."""
    with torch.no_grad():
        return poutine.trace(vae.guide).get_trace(x, y).nodes[LATENT]["fn"]


def _guide_moments(q, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Mean and sd of q(z|x) per example and dimension: closed form where the family has
    one, else from the importance draws."""
    try:
        with torch.no_grad():
            mean, var = q.mean, q.variance
        if tuple(mean.shape) == draws.shape[1:] and tuple(var.shape) == draws.shape[1:]:
            return numpy_array(mean), numpy_array(var.sqrt()), "closed form"
    except NotImplementedError:
        pass
    return (draws.mean(0).astype(np.float64), draws.std(0, ddof=1).astype(np.float64),
            f"Monte Carlo ({draws.shape[0]} draws of the guide)")


# ---- checks and context -------------------------------------------------------------------------
@contextmanager
def _frozen(vae):
    """Eval mode, every weight constant (no grad: NUTS can JIT the model) and the global param
    store untouched (``vae.unregistered``); all restored afterwards."""
    flags = [(p, p.requires_grad) for p in vae.parameters()]
    was_training = vae.training
    vae.eval().requires_grad_(False)
    try:
        with vae.unregistered():
            yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        vae.train(was_training)


def _check_count(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise SpecError(name, f"must be an integer >= {low}, got {value!r}", value=value)
    return int(value)


def _checked_data(vae, x, y):
    """x as a float tensor (n, *data_shape) on the VAE's device; y present iff the model uses labels."""
    shape = tuple(vae.data_shape)
    want = f"(n, {', '.join(map(str, shape))})"
    if isinstance(x, np.ndarray | list | tuple):
        x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if not isinstance(x, torch.Tensor):
        raise DataError(f"x must be a tensor of examples shaped {want}, got {type(x).__name__}")
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape or x.shape[0] < 1:
        hint = "; for one example pass x[None]" if tuple(x.shape) == shape else ""
        raise DataError(f"x must have shape {want} with n >= 1 examples for this VAE, got "
                        f"{tuple(x.shape)}{hint}")
    x = x.to(device=vae.device, dtype=next(vae.parameters()).dtype)
    if not torch.isfinite(x).all():
        raise DataError("x has NaN or infinite entries")
    uses_labels = getattr(vae, "uses_labels", False)
    if y is not None and not uses_labels:
        raise DataError("this VAE is unconditional and takes no labels y; pass y=None")
    if y is None and uses_labels:
        raise DataError("this model is conditioned on labels: pass the examples' labels y")
    return x, None if y is None else torch.as_tensor(y, device=vae.device)


def _checked_index(obs_index, n: int) -> np.ndarray:
    if obs_index is None:
        return np.arange(n)
    index = np.asarray(obs_index)
    if index.shape != (n,) or not np.issubdtype(index.dtype, np.integer):
        raise DataError(f"obs_index must hold {n} integers (one per example of x), got {index.tolist()!r}")
    if np.unique(index).size != n:
        raise DataError(f"obs_index has repeated entries: {index.tolist()!r}")
    return index.astype(np.int64)


def _checked_model(vae, x, y):
    """z's support; z must be the model's only latent site, continuous; the data must fit."""
    if getattr(vae, "enumerates", False):
        raise SpecError("model.variant", "NUTS refinement samples a continuous z; this model enumerates a "
                        "discrete latent (the label y)", value=type(vae).__name__)
    try:
        with torch.no_grad():
            tr = prune_subsample_sites(poutine.trace(vae.model).get_trace(x, y))
    except ValueError as err:
        raise DataError(f"vae.model cannot score these x (and y): {err}") from err
    latent = sorted(k for k, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"])
    if latent != [LATENT] or tr.nodes[LATENT]["fn"].support.is_discrete:
        raise SpecError("model", f"NUTS refinement needs one continuous latent site 'z', found {latent}")
    return tr.nodes[LATENT]["fn"].support


# ---- small helpers ------------------------------------------------------------------------------
def _repeat(t, copies: int):
    return None if t is None else t.repeat(copies, *([1] * (t.dim() - 1)))


def _per_pass(x) -> int:
    return max(1, MAX_ELEMENTS // max(1, x.shape[0] * x[0].numel()))


def _number(v) -> float | None:
    v = float(v)
    return v if math.isfinite(v) else None


def _listed(a: np.ndarray) -> list:
    return np.vectorize(_number, otypes=[object])(np.asarray(a, dtype=float)).tolist()


def _fmt(v, spec: str) -> str:
    return "nan" if v is None else format(v, spec)


def _pm(row: dict, key: str) -> str:
    return f"{_fmt(row[key], '.3f')} ± {_fmt(row[key + '_se'], '.3f')}".rjust(16)


# ---- figure -------------------------------------------------------------------------------------
def figure(result: Refinement, path, *, max_dims: int = 4, max_examples: int = 6) -> Path:
    """Per chosen example (rows) and latent dimension (columns, the first ``max_dims``): the
    NUTS marginal density (chains pooled, black; single chains grey) against the amortized
    guide's (blue) and q*'s (orange, dashed), kernel density estimates of their draws. PNG."""
    from matplotlib.figure import Figure
    from scipy.stats import gaussian_kde

    z = result.nuts_draws
    n, d = min(z.shape[2], max_examples), min(z.shape[3], max_dims)
    others = [(draws, label, color, style) for draws, label, color, style in (
        (result.guide_draws, "amortized guide q(z|x)", "tab:blue", "-"),
        (result.local_draws, "q* (per-example optimum)", "tab:orange", "--")) if draws is not None]
    fig = Figure(figsize=(2.6 * d + 0.6, 2.1 * n + 0.9))
    axes = fig.subplots(n, d, squeeze=False)
    for i in range(n):
        for j in range(d):
            ax, pooled = axes[i, j], z[:, :, i, j].ravel()
            lo, hi = np.quantile(np.concatenate([pooled] + [o[0][:, i, j] for o in others]), [0.001, 0.999])
            grid = np.linspace(lo - 0.1 * (hi - lo) - 1e-6, hi + 0.1 * (hi - lo) + 1e-6, 200)
            for chain in z[:, :, i, j]:
                ax.plot(grid, _density(gaussian_kde, chain, grid), color="0.75", lw=0.6)
            ax.plot(grid, _density(gaussian_kde, pooled, grid), color="black", lw=1.6,
                    label="NUTS, chains pooled")
            for draws, label, color, style in others:
                ax.plot(grid, _density(gaussian_kde, draws[:, i, j], grid), color=color, ls=style,
                        label=label)
            ax.set_title(f"example {result.index[i]}, z[{j}]: sd ratio q/NUTS {result.sd_ratio[i, j]:.2f}",
                         fontsize=8)
            ax.tick_params(labelsize=7)
            if i == n - 1:
                ax.set_xlabel(f"z[{j}] (latent units)", fontsize=8)
            if j == 0:
                ax.set_ylabel("density (per latent unit)", fontsize=8)
    axes[0, 0].legend(fontsize=6, loc="upper left")
    s = result.settings
    fig.suptitle(f"NUTS posterior marginals ({s['num_chains']} chains x {s['num_samples']} draws; grey: "
                 "single chains) against the guide's", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _density(kde, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE of ``values`` on ``grid``; zero when the values do not vary."""
    if values.size < 2 or np.ptp(values) == 0:
        return np.zeros_like(grid)
    return kde(values)(grid)
