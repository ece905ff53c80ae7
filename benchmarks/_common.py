"""Shared pieces of the benchmarks: the default model spec and the two baseline loops.

Not a benchmark itself; ``speed.py`` and ``quality_vs_tutorial.py`` import it (both are
run as ``python benchmarks/NAME.py``, which puts this folder on ``sys.path``).
"""

from __future__ import annotations

import math
import platform
import time

import pyro
import pyro.infer
import pyro.optim
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import pyrovae
from pyrovae.guides import DiagonalNormalGuide
from pyrovae.likelihoods import BernoulliLikelihood
from pyrovae.priors import StandardNormalPrior
from pyrovae.train import make_optimizer

BATCH_SIZE = 128
LR = 1.0e-3
LOG_2PI = math.log(2 * math.pi)


def spec(seed: int, device: str = "cpu", epochs: int = 1) -> dict:
    """The default model, written out so the benchmark does not drift with pyrovae's defaults."""
    return {
        "data": "digits",
        "model": {
            "latent_dim": 8,
            "encoder": {"name": "mlp", "hidden": [256, 128]},
            "decoder": {"name": "mlp", "hidden": [128, 256]},
            "likelihood": "bernoulli",
            "prior": "standard_normal",
            "guide": "diagonal_normal",
        },
        "objective": "elbo",
        "train": {"epochs": epochs, "batch_size": BATCH_SIZE, "lr": LR, "seed": seed,
                  "device": device},
    }


def build(data, seed: int, device: str = "cpu"):
    """A fresh VAE; ``pyrovae.build`` seeds the initialisation with ``seed``."""
    return pyrovae.build(spec(seed, device), data=data).to(device)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def versions(device: str) -> str:
    dev = str(device)
    if torch.device(device).type == "cuda":
        dev += f" ({torch.cuda.get_device_name()})"
    else:
        dev += f" ({platform.processor() or platform.machine()})"
    return (f"python {platform.python_version()}, torch {torch.__version__}, "
            f"pyro-ppl {pyro.__version__}, pyrovae {pyrovae.__version__}; "
            f"torch threads {torch.get_num_threads()}; device {dev}; "
            f"Pyro validation {'on' if pyro.infer.util.is_validation_enabled() else 'off'}")


# ---- (b) hand-written PyTorch ------------------------------------------------------------
def _check_default_components(vae) -> None:
    ok = (isinstance(vae.guide_head, DiagonalNormalGuide)
          and isinstance(vae.prior, StandardNormalPrior)
          and isinstance(vae.likelihood, BernoulliLikelihood))
    if not ok:
        raise TypeError("the hand-written loop covers only diagonal_normal / standard_normal / "
                        "bernoulli; got a different model")


def handwritten_loss(vae, x: torch.Tensor, num_data: int) -> torch.Tensor:
    """Negative ELBO of a batch, scaled by num_data / batch, in plain torch.

    The same single-sample estimator as Trace_ELBO: z = loc + scale * eps from q(z|x),
    then log q(z|x) - log p(z) - log p(x|z), summed over the batch. ``eps`` is drawn
    with ``empty().normal_()`` as torch's ``Normal.rsample`` does, so under the same
    seed this returns the same number as pyrovae's objective.
    """
    b = x.shape[0]
    head = vae.guide_head
    loc, raw = head.linear(vae.encoder(x)).chunk(2, dim=-1)
    scale = F.softplus(raw) + head.min_scale
    eps = torch.empty_like(loc).normal_()
    z = loc + scale * eps
    log_q = (-0.5 * eps.square() - scale.log() - 0.5 * LOG_2PI).sum(-1)
    log_p = (-0.5 * z.square() - 0.5 * LOG_2PI).sum(-1)
    logits = vae.decoder(z).reshape(b, -1)  # (B, num_params=1, 1, 8, 8) -> (B, 64)
    log_lik = -F.binary_cross_entropy_with_logits(
        logits, x.reshape(b, -1), reduction="none").sum(-1)
    return (log_q - log_p - log_lik).sum() * (num_data / b)


def train_handwritten(vae, x_train: torch.Tensor, epochs: int, seed: int,
                      batch_size: int = BATCH_SIZE, lr: float = LR) -> list[float]:
    """Index batching of an on-device tensor, torch Adam from ``make_optimizer``.

    Returns seconds per epoch (the same span as ``fit``'s ``seconds``: from the
    permutation to the last optimizer step, with a running loss total).
    """
    _check_default_components(vae)
    device = x_train.device
    optimizer = make_optimizer(vae, lr)
    torch.manual_seed(seed)
    n = x_train.shape[0]
    times = []
    vae.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        total = torch.zeros((), device=device)
        perm = torch.randperm(n, device=device)
        for idx in perm.split(batch_size):
            loss = handwritten_loss(vae, x_train[idx], n)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.detach() * (idx.shape[0] / n)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


# ---- (c) Pyro-tutorial style ---------------------------------------------------------------
def train_tutorial(vae, x_train: torch.Tensor, epochs: int, seed: int,
                   batch_size: int = BATCH_SIZE, lr: float = LR) -> list[float]:
    """As in Pyro's VAE tutorial: DataLoader(shuffle=True), SVI + pyro.optim.Adam + Trace_ELBO.

    ``svi.step(x)`` with no ``num_data``: the loss is the batch sum (Adam barely cares).
    The param store is cleared first; ``vae.model``/``vae.guide`` register the VAE's own
    parameters with ``pyro.module``, so the trained weights end up in ``vae``.
    Returns seconds per epoch.
    """
    device = vae.device
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    loader = DataLoader(TensorDataset(x_train.cpu()), batch_size=batch_size, shuffle=True)
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": lr}),
                         loss=pyro.infer.Trace_ELBO())
    times = []
    vae.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        epoch_loss = 0.0
        for (x,) in loader:
            x = x.to(device)
            epoch_loss += svi.step(x)
        sync(device)
        times.append(time.perf_counter() - t0)
    return times
