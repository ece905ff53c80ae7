"""From a spec to objects: resolve every component's options, load data, build the VAE."""

from __future__ import annotations

import copy

import pyro
import torch

from . import conditional, guides, likelihoods, objectives, priors, semisupervised  # noqa: F401
from . import data as datasets
from .data import Data
from .errors import DataError, SpecError
from .model import VAE, variants
from .networks import decoders, encoders
from .spec import Component, Spec

# conditional and semisupervised register the model variants cvae and m2 on import
REGISTRIES = {
    "data": datasets.registry,
    "model.encoder": encoders,
    "model.decoder": decoders,
    "model.likelihood": likelihoods.registry,
    "model.prior": priors.registry,
    "model.guide": guides.registry,
    "model.variant": variants,  # vae, cvae (conditional), m2 (semisupervised)
    "objective": objectives.registry,
}


def resolve(spec) -> Spec:
    """The spec with every component's name checked and all its options filled in."""
    spec = copy.deepcopy(Spec.load(spec))
    for key, comp in spec.components():
        full = REGISTRIES[key].check_options(comp.name, comp.options, key)
        resolved = Component(comp.name, full)
        if key.startswith("model."):
            setattr(spec.model, key.split(".", 1)[1], resolved)
        else:
            setattr(spec, key, resolved)
    return spec


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SpecError("train.device", f"{device!r} asked for, but CUDA is not available",
                        choices=["auto", "cpu"])
    return dev


def load_data(spec: Spec) -> Data:
    return datasets.load(spec.data.name, spec.data.options)


def check_data(vae: VAE, data: Data) -> None:
    """Reject data the likelihood cannot score, or of the wrong shape, before training."""
    if tuple(data.shape) != vae.data_shape:
        raise DataError(f"data: examples have shape {data.shape}, the VAE was built for {vae.data_shape}")
    for split in ("train", "test"):
        vae.likelihood.check_data(data.distinct_values(split), f"data {data.name!r} ({split} split)")


def build_objective(vae: VAE) -> objectives.Objective:
    """The spec's objective wrapped around ``vae``."""
    o = vae.spec.objective
    return objectives.registry.build(o.name, o.options, "objective", vae)


def build_vae(spec: Spec, data_shape) -> VAE:
    """Construct the VAE's modules (the ``model.variant`` class with its options);
    parameters are initialised from ``spec.train.seed``."""
    pyro.set_rng_seed(spec.train.seed)
    v = spec.model.variant
    return variants.build(v.name, v.options, "model.variant", spec, data_shape)


def fill_from_data(spec: Spec, data: Data) -> Spec:
    """``spec`` with the variant options that the data decide (e.g. a conditional model's
    ``num_classes: null``) filled in from ``data``'s labels, so a saved run rebuilds
    without its data."""
    v = spec.model.variant
    fill = getattr(variants.get(v.name, "model.variant"), "options_from_data", None)
    if fill is None:
        return spec
    options = fill(dict(v.options), data)
    if options == v.options:
        return spec
    spec = copy.deepcopy(spec)
    spec.model.variant = Component(v.name, options)
    return spec


def build(spec=None, *, data: Data | None = None, data_shape=None) -> VAE:
    """An untrained VAE from a spec (dict, path, ``Spec`` or None for the defaults).

    The data shape comes from ``data_shape``, else from ``data``, else by loading
    ``spec.data``; data given or loaded is checked against the likelihood's support.
    """
    spec = resolve(spec)
    resolve_device(spec.train.device)  # an unusable device fails here, before any output
    if data_shape is None:
        data = load_data(spec) if data is None else data
        data_shape = data.shape
    if data is not None:
        spec = fill_from_data(spec, data)
    vae = build_vae(spec, data_shape)
    build_objective(vae)  # option values are checked now, not at the first training step
    if data is not None:
        check_data(vae, data)
    return vae
