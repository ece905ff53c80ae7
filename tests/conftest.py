import pyro
import pytest
import torch

import pyrovae
from pyrovae.ppca import PPCA

# The suite's tensors are small: one thread is faster than two fighting over 2 cores
# (subprocesses, such as the CLI tests, keep torch's default).
torch.set_num_threads(1)


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


def objective_for(vae, name: str, **options):
    """``vae`` switched to objective ``name`` with ``options`` (through the spec, as a user
    would set them), and that objective built."""
    from pyrovae.assemble import build_objective

    vae.spec = pyrovae.Spec.load(vae.spec, [f"objective={name}"]
                                 + [f"objective.{k}={v}" for k, v in options.items()])
    return build_objective(vae)


@pytest.fixture
def small_vae(small_data):
    return pyrovae.build(small_spec(), data=small_data)


def linear_gaussian_vae(latent_dim=2, data_dim=5, sigma=0.5, seed=0, guide="diagonal_normal"):
    """A linear-Gaussian VAE (probabilistic PCA): x = W z + b + σ ε, z ~ N(0, I)."""
    spec = {"model": {"latent_dim": latent_dim, "guide": guide,
                      "encoder": {"name": "mlp", "hidden": []},
                      "decoder": {"name": "mlp", "hidden": []},
                      "likelihood": {"name": "normal", "scale": sigma}},
            "train": {"seed": seed}}
    return pyrovae.build(spec, data_shape=(data_dim,))


def ppca_log_marginal(vae, x):
    """Exact log N(x; b, W Wᵀ + σ² I) from the linear decoder's weights (checked against
    importance sampling in test_model and against scipy in test_ppca)."""
    return PPCA.from_linear_vae(vae).log_prob(x)


def set_ppca_posterior(vae, W, b, sigma, *, scale_factor: float = 1.0):
    """Set a linear-Gaussian VAE (``linear_gaussian_vae(..., guide full_rank)``) to decoder
    x = W z + b + σ ε and its guide to the exact posterior N(A (x - b), M⁻¹), A = M⁻¹Wᵀ/σ²,
    M = I + WᵀW/σ²; ``scale_factor`` multiplies the posterior's Cholesky factor (a bad guide)."""
    L = W.shape[1]
    M = torch.eye(L, dtype=torch.double) + W.T.double() @ W.double() / sigma**2
    Minv = torch.linalg.inv(M)
    A = Minv @ W.T.double() / sigma**2
    chol = torch.linalg.cholesky(Minv) * scale_factor
    head = vae.guide_head
    with torch.no_grad():
        vae.decoder.net[0].weight.copy_(W)
        vae.decoder.net[0].bias.copy_(b)
        lin = head.linear
        lin.weight.zero_()
        lin.bias.zero_()
        lin.weight[:L] = A.float()
        lin.bias[:L] = (-A @ b.double()).float()
        raw = chol.diagonal() - head.min_scale          # softplus(raw_param) = raw
        lin.bias[L:2 * L] = (raw + torch.log(-torch.expm1(-raw))).float()
        lin.bias[2 * L:] = chol[head.rows, head.cols].float()
    return M, Minv, A


def ppca_posterior(W, b, sigma, x):
    """Exact posterior mean (n, L) and covariance (L, L) of z given x for x = W z + b + σ ε."""
    L = W.shape[1]
    M = torch.eye(L, dtype=torch.double) + W.T.double() @ W.double() / sigma**2
    Minv = torch.linalg.inv(M)
    return (x.double() - b.double()) @ (Minv @ W.T.double() / sigma**2).T, Minv
