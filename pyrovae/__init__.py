"""pyrovae: variational autoencoders written as Pyro programs.

    vae = pyrovae.build({"model": {"latent_dim": 8}})   # untrained VAE from a spec
    history = pyrovae.fit(vae, epochs=20)                # SVI on the spec's data
    vae = pyrovae.load("runs/digits-001")                # a trained run
    vae.model, vae.guide                                  # plain Pyro callables
"""

from . import data, groundtruth, guides, likelihoods, networks, objectives, priors
from .assemble import build, resolve
from .errors import DataError, PyrovaeError, RunDirError, SpecError, TrainingDiverged
from .evaluate import evaluate
from .model import VAE
from .runs import load
from .spec import Component, Spec
from .train import fit

__version__ = "0.1.0"


def __getattr__(name):
    """``pyrovae.metrics`` and ``pyrovae.analysis`` load on first use (they import scikit-learn
    and ArviZ, which plain training does not need)."""
    if name in ("metrics", "analysis"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "VAE", "Component", "DataError", "PyrovaeError", "RunDirError", "Spec", "SpecError",
    "TrainingDiverged", "build", "data", "evaluate", "fit", "groundtruth", "guides", "likelihoods", "load",
    "networks", "objectives", "priors", "resolve",
]
