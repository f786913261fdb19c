"""Catalogue entries: multi-class losses on logits over a class axis, fused linear cross-entropy included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import divergence, focal, fused, margin, multiclass
from jaxloss.catalogue._common import Entry


_CLASSES = (4, 5)  # batch, classes


def _class_logits(rng, shape=_CLASSES):
    return jnp.float32(2 * rng.standard_normal(shape))


def _class_ids(rng, shape=_CLASSES):
    return jnp.int32(rng.integers(0, shape[-1], size=shape[:-1]))


def _soft_targets(rng, shape=_CLASSES):
    return jnp.float32(rng.dirichlet(np.ones(shape[-1]), size=shape[:-1]))


def _cross_entropy_ids(rng):
    return (_class_logits(rng), _class_ids(rng)), {
        "label_smoothing": jnp.float32(0.1),
        "z_loss": jnp.float32(0.05),
        "class_weights": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1])),
    }


def _cross_entropy_probabilities(rng):
    return (_class_logits(rng), _soft_targets(rng)), {"label_smoothing": jnp.float32(0.05)}


def _nll(rng):
    log_probs = jax.nn.log_softmax(_class_logits(rng))
    return (log_probs, _class_ids(rng)), {"class_weights": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1]))}


# Logits of ±1e4, a class masked with −inf (never the label), an empty where mask.
_HUGE_LOGITS = jnp.array([[1e4, -1e4, 0.0, -jnp.inf], [-1e4, 1e4, 1e4, -jnp.inf], [0.0, 0.0, 0.0, -jnp.inf]])
_LABELS_AWAY_FROM_MASKED = jnp.array([1, 0, 2])


def _extreme_classes():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"class_weights": jnp.array([1.0, 2.0, 0.0, 1.0])}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((_HUGE_LOGITS, jax.nn.softmax(_HUGE_LOGITS)), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"z_loss": 1e-4}),
    ]


def _extreme_nll():
    return [((jax.nn.log_softmax(x), y), kw) for (x, y), kw in _extreme_classes()[:3]]


def _focal_classes(rng):
    return (_class_logits(rng), _class_ids(rng)), {
        "alpha": jnp.float32(rng.uniform(0.5, 2.0, _CLASSES[-1])),
        "gamma": jnp.float32(1.5),
    }


def _extreme_focal_classes():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"alpha": jnp.array([1.0, 2.0, 0.0, 1.0]), "gamma": 0.5}),
        ((_HUGE_LOGITS, jnp.array([0, 1, 2])), {"gamma": 0.5}),  # row 0: p_y → 1 with γ < 1
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
    ]


def _poly1_probabilities(rng):
    return (_class_logits(rng), _soft_targets(rng)), {"epsilon": jnp.float32(2.0)}


def _extreme_poly1():
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"epsilon": 2.0}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"epsilon": -1.0}),
        ((_HUGE_LOGITS, jax.nn.softmax(_HUGE_LOGITS)), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
    ]


def _hinge_classes(rng):
    """(scores, class ids) for multiclass_hinge_loss with margin 0.6: scores on a 0.4 grid,
    distinct within an example and jittered by at most 0.04, so every hinge argument
    m − s_y + s_j keeps at least 0.12 from 0 and no two wrong classes tie for the max.
    p=2, so that the second-order checks see non-zero second derivatives."""
    grid = rng.permuted(np.broadcast_to(np.arange(_CLASSES[-1]), _CLASSES), axis=-1) - _CLASSES[-1] // 2
    scores = 0.4 * grid + rng.uniform(-0.04, 0.04, size=_CLASSES)
    return (jnp.float32(scores), _class_ids(rng)), {"margin": jnp.float32(0.6), "p": 2}


def _extreme_hinge_classes():
    # _HUGE_LOGITS: ±1e4, a −inf (masked) class, tied runner-ups; labels on a small and on the
    # largest scores.  All-zero scores with margin 0: every hinge at its corner, all tied.
    ww = {"kind": "weston_watkins"}
    top = jnp.array([0, 2, 0])
    corner = jnp.where(jnp.isinf(_HUGE_LOGITS), -jnp.inf, 0.0)
    return [
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {**ww, "p": 2}),
        ((_HUGE_LOGITS, top), {"p": 2}),
        ((_HUGE_LOGITS, top), ww),
        ((corner, _LABELS_AWAY_FROM_MASKED), {"margin": 0.0}),
        ((corner, _LABELS_AWAY_FROM_MASKED), {**ww, "margin": 0.0, "p": 2}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((_HUGE_LOGITS, _LABELS_AWAY_FROM_MASKED), {**ww, "where": jnp.zeros(3, bool)}),
    ]


def _distributions(rng):
    """(log_predictions, targets): a log-softmax and a probability vector per example."""
    return (jax.nn.log_softmax(_class_logits(rng)), _soft_targets(rng)), {}


def _extreme_distributions():
    # Predictions from ±1e4 logits with class 3 masked (−inf); targets with exact zeros there
    # and where the predictions are finite.
    log_p, targets = jax.nn.log_softmax(_HUGE_LOGITS), jax.nn.softmax(_HUGE_LOGITS[::-1])
    return [
        ((log_p, targets), {}),
        ((log_p, jnp.log(targets)), {"log_targets": True}),  # log-targets of −inf
        ((log_p, targets), {"where": jnp.zeros(3, bool)}),
    ]


def _distillation(rng):
    return (_class_logits(rng), _class_logits(rng)), {
        "temperature": jnp.float32(rng.uniform(0.5, 4.0, _CLASSES[:-1]))}


def _extreme_distillation():
    # Both sides ±1e4 with class 3 masked (−inf) in both.
    return [
        ((_HUGE_LOGITS, _HUGE_LOGITS[::-1]), {}),
        ((_HUGE_LOGITS[::-1], _HUGE_LOGITS), {"temperature": jnp.float32([4.0, 0.5, 1.0])}),
        ((_HUGE_LOGITS, _HUGE_LOGITS), {"temperature": 0.5}),  # identical: loss 0
        ((_HUGE_LOGITS, _HUGE_LOGITS[::-1]), {"where": jnp.zeros(3, bool)}),
    ]


def _linear_classes(rng):
    """(hidden [4, 3], weight [3, 6], labels [4]) and a bias [6]: logits ``hidden @ weight + bias``."""
    hidden, weight = rng.standard_normal((4, 3)), rng.standard_normal((3, 6))
    return (jnp.float32(hidden), jnp.float32(weight), jnp.int32(rng.integers(0, 6, 4))), {
        "bias": jnp.float32(rng.standard_normal(6)),
        "label_smoothing": jnp.float32(0.1),
        "z_loss": jnp.float32(0.02),
    }


def _extreme_linear_classes():
    (hidden, weight, labels), kw = _linear_classes(np.random.default_rng(0))
    huge = hidden.at[0].multiply(1e4).at[1].set(0.0)  # logits near ±1e4, and all-equal logits
    return [((huge, weight, labels), kw),
            ((huge, weight, labels), {"z_loss": 1e-4, "block_size": 2}),
            ((huge, weight, labels), {"where": jnp.zeros(4, bool)})]


def _vocabulary_axis(arguments):
    """The axis of ``weight`` that counts the classes, by ``weight_layout``."""
    return 1 if arguments["weight_layout"] == "hv" else 0


def _shard_classes(args, kwargs, shards, axis_name):
    """The vocabulary-parallel form: the classes (weight's columns and the bias) split in
    ``shards``; every shard gets all tokens and returns the same losses."""
    (hidden, weight, labels), bias = args, kwargs["bias"]
    split = lambda x, axis: jnp.stack(jnp.split(x, shards, axis=axis))  # noqa: E731
    rest = {k: v for k, v in kwargs.items() if k != "bias"}
    local = lambda w, b: fused.linear_softmax_cross_entropy(  # noqa: E731
        hidden, w, labels, bias=b, vocab_axis_name=axis_name, **rest)
    return jax.vmap(local, axis_name=axis_name)(split(weight, 1), split(bias, 0))[0]


# ---------------------------------------------------------------- probabilistic


ENTRIES: tuple[Entry, ...] = (
    Entry(multiclass.softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy(_with_integer_labels); torch cross_entropy",
          _cross_entropy_ids, _extreme_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.nll_loss, "multiclass",
          "torch nll_loss",
          _nll, _extreme_nll, class_ids=(("labels", "log_probs", -1),)),
    Entry(focal.softmax_focal_loss, "multiclass",
          "",
          _focal_classes, _extreme_focal_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.poly1_cross_entropy, "multiclass",
          "optax.losses.poly_loss_cross_entropy",
          _poly1_probabilities, _extreme_poly1, class_ids=(("labels", "logits", -1),)),
    Entry(margin.multiclass_hinge_loss, "multiclass",
          "optax.losses.multiclass_hinge_loss (crammer_singer); torch multi_margin_loss (weston_watkins)",
          _hinge_classes, _extreme_hinge_classes, class_ids=(("labels", "scores", -1),)),
    Entry(divergence.kl_divergence, "multiclass",
          "optax.losses.kl_divergence(_with_log_targets); torch kl_div",
          _distributions, _extreme_distributions),
    Entry(divergence.distillation_loss, "multiclass",
          "",
          _distillation, _extreme_distillation),
    Entry(fused.linear_softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy_with_integer_labels(h @ w + b); torch cross_entropy; "
          "Cut Cross-Entropy / Liger fused linear CE",
          _linear_classes, _extreme_linear_classes, blockwise=True, sharded=True, shard=_shard_classes,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
    Entry(fused.linear_softmax_cross_entropy_mean, "multiclass",
          "mean of the above; Liger fused linear CE (gradient in the forward)",
          _linear_classes, _extreme_linear_classes, forward_mode=False, blockwise=True, per_batch=True,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
)
