"""Figures: sample grids, reconstructions and training curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def as_images(x: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) -> (N, H, W[, 3]) floats; vectors -> (N, 1, D)."""
    x = x.detach().float().cpu()
    if x.dim() == 4 and x.shape[1] in (1, 3):
        x = x.permute(0, 2, 3, 1)
        return (x[..., 0] if x.shape[-1] == 1 else x).numpy()
    if x.dim() == 3:
        return x.numpy()
    return x.reshape(x.shape[0], 1, -1).numpy()


def image_grid(x: torch.Tensor, ncol: int) -> np.ndarray:
    """Tile examples into one array, ``ncol`` per row, a 1-pixel gap between them."""
    imgs = as_images(x)
    n, h, w = imgs.shape[:3]
    nrow = -(-n // ncol)
    grid = np.full((nrow * (h + 1) - 1, ncol * (w + 1) - 1, *imgs.shape[3:]), np.nan)
    for i, img in enumerate(imgs):
        r, c = divmod(i, ncol)
        grid[r * (h + 1): r * (h + 1) + h, c * (w + 1): c * (w + 1) + w] = img
    return grid


def save_grid(x: torch.Tensor, path, *, ncol: int = 10, title: str = "") -> Path:
    """Write a grid of examples (images, or vectors as heat-map rows) to ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(x, ncol)
    lo, hi = np.nanmin(grid), np.nanmax(grid)
    if 0 <= lo and hi <= 1:
        lo, hi = 0.0, 1.0
    fig, ax = plt.subplots(figsize=(min(12, 1 + 0.02 * grid.shape[1] + ncol * 0.6),
                                    max(2, 0.6 * grid.shape[0] / max(1, grid.shape[1]) * ncol + 1)))
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def plot_history(history: list[dict], path) -> Path:
    """Training objective and test ELBO (± 2 standard errors) per epoch, nats per example."""
    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [h["train_objective"] for h in history], label="train objective (running mean)")
    if history and "test_elbo" in history[0]:
        m = np.array([h["test_elbo"] for h in history])
        se = np.array([h["test_elbo_se"] for h in history])
        ax.plot(ep, m, label="test ELBO")
        ax.fill_between(ep, m - 2 * se, m + 2 * se, alpha=0.3, label="± 2 s.e.")
    lo = np.percentile([h["train_objective"] for h in history], 5) if len(history) > 5 else None
    if lo is not None:  # the first epochs would squash the interesting part of the curve
        top = max(h["train_objective"] for h in history)
        ax.set_ylim(lo - 0.1 * abs(top - lo) - 1, top + 0.05 * abs(top - lo) + 1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("nats per example")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


@torch.no_grad()
def write_run_figures(run_dir, vae, data, history, *, n: int = 50, seed: int = 0) -> None:
    """samples.png (E[x|z], z ~ p(z)), reconstructions.png (input rows over their
    reconstructions E[x | z = mean q(z|x)]) and loss.png in ``run_dir``."""
    run_dir = Path(run_dir)
    was = vae.training
    vae.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        samples, title = vae.figure_samples(n, data)
        save_grid(samples, run_dir / "samples.png", title=title)
    split = "test" if data.test.shape[0] else "train"
    x = data.examples(getattr(data, split)[:20]).to(vae.device)
    labels = getattr(data, f"{split}_labels")
    recon = vae.figure_reconstructions(x, None if labels is None else labels[:20].to(vae.device))
    pairs = torch.cat([x[:10], recon[:10], x[10:20], recon[10:20]])
    save_grid(pairs, run_dir / "reconstructions.png", ncol=min(10, x.shape[0]),
              title="rows 1, 3: test inputs; rows 2, 4: reconstructions")
    if history:
        plot_history(history, run_dir / "loss.png")
    vae.train(was)
