"""What the pair-based metric-learning losses (:mod:`jaxloss.pairs`, :mod:`jaxloss.supcon`) share:
their trace-time checks of a labelled batch, and the measure of a pair from the cosine of its
L2-normalised embeddings: the cosine itself, or the distance ``d = ‖x̂_i − x̂_j‖ = √(2 − 2s)``,
with its slope ``∂d/∂s = −1/d`` (0 at ``d = 0``: duplicate embeddings, where autodiff of the
square root gives NaN; the minimum-norm subgradient)."""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._streaming import check_embeddings, check_ids, check_precision

Distance = Literal["cosine", "euclidean"]


def check_labelled_batch(embeddings, labels, where, distance, precision, *, positive=(), **options):
    """Embeddings ``[N, D]``, integer labels ``[N]``, ``where`` broadcasting to ``[N]``, scalar
    float options (those named in ``positive`` > 0), a known ``distance``, a ``precision``."""
    check_embeddings("embeddings", embeddings)
    n = jnp.shape(embeddings)[0]
    check_ids(labels, n, "class labels")
    _checks.broadcasts_to("where", where, (n,), "the examples of embeddings")
    for name, value in options.items():
        _checks.float_option(name, value, (), "a scalar")
    for name in positive:
        _checks.positive(name, options[name])
    if not isinstance(distance, str) or distance not in ("cosine", "euclidean"):
        raise ValueError(f'distance must be "cosine" or "euclidean", got {distance!r}.')
    check_precision(precision)


def measure(s, distance):
    """``(m, sign)``: the cosines ``s`` themselves (sign +1), or for ``"euclidean"`` the distances
    ``√(2 − 2s)`` (0 where ``2 − 2s ≤ 0``, by rounding at near-duplicates; sign −1): ``sign·m``
    grows with similarity."""
    if distance != "euclidean":
        return s, 1.0
    gap = 2 - 2 * s
    above = gap > 0
    return jnp.where(above, jnp.sqrt(jnp.where(above, gap, 1.0)), 0.0), -1.0


def through_measure(w, m, sign):
    """``w·∂m/∂s`` for weights ``w = ∂ℓ/∂m``: ``w`` for cosines, ``−w/d`` for distances (0 at
    ``d = 0``)."""
    if sign > 0:
        return w
    return jnp.where(m > 0, -w / jnp.where(m > 0, m, 1.0), 0.0)
