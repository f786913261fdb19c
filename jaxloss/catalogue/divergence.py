"""Catalogue entries: divergences between distributions over a class axis."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import divergence
from jaxloss.catalogue._common import CLASSES, HUGE_LOGITS, Entry, class_logits, soft_targets


def _distributions(rng):
    """(log_predictions, targets): a log-softmax and a probability vector per example."""
    return (jax.nn.log_softmax(class_logits(rng)), soft_targets(rng)), {}


def _extreme_distributions():
    # Predictions from ±1e4 logits with class 3 masked (−inf); targets with exact zeros there
    # and where the predictions are finite.
    log_p, targets = jax.nn.log_softmax(HUGE_LOGITS), jax.nn.softmax(HUGE_LOGITS[::-1])
    return [
        ((log_p, targets), {}),
        ((log_p, jnp.log(targets)), {"log_targets": True}),  # log-targets of −inf
        ((log_p, targets), {"where": jnp.zeros(3, bool)}),
    ]


def _distillation(rng):
    return (class_logits(rng), class_logits(rng)), {
        "temperature": jnp.float32(rng.uniform(0.5, 4.0, CLASSES[:-1]))}


def _extreme_distillation():
    # Both sides ±1e4 with class 3 masked (−inf) in both.
    return [
        ((HUGE_LOGITS, HUGE_LOGITS[::-1]), {}),
        ((HUGE_LOGITS[::-1], HUGE_LOGITS), {"temperature": jnp.float32([4.0, 0.5, 1.0])}),
        ((HUGE_LOGITS, HUGE_LOGITS), {"temperature": 0.5}),  # identical: loss 0
        ((HUGE_LOGITS, HUGE_LOGITS[::-1]), {"where": jnp.zeros(3, bool)}),
    ]


ENTRIES: tuple[Entry, ...] = (
    Entry(divergence.kl_divergence, "multiclass",
          "optax.losses.kl_divergence(_with_log_targets); torch kl_div",
          _distributions, _extreme_distributions),
    Entry(divergence.distillation_loss, "multiclass",
          "",
          _distillation, _extreme_distillation),
)
