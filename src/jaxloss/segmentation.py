"""Overlap losses for segmentation: soft Dice (MONAI's form), Jaccard (soft IoU), Tversky,
generalized Dice.  optax's ``dice_loss`` (its defaults and arguments) is
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
:func:`_overlap` computes them and their hand-derived tangents once for all four losses.
The per-class losses ``L_c = 1 − N_c/D_c`` are reduced over classes by the weighted mean
``Σ_c w_c L_c / Σ_c w_c`` (``w_c = 1`` without ``class_weights``; class 0 gets weight 0 with
``include_background=False``; weights summing to 0 give loss 0).  With a single class
(a class axis of size 1) ``include_background=False`` is ignored, with a ``UserWarning`` at
trace time, and the loss is that class's: optax's ``ignore_background`` and MONAI's
``include_background`` (which warns too) do the same.  A class absent from an
example's targets and predictions (an empty mask) gives a finite loss and gradient:
``smooth`` makes its ratio 1 (loss 0); with ``smooth=0`` the ratio 0/0 is defined as 1,
loss 0, with gradient 0 there.

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

import warnings
from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, loud, one_hot
from jaxloss.types import Array, ArrayLike

_ACTIVATIONS = (None, "softmax", "sigmoid")
_STATIC = ("include_background", "from_logits", "ignore_index")


# ------------------------------------------------------------------ shared helpers


def _check_overlap(predictions, targets, *, where, from_logits, ignore_index, class_weights=None,
                   squared=False, include_background=True, **scalars):
    """Predictions ``[B, ..spatial.., C]``; integer targets of the pixel shape or float
    targets of the predictions' shape; ``where`` over the pixels; scalar options >= 0."""
    _checks.float_array("predictions", predictions)
    shape = tuple(jnp.shape(predictions))
    if len(shape) < 2:
        raise ValueError(f"predictions must be [batch, ..spatial.., classes] (rank >= 2), got shape {shape}.")
    dtype = jnp.result_type(targets)
    if jnp.issubdtype(dtype, jnp.integer):
        if tuple(jnp.shape(targets)) != shape[:-1]:
            raise ValueError(f"integer targets (class ids) must have the pixel shape of predictions, "
                             f"{shape[:-1]}, got shape {tuple(jnp.shape(targets))}.")
    elif jnp.issubdtype(dtype, jnp.floating):
        if tuple(jnp.shape(targets)) != shape:
            raise ValueError(f"float targets (probabilities or one-hot) must have the shape of predictions, "
                             f"{shape}, got shape {tuple(jnp.shape(targets))}; pass class ids as integers.")
    else:
        raise TypeError(f"targets must be integer class ids or float probabilities, got {_checks._describe(targets)}.")
    check_ignore_index(ignore_index)
    if from_logits not in _ACTIVATIONS:
        raise ValueError(f'from_logits must be None, "softmax" or "sigmoid", got {from_logits!r}.')
    _checks.broadcasts_to("where", where, shape[:-1], "the pixel shape of predictions")
    if not include_background and shape[-1] == 1:
        warnings.warn("include_background=False is ignored for a single class (predictions with a class "
                      "axis of size 1): the loss is computed over that one class.",
                      UserWarning, stacklevel=5)  # the caller of the loss
    _checks.float_option("class_weights", class_weights, shape[-1:], "the class axis of predictions")
    _checks.positive("class_weights", class_weights, allow_zero=True)
    for name, value in scalars.items():
        _checks.float_option(name, value, (), "a scalar")
        _checks.positive(name, value, allow_zero=True)


def _ids(p):
    """``(counted, invalid)`` of :func:`jaxloss._softmax.class_ids` per pixel for class-id
    targets, or None for float targets."""
    if not jnp.issubdtype(p["targets"].dtype, jnp.integer):
        return None
    return class_ids(p["targets"], p["predictions"].shape[-1], p["ignore_index"])[1:]


def _keep(p):
    """The pixels that enter the sums ``[B, ..spatial..]``: those ``where`` leaves and, for
    class ids, whose id is a class (not ``ignore_index``; an invalid id makes the loss NaN
    anyway); None for all."""
    keep = None if p["where"] is None else jnp.broadcast_to(p["where"], p["predictions"].shape[:-1])
    ids = _ids(p)
    return keep if ids is None else ids[0] if keep is None else keep & ids[0]


def _invalid(p):
    """``[B]``: whether an example has an unmasked pixel whose id is neither a class nor
    ``ignore_index``; None for float targets."""
    ids = _ids(p)
    if ids is None:
        return None
    invalid = ids[1] if p["where"] is None else ids[1] & p["where"]
    return jnp.any(invalid.reshape(invalid.shape[0], -1), axis=-1)


def _loud(p, loss):
    """The losses, NaN for an example with an invalid class id (:func:`_invalid`)."""
    invalid = _invalid(p)
    return loss if invalid is None else loud(loss, invalid)


def _quiet(p, dloss):
    """A loss tangent, 0 for an example with an invalid class id (:func:`_invalid`)."""
    invalid = _invalid(p)
    return dloss if invalid is None or dloss is None else jnp.where(invalid, 0.0, dloss)


def _masked(x, keep):
    """``x`` with the masked pixels set to 0 (``jnp.where``: their derivative is exactly 0)."""
    return x if keep is None or x is None else jnp.where(keep[..., None], x, 0)


def _probabilities(p, keep):
    """The masked probabilities ``[B, ..spatial.., C]`` from predictions or logits."""
    x = _masked(p["predictions"], keep)
    if p["from_logits"] == "softmax":
        x = jax.nn.softmax(x, axis=-1)
    elif p["from_logits"] == "sigmoid":
        x = jax.nn.sigmoid(x)
    return _masked(x, keep)


def _probability_tangent(p, prob, dx, keep):
    """The tangent of :func:`_probabilities`: ``p(dx − Σ_c p dx)`` (softmax), ``p(1 − p) dx``
    (sigmoid), ``dx`` (probabilities); 0 at masked pixels (``prob`` is 0 there)."""
    if dx is None:
        return None
    dx = _masked(dx.astype(prob.dtype), keep)  # one cast: reverse mode then sums the softmax's terms in float32
    if p["from_logits"] == "softmax":
        return prob * (dx - jnp.sum(prob * dx, axis=-1, keepdims=True))
    if p["from_logits"] == "sigmoid":
        return prob * (1 - prob) * dx
    return dx


def _overlap(p, t=None):
    """The per-class sums ``(I, P, G)`` over the spatial axes, each ``[B, C]``:
    ``Σ p·g``, ``Σ p`` (``Σ p²`` when squared) and ``Σ g`` (``Σ g²``), over unmasked pixels.

    With tangents ``t`` it returns their tangents instead (hand-derived:
    ``dI = Σ(g dp + p dg)``, ``dP = Σ dp`` or ``Σ 2p dp``, ``dG = Σ dg`` or ``Σ 2g dg``),
    ``None`` for a sum whose tangent is zero.
    """
    keep = _keep(p)
    prob = _probabilities(p, keep)
    targets = p["targets"]
    if jnp.issubdtype(targets.dtype, jnp.integer):
        g = one_hot(targets, prob.shape[-1]).astype(prob.dtype)
    else:
        g = targets
    g = _masked(g, keep)
    squared = p.get("squared", False)
    axes = tuple(range(1, prob.ndim - 1))

    def total(x):
        return None if x is None else jnp.sum(jnp.broadcast_to(x, prob.shape), axis=axes)

    if t is None:
        return total(prob * g), total(prob * prob if squared else prob), total(g * g if squared else g)
    dp = _probability_tangent(p, prob, t["predictions"], keep)
    dg = _masked(t["targets"], keep)
    return (total(tangent_sum((g, dp), (prob, dg))),
            total(tangent_sum((2 * prob if squared else 1.0, dp))),
            total(tangent_sum((2 * g if squared else 1.0, dg))))


def _ratio(n, d):
    """``n/d``, and 1 where ``d = 0`` (0/0: an empty class with smooth = 0), with
    autodiff-safe double ``where``."""
    nonzero = d != 0
    return jnp.where(nonzero, n / jnp.where(nonzero, d, 1), 1.0)


def _ratio_tangent(r, d, dn, dd):
    """The tangent of ``n/d``: ``(dn − r·dd)/d``, and 0 where ``d = 0``."""
    total = tangent_sum((1.0, dn), (-r, dd))
    if total is None:
        return None
    nonzero = d != 0
    return jnp.where(nonzero, total / jnp.where(nonzero, d, 1), 0.0)


def _background(p, classes):
    """Whether class 0 is left out: ``include_background=False`` with more than one class
    (a single class is kept, as optax and MONAI do; :func:`_check_overlap` warns)."""
    return not p["include_background"] and classes > 1


def _class_weights(p, classes, dtype):
    """``w_c``: the class weights (1 without), 0 for class 0 when it is left out."""
    w = jnp.ones(classes, dtype) if p.get("class_weights") is None else p["class_weights"]
    if _background(p, classes):
        w = jnp.where(jnp.arange(classes) == 0, 0, w)
    return w


def _class_mean(losses, w):
    """``Σ_c w_c L_c / Σ_c w_c``, 0 where the weights sum to 0."""
    total = jnp.sum(w, axis=-1)
    nonzero = total != 0
    return jnp.where(nonzero, jnp.sum(w * losses, axis=-1) / jnp.where(nonzero, total, 1), 0.0)


def _per_class_forward(p, terms):
    """The weighted class mean of ``1 − N_c/D_c`` with ``(N, D) = terms(I, P, G, p)``;
    the sums are the residuals."""
    sums = _overlap(p)
    n, d = terms(*sums, p)
    w = _class_weights(p, n.shape[-1], n.dtype)
    return _loud(p, _class_mean(1 - _ratio(n, d), w)), sums


def _per_class_tangent(terms, terms_tangent):
    """The rule of :func:`_per_class_forward`: ``dL_c = −(dN_c − r_c dD_c)/D_c`` and
    ``dℓ = (Σ_c dw_c L_c + w_c dL_c − ℓ Σ_c dw_c) / Σ_c w_c``."""

    def rule(p, t, out, res):
        n, d = terms(*res, p)
        dn, dd = terms_tangent(res, _overlap(p, t), p, t)
        r = _ratio(n, d)
        w = _class_weights(p, n.shape[-1], n.dtype)
        total = jnp.sum(w, axis=-1)
        dw = t.get("class_weights")
        if dw is not None and _background(p, n.shape[-1]):
            dw = jnp.where(jnp.arange(n.shape[-1]) == 0, 0, dw)
        dlosses = _ratio_tangent(r, d, dn, dd)
        numer = tangent_sum((-w, dlosses), (1 - r, dw))
        if numer is None:
            return None
        numer = jnp.sum(numer, axis=-1)
        if dw is not None:
            numer = numer - out * jnp.sum(dw, axis=-1)
        nonzero = total != 0
        return _quiet(p, jnp.where(nonzero, numer / jnp.where(nonzero, total, 1), 0.0))

    return rule



# ------------------------------------------------------------------ soft_dice_loss


def _dice_terms(i, ps, gs, p):
    return 2 * i + p["smooth"], ps + gs + p["smooth"]


def _dice_terms_tangent(sums, dsums, p, t):
    di, dps, dgs = dsums
    ds = t.get("smooth")
    return tangent_sum((2.0, di), (1.0, ds)), tangent_sum((1.0, dps), (1.0, dgs), (1.0, ds))


def _check_dice(predictions, targets, smooth, squared, class_weights, include_background, from_logits, ignore_index,
                where):
    _check_overlap(predictions, targets, where=where, from_logits=from_logits, ignore_index=ignore_index,
                   class_weights=class_weights, include_background=include_background, smooth=smooth)


@hand_derivative(_per_class_tangent(_dice_terms, _dice_terms_tangent), static=("squared",) + _STATIC, check=_check_dice,
                 residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def soft_dice_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                   squared: bool = False, class_weights: Array | None = None, include_background: bool = True,
                   from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                   where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
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

    Returns:
      Losses ``[B]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])  # [B=1, pixels=2, C=2]
      >>> jaxloss.soft_dice_loss(p, jnp.array([[0, 1]]))
      Array([0.10011125], dtype=float32)

    References:
      Milletari et al., "V-Net", 2016; Sudre et al., 2017; MONAI ``DiceLoss``.
    """
    return _per_class_forward(Args(locals()), _dice_terms)


# ------------------------------------------------------------------ jaccard_loss


def _jaccard_terms(i, ps, gs, p):
    return i + p["smooth"], ps + gs - i + p["smooth"]


def _jaccard_terms_tangent(sums, dsums, p, t):
    di, dps, dgs = dsums
    ds = t.get("smooth")
    return tangent_sum((1.0, di), (1.0, ds)), tangent_sum((1.0, dps), (1.0, dgs), (-1.0, di), (1.0, ds))


def _check_jaccard(predictions, targets, smooth, class_weights, include_background, from_logits, ignore_index, where):
    _check_overlap(predictions, targets, where=where, from_logits=from_logits, ignore_index=ignore_index,
                   class_weights=class_weights, include_background=include_background, smooth=smooth)


@hand_derivative(_per_class_tangent(_jaccard_terms, _jaccard_terms_tangent), static=_STATIC,
                 check=_check_jaccard, residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def jaccard_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                 class_weights: Array | None = None, include_background: bool = True,
                 from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                 where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
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
      class_weights: optional float ``[C]``, >= 0.
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.

    Returns:
      Losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])
      >>> jaxloss.jaccard_loss(p, jnp.array([[0, 1]]), smooth=0.0)
      Array([0.2613637], dtype=float32)

    References:
      Rahman & Wang, "Optimizing Intersection-Over-Union in Deep Neural Networks", 2016;
      ``optax.losses.dice_loss(alpha=1, beta=1)``; MONAI ``DiceLoss(jaccard=True)``.
    """
    return _per_class_forward(Args(locals()), _jaccard_terms)


# ------------------------------------------------------------------ tversky_loss


def _tversky_terms(i, ps, gs, p):
    a, b = p["alpha"], p["beta"]
    return i + p["smooth"], i + a * (ps - i) + b * (gs - i) + p["smooth"]


def _tversky_terms_tangent(sums, dsums, p, t):
    i, ps, gs = sums
    di, dps, dgs = dsums
    a, b, ds = p["alpha"], p["beta"], t.get("smooth")
    dd = tangent_sum((1 - a - b, di), (a, dps), (b, dgs), (ps - i, t.get("alpha")),
                     (gs - i, t.get("beta")), (1.0, ds))
    return tangent_sum((1.0, di), (1.0, ds)), dd


def _check_tversky(predictions, targets, smooth, alpha, beta, class_weights, include_background,
                   from_logits, ignore_index, where):
    _check_overlap(predictions, targets, where=where, from_logits=from_logits, ignore_index=ignore_index,
                   class_weights=class_weights, include_background=include_background, smooth=smooth, alpha=alpha,
                   beta=beta)


@hand_derivative(_per_class_tangent(_tversky_terms, _tversky_terms_tangent), static=_STATIC,
                 check=_check_tversky, residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def tversky_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0, alpha: ArrayLike = 0.5,
                 beta: ArrayLike = 0.5, class_weights: Array | None = None, include_background: bool = True,
                 from_logits: Literal["softmax", "sigmoid"] | None = None, ignore_index: int | None = IGNORE_INDEX,
                 where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
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
      alpha, beta: weights ``>= 0`` of false positives and false negatives (differentiated).
      class_weights: optional float ``[C]``, >= 0.
      include_background: static; False gives class 0 weight 0 (ignored, with a warning, for
        a single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.

    Returns:
      Losses ``[B]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8]]])
      >>> jaxloss.tversky_loss(p, jnp.array([[0, 1]]), alpha=0.3, beta=0.7, smooth=0.0)
      Array([0.15073568], dtype=float32)

    References:
      Salehi et al., "Tversky loss function for image segmentation", 2017;
      ``optax.losses.dice_loss``; MONAI ``TverskyLoss``.
    """
    return _per_class_forward(Args(locals()), _tversky_terms)


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
    return (jnp.arange(classes) != 0) | (not _background(p, classes))


def _generalized_dice_tangent(p, t, out, res):
    i, ps, gs = res
    include = _include(p, i.shape[-1])
    w = _sudre_weights(gs, include)[0]
    di, dps, dgs = _overlap(p, t)
    dw = _sudre_weights_tangent(gs, dgs, include)
    n = jnp.sum(w * 2 * i, axis=-1) + p["smooth"]
    d = jnp.sum(w * (ps + gs), axis=-1) + p["smooth"]
    ds = t.get("smooth")
    dn = tangent_sum((1.0, _sum_classes(tangent_sum((2 * w, di), (2 * i, dw)))), (1.0, ds))
    dd = tangent_sum((1.0, _sum_classes(tangent_sum((w, dps), (w, dgs), (ps + gs, dw)))), (1.0, ds))
    dr = _ratio_tangent(_ratio(n, d), d, dn, dd)
    return None if dr is None else _quiet(p, -dr)


def _sum_classes(x):
    return None if x is None else jnp.sum(x, axis=-1)


def _check_generalized_dice(predictions, targets, smooth, include_background, from_logits, ignore_index, where):
    _check_overlap(predictions, targets, where=where, from_logits=from_logits, ignore_index=ignore_index,
                   include_background=include_background, smooth=smooth)


@hand_derivative(_generalized_dice_tangent, static=_STATIC, check=_check_generalized_dice,
                 residuals=True, where_of="inputs", class_axis=("predictions", "targets"))
def generalized_dice_loss(predictions: Array, targets: Array, *, axis: int = -1, smooth: ArrayLike = 1.0,
                          include_background: bool = True, from_logits: Literal["softmax", "sigmoid"] | None = None,
                          ignore_index: int | None = IGNORE_INDEX,
                          where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
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
      include_background: static; False leaves class 0 out (ignored, with a warning, for a
        single class).
      from_logits: static; None, ``"softmax"`` or ``"sigmoid"``.
      ignore_index: static; the class id of unlabelled pixels, as in :func:`soft_dice_loss`.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.

    Returns:
      Losses ``[B]``.

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
    i, ps, gs = sums = _overlap(p)
    w = _sudre_weights(gs, _include(p, i.shape[-1]))[0]
    n = jnp.sum(w * 2 * i, axis=-1) + smooth
    d = jnp.sum(w * (ps + gs), axis=-1) + smooth
    return _loud(p, 1 - _ratio(n, d)), sums
