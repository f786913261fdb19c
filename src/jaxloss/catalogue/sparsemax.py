"""Catalogue entries: sparsemax and Fenchel–Young losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import sparsemax
from jaxloss.catalogue._common import (
    CLASSES, HUGE, HUGE_LOGITS, LABELS_AWAY_FROM_MASKED, SHAPE, Entry, away_from_kinks, class_ids, class_logits,
    soft_targets,
)

# The Fenchel–Young loss of the log-sum-exp: the softmax cross-entropy with soft targets.
fenchel_young_loss = sparsemax.make_fenchel_young_loss(jax.nn.logsumexp)


def _binary(rng):
    """(logits, {0, 1} labels) with the margins y·x away from ±1, the kinks of sparse_plus."""
    labels = rng.integers(0, 2, size=SHAPE)
    margins = away_from_kinks(rng, (1.0,))
    return (jnp.float32(margins * np.where(labels > 0, 1, -1)), jnp.int32(labels)), {}


def _extreme_binary():
    labels = jnp.array([[1, 0, 1], [0, 1, 0]])
    return [((HUGE, labels), {}),
            ((HUGE, 2 * labels - 1), {}),  # ±1 labels
            ((jnp.ones_like(HUGE), labels), {}),  # |z| = 1: the kinks
            ((HUGE, labels), {"where": jnp.zeros(HUGE.shape, bool)})]


def _threshold(z):
    """The sparsemax threshold of each row of ``z`` (NumPy)."""
    ordered = -np.sort(-z, axis=-1)
    k = np.arange(1, z.shape[-1] + 1)
    size = np.sum(1 + k * ordered > np.cumsum(ordered, axis=-1), axis=-1)
    return (np.take_along_axis(np.cumsum(ordered, axis=-1), size[:, None] - 1, axis=-1)[:, 0] - 1) / size


def _sparsemax_classes(rng):
    """(scores, class ids) with every score at least 0.1 from its row's sparsemax threshold,
    where the support (and the loss's second derivative) changes."""
    rows = []
    while len(rows) < CLASSES[0]:
        s = 2 * rng.standard_normal((1, CLASSES[1]))
        if np.min(np.abs(s - _threshold(s)[:, None])) > 0.1:
            rows.append(s[0])
    return (jnp.float32(np.stack(rows)), class_ids(rng)), {}


def _extreme_sparsemax_classes():
    # ±1e4 and −inf (masked) scores, labels on a small and on the largest scores, all-tied
    # scores (every class in the support), and an empty where.
    tied = jnp.where(jnp.isinf(HUGE_LOGITS), -jnp.inf, 0.0)
    return [((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
            ((HUGE_LOGITS, jnp.array([0, 2, 0])), {}),
            ((tied, LABELS_AWAY_FROM_MASKED), {}),
            ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)})]


def _soft_classes(rng):
    return (class_logits(rng), soft_targets(rng)), {}


def _extreme_soft_classes():
    # ±1e4 logits with class 3 masked (−inf) where the targets have no mass; one-hot targets.
    soft = jax.nn.softmax(HUGE_LOGITS[::-1])
    return [((HUGE_LOGITS, soft), {}),
            ((HUGE_LOGITS, jax.nn.one_hot(LABELS_AWAY_FROM_MASKED, 4)), {}),
            ((HUGE_LOGITS, soft), {"where": jnp.zeros(3, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(sparsemax.sparsemax_loss, "binary", "optax.losses.sparsemax_loss", _binary, _extreme_binary),
    Entry(sparsemax.multiclass_sparsemax_loss, "multiclass", "optax.losses.multiclass_sparsemax_loss",
          _sparsemax_classes, _extreme_sparsemax_classes, class_ids=(("labels", "scores", -1),)),
    Entry(fenchel_young_loss, "multiclass",
          "optax.losses.make_fenchel_young_loss(jax.nn.logsumexp)",
          _soft_classes, _extreme_soft_classes),
)
