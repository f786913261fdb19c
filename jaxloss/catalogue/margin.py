"""Catalogue entries: multi-class margin losses on scores over a class axis."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import margin
from jaxloss.catalogue._common import CLASSES, HUGE_LOGITS, LABELS_AWAY_FROM_MASKED, Entry, class_ids


def _hinge_classes(rng):
    """(scores, class ids) for multiclass_hinge_loss with margin 0.6: scores on a 0.4 grid,
    distinct within an example and jittered by at most 0.04, so every hinge argument
    m − s_y + s_j keeps at least 0.12 from 0 and no two wrong classes tie for the max.
    p=2, so that the second-order checks see non-zero second derivatives."""
    grid = rng.permuted(np.broadcast_to(np.arange(CLASSES[-1]), CLASSES), axis=-1) - CLASSES[-1] // 2
    scores = 0.4 * grid + rng.uniform(-0.04, 0.04, size=CLASSES)
    return (jnp.float32(scores), class_ids(rng)), {"margin": jnp.float32(0.6), "p": 2}


def _extreme_hinge_classes():
    # HUGE_LOGITS: ±1e4, a −inf (masked) class, tied runner-ups; labels on a small and on the
    # largest scores.  All-zero scores with margin 0: every hinge at its corner, all tied.
    ww = {"kind": "weston_watkins"}
    top = jnp.array([0, 2, 0])
    corner = jnp.where(jnp.isinf(HUGE_LOGITS), -jnp.inf, 0.0)
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {**ww, "p": 2}),
        ((HUGE_LOGITS, top), {"p": 2}),
        ((HUGE_LOGITS, top), ww),
        ((corner, LABELS_AWAY_FROM_MASKED), {"margin": 0.0}),
        ((corner, LABELS_AWAY_FROM_MASKED), {**ww, "margin": 0.0, "p": 2}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {**ww, "where": jnp.zeros(3, bool)}),
    ]


ENTRIES: tuple[Entry, ...] = (
    Entry(margin.multiclass_hinge_loss, "multiclass",
          "optax.losses.multiclass_hinge_loss (crammer_singer); torch multi_margin_loss (weston_watkins)",
          _hinge_classes, _extreme_hinge_classes, class_ids=(("labels", "scores", -1),)),
)
