"""Catalogue entries: multi-class and multi-label margin losses on scores over a class axis."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import margin
from jaxloss.catalogue._common import CLASSES, HUGE_LOGITS, LABELS_AWAY_FROM_MASKED, Entry, class_ids


def _grid_scores(rng, shape=CLASSES):
    """Scores on a 0.4 grid, distinct within an example and jittered by at most 0.04: any two
    differ by 0.4k ± 0.08 (k >= 1), so no two tie and no difference comes within 0.12 of 1."""
    grid = rng.permuted(np.broadcast_to(np.arange(shape[-1]), shape), axis=-1) - shape[-1] // 2
    return jnp.float32(0.4 * grid + rng.uniform(-0.04, 0.04, size=shape))


def _class_weights(rng):
    return jnp.float32(rng.uniform(0.5, 2.0, size=CLASSES[-1]))


def _hinge_classes(rng):
    """(scores, class ids) for multiclass_hinge_loss with margin 0.6: on the grid every hinge
    argument m − s_y + s_j keeps at least 0.12 from 0 and no two wrong classes tie for the
    max.  p=2, so that the second-order checks see non-zero second derivatives; class
    weights, so that they are differentiated too."""
    return ((_grid_scores(rng), class_ids(rng)),
            {"margin": jnp.float32(0.6), "p": 2, "class_weights": _class_weights(rng)})


def _extreme_hinge_classes():
    # HUGE_LOGITS: ±1e4, a −inf (masked) class, tied runner-ups; labels on a small and on the
    # largest scores.  All-zero scores with margin 0: every hinge at its corner, all tied.
    # Class weights with a zero, and an ignored example.
    ww = {"kind": "weston_watkins"}
    top = jnp.array([0, 2, 0])
    corner = jnp.where(jnp.isinf(HUGE_LOGITS), -jnp.inf, 0.0)
    weights = jnp.array([0.0, 2.0, 1.0, 0.5])
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {**ww, "p": 2}),
        ((HUGE_LOGITS, top), {"p": 2, "class_weights": weights}),
        ((HUGE_LOGITS, top), {**ww, "class_weights": weights}),
        ((HUGE_LOGITS, jnp.array([1, -100, 2])), {**ww, "p": 2, "class_weights": weights}),
        ((corner, LABELS_AWAY_FROM_MASKED), {"margin": 0.0}),
        ((corner, LABELS_AWAY_FROM_MASKED), {**ww, "margin": 0.0, "p": 2}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {**ww, "where": jnp.zeros(3, bool)}),
    ]


def _perceptron_classes(rng):
    """(scores, class ids) on the grid: no two classes tie for the maximum."""
    return (_grid_scores(rng), class_ids(rng)), {}


def _extreme_perceptron_classes():
    # ±1e4 and a −inf class; labels on the top and on small scores; a row of ties (label
    # among them); an ignored example; an empty mask.
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
        ((HUGE_LOGITS, jnp.array([0, 2, 0])), {}),
        ((HUGE_LOGITS, jnp.array([-100, 1, 1])), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
    ]


def target_lists(rng, shape=CLASSES):
    """Target class ids in PyTorch's multi-label format: per example a random number of
    distinct classes (none to all), then −1, then padding ids in [−1, C) that are not read."""
    classes = shape[-1]
    lists = rng.permuted(np.broadcast_to(np.arange(classes), shape), axis=-1)
    ends = rng.integers(0, classes + 1, size=shape[:-1])
    after = np.arange(classes) > ends[..., None]
    lists = np.where(after, rng.integers(-1, classes, size=shape), lists)
    return jnp.int32(np.where(np.arange(classes) == ends[..., None], -1, lists))


def _multilabel_margin_sample(rng):
    """Grid scores: every difference s_j − s_i keeps at least 0.12 from the hinge at 1."""
    return (_grid_scores(rng), target_lists(rng)), {}


def _extreme_multilabel_margin():
    # ±1e4 and a −inf non-target; a repeated target; all-−1 lists (no target); every class a
    # target; ties with every hinge at its corner; an empty mask.
    lists = jnp.array([[0, 2, -1, 1], [1, 1, 2, -1], [2, -1, 0, 0]])
    corner = jnp.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
    return [
        ((HUGE_LOGITS, lists), {}),
        ((HUGE_LOGITS, jnp.full((3, 4), -1)), {}),
        ((HUGE_LOGITS, jnp.array([[0, 1, 2, 3], [3, 2, 1, 0], [-1, 0, 0, 0]])), {}),
        ((corner, lists), {}),
        ((HUGE_LOGITS, lists), {"where": jnp.zeros(3, bool)}),
    ]


def _multilabel_soft_margin_sample(rng):
    """Logits and soft targets, both differentiated, and class weights; smooth everywhere."""
    logits = jnp.float32(2 * rng.standard_normal(CLASSES))
    return (logits, jnp.float32(rng.uniform(size=CLASSES))), {"class_weights": _class_weights(rng)}


def _extreme_multilabel_soft_margin():
    # ±1e4 with hard and soft targets; zero logits; a zero class weight; an empty mask.
    huge = jnp.array([[1e4, -1e4, 0.0, 1e4], [-1e4, 1e4, 1e4, -1e4], [0.0, 0.0, 0.0, 0.0]])
    hard = jnp.array([[1, 0, 1, 0], [1, 1, 0, 0], [0, 1, 0, 1]])
    return [
        ((huge, hard), {}),
        ((huge, jnp.full((3, 4), 0.25)), {"class_weights": jnp.array([0.0, 1.0, 2.0, 0.5])}),
        ((huge, jnp.float32(hard)), {"where": jnp.zeros(3, bool)}),
    ]


ENTRIES: tuple[Entry, ...] = (
    Entry(margin.multiclass_hinge_loss, "multiclass",
          "optax.losses.multiclass_hinge_loss (crammer_singer); torch multi_margin_loss (weston_watkins)",
          _hinge_classes, _extreme_hinge_classes, class_ids=(("labels", "scores", -1),)),
    Entry(margin.multiclass_perceptron_loss, "multiclass", "optax.losses.multiclass_perceptron_loss",
          _perceptron_classes, _extreme_perceptron_classes, class_ids=(("labels", "scores", -1),)),
    Entry(margin.multilabel_margin_loss, "multiclass", "torch multilabel_margin_loss",
          _multilabel_margin_sample, _extreme_multilabel_margin),
    Entry(margin.multilabel_soft_margin_loss, "multiclass", "torch multilabel_soft_margin_loss",
          _multilabel_soft_margin_sample, _extreme_multilabel_soft_margin),
)
