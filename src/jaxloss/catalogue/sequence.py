"""Catalogue entries: sequence transduction (the RNN-T loss); CTC's entries stay with segmentation's."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxloss import transducer
from jaxloss.catalogue._common import Entry

_BATCH, _FRAMES, _LABELS, _CLASSES, _HIDDEN = 4, 4, 2, 5, 3


def _targets(rng):
    """Paddings and labels of a small lattice: frame lengths 1 to T (the first sequence full),
    label lengths 0 to U, ids in [1, V) away from the blank 0 (one repeat)."""
    frame_lengths = np.array([_FRAMES, 1, *rng.integers(2, _FRAMES + 1, _BATCH - 2)])
    label_lengths = np.array([_LABELS, 1, 0, _LABELS])
    labels = rng.integers(1, _CLASSES, (_BATCH, _LABELS))
    labels[3, 1] = labels[3, 0]
    logit_paddings = np.arange(_FRAMES)[None] >= frame_lengths[:, None]
    label_paddings = np.arange(_LABELS)[None] >= label_lengths[:, None]
    return jnp.float32(logit_paddings), jnp.int32(labels), jnp.float32(label_paddings)


def _rnnt(rng):
    """RNN-T inputs: logits [B=4, T=4, U+1=3, V=5] and the targets above.  (Four sequences: the
    shared where-mask check's mask keeps only the fourth.)"""
    logit_paddings, labels, label_paddings = _targets(rng)
    logits = jnp.float32(rng.standard_normal((_BATCH, _FRAMES, _LABELS + 1, _CLASSES)))
    return (logits, logit_paddings, labels, label_paddings), {}


def _joiner(rng):
    """The joiner's inputs: encoder [4, 4, H=3], predictor [4, 3, 3], weight [3, 5], bias [5] (V
    unlike B: the fuzzer cuts option arrays of the batch's size); the blockwise check runs it in
    blocks of frames too."""
    logit_paddings, labels, label_paddings = _targets(rng)
    encoder = jnp.float32(rng.standard_normal((_BATCH, _FRAMES, _HIDDEN)))
    predictor = jnp.float32(rng.standard_normal((_BATCH, _LABELS + 1, _HIDDEN)))
    weight = jnp.float32(2 * rng.standard_normal((_HIDDEN, _CLASSES)))
    bias = jnp.float32(rng.standard_normal(_CLASSES))
    return (encoder, predictor, weight, logit_paddings, labels, label_paddings), {"joiner_bias": bias}


def _huge(rng, shape):
    return jnp.float32(1e4 * np.sign(rng.standard_normal(shape)))


def _extreme_rnnt():
    # Logits of ±1e4 and all zeros; sequence 1 has no frames (+inf, masked out by where).
    rng = np.random.default_rng(0)
    logit_paddings, labels, label_paddings = _targets(rng)
    huge = _huge(rng, (_BATCH, _FRAMES, _LABELS + 1, _CLASSES))
    targets = (logit_paddings, labels, label_paddings)
    empty = (logit_paddings.at[1].set(1.0), labels, label_paddings)
    return [((huge, *targets), {}),
            ((jnp.zeros_like(huge), *targets), {}),
            ((huge, *empty), {"where": jnp.array([True, False, True, True])}),
            ((huge, *targets), {"where": jnp.zeros(_BATCH, bool)})]


def _extreme_joiner():
    # Saturated tanh (encoder ±1e4), logits near ±1e4 (weight ±1e4), all zeros; no frames masked.
    rng = np.random.default_rng(0)
    (encoder, predictor, weight, *targets), kw = _joiner(rng)
    huge_weight = _huge(rng, weight.shape)
    empty = (targets[0].at[1].set(1.0), *targets[1:])
    return [((_huge(rng, encoder.shape), predictor, weight, *targets), kw),
            ((encoder, predictor, huge_weight, *targets), kw),
            ((jnp.zeros_like(encoder), jnp.zeros_like(predictor), weight, *targets), {"block_size": 3}),
            ((encoder, predictor, huge_weight, *empty), {**kw, "where": jnp.array([True, False, True, True])}),
            ((encoder, predictor, weight, *targets), {"where": jnp.zeros(_BATCH, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(transducer.rnnt_loss, "sequence",
          "torchaudio.functional.rnnt_loss (reduction='none')",
          _rnnt, _extreme_rnnt, class_ids=(("labels", "logits", -1),)),
    Entry(transducer.rnnt_loss_from_joiner, "sequence",
          "torchaudio.functional.rnnt_loss of tanh(enc + pred) @ W + b (never materialised)",
          _joiner, _extreme_joiner, blockwise=True, class_ids=(("labels", "joiner_weight", 1),)),
)
