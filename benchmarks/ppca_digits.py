"""Correctness anchor on real data: the linear VAE's ELBO on digits against the PPCA optimum.

What it measures
    A VAE with a linear encoder and decoder (mlp, ``hidden: []``), the ``normal``
    likelihood with one learned scale (``scale: learned``), the ``standard_normal`` prior
    and the ``diagonal_normal`` guide is probabilistic PCA. Its maximum log-likelihood on
    the digits training split (1438 examples, 64 pixels in [0, 1]) is known in closed
    form from the eigenvalues of the sample covariance (``pyrovae.ppca.PPCA.fit``). For
    each latent size L the VAE is trained with ``pyrovae.fit`` and compared with it:

    * ELBO: the VAE's mean ELBO per example (analytic KL, one z draw per example);
    * exact log p(x): the trained VAE's own marginal likelihood, exact from its weights
      (``PPCA.from_linear_vae``), so "optimum - exact" is how far training got and
      "exact - ELBO" is the guide's gap;
    * optimum: the closed-form maximum, on the training split and, for the same
      closed-form model, on the test split (359 examples).

    Differences are per-example paired means ± their standard error (nats per example).
    At the optimum the diagonal guide can be exact (PPCA's posterior covariance is
    diagonal in the rotation the ML solution picks), so both gaps should go to 0.

    python benchmarks/ppca_digits.py                   # L = 2, 8, 16; 1000 epochs: ~2 min on 2 cores
    python benchmarks/ppca_digits.py --latent 4 --epochs 50   # quick check
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import versions

import pyrovae
from pyrovae.evaluate import elbo_parts, mean_se
from pyrovae.ppca import PPCA


def linear_vae(latent_dim: int, epochs: int, seed: int, lr: float, batch_size: int):
    spec = {"data": "digits",
            "model": {"latent_dim": latent_dim, "encoder": {"name": "mlp", "hidden": []},
                      "decoder": {"name": "mlp", "hidden": []},
                      "likelihood": {"name": "normal", "scale": "learned"},
                      "prior": "standard_normal", "guide": "diagonal_normal"},
            "train": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                      "device": "cpu"}}
    return spec


def paired(a: torch.Tensor, b: torch.Tensor) -> str:
    m, se = mean_se((a - b).float())
    return f"{m:8.3f} ± {se:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--latent", type=int, nargs="+", default=[2, 8, 16])
    p.add_argument("--epochs", type=int, default=1000)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    data = pyrovae.data.digits()
    x_train, x_test = data.train.flatten(1), data.test.flatten(1)
    print(versions("cpu"))
    print(f"digits: {x_train.shape[0]} train / {x_test.shape[0]} test examples of {x_train.shape[1]} "
          f"pixels; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, seed {args.seed}")
    print("all values: nats per example, mean ± standard error over examples (paired where a difference)")
    for latent in args.latent:
        best = PPCA.fit(x_train, latent)
        spec = linear_vae(latent, args.epochs, args.seed, args.lr, args.batch_size)
        vae = pyrovae.build(spec, data=data)
        t0 = time.perf_counter()
        pyrovae.fit(vae, data, progress=False)
        seconds = time.perf_counter() - t0
        exact = PPCA.from_linear_vae(vae)
        sigma, best_sigma = exact.noise_var[0].sqrt().item(), best.noise_var[0].sqrt().item()
        print(f"\nL = {latent}  (trained in {seconds:.1f} seconds; learned σ = {sigma:.4f}, "
              f"closed-form σ = {best_sigma:.4f})")
        print(f"  {'split':<6} {'optimum':>18} {'VAE ELBO':>18} {'optimum - ELBO':>18} "
              f"{'optimum - exact':>18} {'exact - ELBO':>18}")
        for split, x in (("train", x_train), ("test", x_test)):
            torch.manual_seed(args.seed)
            elbo = elbo_parts(vae, x.reshape(-1, *vae.data_shape))["elbo"].double()
            opt, model = best.log_prob(x), exact.log_prob(x)
            m_opt, se_opt = mean_se(opt.float())
            m_elbo, se_elbo = mean_se(elbo.float())
            print(f"  {split:<6} {m_opt:9.3f} ± {se_opt:.3f}  {m_elbo:9.3f} ± {se_elbo:.3f}  "
                  f"{paired(opt, elbo):>18} {paired(opt, model):>18} {paired(model, elbo):>18}")
    print("\n(on test, 'optimum' is the training split's closed-form model scored on test data: not a bound)")


if __name__ == "__main__":
    main()
