"""Catalogue entries: multi-class losses on logits over a class axis, fused linear cross-entropy included."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import focal, fused, multiclass
from jaxloss.catalogue._common import (CLASSES, HUGE_LOGITS, LABELS_AWAY_FROM_MASKED, Entry, class_ids, class_logits,
                                      soft_targets)


# optax's ``where`` on the class axis: one class of the samples' five left out.
CLASS_MASK = jnp.array([True, True, False, True, True])


def _cross_entropy_ids(rng):
    return (class_logits(rng), class_ids(rng)), {
        "label_smoothing": jnp.float32(0.1),
        "z_loss": jnp.float32(0.05),
        "class_weights": jnp.float32(rng.uniform(0.5, 2.0, CLASSES[-1])),
        "class_mask": CLASS_MASK,
    }


def _cross_entropy_probabilities(rng):
    return (class_logits(rng), soft_targets(rng)), {"label_smoothing": jnp.float32(0.05)}


def _nll(rng):
    log_probs = jax.nn.log_softmax(class_logits(rng))
    return (log_probs, class_ids(rng)), {"class_weights": jnp.float32(rng.uniform(0.5, 2.0, CLASSES[-1]))}


# The last class masked by class_mask (its logits NaN), and a row with no class left.
MASKED_LAST = (HUGE_LOGITS.at[:, 3].set(jnp.nan), {"class_mask": jnp.array([True, True, True, False])})
NO_CLASS_LEFT = {"class_mask": jnp.array([[True] * 3 + [False], [True] * 3 + [False], [False] * 4])}


# Logits of ±1e4, a class masked with −inf (never the label), an empty where mask, class masks.
def _extreme_classes():
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"class_weights": jnp.array([1.0, 2.0, 0.0, 1.0])}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"z_loss": 1e-4}),
        ((MASKED_LAST[0], LABELS_AWAY_FROM_MASKED), {**MASKED_LAST[1], "label_smoothing": 0.1, "z_loss": 1e-4}),
        ((MASKED_LAST[0], jax.nn.softmax(HUGE_LOGITS)), {**MASKED_LAST[1], "label_smoothing": 0.1}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {**NO_CLASS_LEFT, "label_smoothing": 0.1, "z_loss": 1e-4}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {**NO_CLASS_LEFT, "label_smoothing": 0.1, "z_loss": 1e-4}),
    ]


def _extreme_nll():
    return [((jax.nn.log_softmax(x), y), kw) for (x, y), kw in _extreme_classes()[:3]]


def _focal_classes(rng):
    """Class ids (probability targets and label smoothing, the per-class path, are among the
    extremes and in tests/test_focal.py)."""
    return (class_logits(rng), class_ids(rng)), {
        "class_weights": jnp.float32(rng.uniform(0.5, 2.0, CLASSES[-1])),
        "gamma": jnp.float32(1.5),
    }


def _extreme_focal_classes():
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"class_weights": jnp.array([1.0, 2.0, 0.0, 1.0]), "gamma": 0.5}),
        ((HUGE_LOGITS, jnp.array([0, 1, 2])), {"gamma": 0.5}),  # row 0: p_y → 1 with γ < 1
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {"gamma": 0.5}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {"gamma": 0.0, "class_weights": jnp.array([1.0, 2.0, 0.5, 1.0])}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"gamma": 0.5, "label_smoothing": jnp.float32(0.0)}),
        ((HUGE_LOGITS.at[:, 3].set(0.0), jnp.array([0, 1, 2])), {"label_smoothing": 0.1}),
    ]


def _poly1_probabilities(rng):
    return (class_logits(rng), soft_targets(rng)), {
        "epsilon": jnp.float32(2.0),
        "label_smoothing": jnp.float32(0.1),
        "class_mask": CLASS_MASK,
    }


def _poly_loss_one_hot(rng):
    """optax's usage: one-hot float targets, its default ε = 2."""
    return (class_logits(rng), jax.nn.one_hot(class_ids(rng), CLASSES[-1])), {}


def _extreme_poly1():
    return [
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"epsilon": 2.0}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"epsilon": -1.0}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), {"where": jnp.zeros(3, bool)}),
        ((MASKED_LAST[0], LABELS_AWAY_FROM_MASKED), {**MASKED_LAST[1], "label_smoothing": 0.1}),
        ((MASKED_LAST[0], jax.nn.softmax(HUGE_LOGITS)), {**MASKED_LAST[1], "label_smoothing": 0.1}),
        ((HUGE_LOGITS, jax.nn.softmax(HUGE_LOGITS)), {**NO_CLASS_LEFT, "label_smoothing": 0.1}),
        ((HUGE_LOGITS, LABELS_AWAY_FROM_MASKED), NO_CLASS_LEFT),
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


def _shard_tokens(args, kwargs, shards, axis_name):
    """The token-parallel mean: hidden, labels and ``where`` split in ``shards``, the classifier
    on every shard; each shard returns the mean over all the tokens."""
    (hidden, weight, labels), rest = args, {k: v for k, v in kwargs.items() if k != "where"}
    split = lambda x: None if x is None else x.reshape((shards, -1) + x.shape[1:])  # noqa: E731
    local = lambda h, y, m: fused.linear_softmax_cross_entropy_mean(  # noqa: E731
        h, weight, y, where=m, axis_name=axis_name, **rest)
    return jnp.mean(jax.vmap(local, axis_name=axis_name)(split(hidden), split(labels), split(kwargs["where"])))


# ---------------------------------------------------------------- probabilistic


ENTRIES: tuple[Entry, ...] = (
    Entry(multiclass.softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy(_with_integer_labels), safe_softmax_cross_entropy "
          "(also exported under these names); torch cross_entropy",
          _cross_entropy_ids, _extreme_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.nll_loss, "multiclass",
          "torch nll_loss",
          _nll, _extreme_nll, class_ids=(("labels", "log_probs", -1),)),
    Entry(focal.softmax_focal_loss, "multiclass",
          "kornia focal_loss; mmocr FocalLoss",
          _focal_classes, _extreme_focal_classes, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.poly1_cross_entropy, "multiclass",
          "optax.losses.poly_loss_cross_entropy",
          _poly1_probabilities, _extreme_poly1, class_ids=(("labels", "logits", -1),)),
    Entry(multiclass.poly_loss_cross_entropy, "multiclass",
          "optax.losses.poly_loss_cross_entropy (its default ε = 2)",
          _poly_loss_one_hot, _extreme_poly1, class_ids=(("labels", "logits", -1),)),
    Entry(fused.linear_softmax_cross_entropy, "multiclass",
          "optax.losses.softmax_cross_entropy_with_integer_labels(h @ w + b); torch cross_entropy; "
          "Cut Cross-Entropy / Liger fused linear CE",
          _linear_classes, _extreme_linear_classes, blockwise=True, sharded=True, shard=_shard_classes,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
    Entry(fused.linear_softmax_cross_entropy_mean, "multiclass",
          "mean of the above; Liger fused linear CE (gradient in the forward)",
          _linear_classes, _extreme_linear_classes, blockwise=True, sharded=True, shard=_shard_tokens, per_batch=True,
          class_ids=(("labels", "weight", _vocabulary_axis),)),
)
