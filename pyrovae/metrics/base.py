"""The registry of disentanglement metrics, by the name a user gives (``--metrics mig,dci``).

Every metric has disentanglement_lib's signature::

    metric(dataset, representation_fn, random_state, **options) -> dict[str, float]

``dataset`` is a ground-truth data set (``num_factors``, ``factors_num_values``,
``observation_shape``, ``sample_factors(num, random_state)``,
``sample_observations_from_factors(factors, random_state)``), ``representation_fn`` maps
a numpy batch of observations to a ``(batch, latent_dim)`` array and ``random_state`` is a
``numpy.random.RandomState``. Options are keyword-only, so the registry lists them.
"""

from __future__ import annotations

from ..registry import Registry

registry = Registry("metric")
register = registry.register
