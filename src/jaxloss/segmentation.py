"""Overlap losses for segmentation: soft Dice (MONAI's form), Jaccard (soft IoU), Tversky,
focal Tversky, generalized Dice.  optax's ``dice_loss`` (its defaults and arguments) is
:func:`jaxloss.dice_loss`, built on :func:`tversky_loss` in :mod:`jaxloss.segmentation_optax`.

Layout is channels-last: predictions ``[B, ..spatial.., C]`` (one batch axis, any number
of spatial axes, the class axis last; MONAI and PyTorch use channels-first
``[B, C, ..spatial..]``: move the axis with ``jnp.moveaxis(x, 1, -1)``).  Targets are
integer class ids ``[B, ..spatial..]`` or float probabilities / one-hot ``[B, ..spatial.., C]``.
Class ids are compared in int32 and follow the rule of every jaxloss loss on ids: a pixel
whose id equals ``ignore_index`` (−100 by default, PyTorch's cross-entropy convention for
unlabelled pixels) is left out of every sum, as a pixel masked by ``where`` (derivative
exactly 0); any other id outside ``[0, C)`` at an unmasked pixel makes its example's loss
NaN, with derivative 0 (:func:`jaxloss.checks.checked` names the pixel).
Predictions are probabilities, or logits turned into probabilities with
``from_logits="softmax"`` (over the class axis) or ``"sigmoid"`` (per class, multi-label).

Each loss is a ratio of the same per-class sums over the spatial axes of each example,
``I_c = Σ p·g``, ``P_c = Σ p`` and ``G_c = Σ g`` (``Σ p²``, ``Σ g²`` with ``squared=True``);
:mod:`jaxloss._overlap` computes them and their hand-derived tangents once for every loss.
The per-class losses ``L_c = 1 − N_c/D_c`` are reduced over classes by the weighted mean
``Σ_c w_c L_c / Σ_c w_c`` (``w_c = 1`` without ``class_weights``; class 0 gets weight 0 with
``include_background=False``; weights summing to 0 give loss 0).  With a single class
(a class axis of size 1) ``include_background=False`` is ignored, with a ``UserWarning`` at
trace time, and the loss is that class's: optax's ``ignore_background`` and MONAI's
``include_background`` (which warns too) do the same.  A class absent from an
example's targets and predictions (an empty mask) gives a finite loss and gradient:
``smooth`` makes its ratio 1 (loss 0); with ``smooth=0`` the ratio 0/0 is defined as 1,
loss 0, with gradient 0 there.  ``smooth_nr`` and ``smooth_dr`` (MONAI's names) set the
numerator's and the denominator's smoothing apart; each is ``smooth`` where unset.

``batch=True`` sums over the batch axis too before the ratios (nnU-Net's "batch Dice",
MONAI's ``batch=True``): the loss is then one number for the whole batch (a scalar), and
with ``axis_name`` the sums run over every device's pieces of a sharded batch, so that each
device gets the loss of the whole batch.

``where`` masks pixels (``[B, ..spatial..]``, broadcasting): masked pixels contribute
nothing to any sum, and get a derivative of exactly 0 even when they hold inf or NaN
(padding).  It is not a per-example mask: mask examples in the reduction
(:func:`jaxloss.reduce.mean`).

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products through its hand-derived rule, which keeps
the inputs and the per-class sums (``[B, C]``) for reverse mode and recomputes the
probabilities there; ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss._overlap import (STATIC, background, check_options, make_loud, overlap, per_class_forward,
                              per_class_tangent, quiet, ratio, ratio_tangent, smooths)
from jaxloss._softmax import IGNORE_INDEX
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, AxisName


# ------------------------------------------------------------------ soft_dice_loss


def _dice_terms(i, ps, gs, p):
    nr, dr = smooths(p)
    return 2 * i + nr, ps + gs + dr


def _dice_terms_tangent(sums, dsums, p, t):
    di, dps, dgs = dsums
    dnr, ddr = smooths(p, t)
    return tangent_sum((2.0, di), (1.0, dnr)), tangent_sum((1.0, dps), (1.0, dgs), (1.0, ddr))


@hand_derivative(per_class_tangent(_dice_terms, _dice_terms_tangent), static=("squared",) + STATIC, check=check_options,
                 residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def soft_dice_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                   smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None,
                   squared: bool = False, class_weights: Array | None = None, include_background: bool = True,
                   from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                   where: Array | None = None, batch: bool = False,
                   axis_name: AxisName | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Soft Dice loss per example, per class over the spatial axes, weighted mean over classes.

    With probabilities ``p`` and targets ``g`` (one-hot for class ids), sums over the
    unmasked pixels of each example, and smoothing ``s``:

    .. math:: L_c = 1 - \frac{2 \sum p_c g_c + s}{\sum p_c + \sum g_c + s},
       \qquad \ell = \frac{\sum_c w_c L_c}{\sum_c w_c}

    (``squared=True``: ``Σ p_c² + Σ g_c²`` in the denominator, Milletari et al.).
    Derivatives (hand rule): with ``N, D`` the numerator and denominator and ``r = N/D``,
    ``∂L_c/∂p_c = −(2 g_c − r_c)/D_c`` (``2p_c`` for ``1`` when squared), likewise for soft
    targets; ``∂L_c/∂s = −(1 − r_c)/D_c``; ``∂ℓ/∂w_c = (L_c − ℓ)/Σw``; chained through the
    softmax / sigmoid for logits.  An empty class (``Σp = Σg = 0``) has ratio ``s/s = 1``,
    loss 0; with ``smooth=0`` the 0/0 is defined as loss 0 with gradient 0.

    Matches MONAI ``DiceLoss(smooth_nr=s, smooth_dr=s, squared_pred=squared,
    include_background=..., softmax/sigmoid=...)`` per example and class (MONAI is
    channels-first and averages ``w_c L_c`` over classes).  Not optax's ``dice_loss``, which
    is :func:`jaxloss.dice_loss`: with ``alpha = beta = 0.5`` it computes
    ``1 − (I + s')/((P + G)/2 + s')``, this loss with ``smooth = 2 s'``, so
    ``soft_dice_loss(x, t, smooth=2 * s, from_logits="softmax") == dice_loss(x, t, smooth=s)``
    for ``C >= 2`` classes without class weights; optax's class weights give
    ``Σ w_c L_c / C`` (not divided by ``Σ w_c``), its ``apply_softmax`` uses sigmoid for a
    single class, and its ``axis`` names the summed axes, not the class axis.

    Args:
      predictions: float ``[B, ..spatial.., C]``: probabilities, or logits with ``from_logits``.
      targets: integer class ids ``[B, ..spatial..]`` (no derivative), or float
        probabilities / one-hot ``[B, ..spatial.., C]`` (differentiated).
      axis: static; the class axis C of ``predictions`` (and of float ``targets``): -1 (the
        last, default) or e.g. ``axis=1`` for channel-first ``[B, C, H, W]`` (PyTorch, MONAI).
      smooth: ``s >= 0``, a float scalar (differentiated when traced).
      smooth_nr, smooth_dr: optional ``>= 0``: the smoothing of the numerator and of the
        denominator apart (MONAI's names); each is ``smooth`` where None.
      squared: static; squares in the denominator.
      class_weights: optional float ``[C]``, >= 0 (differentiated).
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None (probabilities), ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, which are left out of every
        sum (an int, −100 by default, or ``None``: every id outside ``[0, C)`` is invalid and
        gives NaN).  segmentation_models_pytorch's ``DiceLoss`` (``ignore_index=None`` by
        default there) leaves them out the same way.  Unused with float targets.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sum over the batch too before the ratios (nnU-Net's batch Dice, MONAI's
        ``batch=True``): one loss for the whole batch, a scalar.
      axis_name: static; with ``batch``, a ``shard_map``/``pmap`` axis over which the batch is
        split: the sums run over every device's pixels, so each device returns the loss of
        the whole batch (gradients flow back to each device's own pixels).

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``), float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])  # [B=1, pixels=2, C=2]
      >>> jaxloss.soft_dice_loss(p, jnp.array([[0, 1]]))
      Array([0.10011125], dtype=float32)

    References:
      Milletari et al., "V-Net", 2016; Sudre et al., 2017; MONAI ``DiceLoss``.
    """
    return per_class_forward(Args(locals()), _dice_terms)


# ------------------------------------------------------------------ jaccard_loss


def _jaccard_terms(i, ps, gs, p):
    nr, dr = smooths(p)
    return i + nr, ps + gs - i + dr


def _jaccard_terms_tangent(sums, dsums, p, t):
    di, dps, dgs = dsums
    dnr, ddr = smooths(p, t)
    return tangent_sum((1.0, di), (1.0, dnr)), tangent_sum((1.0, dps), (1.0, dgs), (-1.0, di), (1.0, ddr))


@hand_derivative(per_class_tangent(_jaccard_terms, _jaccard_terms_tangent), static=STATIC,
                 check=check_options, residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def jaccard_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                 smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None,
                 class_weights: Array | None = None, include_background: bool = True,
                 from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                 where: Array | None = None, batch: bool = False,
                 axis_name: AxisName | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Soft Jaccard (IoU) loss per example, per class, weighted mean over classes.

    .. math:: L_c = 1 - \frac{\sum p_c g_c + s}{\sum p_c + \sum g_c - \sum p_c g_c + s},
       \qquad \ell = \frac{\sum_c w_c L_c}{\sum_c w_c}

    Derivatives (hand rule): ``∂L_c/∂p_c = −(g_c − r_c (1 − g_c))/D_c`` and
    ``∂L_c/∂g_c = −(p_c − r_c (1 − p_c))/D_c`` with ``r = N/D``;
    ``∂L_c/∂s = −(1 − r_c)/D_c``; ``∂ℓ/∂w_c = (L_c − ℓ)/Σw``.  Empty classes as in
    :func:`soft_dice_loss`.  It equals ``optax.losses.dice_loss(alpha=1, beta=1)`` (per class;
    :func:`jaxloss.dice_loss` with the same arguments) and MONAI ``DiceLoss(jaccard=True)``
    up to how the smoothing enters.

    Args:
      predictions: float ``[B, ..spatial.., C]``: probabilities, or logits with ``from_logits``.
      targets: integer class ids ``[B, ..spatial..]`` or float ``[B, ..spatial.., C]``.
      axis: static; the class axis C of ``predictions`` (and of float ``targets``): -1 (the
        last, default) or e.g. ``axis=1`` for channel-first ``[B, C, H, W]`` (PyTorch, MONAI).
      smooth: ``s >= 0`` (differentiated when traced).
      smooth_nr, smooth_dr: optional ``>= 0``: the smoothing of the numerator and of the
        denominator apart (MONAI's names); each is ``smooth`` where None.
      class_weights: optional float ``[C]``, >= 0.
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sum over the batch too before the ratios (nnU-Net's batch Dice, MONAI's
        ``batch=True``): one loss for the whole batch, a scalar.
      axis_name: static; with ``batch``, a ``shard_map``/``pmap`` axis over which the batch is
        split: the sums run over every device's pixels, so each device returns the loss of
        the whole batch (gradients flow back to each device's own pixels).

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])
      >>> jaxloss.jaccard_loss(p, jnp.array([[0, 1]]), smooth=0.0)
      Array([0.2613637], dtype=float32)

    References:
      Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks", 2016;
      ``optax.losses.dice_loss(alpha=1, beta=1)``; MONAI ``DiceLoss(jaccard=True)``.
    """
    return per_class_forward(Args(locals()), _jaccard_terms)


# ------------------------------------------------------------------ tversky_loss


def _tversky_terms(i, ps, gs, p):
    a, b = p["alpha"], p["beta"]
    nr, dr = smooths(p)
    return i + nr, i + a * (ps - i) + b * (gs - i) + dr


def _tversky_terms_tangent(sums, dsums, p, t):
    i, ps, gs = sums
    di, dps, dgs = dsums
    a, b = p["alpha"], p["beta"]
    dnr, ddr = smooths(p, t)
    dd = tangent_sum((1 - a - b, di), (a, dps), (b, dgs), (ps - i, t.get("alpha")),
                     (gs - i, t.get("beta")), (1.0, ddr))
    return tangent_sum((1.0, di), (1.0, dnr)), dd


@hand_derivative(per_class_tangent(_tversky_terms, _tversky_terms_tangent), static=STATIC,
                 check=check_options, residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def tversky_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                 smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None, alpha: ArrayLike = 0.5,
                 beta: ArrayLike = 0.5, class_weights: Array | None = None, include_background: bool = True,
                 from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                 where: Array | None = None, batch: bool = False,
                 axis_name: AxisName | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Tversky loss per example, per class, weighted mean over classes.

    With ``I = Σ p_c g_c``, false positives ``Σ p_c (1 − g_c) = P − I`` and false negatives
    ``Σ (1 − p_c) g_c = G − I``:

    .. math:: L_c = 1 - \frac{I + s}{I + \alpha (P - I) + \beta (G - I) + s}

    ``α = β = 0.5`` is Dice with smoothing ``2s``; ``α = β = 1`` is Jaccard.
    Derivatives (hand rule): ``dL_c = −(dN − r dD)/D`` with ``dN = dI + ds`` and
    ``dD = (1 − α − β) dI + α dP + β dG + (P − I) dα + (G − I) dβ + ds``; the sums' tangents
    as in :func:`soft_dice_loss`.  Matches ``optax.losses.dice_loss(alpha=α, beta=β,
    smooth=s, reduction="none")`` per class (:func:`jaxloss.dice_loss`, optax's form, is built
    on this loss), and MONAI ``TverskyLoss`` (``smooth_nr = smooth_dr = s``).

    Args:
      predictions: float ``[B, ..spatial.., C]``: probabilities, or logits with ``from_logits``.
      targets: integer class ids ``[B, ..spatial..]`` or float ``[B, ..spatial.., C]``.
      axis: static; the class axis C of ``predictions`` (and of float ``targets``): -1 (the
        last, default) or e.g. ``axis=1`` for channel-first ``[B, C, H, W]`` (PyTorch, MONAI).
      smooth: ``s >= 0``.
      smooth_nr, smooth_dr: optional ``>= 0``: the smoothing of the numerator and of the
        denominator apart (MONAI's names); each is ``smooth`` where None.
      alpha, beta: weights ``>= 0`` of false positives and false negatives (differentiated).
      class_weights: optional float ``[C]``, >= 0.
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sum over the batch too before the ratios (nnU-Net's batch Dice, MONAI's
        ``batch=True``): one loss for the whole batch, a scalar.
      axis_name: static; with ``batch``, a ``shard_map``/``pmap`` axis over which the batch is
        split: the sums run over every device's pixels, so each device returns the loss of
        the whole batch (gradients flow back to each device's own pixels).

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])
      >>> jaxloss.tversky_loss(p, jnp.array([[0, 1]]), alpha=0.3, beta=0.7, smooth=0.0)
      Array([0.15073568], dtype=float32)

    References:
      Salehi et al., "Tversky loss function for image segmentation", 2017;
      ``optax.losses.dice_loss``; MONAI ``TverskyLoss``.
    """
    return per_class_forward(Args(locals()), _tversky_terms)


# ------------------------------------------------------------------ focal_tversky_loss


@hand_derivative(per_class_tangent(_tversky_terms, _tversky_terms_tangent), static=STATIC,
                 check=check_options, residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def focal_tversky_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                       smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None,
                       alpha: ArrayLike = 0.3, beta: ArrayLike = 0.7, gamma: ArrayLike = 4 / 3,
                       class_weights: Array | None = None, include_background: bool = True,
                       from_logits: Literal["softmax", "sigmoid"] | None = None,
                       ignore_index: int | None = IGNORE_INDEX, where: Array | None = None, batch: bool = False,
                       axis_name: AxisName | None = None
                       ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Focal Tversky loss per example (Abraham & Khan 2019): per-class Tversky losses to the power 1/γ.

    With the Tversky loss ``T_c = 1 − (I + s)/(I + α (P − I) + β (G − I) + s)`` of
    :func:`tversky_loss` (α weighs false positives, β false negatives):

    .. math:: \ell = \frac{\sum_c w_c T_c^{1/\gamma}}{\sum_c w_c}

    γ > 1 (the paper's range is [1, 3], its choice 4/3) raises small losses the most, so
    that classes already well segmented keep a gradient; γ = 1 is :func:`tversky_loss`.
    The defaults ``α = 0.3, β = 0.7`` are the paper's (it names them the other way round:
    its α = 0.7 weighs the false negatives).
    Derivatives (hand rule): ``dT_c^{1/γ} = (T_c^{1/γ}/(γ T_c)) dT_c − T_c^{1/γ} ln T_c dγ/γ²``
    with ``dT_c`` as in :func:`tversky_loss`; at ``T_c = 0`` (a perfect overlap), where
    ``d T^{1/γ}/dT`` is infinite for γ > 1, the rule returns the subgradient 0 (and so does
    ``.reference``).

    Differs from the paper, which sums over classes: this is the (weighted) mean, as
    :func:`tversky_loss`; multiply by the number of classes for the sum.

    Args:
      predictions: float ``[B, ..spatial.., C]``: probabilities, or logits with ``from_logits``.
      targets: integer class ids ``[B, ..spatial..]`` or float ``[B, ..spatial.., C]``.
      axis: static; the class axis C of ``predictions`` (and of float ``targets``).
      smooth: ``s >= 0``.
      smooth_nr, smooth_dr: optional ``>= 0``: the smoothing of the numerator and of the
        denominator apart (MONAI's names); each is ``smooth`` where None.
      alpha, beta: weights ``>= 0`` of false positives and false negatives (differentiated).
      gamma: ``γ > 0``, the focal exponent is ``1/γ`` (differentiated).
      class_weights: optional float ``[C]``, >= 0.
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sum over the batch too before the ratios: one loss, a scalar.
      axis_name: static; with ``batch``, the ``shard_map``/``pmap`` axis the batch is split over.

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])
      >>> jaxloss.focal_tversky_loss(p, jnp.array([[0, 1]]), smooth=0.0)
      Array([0.24131058], dtype=float32)

    References:
      Abraham & Khan, "A Novel Focal Tversky loss function with improved Attention U-Net for
      lesion segmentation", ISBI 2019.
    """
    return per_class_forward(Args(locals()), _tversky_terms)


# ------------------------------------------------------------------ generalized_dice_loss


def _sudre_weights(gs, include):
    """``w_c = 1/G_c²``; a class absent from the targets (``G_c = 0``) gets the largest
    weight of the present classes (MONAI's guard), and 0 if none is present."""
    present = (gs > 0) & include
    inv = jnp.where(present, 1 / jnp.where(present, gs, 1) ** 2, 0.0)
    top = jnp.max(inv, axis=-1, keepdims=True)
    return jnp.where(present, inv, jnp.where(include, top, 0.0)), present, inv, top


def _sudre_weights_tangent(gs, dgs, include):
    """Tangent of :func:`_sudre_weights`: ``−2 dG_c/G_c³``; for absent classes the
    tangent of the maximum (averaged over ties, as ``jnp.max``'s derivative)."""
    if dgs is None:
        return None
    _, present, inv, top = _sudre_weights(gs, include)
    dinv = jnp.where(present, -2 * dgs / jnp.where(present, gs, 1) ** 3, 0.0)
    at_top = inv == top
    dtop = jnp.sum(jnp.where(at_top, dinv, 0), axis=-1, keepdims=True) / jnp.sum(at_top, axis=-1, keepdims=True)
    return jnp.where(present, dinv, jnp.where(include, dtop, 0.0))


def _include(p, classes):
    return (jnp.arange(classes) != 0) | (not background(p, classes))


def _generalized_terms(w, sums, p):
    i, ps, gs = sums
    nr, dr = smooths(p)
    return jnp.sum(w * 2 * i, axis=-1) + nr, jnp.sum(w * (ps + gs), axis=-1) + dr


def _generalized_dice_tangent(p, t, out, res):
    i, ps, gs = res
    include = _include(p, i.shape[-1])
    w = _sudre_weights(gs, include)[0]
    di, dps, dgs = overlap(p, t)
    dw = _sudre_weights_tangent(gs, dgs, include)
    n, d = _generalized_terms(w, res, p)
    dnr, ddr = smooths(p, t)
    dn = tangent_sum((1.0, _sum_classes(tangent_sum((2 * w, di), (2 * i, dw)))), (1.0, dnr))
    dd = tangent_sum((1.0, _sum_classes(tangent_sum((w, dps), (w, dgs), (ps + gs, dw)))), (1.0, ddr))
    dr = ratio_tangent(ratio(n, d), d, dn, dd)
    return None if dr is None else quiet(p, -dr)


def _sum_classes(x):
    return None if x is None else jnp.sum(x, axis=-1)


@hand_derivative(_generalized_dice_tangent, static=STATIC, check=check_options,
                 residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def generalized_dice_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                          smooth_nr: ArrayLike | None = None, smooth_dr: ArrayLike | None = None,
                          include_background: bool = True, from_logits: Literal["softmax", "sigmoid"] | None = None,
                          ignore_index: int | None = IGNORE_INDEX, where: Array | None = None, batch: bool = False,
                          axis_name: AxisName | None = None
                          ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Generalized Dice loss per example (Sudre et al. 2017): one ratio of class-weighted sums.

    .. math:: \ell = 1 - \frac{2 \sum_c w_c \sum p_c g_c + s}{\sum_c w_c (\sum p_c + \sum g_c) + s},
       \qquad w_c = 1 / (\textstyle\sum g_c)^2

    with the weights computed per example from its (unmasked) targets.  Guard for empty
    classes (MONAI's): a class absent from the example's targets, whose weight would be
    infinite, gets the largest weight of the present classes; an example with no target
    mass at all gets weights 0, so ``ℓ = 1 − s/s = 0`` (and 0 for ``smooth=0``).
    ``include_background=False`` gives class 0 weight 0.

    Derivatives (hand rule): ``dℓ = −(dN − r dD)/D`` with
    ``dN = Σ_c 2(w_c dI_c + I_c dw_c) + ds``, ``dD = Σ_c w_c (dP_c + dG_c) + (P_c + G_c) dw_c + ds``
    and ``dw_c = −2 dG_c / G_c³`` for soft targets (the weights are differentiated; for an
    absent class the derivative of the maximum).  ``optax.losses.multiclass_generalized_dice_loss``
    differs: it weights from the whole batch, normalizes the weights, averages per-class
    ratios and returns a scalar.

    Args:
      predictions: float ``[B, ..spatial.., C]``: probabilities, or logits with ``from_logits``.
      targets: integer class ids ``[B, ..spatial..]`` or float ``[B, ..spatial.., C]``.
      axis: static; the class axis C of ``predictions`` (and of float ``targets``): -1 (the
        last, default) or e.g. ``axis=1`` for channel-first ``[B, C, H, W]`` (PyTorch, MONAI).
      smooth: ``s >= 0``.
      smooth_nr, smooth_dr: optional ``>= 0``: the smoothing of the numerator and of the
        denominator apart (MONAI's names); each is ``smooth`` where None.
      include_background: static; False leaves class 0 out (ignored, with a warning, for a
        single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sum over the batch too before the ratios (nnU-Net's batch Dice, MONAI's
        ``batch=True``): one loss for the whole batch, a scalar.
      axis_name: static; with ``batch``, a ``shard_map``/``pmap`` axis over which the batch is
        split: the sums run over every device's pixels, so each device returns the loss of
        the whole batch (gradients flow back to each device's own pixels).

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])
      >>> jaxloss.generalized_dice_loss(p, jnp.array([[0, 1, 0]]), smooth=0.0)
      Array([0.2713179], dtype=float32)

    References:
      Sudre et al., "Generalised Dice overlap as a deep learning loss function for highly
      unbalanced segmentations", 2017; MONAI ``GeneralizedDiceLoss``.
    """
    p = Args(locals())
    i, ps, gs = sums = overlap(p)
    n, d = _generalized_terms(_sudre_weights(gs, _include(p, i.shape[-1]))[0], sums, p)
    return make_loud(p, 1 - ratio(n, d)), sums
