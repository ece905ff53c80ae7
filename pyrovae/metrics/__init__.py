"""Disentanglement metrics, all with disentanglement_lib's signature
``metric(dataset, representation_fn, random_state, **options) -> dict``.

By name in :data:`registry` (one module each):

* ``beta_vae`` (:mod:`.beta_vae`): BetaVAE score, linear classifier on pair differences;
* ``factor_vae`` (:mod:`.factor_vae`): FactorVAE score, majority vote on normalised variances;
* ``mig`` (:mod:`.mig`): mutual information gap;
* ``dci`` (:mod:`.dci`): DCI disentanglement, completeness, informativeness (boosted trees);
* ``sap`` (:mod:`.sap`): SAP score;
* ``modularity`` (:mod:`.modularity`): modularity and explicitness.

:func:`compute` runs several over seeds and reports each score's seed variation;
:func:`encoder_mean` turns a VAE into the default ``representation_fn``.
"""

from . import testing
from .base import register, registry
from .beta_vae import compute_beta_vae
from .dci import compute_dci
from .factor_vae import compute_factor_vae
from .mig import compute_mig
from .modularity import compute_modularity_explicitness
from .representation import encoder_mean
from .sap import compute_sap
from .seeds import compute, format_table, metric_names, resolve_options, summarize

__all__ = [
    "compute", "compute_beta_vae", "compute_dci", "compute_factor_vae", "compute_mig",
    "compute_modularity_explicitness", "compute_sap", "encoder_mean", "format_table", "metric_names",
    "register", "registry", "resolve_options", "summarize", "testing",
]
