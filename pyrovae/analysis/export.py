"""A trained VAE's posterior over a set of examples as an ArviZ DataTree (saved as netCDF).

Groups, for examples x_1..n and draws z ~ q(z|x) from the guide (split into ``num_chains``
pseudo-chains of iid draws, so R-hat and ESS are defined; they check the export, not a
sampler):

* ``posterior``: ``z`` with dims (chain, draw, obs, z_dim);
* ``posterior_predictive``: ``x`` ~ p(x|z) at the first of those draws, dims (chain, draw,
  obs, *event), float32; as many draws per chain as keep it under ``predictive_budget``
  numbers (large images would otherwise take gigabytes), so possibly fewer than ``posterior``;
* ``observed_data``: ``x``, dims (obs, *event);
* ``log_likelihood``: ``x`` = log p(x_i|z) summed over the example's dimensions (nats),
  dims (chain, draw, obs);
* ``sample_stats``: ``log_ratio`` = log p(x, z) - log q(z|x) (nats), dims (chain, draw, obs):
  the importance ratios behind the PSIS k̂.

Event dims are (channel, row, col) for images and (feature,) otherwise; ``obs`` holds the
examples' indices in their split, ``label`` their labels when the data have them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..importance import particle_traces, per_particle_example, site_log_prob


def event_dims(data_shape) -> list[str]:
    """Names of one example's dims: images (channel, row, col), else feature(s)."""
    if len(data_shape) == 3:
        return ["channel", "row", "col"]
    if len(data_shape) == 1:
        return ["feature"]
    return [f"dim_{i}" for i in range(len(data_shape))]


@torch.no_grad()
def guide_draws(vae, x, y=None, *, num_draws: int, keep_predictive=None, max_elements: int = 2 ** 24):
    """Per example, ``num_draws`` draws of the guide with the model's answer at each:
    dict of numpy arrays z (S, n, L), x_rep (S', n, *shape) ~ p(x|z) at the draws
    ``keep_predictive`` (indices; all by default), log_lik (S, n) = log p(x|z),
    log_ratio (S, n) = log p(x, z) - log q(z|x). Examples go in batches of S x B x example
    size up to ``max_elements``."""
    out = {"z": [], "x_rep": [], "log_lik": [], "log_ratio": []}
    batch_size = max(1, max_elements // (num_draws * max(1, x[0].numel())))
    ys = [None] * -(-x.shape[0] // batch_size) if y is None else y.to(x.device).split(batch_size)
    with vae.unregistered():
        for xb, yb in zip(x.split(batch_size), ys, strict=True):
            model_tr, guide_tr = particle_traces(vae.model, vae.guide, xb, yb, num_draws)
            shape = torch.Size((num_draws, xb.shape[0]))
            lp = lq = lik = 0.0
            for sign, tr in ((1, model_tr), (-1, guide_tr)):
                for site in tr.nodes.values():
                    if site["type"] != "sample":
                        continue
                    one = per_particle_example(site_log_prob(site), site, shape, who="export")
                    if sign < 0:
                        lq = lq + one
                        continue
                    lp = lp + one
                    if site["is_observed"]:
                        lik = lik + one
                        rep = site["fn"].sample().expand(*shape, *xb.shape[1:])
                        out["x_rep"].append((rep if keep_predictive is None else rep[keep_predictive]).cpu())
            out["z"].append(guide_tr.nodes["z"]["value"].expand(*shape, -1).cpu())
            out["log_lik"].append(lik.cpu())
            out["log_ratio"].append((lp - lq).cpu())
    return {k: torch.cat(v, dim=1).to(torch.float32 if k == "x_rep" else torch.float64).numpy()
            for k, v in out.items()}


def to_datatree(vae, x, y=None, *, num_draws: int = 100, num_chains: int = 4, index=None, labels=None,
                attrs: dict | None = None, predictive_budget: int = 2 ** 24):
    """The DataTree described in the module docstring for examples ``x`` (``y``: labels the
    model takes); ``num_draws`` per chain, ``num_chains`` pseudo-chains of guide draws."""
    import arviz as az

    if num_chains < 1 or num_draws < 1:
        raise ValueError(f"num_chains and num_draws must be positive, got {num_chains}, {num_draws}")
    n = x.shape[0]
    per_draw = num_chains * n * int(np.prod(vae.data_shape))
    pp_draws = max(1, min(num_draws, predictive_budget // max(1, per_draw)))
    keep = (torch.arange(num_chains)[:, None] * num_draws + torch.arange(pp_draws)).flatten()
    d = guide_draws(vae, x, y, num_draws=num_chains * num_draws, keep_predictive=keep.to(x.device))

    def chains(a, draws=num_draws):  # (S, n, ...) -> (chain, draw, n, ...)
        return a.reshape(num_chains, draws, *a.shape[1:])

    edims = event_dims(vae.data_shape)
    coords = {"obs": np.arange(n) if index is None else np.asarray(index),
              "z_dim": np.arange(vae.latent_dim)}
    for name, size in zip(edims, vae.data_shape, strict=True):
        coords[name] = np.arange(size)
    dims = {"z": ["obs", "z_dim"], "x": ["obs", *edims], "log_ratio": ["obs"]}
    groups = {
        "posterior": {"z": chains(d["z"])},
        "posterior_predictive": {"x": chains(d["x_rep"], pp_draws)},
        "observed_data": {"x": x.detach().double().cpu().numpy()},
        "log_likelihood": {"x": chains(d["log_lik"])},
        "sample_stats": {"log_ratio": chains(d["log_ratio"])},
    }
    if labels is not None:
        groups["constant_data"] = {"label": np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)}
        dims["label"] = ["obs"]
    meta = {"source": "pyrovae", "draws": "iid draws of the guide q(z|x), split into pseudo-chains",
            "unit": "nats", "latent_site": "z", "predictive_draws_per_chain": pp_draws}
    meta.update(attrs or {})
    dt = az.from_dict(groups, dims=dims, coords=coords)
    dt.attrs.update({k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in meta.items()})
    return dt


def save_netcdf(dt, path) -> Path:
    """Write the DataTree to ``path`` (netCDF through h5netcdf) atomically: a half-written
    file never replaces a good one."""
    from ..runs import atomic_write

    atomic_write(Path(path), lambda tmp: dt.to_netcdf(tmp, engine="h5netcdf"))
    return Path(path)
