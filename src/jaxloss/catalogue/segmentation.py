"""Catalogue entries: segmentation overlap and compound losses, and sequence (CTC) losses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import compound, lovasz, segmentation, segmentation_optax, sequence
from jaxloss.catalogue._common import Entry, away_from_kinks, with_options

_SEGMENTATION_SHAPE = (2, 3, 3, 3)  # [B, H, W, C]


def _segmentation(from_logits, ids=False, **options):
    """(predictions, targets) of a 3×3 image with 3 classes: logits (or probabilities
    when ``from_logits`` is None) and class ids or soft targets; float32 options."""

    def sample(rng):
        x = 2 * rng.standard_normal(_SEGMENTATION_SHAPE)
        if from_logits is None:
            x = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
        if ids:
            targets = jnp.int32(rng.integers(0, _SEGMENTATION_SHAPE[-1], size=_SEGMENTATION_SHAPE[:-1]))
        else:
            t = np.exp(2 * rng.standard_normal(_SEGMENTATION_SHAPE))
            targets = jnp.float32(t / t.sum(-1, keepdims=True))
        static = {} if from_logits is None else {"from_logits": from_logits}  # None: the default
        return (jnp.float32(x), targets), {**static, **{k: jnp.float32(v) for k, v in options.items()}}

    return sample


def _huge_logits_and_ids():
    """Logits of ±1e4 ``[B, H, W, C=3]`` and class ids with class 2 absent."""
    huge = np.zeros(_SEGMENTATION_SHAPE, np.float32)
    huge[..., 0], huge[..., 1], huge[..., 2] = 1e4, -1.0, -1e4
    huge[1, 0] = [-1e4, 1e4, -1e4]
    return huge, jnp.int32(np.arange(9).reshape(1, 3, 3).repeat(2, 0) % 2)


def _extreme_segmentation(from_logits, **options):
    """Logits of ±1e4, a class absent from targets and predictions (an empty mask) with
    smooth 0 and 1, NaN padding at masked pixels, all pixels masked included, and ignored
    pixels (class id −100)."""

    def extremes():
        huge, ids = _huge_logits_and_ids()
        probs = np.zeros(_SEGMENTATION_SHAPE, np.float32)
        probs[..., 0], probs[..., 1] = 0.7, 0.3  # class 2 predicted nowhere
        x = jnp.float32(probs if from_logits is None else huge)
        soft = jnp.float32(np.asarray(jax.nn.one_hot(ids, 3)))
        nan = jnp.where(jnp.arange(3)[None, :, None, None] == 0, jnp.nan, x)
        rows = np.arange(3)[None, :, None] > 0
        out = []
        for smooth in (0.0, 1.0):
            kw = {"from_logits": from_logits, "smooth": jnp.float32(smooth), **options}
            out += [((x, ids), kw), ((x, soft), kw), ((x, ids.at[:, 1].set(-100)), kw),
                    ((nan, ids), {**kw, "where": jnp.asarray(np.broadcast_to(rows, ids.shape))}),
                    ((nan, soft), {**kw, "where": jnp.zeros(ids.shape, bool)})]
        return out

    return extremes


def _binary(rng):
    """optax's binary Dice inputs: logits and soft targets ``[B, H, W, 1]``."""
    x = 2 * rng.standard_normal(_SEGMENTATION_SHAPE[:-1] + (1,))
    return (jnp.float32(x), jnp.float32(rng.uniform(size=x.shape))), {"smooth": jnp.float32(0.5)}


def _extreme_binary():
    """Logits of ±1e4, an empty mask (no target, nothing predicted) with smooth 0 and 1,
    NaN padding at masked pixels and all pixels masked."""
    x = np.full(_SEGMENTATION_SHAPE[:-1] + (1,), 1e4, np.float32)
    x[1] = -1e4
    targets = np.zeros_like(x)
    targets[0, :2] = 1.0
    x, targets = jnp.asarray(x), jnp.asarray(targets)
    nan = x.at[:, 0].set(jnp.nan)
    rows = jnp.asarray(np.broadcast_to(np.arange(3)[None, :, None] > 0, x.shape[:-1]))
    return [((a, targets), {"smooth": jnp.float32(s), **kw}) for s in (0.0, 1.0)
            for a, kw in ((x, {}), (nan, {"where": rows}), (nan, {"where": jnp.zeros(x.shape[:-1], bool)}))]


def _dice(rng):
    """optax's Dice inputs: logits ``[B, H, W, C]``, soft targets, class weights, a Tversky
    pair and a smoothing."""
    (x, targets), _ = _segmentation("softmax")(rng)
    options = {"class_weights": [0.5, 1.0, 2.0], "smooth": 0.5, "alpha": 0.3, "beta": 0.7}
    return (x, targets), {k: jnp.float32(v) for k, v in options.items()}


def _extreme_dice():
    """Logits of ±1e4 and probabilities, a class absent from targets and predictions (an empty
    mask) with smooth 0 and 1, NaN padding at masked pixels, all pixels masked, per-class
    losses without the background, one class (sigmoid) and a sum over the batch and rows."""
    huge, ids = _huge_logits_and_ids()
    x = jnp.float32(huge)
    soft = jnp.float32(np.asarray(jax.nn.one_hot(ids, 3)))
    nan = x.at[:, 0].set(jnp.nan)
    rows = jnp.asarray(np.broadcast_to(np.arange(3)[None, :, None] > 0, ids.shape))
    probabilities = jnp.float32(np.broadcast_to([0.7, 0.3, 0.0], x.shape))  # class 2 predicted nowhere
    out = []
    for smooth in (0.0, 1.0):
        kw = {"smooth": jnp.float32(smooth)}
        out += [((x, soft), kw), ((nan, soft), {**kw, "where": rows}),
                ((nan, soft), {**kw, "where": jnp.zeros(ids.shape, bool)}),
                ((probabilities, soft), {**kw, "apply_softmax": False}),
                ((x, soft), {**kw, "reduction": "none", "ignore_background": True}),
                ((x[..., 1:2], soft[..., 1:2]), kw),
                ((x, soft), {**kw, "reduction": "sum", "axis": (0, 1)})]
    return out


def _generalized(rng):
    """Logits ``[B=4, H, W, C=3]`` and soft targets (four examples: the per-batch mask check
    keeps two and masks the last)."""
    shape = (4,) + _SEGMENTATION_SHAPE[1:]
    t = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    return (jnp.float32(2 * rng.standard_normal(shape)), jnp.float32(t)), {"smooth": jnp.float32(0.5)}


def _extreme_generalized():
    """Logits of ±1e4, a class absent from the whole batch (weight ~C) with smooth 0 and 1,
    a NaN-padded example masked out, all examples masked."""
    x = np.zeros(_SEGMENTATION_SHAPE, np.float32)
    x[..., 0], x[..., 2] = 1e4, -1e4
    x = jnp.asarray(x)
    targets = jnp.float32(np.asarray(jax.nn.one_hot(np.arange(18).reshape(2, 3, 3) % 2, 3)))
    nan = x.at[1].set(jnp.nan)
    return [((a, targets), {"smooth": jnp.float32(s), **kw}) for s in (0.0, 1.0)
            for a, kw in ((x, {}), (x, {"ignore_background": True}), (nan, {"where": jnp.array([True, False])}),
                          (nan, {"where": jnp.zeros(2, bool)}))]


def _lovasz_softmax(rng):
    """Softmax probabilities ``[B, H, W, C]`` (distinct errors: no ties) and class ids, class 2
    absent from the first image (``classes="present"`` leaves it out there)."""
    (x, _), _ = _segmentation(None)(rng)
    ids = rng.integers(0, _SEGMENTATION_SHAPE[-1], size=_SEGMENTATION_SHAPE[:-1])
    ids[0] = ids[0] % 2
    return (x, jnp.int32(ids)), {}


def _extreme_lovasz_softmax():
    """Probabilities of exactly 0 and 1 (tied errors), a class absent everywhere, ignored
    pixels, NaN padding at masked pixels, every pixel masked, the batch pooled."""
    _, ids = _huge_logits_and_ids()
    probs = np.zeros(_SEGMENTATION_SHAPE, np.float32)
    probs[..., 0] = 1.0
    x = jnp.asarray(probs)
    nan = x.at[:, 0].set(jnp.nan)
    rows = jnp.asarray(np.broadcast_to(np.arange(3)[None, :, None] > 0, ids.shape))
    return [((x, ids), {}), ((x, ids), {"classes": "all", "batch": True}), ((x, ids.at[:, 1].set(-100)), {}),
            ((nan, ids), {"where": rows}), ((nan, ids), {"where": jnp.zeros(ids.shape, bool)})]


def _lovasz_hinge(rng):
    """Logits ``[B, H, W]`` away from the hinge's kink (``|x| = 1``) and binary labels."""
    x = away_from_kinks(rng, [1.0], _SEGMENTATION_SHAPE[:-1])
    return (jnp.float32(x), jnp.int32(rng.integers(0, 2, size=x.shape))), {}


def _extreme_lovasz_hinge():
    """Logits of ±1e4, no foreground, ignored pixels, NaN padding at masked pixels, every
    pixel masked, the batch pooled."""
    shape = _SEGMENTATION_SHAPE[:-1]
    x = jnp.asarray(1e4 * np.sign(np.random.default_rng(0).standard_normal(shape)), jnp.float32)
    labels = jnp.int32(np.arange(np.prod(shape)).reshape(shape) % 2)
    nan = x.at[:, 0].set(jnp.nan)
    rows = jnp.asarray(np.broadcast_to(np.arange(3)[None, :, None] > 0, shape))
    return [((x, labels), {}), ((x, jnp.zeros_like(labels)), {"batch": True}), ((x, labels.at[:, 1].set(-100)), {}),
            ((nan, labels), {"where": rows}), ((nan, labels), {"where": jnp.zeros(shape, bool)})]


# ---------------------------------------------------------------- sequence


def _ctc(rng):
    """CTC inputs [B=4, T=6, K=4], labels N=2: padded frames (lengths 4 to 6) and labels (one
    sequence has a single label), ids in [1, K) away from the blank 0; always feasible.
    (Four sequences, not three: the shared where-mask check's mask keeps only the fourth.)"""
    batch, frames, classes, n = 4, 6, 4, 2
    logits = rng.standard_normal((batch, frames, classes))
    frame_lengths = np.array([frames, *rng.integers(4, frames + 1, batch - 1)])
    label_lengths = np.array([n, 1, n, n])
    labels = rng.integers(1, classes, (batch, n))
    labels[2, 1] = labels[2, 0]  # a repeat: needs a blank between
    logit_paddings = np.arange(frames)[None] >= frame_lengths[:, None]
    label_paddings = np.arange(n)[None] >= label_lengths[:, None]
    return (jnp.float32(logits), jnp.float32(logit_paddings), jnp.int32(labels), jnp.float32(label_paddings)), {}


def _extreme_ctc():
    # Logits of ±1e4; sequence 1 is impossible (labels (1, 1) need 3 frames, it has 2).
    huge = jnp.asarray(1e4 * np.sign(np.random.default_rng(0).standard_normal((3, 6, 4))), jnp.float32)
    logit_paddings = jnp.float32([[0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    labels, label_paddings = jnp.int32([[1, 2], [1, 1], [3, 3]]), jnp.float32([[0, 0], [0, 0], [0, 1]])
    impossible = (huge, logit_paddings, labels, label_paddings)
    feasible = (huge, logit_paddings, labels.at[1].set(2), label_paddings.at[1].set(1.0))
    return [(feasible, {}),
            (impossible, {"zero_infinity": True}),
            (impossible, {"where": jnp.array([True, False, True])}),  # the +inf masked out
            (feasible, {"where": jnp.zeros(3, bool)})]


ENTRIES: tuple[Entry, ...] = (
    Entry(segmentation.soft_dice_loss, "segmentation",
          "MONAI DiceLoss",
          _segmentation("softmax", class_weights=[0.5, 1.0, 2.0], smooth=0.5),
          _extreme_segmentation("softmax"), pixel_where=True, class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.jaccard_loss, "segmentation",
          "optax.losses.dice_loss (alpha = beta = 1)",
          _segmentation("softmax", ids=True, smooth=0.5), _extreme_segmentation("softmax"), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.tversky_loss, "segmentation",
          "optax.losses.dice_loss (alpha, beta); MONAI TverskyLoss",
          _segmentation("sigmoid", alpha=0.3, beta=0.7, smooth=0.5),
          _extreme_segmentation("sigmoid", alpha=0.3, beta=0.7), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.focal_tversky_loss, "segmentation",
          "Abraham & Khan 2019 focal Tversky (class mean)",
          _segmentation("softmax", ids=True, alpha=0.3, beta=0.7, gamma=1.5, smooth=0.5),
          _extreme_segmentation("softmax", alpha=0.3, beta=0.7, gamma=4 / 3), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(segmentation.generalized_dice_loss, "segmentation",
          "MONAI GeneralizedDiceLoss",
          _segmentation(None, smooth=0.5), _extreme_segmentation(None), pixel_where=True,
          class_ids=(("targets", "predictions", -1),)),
    Entry(compound.dice_ce_loss, "segmentation",
          "MONAI DiceCELoss",
          _segmentation("softmax", ids=True, class_weights=[0.5, 1.0, 2.0], lambda_ce=0.5, label_smoothing=0.1,
                        smooth=0.5),
          _extreme_segmentation("softmax"), pixel_where=True, class_ids=(("labels", "logits", -1),)),
    Entry(compound.dice_focal_loss, "segmentation",
          "MONAI DiceFocalLoss",
          with_options(_segmentation("sigmoid", ids=True, class_weights=[0.5, 1.0, 2.0], smooth=0.5), alpha=0.3,
                       gamma=1.5),
          _extreme_segmentation("sigmoid", gamma=0.5), pixel_where=True, class_ids=(("labels", "logits", -1),)),
    Entry(lovasz.lovasz_softmax_loss, "segmentation",
          "Berman et al. lovasz_softmax (per_image=True)",
          _lovasz_softmax, _extreme_lovasz_softmax, pixel_where=True,
          class_ids=(("labels", "probabilities", -1),)),
    Entry(lovasz.lovasz_hinge_loss, "segmentation",
          "Berman et al. lovasz_hinge",
          _lovasz_hinge, _extreme_lovasz_hinge, pixel_where=True),
    Entry(segmentation_optax.dice_loss, "segmentation",
          "optax.losses.dice_loss",
          _dice, _extreme_dice, pixel_where=True),
    Entry(segmentation_optax.binary_dice_loss, "segmentation",
          "optax.losses.binary_dice_loss",
          _binary, _extreme_binary, pixel_where=True),
    Entry(segmentation_optax.multiclass_generalized_dice_loss, "segmentation",
          "optax.losses.multiclass_generalized_dice_loss (a scalar for the batch)",
          _generalized, _extreme_generalized, per_batch=True),
    Entry(sequence.ctc_loss, "sequence",
          "optax.ctc_loss; torch ctc_loss",
          _ctc, _extreme_ctc, class_ids=(("labels", "logits", -1),)),
)
