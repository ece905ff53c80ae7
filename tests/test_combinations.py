"""Every likelihood with every prior and every guide trains a few steps without NaN."""

import math

import pytest
import torch

import pyrovae
from pyrovae.assemble import REGISTRIES

LIKELIHOODS = REGISTRIES["model.likelihood"].names()
PRIORS = REGISTRIES["model.prior"].names()
GUIDES = REGISTRIES["model.guide"].names()


def candidate_data():
    g = torch.Generator().manual_seed(0)
    grid = torch.randint(1, 255, (48, 6), generator=g).float() / 255  # 8-bit values inside (0, 1)
    counts = torch.poisson(torch.full((48, 6), 3.0), generator=g)
    return [grid, counts]


def data_for(vae):
    for x in candidate_data():
        if bool(vae.likelihood.in_support(x).all()):
            return x[:32], x[32:]
    raise AssertionError(f"no test data in the support of {vae.spec.model.likelihood.name}")


@pytest.mark.parametrize("guide", GUIDES)
@pytest.mark.parametrize("prior", PRIORS)
@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_combination_trains(likelihood, prior, guide):
    spec = {"model": {"latent_dim": 2, "likelihood": likelihood, "prior": prior, "guide": guide,
                      "encoder": {"name": "mlp", "hidden": [8]},
                      "decoder": {"name": "mlp", "hidden": [8]}},
            "train": {"epochs": 1, "batch_size": 16, "seed": 0}}
    vae = pyrovae.build(spec, data_shape=(6,))
    train, test = data_for(vae)
    history = pyrovae.fit(vae, (train, test), progress=False)
    assert math.isfinite(history[-1]["train_objective"])
    assert math.isfinite(history[-1]["test_elbo"])
    assert all(torch.isfinite(p).all() for p in vae.parameters())
