"""Compound segmentation losses: Dice plus cross-entropy and Dice plus focal, per example,
as MONAI's ``DiceCELoss`` and ``DiceFocalLoss`` combine them.

Each is a weighted sum of jaxloss losses that have hand-derived rules:
:func:`jaxloss.soft_dice_loss` per example, plus the pixel mean of
:func:`jaxloss.softmax_cross_entropy` or of :func:`jaxloss.sigmoid_focal_loss`.  Their
derivatives are those rules added up (JAX differentiates the sum and the pixel means
through them), so every transformation the parts support works here too; ``fn.reference``
is the same sum over the parts' ``.reference`` (plain autodiff of the formulas).

The pattern for any weighted sum of jaxloss losses, which these two follow: bring every
term to the per-example shape (a per-pixel loss ``[B, ..spatial..]`` to its pixel mean
over the pixels that count), give each term the same ``where`` (masked entries then give 0
and a derivative of exactly 0 in each term, also when they hold NaN padding), add the
per-example terms with their weights, and reduce once, with the per-example mask::

    dice = jaxloss.soft_dice_loss(logits, ids, from_logits="softmax", where=pixels)  # [B]
    ce = jaxloss.softmax_cross_entropy(logits, ids, where=pixels)                   # [B, H, W]
    ce = jax.vmap(lambda c, m: jaxloss.reduce.mean(c, where=m))(ce, pixels)         # [B]
    loss = jaxloss.reduce.mean(1.0 * dice + 0.5 * ce, where=examples)

The pixel mean per example is what :func:`dice_ce_loss` computes (``Σ`` over the counted
pixels divided by their count, or by their summed class weights); summing the terms
before reducing keeps one loss per example, so that example masks, example weights and
``axis_name`` apply once to the total.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Literal, NamedTuple, ParamSpec

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._overlap import check, class_mean, kept_class_weights, sum_ratio
from jaxloss._softmax import IGNORE_INDEX, class_ids, one_hot
from jaxloss.focal import sigmoid_focal_loss, softmax_focal_loss
from jaxloss.gradients import Loss, as_float_option, as_ids, class_axes, derived_loss, float_dtype
from jaxloss.multiclass import softmax_cross_entropy
from jaxloss.segmentation import soft_dice_loss
from jaxloss.types import Array, ArrayLike, AxisName

P = ParamSpec("P")


class _Parts(NamedTuple):
    """The losses a compound adds up: the public ones (hand rules) or their references."""

    dice: Callable[..., jax.Array]
    ce: Callable[..., jax.Array]
    focal: Callable[..., jax.Array]


_HAND = _Parts(soft_dice_loss, softmax_cross_entropy, sigmoid_focal_loss)
_AUTODIFF = _Parts(soft_dice_loss.reference, softmax_cross_entropy.reference, sigmoid_focal_loss.reference)


def _compound(forward: Callable[..., jax.Array]) -> Callable[[Callable[P, jax.Array]], Loss[P]]:
    """Make the public ``def`` (which calls ``forward(_HAND, ...)``) a :class:`Loss` whose
    reference is ``forward(_AUTODIFF, ...)``.  Its ``axis`` and arguments ``(logits, labels)``
    carry the class axis as :func:`jaxloss.softmax_focal_loss`'s do."""

    def decorate(fn: Callable[P, jax.Array]) -> Loss[P]:
        return derived_loss(fn, functools.partial(forward, _AUTODIFF), like=softmax_focal_loss)

    return decorate


def _inputs(logits, labels, axis, from_logits, where, ignore_index, class_weights, include_background, batch,
            axis_name, **scalars):
    """Check the arguments (errors name ``logits`` and ``labels``) and return them with the
    class axis last and the ids in int32, and the class weights as floats (given as integers)."""
    _checks.float_array("logits", logits)
    _checks.mask("where", where)
    logits, labels = jnp.asarray(logits), as_ids(jnp.asarray(labels))
    dtype = float_dtype([logits])
    class_weights = as_float_option(class_weights, dtype)
    scalars = {k: as_float_option(v, dtype) for k, v in scalars.items()}
    axis = class_axes(axis, logits.shape, name="logits")[0]
    logits = jnp.moveaxis(logits, axis, -1)
    if jnp.issubdtype(labels.dtype, jnp.floating) and labels.ndim == logits.ndim:
        labels = jnp.moveaxis(labels, axis, -1)
    check(logits, labels, where=where, from_logits=from_logits, ignore_index=ignore_index,
          class_weights=class_weights, include_background=include_background, batch=batch, axis_name=axis_name,
          names=("logits", "labels"), **scalars)
    if from_logits not in ("softmax", "sigmoid"):
        raise ValueError(f'from_logits must be "softmax" or "sigmoid" (the cross-entropy and focal terms take '
                         f'logits), got {from_logits!r}.')
    if logits.shape[-1] < 2:
        raise ValueError(f"logits must have at least 2 classes on axis, got shape {logits.shape} with axis moved "
                         "last; for one class add soft_dice_loss and sigmoid_binary_cross_entropy.")
    return logits, labels, class_weights


def _pixels(logits, labels, where, ignore_index):
    """``(keep, ids)``: the pixels that count ``[B, ..spatial..]`` (those ``where`` leaves and,
    for class ids, not ``ignore_index``) as a bool array, and the ids (None for float labels)."""
    keep = jnp.ones(logits.shape[:-1], bool) if where is None else jnp.broadcast_to(where, logits.shape[:-1])
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        return keep, None
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    return keep & (counted | invalid), ids  # an invalid id counts: its Dice term makes the loss NaN


def _pixel_mean(numerators, denominators):
    """``Σ n / Σ d`` over each example's pixels (every axis but the first), 0 where ``Σ d = 0``."""
    return sum_ratio(numerators, denominators, tuple(range(1, numerators.ndim)))


def _dice(parts, logits, labels, options, lambda_dice):
    """``λ_dice`` times the soft Dice loss of each example (the batch's, broadcast, with ``batch``)."""
    dice = parts.dice(logits, labels, **options)
    return lambda_dice * jnp.broadcast_to(dice, logits.shape[:1])


def _prepare(logits, labels, *, axis, smooth, smooth_nr, smooth_dr, squared, class_weights, include_background,
             from_logits, ignore_index, where, batch, axis_name, **lambdas):
    """``(logits, labels, options, keep, ids)``: the inputs of :func:`_inputs`, the Dice term's
    keyword arguments (with the class weights as floats) and :func:`_pixels`."""
    logits, labels, class_weights = _inputs(logits, labels, axis, from_logits, where, ignore_index, class_weights,
                                            include_background, batch, axis_name, smooth=smooth, smooth_nr=smooth_nr,
                                            smooth_dr=smooth_dr, **lambdas)
    options = dict(smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
                   class_weights=class_weights, include_background=include_background, from_logits=from_logits,
                   ignore_index=ignore_index, where=where, batch=batch, axis_name=axis_name)
    return logits, labels, options, *_pixels(logits, labels, where, ignore_index)


# ------------------------------------------------------------------ dice_ce_loss


def _dice_ce(parts, logits, labels, *, axis=-1, lambda_dice=1.0, lambda_ce=1.0, smooth=1e-5, smooth_nr=None,
             smooth_dr=None, squared=False, class_weights=None, include_background=True, from_logits="softmax",
             label_smoothing=0.0, ignore_index=IGNORE_INDEX, where=None, batch=False, axis_name=None):
    logits, labels, options, keep, ids = _prepare(
        logits, labels, axis=axis, smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        class_weights=class_weights, include_background=include_background, from_logits=from_logits,
        ignore_index=ignore_index, where=where, batch=batch, axis_name=axis_name, lambda_dice=lambda_dice,
        lambda_ce=lambda_ce)
    class_weights = options["class_weights"]
    ce = parts.ce(logits, labels, label_smoothing=label_smoothing, class_weights=class_weights,
                  ignore_index=ignore_index, where=keep)
    counts = keep.astype(ce.dtype)
    if ids is not None and class_weights is not None:
        counts = jnp.where(keep, jnp.take(class_weights, jnp.clip(ids, 0, logits.shape[-1] - 1)), 0.0)
    return _dice(parts, logits, labels, options, lambda_dice) + lambda_ce * _pixel_mean(ce, counts)


@_compound(_dice_ce)
def dice_ce_loss(logits: Array, labels: Array, *, axis: int = -1, lambda_dice: ArrayLike = 1.0,
                 lambda_ce: ArrayLike = 1.0, smooth: ArrayLike = 1e-5, smooth_nr: ArrayLike | None = None,
                 smooth_dr: ArrayLike | None = None, squared: bool = False, class_weights: Array | None = None,
                 include_background: bool = True, from_logits: Literal["softmax", "sigmoid"] = "softmax",
                 label_smoothing: ArrayLike = 0.0, ignore_index: int | None = IGNORE_INDEX,
                 where: Array | None = None, batch: bool = False, axis_name: AxisName | None = None) -> jax.Array:
    r"""Dice plus cross-entropy per example (MONAI's ``DiceCELoss``): ``λ_dice·Dice + λ_ce·CE``.

    .. math:: \ell_b = \lambda_{dice}\,\mathrm{Dice}_b
       + \lambda_{ce}\,\frac{\sum_{i} \mathrm{CE}_{bi}}{\sum_{i} w_{y_{bi}}}

    where ``Dice_b`` is :func:`jaxloss.soft_dice_loss` of example ``b`` (the probabilities
    are the softmax or sigmoid of the logits, ``from_logits``) and ``CE_bi`` the softmax
    cross-entropy of pixel ``i`` (:func:`jaxloss.softmax_cross_entropy`, class-weighted
    ``w_y·CE``), summed over the pixels that count (not masked by ``where``, not
    ``ignore_index``) and divided by their summed label weights ``w_y`` (their count
    without class weights; for float labels always their count): PyTorch's
    ``cross_entropy(reduction="mean")`` over the example's pixels.  The cross-entropy is
    the softmax's for ``from_logits="sigmoid"`` too, as in MONAI (which uses BCE only for a
    single channel; here at least 2 classes are required).

    Derivatives: the sum of the parts' hand-derived rules (see :func:`soft_dice_loss` and
    :func:`softmax_cross_entropy`), with ``∂ℓ/∂λ_dice = Dice_b`` and ``∂ℓ/∂λ_ce`` the CE mean.

    MONAI's reduction: ``DiceCELoss(reduction="mean")`` averages the Dice losses over
    examples and classes and the cross-entropy over every pixel of the batch.  Without
    class weights (and with examples of one size, no ``where``), ``jaxloss.reduce.mean`` of
    these losses is that number exactly.  With class weights MONAI's Dice term is
    ``Σ_c w_c L_c / C`` (the count of kept classes), this one ``Σ_c w_c L_c / Σ_c w_c`` (as
    :func:`soft_dice_loss`): equal for weights summing to the kept class count (the
    cross-entropy's weighted mean does not change when the weights are scaled); and MONAI's
    weighted cross-entropy mean runs over the whole batch, here over each example.  With
    ``batch=True`` the Dice term is the batch's (one value, added to every example), so
    the batch mean adds it once, as MONAI's ``batch=True`` does.

    Args:
      logits: float ``[B, ..spatial.., C]`` with ``C >= 2`` on ``axis``.
      labels: integer class ids ``[B, ..spatial..]`` (MONAI's ``to_onehot_y=True`` on a
        ``B1H[WD]`` target) or float probabilities / one-hot ``[B, ..spatial.., C]``
        (differentiated).
      axis: static; the class axis of ``logits`` (and float ``labels``): -1 (default) or
        e.g. 1 for MONAI's channels-first ``[B, C, H, W]``.
      lambda_dice, lambda_ce: the weights of the two terms, >= 0 (differentiated when traced).
      smooth, smooth_nr, smooth_dr: the Dice smoothing (MONAI's ``smooth_nr = smooth_dr =
        1e-5`` by default, unlike :func:`soft_dice_loss`'s 1).
      squared: static; MONAI's ``squared_pred``.
      class_weights: optional float ``[C]``, >= 0: the Dice class weights and the
        cross-entropy's ``weight`` (MONAI's ``weight``, see above).
      include_background: static; False leaves class 0 out of the Dice term (MONAI's; the
        cross-entropy keeps every class, as MONAI's does).
      from_logits: static; ``"softmax"`` (default) or ``"sigmoid"``: the Dice term's
        probabilities (MONAI's ``softmax=True`` / ``sigmoid=True``).
      label_smoothing: ε in [0, 1] for the cross-entropy (MONAI's ``label_smoothing``).
      ignore_index: static; pixels with this class id are left out of both terms (−100 by
        default, or None; MONAI's ``DiceCELoss`` has none).
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``: masked pixels
        leave both terms (derivative exactly 0, also for NaN padding).
      batch: static; the Dice sums over the whole batch (see above).
      axis_name: static; with ``batch``, the axis a sharded batch is split over.

    Returns:
      Losses ``[B]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0]]])  # [B=1, pixels=2, C=2]
      >>> jaxloss.dice_ce_loss(logits, jnp.array([[0, 1]]))
      Array([0.41525996], dtype=float32)

    References:
      Isensee et al., "nnU-Net", 2021 (Dice + cross-entropy); MONAI ``DiceCELoss``
      (``to_onehot_y``, ``softmax``; values and gradients match per the reduction note).
      Differs from MONAI: per-example losses, class ids with ``ignore_index``, a pixel
      ``where``, class weights normalised in the Dice term, no ``jaccard`` / ``other_act``.
    """
    return _dice_ce(_HAND, logits, labels, axis=axis, lambda_dice=lambda_dice, lambda_ce=lambda_ce, smooth=smooth,
                    smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared, class_weights=class_weights,
                    include_background=include_background, from_logits=from_logits,
                    label_smoothing=label_smoothing, ignore_index=ignore_index, where=where, batch=batch,
                    axis_name=axis_name)


# ------------------------------------------------------------------ dice_focal_loss


def _dice_focal(parts, logits, labels, *, axis=-1, lambda_dice=1.0, lambda_focal=1.0, gamma=2.0, alpha=None,
                smooth=1e-5, smooth_nr=None, smooth_dr=None, squared=False, class_weights=None,
                include_background=True, from_logits="sigmoid", ignore_index=IGNORE_INDEX, where=None, batch=False,
                axis_name=None):
    logits, labels, options, keep, ids = _prepare(
        logits, labels, axis=axis, smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr, squared=squared,
        class_weights=class_weights, include_background=include_background, from_logits=from_logits,
        ignore_index=ignore_index, where=where, batch=batch, axis_name=axis_name, lambda_dice=lambda_dice,
        lambda_focal=lambda_focal)
    classes = logits.shape[-1]
    targets = labels if ids is None else one_hot(ids, classes).astype(jnp.int32)
    focal = parts.focal(logits, targets, alpha=alpha, gamma=gamma, where=keep[..., None])
    per_pixel = class_mean(focal, kept_class_weights(options, classes, focal.dtype))
    return _dice(parts, logits, labels, options, lambda_dice) + lambda_focal * _pixel_mean(
        per_pixel, keep.astype(focal.dtype))


@_compound(_dice_focal)
def dice_focal_loss(logits: Array, labels: Array, *, axis: int = -1, lambda_dice: ArrayLike = 1.0,
                    lambda_focal: ArrayLike = 1.0, gamma: ArrayLike = 2.0, alpha: ArrayLike | None = None,
                    smooth: ArrayLike = 1e-5, smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None,
                    squared: bool = False, class_weights: Array | None = None, include_background: bool = True,
                    from_logits: Literal["softmax", "sigmoid"] = "sigmoid", ignore_index: int | None = IGNORE_INDEX,
                    where: Array | None = None, batch: bool = False,
                    axis_name: AxisName | None = None) -> jax.Array:
    r"""Dice plus sigmoid focal loss per example (MONAI's ``DiceFocalLoss``).

    .. math:: \ell_b = \lambda_{dice}\,\mathrm{Dice}_b + \lambda_{focal}\,
       \frac{1}{|\Omega_b|}\sum_{i \in \Omega_b} \frac{\sum_c w_c\,\mathrm{FL}(x_{bic}, y_{bic})}{\sum_c w_c}

    where ``Dice_b`` is :func:`jaxloss.soft_dice_loss` of example ``b``, ``FL`` the sigmoid
    focal loss of each class channel against its one-hot target
    (:func:`jaxloss.sigmoid_focal_loss`, ``α_t (1 − p_t)^γ BCE``), ``Ω_b`` the pixels that
    count (not masked, not ``ignore_index``) and ``w_c`` the class weights (1 without; 0
    for class 0 with ``include_background=False``).  The focal term is the sigmoid one
    whatever ``from_logits`` says, as in MONAI (``from_logits`` sets the Dice term's
    probabilities only).

    Derivatives: the sum of the parts' hand-derived rules (:func:`soft_dice_loss`,
    :func:`sigmoid_focal_loss`), with ``∂ℓ/∂λ_dice = Dice_b`` and ``∂ℓ/∂λ_focal`` the focal mean.

    MONAI's reduction: ``DiceFocalLoss(reduction="mean")`` averages the Dice losses over
    examples and classes and the focal losses over every example, class and pixel; without
    class weights (examples of one size, no ``where``) that is ``jaxloss.reduce.mean`` of
    these losses.  With class weights ``w`` both of MONAI's terms divide ``Σ_c w_c (…)``
    by the kept class count ``C'``, these by ``Σ_c w_c``: MONAI's loss is
    ``(Σ_c w_c / C')`` times this one (equal for weights summing to ``C'``).

    Args:
      logits: float ``[B, ..spatial.., C]`` with ``C >= 2`` on ``axis``.
      labels: integer class ids ``[B, ..spatial..]`` (MONAI's ``to_onehot_y=True``) or
        float probabilities / one-hot ``[B, ..spatial.., C]`` (differentiated).
      axis: static; the class axis of ``logits`` (and float ``labels``), -1 by default.
      lambda_dice, lambda_focal: the weights of the two terms, >= 0 (differentiated when traced).
      gamma: the focal exponent >= 0 (MONAI's default 2).
      alpha: optional weight of the positive targets in [0, 1] (``α`` for target 1,
        ``1 − α`` for target 0, MONAI's scalar ``alpha``); None for no weighting.
      smooth, smooth_nr, smooth_dr: the Dice smoothing (MONAI's ``1e-5`` by default).
      squared: static; MONAI's ``squared_pred``.
      class_weights: optional float ``[C]``, >= 0: MONAI's ``weight`` for both terms (see above).
      include_background: static; False leaves class 0 out of both terms (MONAI's).
      from_logits: static; ``"sigmoid"`` (default) or ``"softmax"``: the Dice term's
        probabilities (MONAI's ``sigmoid=True`` / ``softmax=True``).
      ignore_index: static; pixels with this class id are left out of both terms.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; the Dice sums over the whole batch (one Dice value added to every example).
      axis_name: static; with ``batch``, the axis a sharded batch is split over.

    Returns:
      Losses ``[B]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0]]])  # [B=1, pixels=2, C=2]
      >>> jaxloss.dice_focal_loss(logits, jnp.array([[0, 1]]))
      Array([0.39512518], dtype=float32)

    References:
      Lin et al., "Focal Loss for Dense Object Detection", 2017; Zhu et al., "AnatomyNet",
      2018 (Dice + focal); MONAI ``DiceFocalLoss`` (values and gradients match per the
      reduction note).  Differs from MONAI: per-example losses, class ids with
      ``ignore_index``, a pixel ``where``, class weights normalised, no ``jaccard`` /
      ``other_act`` / per-class ``alpha``.
    """
    return _dice_focal(_HAND, logits, labels, axis=axis, lambda_dice=lambda_dice, lambda_focal=lambda_focal,
                       gamma=gamma, alpha=alpha, smooth=smooth, smooth_nr=smooth_nr, smooth_dr=smooth_dr,
                       squared=squared, class_weights=class_weights, include_background=include_background,
                       from_logits=from_logits, ignore_index=ignore_index, where=where, batch=batch,
                       axis_name=axis_name)

