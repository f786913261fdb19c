"""Catalogue entries: binary losses on scores with {0, 1} or ±1 labels."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import classification, focal
from jaxloss.catalogue._common import HUGE, SHAPE, Entry, away_from_kinks


def _margin_scores(kinks=(1.0,), float_labels=False):
    """(scores, labels) with margins y·s away from ``kinks``: int labels in {0, 1}, or
    float ±1 labels (as PyTorch passes them)."""

    def sample(rng):
        labels = rng.integers(0, 2, size=SHAPE)
        signs = np.where(labels > 0, 1, -1)
        margins = away_from_kinks(rng, kinks)
        return (jnp.float32(margins * signs), jnp.float32(signs) if float_labels else jnp.int32(labels)), {}

    return sample


def _soft_binary(rng):
    logits = 2 * rng.standard_normal(SHAPE)
    labels = rng.uniform(size=SHAPE)
    return (jnp.float32(logits), jnp.float32(labels)), {
        "pos_weight": jnp.float32(rng.uniform(0.5, 2.0, size=SHAPE[-1])),
        "label_smoothing": jnp.float32(0.1),
    }


def _probabilities(rng):
    """(probabilities in [0.05, 0.95], soft labels)."""
    return (jnp.float32(rng.uniform(0.05, 0.95, SHAPE)), jnp.float32(rng.uniform(size=SHAPE))), {}


def _extreme_probabilities():
    # Probabilities of exactly 0 and 1 (the clamped logs), a denormal-range 1e-40 and 1 − 6e-8.
    p = jnp.array([[0.0, 1.0, 1e-40], [1.0, 0.0, 1 - 6e-8]])
    hard = jnp.array([[1, 0, 1], [1, 1, 0]])
    return [((p, hard), {}),
            ((p, hard.astype(jnp.float32)), {}),
            ((p, jnp.full(p.shape, 0.3)), {}),
            ((p, hard), {"where": jnp.zeros(p.shape, bool)})]


def _distances(rng):
    """(inputs, labels ±1) with the margin term m − x away from 0, its corner."""
    labels = rng.choice([-1, 1], size=SHAPE)
    return (jnp.float32(1.0 - away_from_kinks(rng, ())), jnp.int32(labels)), {"margin": jnp.float32(1.0)}


def _extreme_distances():
    labels = jnp.array([[1, -1, 1], [-1, -1, 1]])
    return [((HUGE, labels), {}),
            ((-HUGE, labels.astype(jnp.float32)), {"margin": 0.5}),
            ((HUGE, labels), {"margin": jnp.float32(-2.0)}),
            ((jnp.ones_like(HUGE), labels), {}),  # x = m: the corner
            ((HUGE, labels), {"where": jnp.zeros(HUGE.shape, bool)})]


def _ranking(rng):
    """(x1, x2, y) with y·(x1 − x2) − margin away from 0, the corner."""
    y = rng.choice([-1, 1], size=SHAPE)
    x2 = rng.standard_normal(SHAPE)
    x1 = x2 + y * (0.3 + away_from_kinks(rng, ()))
    return (jnp.float32(x1), jnp.float32(x2), jnp.int32(y)), {"margin": jnp.float32(0.3)}


def _focal_binary(rng):
    """Soft labels inside (0, 1) (the label derivative's formula is one-sided at 0 and 1)."""
    logits = 2 * rng.standard_normal(SHAPE)
    labels = rng.uniform(0.05, 0.95, size=SHAPE)
    return (jnp.float32(logits), jnp.float32(labels)), {
        "alpha": jnp.float32(rng.uniform(0.2, 0.8, size=SHAPE[-1])),
        "gamma": jnp.float32(1.5),
    }


def _extreme_focal_binary():
    labels = jnp.array([[1, 0, 1], [0, 1, 1]])
    return [
        ((HUGE, labels), {}),
        ((-HUGE, labels), {"gamma": 0.5}),
        # Hard float labels: p_t → 1 at ±1e4 with γ < 1, and the label derivative at 0 and 1.
        ((HUGE, labels.astype(jnp.float32)), {"gamma": 0.5}),
        ((HUGE, jnp.full(HUGE.shape, 0.3)), {"alpha": None, "gamma": 0.5}),
        ((HUGE, labels), {"where": jnp.zeros(HUGE.shape, bool)}),
    ]


def _extreme_scores():
    labels = jnp.array([[1, 0, 1], [0, 1, 1]])
    return [
        ((HUGE, labels), {}),
        ((-HUGE, labels), {}),
        ((HUGE, jnp.float32(2 * labels - 1)), {}),  # float ±1 labels
        ((HUGE, labels), {"where": jnp.zeros(HUGE.shape, bool)}),
    ]


def _extreme_soft_binary():
    soft = jnp.full(HUGE.shape, 0.3)
    return _extreme_scores() + [
        ((HUGE, soft), {"pos_weight": jnp.float32(3.0), "label_smoothing": 0.2}),
        ((-HUGE, soft), {"pos_weight": jnp.float32(0.0)}),
    ]


def _extreme_ranking():
    y = jnp.array([[1, -1, 1], [-1, 1, 1]])
    return [
        ((HUGE, -HUGE, y), {"margin": 0.5}),
        ((HUGE, HUGE, y), {}),  # x1 = x2: at the corner with margin 0
        ((HUGE, jnp.zeros_like(HUGE), y), {"where": jnp.zeros(HUGE.shape, bool)}),
    ]


ENTRIES: tuple[Entry, ...] = (
    Entry(classification.sigmoid_binary_cross_entropy, "binary",
          "optax.losses.sigmoid_binary_cross_entropy; torch binary_cross_entropy_with_logits",
          _soft_binary, _extreme_soft_binary),
    Entry(classification.hinge_loss, "binary",
          "optax.losses.hinge_loss",
          _margin_scores(), _extreme_scores),
    Entry(classification.squared_hinge_loss, "binary",
          "",
          _margin_scores(), _extreme_scores),
    Entry(classification.binary_cross_entropy, "binary",
          "torch binary_cross_entropy",
          _probabilities, _extreme_probabilities),
    Entry(classification.perceptron_loss, "binary",
          "optax.losses.perceptron_loss",
          _margin_scores(()), _extreme_scores),
    Entry(classification.logistic_loss, "binary",
          "torch soft_margin_loss (exported as soft_margin_loss too)",
          _margin_scores(()), _extreme_scores),
    Entry(classification.square_loss, "binary",
          "",
          _margin_scores(()), _extreme_scores),
    Entry(classification.margin_ranking_loss, "binary",
          "torch margin_ranking_loss",
          _ranking, _extreme_ranking),
    Entry(classification.hinge_embedding_loss, "binary",
          "torch hinge_embedding_loss",
          _distances, _extreme_distances),
    Entry(focal.sigmoid_focal_loss, "binary",
          "torchvision.ops.sigmoid_focal_loss; optax.losses.sigmoid_focal_loss",
          _focal_binary, _extreme_focal_binary),
)
