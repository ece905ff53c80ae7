"""Figures of a trained VAE's posterior: latent traversals, interpolations, a scatter of
encoder means (PCA), per-dimension KL bars, prior samples and captioned examples.

Each ``*_figure`` writes one PNG and returns its path. Those that run the VAE do so under
``torch.no_grad()`` on ``vae.device`` with the VAE in eval mode (restored after); those that
draw random numbers take a ``seed`` and leave the caller's RNG streams as they were.
Labels y: a cvae needs one; M2 uses the given class, else argmax q(y|x) of the example.
Image data are drawn as gray-scale (or RGB) cells; vectors as heat-map rows.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError, SpecError
from ..plots import as_images, image_grid, plt, save_grid

NORMAL_IQR = 1.3489795003921634
"""Interquartile range of N(0, 1): 2 Φ⁻¹(3/4)."""


# ---- shared pieces ---------------------------------------------------------------------
@contextmanager
def _evaluating(vae, seed: int | None = None):
    """no_grad, eval mode (restored after) and, with a seed, a forked and seeded RNG."""
    was, device = vae.training, vae.device
    cuda = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    vae.eval()
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=cuda):
            if seed is not None:
                torch.manual_seed(seed)
            yield device
    finally:
        vae.train(was)


def _one_example(vae, x) -> torch.Tensor:
    x = torch.as_tensor(x, dtype=torch.float32, device=vae.device)
    if tuple(x.shape) == vae.data_shape:
        x = x[None]
    if tuple(x.shape) != (1, *vae.data_shape):
        raise DataError(f"expected one example shaped {vae.data_shape} or (1, *{vae.data_shape}), "
                        f"got shape {tuple(x.shape)}")
    return x


def _one_label(vae, x, y):
    """y for one example (a leading batch dim of 1 dropped); M2 without y: argmax q(y|x)."""
    if y is None:
        return vae.classify(x).argmax(-1)[0] if hasattr(vae, "classify") else None
    y = torch.as_tensor(y, device=vae.device)
    return y[0] if y.dim() > 0 and y.shape[0] == 1 else y


def _label_text(y, predicted: bool) -> str:
    if y is None:
        return ""
    if y.numel() != 1 or y.is_floating_point():
        return ", label y held fixed"
    return f", y = {int(y)}" + (" (argmax q(y|x))" if predicted else "")


def _positive_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SpecError(name, f"must be an integer >= {low}", value=value)
    return value


def _limits(a: np.ndarray) -> tuple[float, float]:
    """Colour limits: [0, 1] for data inside it, else the data's range."""
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    return (0.0, 1.0) if 0 <= lo and hi <= 1 else (lo, hi if hi > lo else lo + 1.0)


def _is_vector(cells: torch.Tensor) -> bool:
    return as_images(cells[:1]).shape[1] == 1  # vectors come back as (N, 1, D)


def _vectors(cells: torch.Tensor) -> np.ndarray:
    return cells.detach().float().cpu().reshape(cells.shape[0], -1).numpy()


def _show(ax, img: np.ndarray, lim) -> None:
    """Gray-scale (H, W) on ``lim``, or RGB (H, W, 3) rescaled from ``lim`` to [0, 1]; NaN white."""
    if img.ndim == 3:
        img = np.nan_to_num(np.clip((img - lim[0]) / (lim[1] - lim[0]), 0, 1), nan=1.0)
    ax.imshow(np.ma.masked_invalid(img) if img.ndim == 2 else img, vmin=lim[0], vmax=lim[1],
              cmap=plt.get_cmap("gray").with_extremes(bad="white"), interpolation="nearest")


def _image_cells(ax, cells: torch.Tensor, ncol: int, lim, row_labels=(), col_labels=()):
    """Tile ``cells`` ``ncol`` to a row on ``ax``, tick labels at the cell centres."""
    h, w = as_images(cells[:1]).shape[1:3]
    _show(ax, image_grid(cells, ncol), lim)
    ax.set_xticks([c * (w + 1) + (w - 1) / 2 for c in range(len(col_labels))], list(col_labels), fontsize=8)
    ax.set_yticks([r * (h + 1) + (h - 1) / 2 for r in range(len(row_labels))], list(row_labels), fontsize=8)
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)


def _heat_rows(ax, values: np.ndarray, lim, row_labels, most: int = 40):
    """Vectors (N, D) as heat-map rows; at most ``most`` of ``row_labels`` shown (the middle one kept)."""
    im = ax.imshow(values, aspect="auto", cmap="viridis", vmin=lim[0], vmax=lim[1], interpolation="nearest")
    n, step = len(row_labels), math.ceil(len(row_labels) / most)
    ticks = [i for i in range(n) if (i - n // 2) % step == 0]
    ax.set_yticks(ticks, [row_labels[i] for i in ticks], fontsize=8)
    return im


def _rows_figure(values: np.ndarray, path, row_labels, *, title: str, value: str, rows: str) -> Path:
    """Vectors (N, D) as one heat map, a row each: ``value`` names the colour bar, ``rows`` the rows."""
    fig, ax = plt.subplots(figsize=(8, min(12.0, 1.2 + 0.25 * len(row_labels))))
    fig.colorbar(_heat_rows(ax, values, _limits(values), row_labels), ax=ax, label=value)
    ax.set_xlabel("feature index")
    ax.set_ylabel(rows, fontsize=9)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


# ---- 1. latent traversals --------------------------------------------------------------
def prior_scale(vae, y=None, *, num_samples: int = 4096) -> torch.Tensor:
    """s_j = IQR(p(z_j)) / 1.349 from ``num_samples`` prior draws (current RNG): σ_j for a
    normal prior, finite for heavy tails; a cvae with a conditional prior uses p(z|y)."""
    if getattr(vae, "conditional_prior", None) is not None and y is not None:
        p = vae.conditional_prior_of(vae.label_features(y, num_samples))
    else:
        p = vae.prior(torch.Size((num_samples,)))
    q = torch.quantile(p.sample().double(), torch.tensor([0.25, 0.75], dtype=torch.double,
                                                         device=vae.device), dim=0)
    return ((q[1] - q[0]) / NORMAL_IQR).float()


def traverse(vae, x, *, y=None, steps: int = 9, span: float = 3.0, dims=None, kl_per_dim=None,
             seed: int = 0) -> dict:
    """Latent traversals of one example: rows z with z_j = μ_j(x) + c s_j, the other
    coordinates at μ(x) = E_q[z|x], for offsets c = -span..span (``steps`` values; c = 0 is the
    middle one when ``steps`` is odd) and s = :func:`prior_scale`. Rows are ``dims`` (default
    all), sorted by ``kl_per_dim`` (nats) descending when given.

    Returns ``z`` (R, steps, L), ``x`` = E[x|z] (R, steps, *data_shape), ``dims``, ``offsets``,
    ``scale`` and the label ``y`` used.
    """
    steps = _positive_int("steps", steps, 2)
    if isinstance(span, bool) or not isinstance(span, (int, float)) or not 0 < span < math.inf:
        raise SpecError("span", "must be a positive number of prior scales", value=span)
    L = vae.latent_dim
    if kl_per_dim is not None and len(kl_per_dim) != L:
        raise SpecError("kl_per_dim", f"needs one value per latent dimension ({L})", value=len(kl_per_dim))
    dims = list(range(L)) if dims is None else list(dims)
    if not dims or len(set(dims)) != len(dims) or not all(
            isinstance(j, (int, np.integer)) and not isinstance(j, bool) and 0 <= j < L for j in dims):
        raise SpecError("dims", f"must be distinct latent dimensions in [0, {L})", value=dims)
    dims = [int(j) for j in dims]
    if kl_per_dim is not None:
        dims.sort(key=lambda j: -float(kl_per_dim[j]))
    with _evaluating(vae, seed) as device:
        x = _one_example(vae, x)
        y = _one_label(vae, x, y)
        mu = vae.encode(x, y).mean[0]
        scale = prior_scale(vae, y)
        k = torch.arange(steps, device=device, dtype=torch.float32)
        offsets = span * (2 * k - (steps - 1)) / (steps - 1)  # exact 0 in the middle
        z = mu.repeat(len(dims), steps, 1)
        for r, j in enumerate(dims):
            z[r, :, j] = mu[j] + offsets * scale[j]
        out = vae.decode_mean(z.reshape(-1, L), y).reshape(len(dims), steps, *vae.data_shape)
    return {"z": z, "x": out, "dims": dims, "offsets": offsets, "scale": scale, "y": y}


def traversal_figure(vae, x, path, *, y=None, steps: int = 9, span: float = 3.0, dims=None,
                     kl_per_dim=None, seed: int = 0) -> Path:
    """One row per latent dimension of :func:`traverse` (labelled z_j and, given
    ``kl_per_dim``, its KL in nats, so collapsed dimensions show as constant rows)."""
    t = traverse(vae, x, y=y, steps=steps, span=span, dims=dims, kl_per_dim=kl_per_dim, seed=seed)
    R, S = len(t["dims"]), steps
    rows = [f"z{j}" + ("" if kl_per_dim is None else f"  KL {float(kl_per_dim[j]):.3g} nats")
            for j in t["dims"]]
    cols = [f"{c:+.2f}".rstrip("0").rstrip(".") if c else "0 (μ)" for c in t["offsets"].tolist()]
    cells = t["x"].reshape(R * S, *vae.data_shape)
    lim = _limits(_vectors(cells))
    order = ", sorted by KL" if kl_per_dim is not None else ""
    given = _label_text(t["y"], y is None)
    title = (f"latent traversals of one example{given}: E[x|z], z_j = μ_j(x) + c·s_j\n"
             f"(one row per dimension{order}; s_j = IQR of p(z_j) / 1.349, = σ_j for a normal prior)")
    if not _is_vector(cells):
        fig, ax = plt.subplots(figsize=(2.0 + 0.6 * S, 1.2 + 0.6 * R))
        _image_cells(ax, cells, S, lim, rows, cols)
        ax.set_xlabel("offset c (prior scales s_j)", fontsize=9)
    else:
        fig, axes = plt.subplots(R, 1, figsize=(8, 1.0 + 0.12 * S * R), sharex=True, squeeze=False)
        for r, ax in enumerate(axes[:, 0]):
            im = _heat_rows(ax, _vectors(t["x"][r]), lim, cols, most=5)
            ax.set_ylabel(rows[r].replace("  ", "\n"), fontsize=8, rotation=0, ha="right", va="center")
        axes[-1, 0].set_xlabel("feature index (rows in each panel: offset c, prior scales s_j)", fontsize=9)
        fig.colorbar(im, ax=axes[:, 0].tolist(), label="E[x|z] (data units)", shrink=0.8)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---- 2. interpolation ------------------------------------------------------------------
def interpolation_figure(vae, x_a, x_b, path, *, y=None, steps: int = 10) -> Path:
    """E[x | z_t], z_t = (1 - t) μ(x_a) + t μ(x_b) for ``steps`` values t in [0, 1], between the
    two inputs. One label y serves both encodings and every decoding (M2 without y: x_a's
    predicted class)."""
    steps = _positive_int("steps", steps, 2)
    with _evaluating(vae) as device:
        x_a, x_b = _one_example(vae, x_a), _one_example(vae, x_b)
        predicted, y = y is None, _one_label(vae, x_a, y)
        mu_a, mu_b = vae.encode(x_a, y).mean, vae.encode(x_b, y).mean
        t = torch.linspace(0, 1, steps, device=device)[:, None]
        path_x = vae.decode_mean((1 - t) * mu_a + t * mu_b, y)
    cells = torch.cat([x_a, path_x, x_b])
    labels = ["x_a", *(f"{v:.2g}" for v in t[:, 0].tolist()), "x_b"]
    title = ("interpolation between encoder means: E[x | z = (1−t) μ(x_a) + t μ(x_b)]"
             + _label_text(y, predicted))
    if _is_vector(cells):
        return _rows_figure(_vectors(cells), path, labels, title=title, value="x, E[x|z] (data units)",
                            rows="t (inputs x_a, x_b at the ends)")
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(labels), 2.2))
    _image_cells(ax, cells, len(labels), _limits(_vectors(cells)), (), labels)
    ax.set_xlabel("t (inputs x_a, x_b at the ends)", fontsize=9)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ---- 3. encoder means ------------------------------------------------------------------
def pca(points, k: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Project centred points (N, L) on their first k principal axes (SVD of the centred
    matrix); returns (N, k) coordinates and the k explained-variance ratios s_i² / Σ s²."""
    a = np.asarray(points, dtype=np.float64)
    c = a - a.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    total = float((s ** 2).sum())
    ratio = s ** 2 / total if total > 0 else np.zeros_like(s)
    return c @ vt[:k].T, ratio[:k]


def latent_scatter_figure(means, path, *, labels=None, title: str = "encoder means E_q[z|x]") -> Path:
    """Encoder means (N, L) as a 2-D scatter: L = 2 as they are, L > 2 on the first two
    principal axes (explained-variance ratios in the axis labels), L = 1 against the label
    (classes spread by a seeded jitter of ±0.3; a histogram without labels). Coloured by
    ``labels`` (N,): a legend for up to 20 integer classes, else a colour bar."""
    m = np.asarray(means.detach().cpu() if torch.is_tensor(means) else means, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] < 2 or not np.isfinite(m).all():
        raise DataError(f"means must be a finite array (N >= 2, L), got shape {m.shape}")
    n, L = m.shape
    lab = None if labels is None else np.asarray(labels.cpu() if torch.is_tensor(labels) else labels)
    if lab is not None and lab.size != n:
        raise DataError(f"labels must hold one value per example ({n}), got shape {lab.shape}")
    lab = None if lab is None else lab.reshape(-1)
    classes = lab is not None and lab.dtype.kind in "biuUSO" and len(np.unique(lab)) <= 20
    names = np.unique(lab) if classes else None  # a legend of classes, else a colour bar
    fig, ax = plt.subplots(figsize=(6.5, 5))
    if L == 1 and lab is None:
        ax.hist(m[:, 0], bins=min(50, max(10, n // 20)))
        xy, axes = None, ("E_q[z0|x]", "number of examples")
    elif L == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, n)
        xy = np.stack([m[:, 0], np.searchsorted(names, lab) + jitter if names is not None else lab], 1)
        axes = ("E_q[z0|x]", "label" + (" (jittered)" if names is not None else ""))
        if names is not None:
            ax.set_yticks(range(len(names)), [str(v) for v in names])
    elif L == 2:
        xy, axes = m, ("E_q[z0|x]", "E_q[z1|x]")
    else:
        xy, ratio = pca(m)
        axes = tuple(f"principal axis {i + 1} ({100 * r:.1f}% of variance)" for i, r in enumerate(ratio))
        title += f", PCA of {L} dimensions"
    if xy is not None:
        size = float(np.clip(3000 / n, 3, 30))
        if names is not None:
            cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
            for i, v in enumerate(names):
                ax.scatter(*xy[lab == v].T, s=size, alpha=0.7, color=cmap(i), label=str(v))
            ax.legend(title="label", fontsize=8, markerscale=max(1.0, 20 / size), loc="center left",
                      bbox_to_anchor=(1.01, 0.5))
        else:
            dots = ax.scatter(*xy.T, s=size, alpha=0.7, c=lab, cmap=None if lab is None else "viridis")
            if lab is not None:
                fig.colorbar(dots, ax=ax, label="label")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.grid(alpha=0.3)
    ax.set_title(f"{title} (N = {n})", fontsize=10)
    return _save(fig, path)


# ---- 4. KL per dimension ---------------------------------------------------------------
def kl_bars_figure(kl_per_dim, path, *, kl_se=None, active=None) -> Path:
    """Bars of KL(q(z_j|x) || p(z_j)) per dimension (nats, mean over examples), ±1 s.e.
    error bars from ``kl_se``, values written above the bars (up to 24 dimensions);
    ``active`` (one bool per dimension, e.g. Cov_x E_q[z_j|x] > 0.01) colours active units."""
    kl = np.asarray(kl_per_dim if kl_per_dim is not None else [], dtype=float).reshape(-1)
    if not kl.size or not np.isfinite(kl).all():
        raise DataError(f"kl_per_dim must be finite numbers (nats per dimension), got {kl_per_dim!r}")
    L = kl.size
    for name, v in (("kl_se", kl_se), ("active", active)):
        if v is not None and np.asarray(v).size != L:
            raise SpecError(name, f"needs one value per latent dimension ({L})", value=np.shape(v))
    se = np.zeros(L) if kl_se is None else np.asarray(kl_se, dtype=float).reshape(-1)
    act = None if active is None else np.asarray(active, dtype=bool).reshape(-1)
    fig, ax = plt.subplots(figsize=(min(14.0, 3.0 + 0.45 * L), 4))
    ax.bar(np.arange(L), kl, color="tab:blue" if act is None else np.where(act, "tab:blue", "tab:gray"),
           yerr=None if kl_se is None else se, capsize=3 if L <= 40 else 0, ecolor="black")
    if L <= 24:
        for j in range(L):
            ax.text(j, kl[j] + se[j], f"{kl[j]:.2g}", ha="center", va="bottom", fontsize=7)
        ax.set_xticks(np.arange(L))
    if act is not None:
        ax.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="tab:blue", label="active unit"),
                           plt.Rectangle((0, 0), 1, 1, color="tab:gray", label="inactive (collapsed)")],
                  fontsize=8)
    ax.margins(y=0.12)
    ax.set_xlabel("latent dimension j")
    ax.set_ylabel("KL(q(z_j|x) ‖ p(z_j)) (nats)")
    ax.grid(axis="y", alpha=0.3)
    notes = [] if kl_se is None else ["error bars ±1 s.e."]
    notes += [] if act is None else [f"{int(act.sum())} of {L} units active"]
    ax.set_title("KL per latent dimension, mean over examples (posterior collapse check)"
                 + ("\n" + "; ".join(notes) if notes else ""), fontsize=10)
    return _save(fig, path)


# ---- 5. prior samples ------------------------------------------------------------------
def sample_grid_figure(vae, path, *, n: int = 64, seed: int = 0, data=None) -> Path:
    """E[x|z], z ~ p(z) (or p(z|y) for the label-conditional variants, as in their
    ``figure_samples``; ``data`` supplies a cvae's attribute vectors)."""
    n = _positive_int("n", n, 1)
    with _evaluating(vae, seed):
        samples, title = vae.figure_samples(n, data)
    title = f"{title} (seed {seed})"
    if not _is_vector(samples):  # class-conditional samples cycle through the classes: a column each
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        k = getattr(vae, "num_classes", None)
        title += "; column k: class k" if k and n >= k else ""
        return save_grid(samples, path, ncol=min(n, k or math.ceil(math.sqrt(n))), title=title)
    return _rows_figure(_vectors(samples), path, [str(i) for i in range(n)], title=title,
                        value="E[x|z] (data units)", rows="sample")


# ---- 6. captioned examples -------------------------------------------------------------
def examples_figure(x, path, *, captions, title: str) -> Path:
    """A grid of examples (N, *shape) with a caption under each image (next to each vector's
    heat-map row), e.g. the examples with the worst PSIS k̂ captioned "k̂ = 0.93"."""
    x = torch.as_tensor(x, dtype=torch.float32)
    captions = [str(c) for c in captions]
    if x.dim() < 2 or len(captions) != x.shape[0]:
        raise SpecError("captions", f"needs one caption per example ({x.shape[0] if x.dim() else 0})",
                        value=len(captions))
    if _is_vector(x):
        return _rows_figure(_vectors(x), path, captions, title=title, value="x (data units)", rows="")
    imgs, lim = as_images(x), _limits(_vectors(x))
    ncol = min(len(captions), 8)
    nrow = -(-len(captions) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(1.4 * ncol, 1.5 * nrow + 0.6), squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= len(captions):
            ax.set_axis_off()
            continue
        _show(ax, imgs[i], lim)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(captions[i], fontsize=9)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
