"""Train the default VAE on the embedded digits, evaluate it, and use its Pyro programs.

    python examples/train_digits.py            # 500 epochs, about a minute on 2 cores
    python examples/train_digits.py --smoke    # a few epochs, for CI
"""

import argparse
import tempfile

import pyro
import torch

import pyrovae


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--smoke", action="store_true", help="a few epochs only")
    p.add_argument("--out", help="run directory (default: a temporary one)")
    args = p.parse_args(argv)

    spec = {"model": {"latent_dim": 8}, "train": {"epochs": 3 if args.smoke else 500}}
    data = pyrovae.data.digits()
    vae = pyrovae.build(spec, data=data)
    out = args.out or tempfile.mkdtemp(prefix="pyrovae-digits-")
    history = pyrovae.fit(vae, data, run_dir=out, progress=not args.smoke)
    last = history[-1]
    print(f"epoch {last['epoch']}: test ELBO {last['test_elbo']:.2f} ± {last['test_elbo_se']:.2f} "
          f"nats per example; run saved in {out}")

    # The trained model is a pair of Pyro programs: posterior predictive of 3 test digits.
    vae = pyrovae.load(out)
    x = data.test[:3]
    pred = pyro.infer.Predictive(vae.model, guide=vae.guide, num_samples=20)(x)
    z_mean = ", ".join(f"{v:.2f}" for v in pred["z"].mean(0)[0].tolist())
    print(f"posterior z draws {tuple(pred['z'].shape)}; posterior mean of z for the first: [{z_mean}]")
    res = pyrovae.evaluate(vae, data)
    print(f"evaluate: ELBO {res['elbo']:.2f} ± {res['elbo_se']:.2f} nats per example, "
          f"KL {res['kl']:.2f} ± {res['kl_se']:.2f} nats per example")
    assert torch.isfinite(torch.tensor(res["elbo"]))


if __name__ == "__main__":
    main()
