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
        ((log_p, targets), {"class_mask": jnp.array([[True, False, True, False]])}),
        ((log_p, targets), {"where": jnp.zeros(3, bool)}),
    ]


def _unnormalised(rng):
    """(log_predictions, targets) of positive measures that need not sum to 1."""
    return (jnp.float32(rng.normal(scale=0.5, size=CLASSES)), jnp.float32(rng.uniform(0.05, 2.0, CLASSES))), {}


def _extreme_unnormalised():
    # The extremes of the distributions; a class mask leaving out classes, the −inf one among them.
    log_p, targets = jax.nn.log_softmax(HUGE_LOGITS), jax.nn.softmax(HUGE_LOGITS[::-1])
    kept = jnp.array([True, False, True, False])
    return [((log_p, targets), {}),
            ((log_p, 3 * targets), {"class_mask": kept}),
            ((log_p, targets), {"where": jnp.zeros(3, bool)})]


def _log_distributions(rng):
    return (jax.nn.log_softmax(class_logits(rng)), jnp.log(soft_targets(rng))), {}


def _extreme_log_distributions():
    # Log-targets of −inf (class 3, and where the predictions are −1e4 off); a class mask.
    log_p, log_t = jax.nn.log_softmax(HUGE_LOGITS), jax.nn.log_softmax(HUGE_LOGITS[::-1])
    return [((log_p, log_t), {}),
            ((log_p, log_t), {"class_mask": jnp.array([True, True, False, False])}),
            ((log_p, log_t), {"where": jnp.zeros(3, bool)})]


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
    Entry(divergence.kl_divergence_with_log_targets, "multiclass",
          "optax.losses.kl_divergence_with_log_targets; torch kl_div(log_target=True)",
          _log_distributions, _extreme_log_distributions),
    Entry(divergence.generalized_kl_divergence, "multiclass",
          "optax.losses.generalized_kl_divergence (convex_kl_divergence)",
          _unnormalised, _extreme_unnormalised),
    Entry(divergence.distillation_loss, "multiclass",
          "",
          _distillation, _extreme_distillation),
)
