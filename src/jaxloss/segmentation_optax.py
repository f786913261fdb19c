"""optax's Dice losses under optax's names: ``dice_loss``, ``binary_dice_loss`` and
``multiclass_generalized_dice_loss``, with optax's defaults and arguments.

All three are compositions of :func:`jaxloss.tversky_loss` (``α = β = 0.5`` with smoothing
``s`` is optax's Dice ratio ``1 − (I + s)/((P + G)/2 + s)``), so they differentiate through
its hand-derived rule; ``fn.reference`` is the same composition over
``tversky_loss.reference`` (plain autodiff of the formula).  Unlike optax, an empty class
with ``smooth=0`` (0/0) has loss 0 and gradient 0 here, not NaN, and probabilities passed
with ``apply_sigmoid=False`` / ``apply_softmax=False`` are not checked to sum to 1 (optax's
check needs concrete values).  :func:`jaxloss.soft_dice_loss` is the per-example MONAI form
with class ids, ``ignore_index`` and a class-axis ``axis=``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, ParamSpec

import jax
import jax.numpy as jnp

from jaxloss import _checks, reduce
from jaxloss.gradients import Loss, class_axes, derived_loss
from jaxloss.segmentation import tversky_loss
from jaxloss.types import Array, ArrayLike, Axis

_OPTAX_DICE = {"alpha": 0.5, "beta": 0.5}  # Tversky weights giving optax's Dice ratio
_EPSILON = 1e-7  # optax's guard in the class weights 1/(f² + ε)


_REDUCTIONS = ("mean", "sum", "none")

P = ParamSpec("P")


def _composed(helper: Callable[..., Any]) -> Callable[[Callable[P, jax.Array]], Loss[P]]:
    """The public loss, ``helper`` over :func:`tversky_loss`, as a :class:`~jaxloss.gradients.Loss`
    whose ``reference`` is ``helper`` over ``tversky_loss.reference``.  No ``class_axis``:
    its ``axis`` is optax's summed axes."""

    def decorate(fn: Callable[P, jax.Array]) -> Loss[P]:
        return derived_loss(fn, functools.partial(helper, tversky_loss.reference))

    return decorate


def _dice_inputs(predictions, targets, class_weights, reduction, axis, where):
    """optax's shapes: a side of rank one less than the other gets a class axis of size 1;
    then one shape ``[..., C]``.  Returns the float predictions and targets and the summed axes."""
    _checks.float_array("predictions", predictions)
    _checks.numeric("targets", targets)
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    elif targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    shape = predictions.shape
    if predictions.ndim == 0 or targets.shape != shape:
        raise ValueError(f"predictions and targets must have one shape [..., classes] (either may lack a trailing "
                         f"class axis of size 1), got {tuple(jnp.shape(predictions))} and {tuple(jnp.shape(targets))}.")
    if not jnp.issubdtype(targets.dtype, jnp.floating):
        targets = targets.astype(predictions.dtype)  # one-hot or {0, 1} values, as optax multiplies them
    last = len(shape) - 1
    summed = tuple(range(1, last)) if axis is None else class_axes(axis, shape, tuples=True, name="predictions")
    if last in summed:
        raise ValueError(f"axis={axis!r} names the class axis (the last) of predictions with shape {shape}: "
                         f"axis holds the axes summed over, the classes stay last.")
    _checks.float_option("class_weights", class_weights, shape[-1:], "the class axis of predictions")
    _checks.positive("class_weights", class_weights, allow_zero=True)
    if reduction not in _REDUCTIONS:
        raise ValueError(f'reduction must be "mean", "sum" or "none" (static), got {reduction!r}.')
    _checks.mask("where", where)
    _checks.broadcasts_to("where", where, shape[:-1], "the pixel shape of predictions")
    return predictions, targets, summed


def _dice(tversky, predictions, targets, *, class_weights=None, smooth=1.0, alpha=0.5, beta=0.5, apply_softmax=True,
          reduction="mean", ignore_background=False, axis=None, where=None):
    predictions, targets, summed = _dice_inputs(predictions, targets, class_weights, reduction, axis, where)
    shape, classes = predictions.shape, predictions.shape[-1]
    keep = None if where is None else jnp.broadcast_to(where, shape[:-1])[..., None]
    probabilities = predictions
    if apply_softmax:
        x = predictions.astype(jnp.promote_types(predictions.dtype, jnp.float32))
        x = x if keep is None else jnp.where(keep, x, 0)  # masked padding stays out of the softmax
        probabilities = jax.nn.sigmoid(x) if classes == 1 else jax.nn.softmax(x, axis=-1)
    kept = tuple(a for a in range(len(shape) - 1) if a not in summed)
    groups = tuple(shape[a] for a in kept) + (classes,)
    pixels = math.prod(shape[a] for a in summed)

    def grouped(x):  # [..kept.., C, ..summed..] flattened to [groups, pixels, 1]: one class per group
        return jnp.transpose(x, kept + (len(shape) - 1,) + summed).reshape(math.prod(groups), pixels, 1)

    mask = None if keep is None else grouped(jnp.broadcast_to(keep, shape))[..., 0]
    losses = tversky(grouped(probabilities), grouped(targets), smooth=smooth, alpha=alpha, beta=beta,
                     where=mask).reshape(groups)
    if class_weights is not None:
        losses = losses * jnp.asarray(class_weights)
    if ignore_background and classes > 1:
        losses = losses[..., 1:]
    if reduction == "none":
        return losses
    return jnp.mean(losses, axis=-1) if reduction == "mean" else jnp.sum(losses, axis=-1)


@_composed(_dice)
def dice_loss(predictions: Array, targets: Array, *, class_weights: Array | None = None, smooth: ArrayLike = 1.0,
              alpha: ArrayLike = 0.5, beta: ArrayLike = 0.5, apply_softmax: bool = True,
              reduction: Literal["mean", "sum", "none"] = "mean", ignore_background: bool = False, axis: Axis = None,
              where: Array | None = None) -> jax.Array:
    r"""optax's Dice loss: a Tversky ratio per class over the summed axes, reduced over classes.

    With probabilities ``p = softmax(x)`` over the class axis (the last; ``σ(x)`` for a
    single class; ``x`` itself with ``apply_softmax=False``), targets ``g`` and, per class,
    sums over the axes ``axis`` (default: all but the first and the last) ``I_c = Σ p_c g_c``,
    ``P_c = Σ p_c``, ``G_c = Σ g_c``:

    .. math:: L_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (G_c - I_c) + s},
       \qquad \ell = \operatorname{reduce}_{c \in K} \, w_c L_c

    over the classes ``K`` (all; all but class 0 with ``ignore_background`` and ``C > 1``),
    ``reduce`` the mean (default), the sum or none (``w_c = 1`` without ``class_weights``).
    Computed as :func:`jaxloss.tversky_loss` of one class per (group, class): the classes
    moved into its batch and the summed axes flattened into its pixels.  Its hand rule gives
    the derivatives: with ``D_c`` the denominator and ``r_c = (I_c + s)/D_c``,
    ``∂L_c/∂p_c = −(g_c − r_c ((1 − α − β) g_c + α))/D_c``,
    ``∂L_c/∂g_c = −(p_c − r_c ((1 − α − β) p_c + β))/D_c``, ``∂L_c/∂s = −(1 − r_c)/D_c``,
    ``∂L_c/∂α = r_c (P_c − I_c)/D_c``, ``∂L_c/∂β = r_c (G_c − I_c)/D_c``, chained through the
    softmax (``p (dx − Σ_c p dx)``) or sigmoid (``p (1 − p) dx``); ``∂ℓ/∂w_c = L_c`` (over
    ``|K|`` for the mean).

    Matches ``optax.losses.dice_loss`` with the same arguments.  With ``α = β = 0.5``,
    ``C >= 2`` and no class weights, ``dice_loss(x, t, smooth=s)`` equals
    :func:`jaxloss.soft_dice_loss` ``(x, t, smooth=2 * s, from_logits="softmax")`` (the
    MONAI form ``1 − (2I + 2s)/(P + G + 2s)``); with class weights that one divides by
    ``Σ_c w_c``, this one by ``|K|``.  Differs from optax: probabilities with
    ``apply_softmax=False`` are not checked to sum to 1 (optax's check needs concrete values);
    an empty class with ``smooth=0`` (0/0) gives loss 0 and gradient 0, not NaN; ``axis``
    must leave out the class axis; ``smooth``, ``alpha``, ``beta`` and the class weights must
    be ``>= 0``; ``where`` masks pixels (optax has no mask).

    Args:
      predictions: float logits ``[..., C]`` (probabilities with ``apply_softmax=False``);
        ``[B, ..spatial.., C]`` for the default ``axis``.
      targets: ``[..., C]``, one-hot or soft targets of the same shape (float ones differentiated;
        integer or boolean ``{0, 1}`` values taken as values, as optax does).  Either side
        may lack a trailing class axis of size 1.
      class_weights: optional float ``[C]``, >= 0, multiplying the per-class losses
        (differentiated).
      smooth: ``s >= 0``, a float scalar (differentiated when traced).
      alpha, beta: weights ``>= 0`` of the false positives and the false negatives.
      apply_softmax: static; False when the predictions are probabilities.
      reduction: static; ``"mean"`` or ``"sum"`` over the classes, or ``"none"``.
      ignore_background: static; True leaves class 0 out (kept for a single class).
      axis: static; the axis or tuple of axes summed over (not the class axis).  Unlike
        the class axis ``axis=`` of :func:`jaxloss.soft_dice_loss`, this is optax's.
      where: optional boolean pixel mask broadcasting to ``[...]`` (``predictions.shape[:-1]``): masked
        pixels leave every sum (derivative exactly 0, even for inf or NaN padding).

    Returns:
      The losses of the axes neither summed nor the class axis (``[B]`` by default), with a
      last axis of the classes ``K`` for ``reduction="none"``; float32 for lower-precision
      inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # [B=1, pixels=3, C=2]
      >>> targets = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
      >>> jaxloss.dice_loss(logits, targets)
      Array([0.13562593], dtype=float32)

    References:
      Milletari et al., "V-Net", 2016; Salehi et al., "Tversky loss function for image
      segmentation", 2017; ``optax.losses.dice_loss``.
    """
    return _dice(tversky_loss, predictions, targets, class_weights=class_weights, smooth=smooth, alpha=alpha,
                 beta=beta, apply_softmax=apply_softmax, reduction=reduction, ignore_background=ignore_background,
                 axis=axis, where=where)


def _binary_inputs(predictions, targets):
    """optax's shapes: ``[...]`` inputs get a class axis of size 1 (so does a rank-1
    ``[B]`` of size 1, a batch here); one side of rank one less than the other gets it too."""
    _checks.float_array("predictions", predictions)
    _checks.float_array("targets", targets)
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == targets.ndim and (predictions.shape[-1:] != (1,) or predictions.ndim == 1):
        predictions, targets = predictions[..., None], targets[..., None]
    elif predictions.ndim == targets.ndim - 1:
        predictions = predictions[..., None]
    elif targets.ndim == predictions.ndim - 1:
        targets = targets[..., None]
    return predictions, targets


def _binary_dice(tversky, predictions, targets, *, smooth=1.0, apply_sigmoid=True, where=None):
    predictions, targets = _binary_inputs(predictions, targets)
    return tversky(predictions, targets, smooth=smooth, from_logits="sigmoid" if apply_sigmoid else None,
                   where=where, **_OPTAX_DICE)


@_composed(_binary_dice)
def binary_dice_loss(predictions: Array, targets: Array, *, smooth: ArrayLike = 1.0, apply_sigmoid: bool = True,
                     where: Array | None = None) -> jax.Array:
    r"""optax's binary Dice loss per example: the Dice loss of one sigmoid channel.

    With ``p = σ(x)`` (or the probabilities ``x`` with ``apply_sigmoid=False``), targets
    ``g`` and sums over the spatial axes (all but the first and the class axis):

    .. math:: \ell = 1 - \frac{\sum p g + s}{\tfrac12 (\sum p + \sum g) + s}

    :func:`jaxloss.tversky_loss` with ``α = β = 0.5``, one class and
    ``from_logits="sigmoid"``, whose hand rule gives the derivatives: with
    ``D = (P + G)/2 + s`` and ``r = (I + s)/D``, ``∂ℓ/∂p = −(g − r/2)/D``,
    ``∂ℓ/∂g = −(p − r/2)/D``, ``∂ℓ/∂s = −(1 − r)/D``, times ``p(1 − p)`` for logits.

    Shapes follow optax: predictions and targets ``[B, ..spatial..]`` or
    ``[B, ..spatial.., 1]`` (either may lack the trailing 1); a rank-1 ``[B]`` has no
    spatial axis, so each element is its own Dice ratio.  Matches
    ``optax.losses.binary_dice_loss`` exactly.  Differs from optax: targets must be float
    (optax also takes integer ``{0, 1}``: cast them); ``where`` masks pixels; an empty
    mask with ``smooth=0`` gives 0, not NaN; ``apply_sigmoid=False`` takes probabilities
    unchecked (optax requires them to sum to 1 over the single class axis, i.e. to be 1);
    shape ``(1,)`` gives ``(1,)``, not optax's scalar.

    Args:
      predictions: float logits (probabilities with ``apply_sigmoid=False``),
        ``[B, ..spatial..]`` or ``[B, ..spatial.., 1]``.
      targets: float ``[B, ..spatial..]`` or ``[B, ..spatial.., 1]``: ``{0, 1}`` or soft targets
        in ``[0, 1]``: the predictions' shape, with or without the trailing 1 (differentiated).
      smooth: ``s >= 0``, a float scalar (differentiated when traced).
      apply_sigmoid: static; False when the predictions are probabilities.
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``: masked
        pixels leave every sum (derivative exactly 0); an example with all its pixels
        masked has loss 0.

    Returns:
      Losses ``[B]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[1.0, -1.0], [0.5, 0.5]])
      >>> jaxloss.binary_dice_loss(logits, jnp.array([[1.0, 0.0], [1.0, 0.0]]))
      Array([0.1344707 , 0.23557574], dtype=float32)

    References:
      Milletari et al., "V-Net", 2016; ``optax.losses.binary_dice_loss``.
    """
    return _binary_dice(tversky_loss, predictions, targets, smooth=smooth, apply_sigmoid=apply_sigmoid, where=where)


def _check_generalized(predictions, targets, where):
    _checks.float_array("predictions", predictions)
    _checks.float_array("targets", targets)
    shape = tuple(jnp.shape(predictions))
    if len(shape) < 2 or tuple(jnp.shape(targets)) != shape:
        raise ValueError(f"predictions and targets must be [batch, ..spatial.., classes] of one shape, "
                         f"got {shape} and {tuple(jnp.shape(targets))}.")
    _checks.broadcasts_to("where", where, shape[:1], "the batch axis of predictions")


def _generalized_dice(tversky, predictions, targets, *, smooth=1.0, apply_softmax=True, ignore_background=False,
                      where=None):
    _check_generalized(predictions, targets, where)
    shape, classes = predictions.shape, predictions.shape[-1]
    pixels = None if where is None else jnp.broadcast_to(where, shape[:1]).reshape(shape[:1] + (1,) * (len(shape) - 2))
    counted = targets if pixels is None else jnp.where(pixels[..., None], targets, 0)
    counted = counted.astype(jnp.promote_types(counted.dtype, jnp.float32))  # the weights in float32 at least
    inverse = 1 / (jnp.sum(counted, axis=tuple(range(len(shape) - 1))) ** 2 + _EPSILON)
    weights = classes * inverse / jnp.sum(inverse)
    kept = weights[1:] if ignore_background and classes > 1 else weights
    activation = ("sigmoid" if classes == 1 else "softmax") if apply_softmax else None
    losses = tversky(predictions, targets, smooth=smooth, class_weights=weights,
                     include_background=not ignore_background, from_logits=activation, where=pixels, **_OPTAX_DICE)
    return reduce.mean(jnp.mean(kept) * losses, where=where)


@_composed(_generalized_dice)
def multiclass_generalized_dice_loss(predictions: Array, targets: Array, *, smooth: ArrayLike = 1.0,
                                     apply_softmax: bool = True, ignore_background: bool = False,
                                     where: Array | None = None) -> jax.Array:
    r"""optax's generalized Dice loss: one number for the batch, class weights from the batch.

    With probabilities ``p = softmax(x)`` (sigmoid for a single class; ``x`` itself with
    ``apply_softmax=False``), one-hot or soft targets ``g``, the per-example, per-class
    Dice losses ``L_bc = 1 − (I_bc + s)/((P_bc + G_bc)/2 + s)`` (sums over the spatial
    axes) and the class frequencies of the whole (unmasked) batch ``f_c = Σ_{b,pixels} g``:

    .. math:: v_c = \frac{1}{f_c^2 + 10^{-7}}, \quad w_c = \frac{C v_c}{\sum_{c'} v_{c'}},
       \qquad \ell = \frac{1}{B |K|} \sum_b \sum_{c \in K} w_c L_{bc}

    over the classes ``K`` (all, or all but class 0 with ``ignore_background``, the weights
    still normalised over all ``C``).  Computed as ``jaxloss.reduce.mean`` of
    ``mean_{c∈K}(w_c) · tversky_loss(α=β=0.5, class_weights=w, ...)``, whose per-example
    class mean ``Σ_K w_c L_bc / Σ_K w_c`` the factor turns into optax's ``Σ_K w_c L_bc / |K|``.
    Derivatives: :func:`jaxloss.tversky_loss`'s hand rule for ``p``, ``g``, ``s`` and ``w``,
    chained through ``∂w_c/∂f_{c'} = −2 f_{c'} v_{c'}² (C [c = c'] − w_c) / Σ v`` (the weights
    depend on the targets and are differentiated, as in optax).

    Matches ``optax.losses.multiclass_generalized_dice_loss`` exactly.  Differs from optax:
    ``where`` masks examples (left out of the frequencies and the mean); an empty class
    with ``smooth=0`` gives 0, not NaN; ``apply_softmax=False`` takes probabilities
    unchecked.  :func:`jaxloss.generalized_dice_loss` is Sudre et al.'s per-example form
    (one ratio of weighted sums, weights per example): other numbers.

    Args:
      predictions: float logits ``[B, ..spatial.., C]`` (probabilities with
        ``apply_softmax=False``).
      targets: float ``[B, ..spatial.., C]``: one-hot or soft targets (differentiated).
      smooth: ``s >= 0``, a float scalar (differentiated when traced).
      apply_softmax: static; False when the predictions are probabilities.
      ignore_background: static; True leaves class 0 out of the class mean.
      where: optional boolean example mask broadcasting to ``[B]``.

    Returns:
      A scalar: the mean over the (unmasked) examples and the classes.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])  # [B=1, pixels=3, C=2]
      >>> targets = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
      >>> jaxloss.multiclass_generalized_dice_loss(logits, targets)
      Array(0.149961, dtype=float32)

    References:
      Sudre et al., "Generalised Dice overlap as a deep learning loss function for highly
      unbalanced segmentations", 2017; ``optax.losses.multiclass_generalized_dice_loss``.
    """
    return _generalized_dice(tversky_loss, predictions, targets, smooth=smooth, apply_softmax=apply_softmax,
                             ignore_background=ignore_background, where=where)
