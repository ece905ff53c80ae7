import pyro
import pytest
import torch

import pyrovae


@pytest.fixture(autouse=True)
def _fresh_pyro():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def digits():
    return pyrovae.data.digits()


@pytest.fixture
def small_data(digits):
    """200 train / 50 test digits: enough to train a few steps in well under a second."""
    return pyrovae.data.Data("digits", digits.train[:200], digits.test[:50],
                             digits.train_labels[:200], digits.test_labels[:50])


def small_spec(**over):
    spec = {"model": {"latent_dim": 3, "encoder": {"name": "mlp", "hidden": [32]},
                      "decoder": {"name": "mlp", "hidden": [32]}},
            "train": {"epochs": 2, "batch_size": 64}}
    for k, v in over.items():
        spec = pyrovae.spec.apply_override(spec, f"{k}={v}")
    return spec


@pytest.fixture
def small_vae(small_data):
    return pyrovae.build(small_spec(), data=small_data)


def linear_gaussian_vae(latent_dim=2, data_dim=5, sigma=0.5, seed=0):
    """A linear-Gaussian VAE (probabilistic PCA): x = W z + b + σ ε, z ~ N(0, I)."""
    spec = {"model": {"latent_dim": latent_dim,
                      "encoder": {"name": "mlp", "hidden": []},
                      "decoder": {"name": "mlp", "hidden": []},
                      "likelihood": {"name": "normal", "scale": sigma}},
            "train": {"seed": seed}}
    return pyrovae.build(spec, data_shape=(data_dim,))


def ppca_log_marginal(vae, x):
    """Exact log N(x; b, W Wᵀ + σ² I) from the linear decoder's weights."""
    lin = vae.decoder.net[0]
    W, b = lin.weight.detach().double(), lin.bias.detach().double()
    cov = W @ W.T + torch.diag(ppca_noise_var(vae))
    return torch.distributions.MultivariateNormal(b, cov).log_prob(x.double())


def ppca_noise_var(vae) -> torch.Tensor:
    """σ² per feature of a linear-Gaussian VAE, read off its likelihood (fixed or learned)."""
    with torch.no_grad():
        p = vae.decode(torch.zeros(1, vae.latent_dim))
    return p.base_dist.scale.double().expand(1, *vae.data_shape)[0] ** 2
