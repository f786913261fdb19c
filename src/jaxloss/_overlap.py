"""The per-class overlap sums of the segmentation losses and their hand-derived tangents.

Every overlap loss (Dice, Jaccard, Tversky, focal Tversky, generalized Dice) is a ratio of
the per-class sums ``I_c = Σ p·g``, ``P_c = Σ p``, ``G_c = Σ g`` over the unmasked pixels
(:func:`overlap`), of each example or, with ``batch=True``, of the whole batch (every
device's under ``axis_name``).  Shared here: the input check, the probabilities from logits,
the masks (``where``, ``ignore_index``, invalid ids), the ratio with its 0/0 rule, the class
weights and the class mean, with the tangent of each.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss._softmax import check_ignore_index, class_ids, loud, one_hot
from jaxloss.gradients import tangent_sum

ACTIVATIONS = (None, "softmax", "sigmoid")
STATIC = ("include_background", "from_logits", "ignore_index", "batch", "axis_name")


def check(predictions, targets, *, where, from_logits, ignore_index, class_weights=None, include_background=True,
          batch=False, axis_name=None, names=("predictions", "targets"), **scalars):
    """Predictions ``[B, ..spatial.., C]``; integer targets of the pixel shape or float
    targets of the predictions' shape; ``where`` over the pixels; scalar options >= 0
    (None allowed: an unset ``smooth_nr``/``smooth_dr``); ``axis_name`` only with ``batch``.
    Errors call the two arrays ``names`` (the compound losses' ``logits`` and ``labels``)."""
    x, y = names
    _checks.float_array(x, predictions)
    shape = tuple(jnp.shape(predictions))
    if len(shape) < 2:
        raise ValueError(f"{x} must be [batch, ..spatial.., classes] (rank >= 2), got shape {shape}.")
    dtype = jnp.result_type(targets)
    if jnp.issubdtype(dtype, jnp.integer):
        if tuple(jnp.shape(targets)) != shape[:-1]:
            raise ValueError(f"integer {y} (class ids) must have the pixel shape of {x}, "
                             f"{shape[:-1]}, got shape {tuple(jnp.shape(targets))}.")
    elif jnp.issubdtype(dtype, jnp.floating):
        if tuple(jnp.shape(targets)) != shape:
            raise ValueError(f"float {y} (probabilities or one-hot) must have the shape of {x}, "
                             f"{shape}, got shape {tuple(jnp.shape(targets))}; pass class ids as integers.")
    else:
        raise TypeError(f"{y} must be integer class ids or float probabilities, got {_checks._describe(targets)}.")
    check_ignore_index(ignore_index)
    if from_logits not in ACTIVATIONS:
        raise ValueError(f'from_logits must be None, "softmax" or "sigmoid", got {from_logits!r}.')
    _checks.broadcasts_to("where", where, shape[:-1], f"the pixel shape of {x}")
    if not include_background and shape[-1] == 1:
        warnings.warn(f"include_background=False is ignored for a single class ({x} with a class "
                      "axis of size 1): the loss is computed over that one class.",
                      UserWarning, stacklevel=6)  # the caller of the loss
    _checks.float_option("class_weights", class_weights, shape[-1:], f"the class axis of {x}")
    _checks.positive("class_weights", class_weights, allow_zero=True)
    if not isinstance(batch, bool):
        raise TypeError(f"batch must be a bool (static), got {batch!r}.")
    _checks.hashable("axis_name", axis_name)
    if axis_name is not None and not batch:
        raise ValueError(f"axis_name={axis_name!r} needs batch=True: without it each example's loss is its own, "
                         "and a sharded batch needs no collective.")
    for name, value in scalars.items():
        _checks.float_option(name, value, (), "a scalar")
        if value is not None:
            _checks.positive(name, value, allow_zero=name != "gamma")


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
    """Whether an example (``[B]``; with ``batch``, the batch: a scalar) has an unmasked pixel
    whose id is neither a class nor ``ignore_index``; None for float targets."""
    ids = _ids(p)
    if ids is None:
        return None
    invalid = ids[1] if p["where"] is None else ids[1] & p["where"]
    invalid = jnp.any(invalid.reshape(invalid.shape[0], -1), axis=-1)
    if not p.get("batch", False):
        return invalid
    return _math.psum(jnp.sum(invalid, dtype=jnp.int32), p.get("axis_name")) > 0


def make_loud(p, loss):
    """The losses, NaN for an example (the batch) with an invalid class id (:func:`_invalid`)."""
    invalid = _invalid(p)
    return loss if invalid is None else loud(loss, invalid)


def quiet(p, dloss):
    """A loss tangent, 0 for an example (the batch) with an invalid class id (:func:`_invalid`)."""
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


def overlap(p, t=None):
    """The per-class sums ``(I, P, G)`` over the spatial axes, each ``[B, C]`` (``[C]`` with
    ``batch``: over the batch too, every device's under ``axis_name``):
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
    axes = tuple(range(0 if p.get("batch", False) else 1, prob.ndim - 1))

    def total(x):
        return None if x is None else _math.psum(jnp.sum(jnp.broadcast_to(x, prob.shape), axis=axes),
                                                 p.get("axis_name"))

    if t is None:
        return total(prob * g), total(prob * prob if squared else prob), total(g * g if squared else g)
    dp = _probability_tangent(p, prob, t["predictions"], keep)
    dg = _masked(t["targets"], keep)
    return (total(tangent_sum((g, dp), (prob, dg))),
            total(tangent_sum((2 * prob if squared else 1.0, dp))),
            total(tangent_sum((2 * g if squared else 1.0, dg))))


def smooths(p, t=None):
    """``(s_nr, s_dr)``, the smoothing of the numerator and the denominator (``smooth_nr`` and
    ``smooth_dr``, each ``smooth`` where unset); with tangents ``t``, their tangents."""
    values = p if t is None else t
    return tuple(values.get("smooth") if p.get(name) is None else values.get(name)
                 for name in ("smooth_nr", "smooth_dr"))


def ratio(n, d):
    """``n/d``, and 1 where ``d = 0`` (0/0: an empty class with no smoothing), with
    autodiff-safe double ``where``."""
    nonzero = d != 0
    return jnp.where(nonzero, n / jnp.where(nonzero, d, 1), 1.0)


def ratio_tangent(r, d, dn, dd):
    """The tangent of ``n/d``: ``(dn − r·dd)/d``, and 0 where ``d = 0``."""
    total = tangent_sum((1.0, dn), (-r, dd))
    if total is None:
        return None
    nonzero = d != 0
    return jnp.where(nonzero, total / jnp.where(nonzero, d, 1), 0.0)


def background(p, classes):
    """Whether class 0 is left out: ``include_background=False`` with more than one class
    (a single class is kept, as optax and MONAI do; :func:`check` warns)."""
    return not p["include_background"] and classes > 1


def kept_class_weights(p, classes, dtype):
    """``w_c``: the class weights (1 without), 0 for class 0 when it is left out."""
    w = jnp.ones(classes, dtype) if p.get("class_weights") is None else p["class_weights"]
    if background(p, classes):
        w = jnp.where(jnp.arange(classes) == 0, 0, w)
    return w


def sum_ratio(n, d, axis):
    """``Σ n / Σ d`` over ``axis``, 0 where ``Σ d = 0``."""
    total = jnp.sum(d, axis=axis)
    nonzero = total != 0
    return jnp.where(nonzero, jnp.sum(n, axis=axis) / jnp.where(nonzero, total, 1), 0.0)


def class_mean(losses, w):
    """``Σ_c w_c L_c / Σ_c w_c``, 0 where the weights sum to 0."""
    return sum_ratio(w * losses, w, -1)


def _focal(losses, p):
    """``L_c^{1/γ}`` (focal Tversky) where ``p`` has a ``gamma``, else ``L_c``; 0 where
    ``L_c <= 0`` (a perfect overlap, or rounding just below it)."""
    if "gamma" not in p:
        return losses
    positive = losses > 0
    return jnp.where(positive, jnp.where(positive, losses, 1) ** (1 / p["gamma"]), 0.0)


def _focal_tangent(losses, focal, dlosses, p, t):
    """The tangent of :func:`_focal`: ``(F/(γL)) dL − F ln L dγ/γ²``, 0 where ``L <= 0``
    (the subgradient 0 where ``d L^{1/γ}/dL`` is infinite)."""
    if "gamma" not in p:
        return dlosses
    positive = losses > 0
    safe = jnp.where(positive, losses, 1)
    gamma = p["gamma"]
    total = tangent_sum((focal / (gamma * safe), dlosses), (-focal * jnp.log(safe) / gamma**2, t.get("gamma")))
    return None if total is None else jnp.where(positive, total, 0.0)


def per_class_forward(p, terms):
    """The weighted class mean of ``1 − N_c/D_c`` (to the power ``1/γ`` with a ``gamma``) with
    ``(N, D) = terms(I, P, G, p)``; the sums are the residuals."""
    sums = overlap(p)
    n, d = terms(*sums, p)
    w = kept_class_weights(p, n.shape[-1], n.dtype)
    return make_loud(p, class_mean(_focal(1 - ratio(n, d), p), w)), sums


def per_class_tangent(terms, terms_tangent):
    """The rule of :func:`per_class_forward`: ``dL_c = −(dN_c − r_c dD_c)/D_c`` (then through
    the focal power) and ``dℓ = (Σ_c dw_c L_c + w_c dL_c − ℓ Σ_c dw_c) / Σ_c w_c``."""

    def rule(p, t, out, res):
        n, d = terms(*res, p)
        dn, dd = terms_tangent(res, overlap(p, t), p, t)
        r = ratio(n, d)
        losses = 1 - r
        focal = _focal(losses, p)
        w = kept_class_weights(p, n.shape[-1], n.dtype)
        total = jnp.sum(w, axis=-1)
        dw = t.get("class_weights")
        if dw is not None and background(p, n.shape[-1]):
            dw = jnp.where(jnp.arange(n.shape[-1]) == 0, 0, dw)
        dr = ratio_tangent(r, d, dn, dd)
        dfocal = _focal_tangent(losses, focal, None if dr is None else -dr, p, t)
        numer = tangent_sum((w, dfocal), (focal, dw))
        if numer is None:
            return None
        numer = jnp.sum(numer, axis=-1)
        if dw is not None:
            numer = numer - out * jnp.sum(dw, axis=-1)
        nonzero = total != 0
        return quiet(p, jnp.where(nonzero, numer / jnp.where(nonzero, total, 1), 0.0))

    return rule


def check_options(predictions, targets, where, from_logits, ignore_index, class_weights=None, include_background=True,
                  batch=False, axis_name=None, squared=False, **scalars):
    """:func:`check` for a loss's arguments by name (its ``check=``)."""
    check(predictions, targets, where=where, from_logits=from_logits, ignore_index=ignore_index,
          class_weights=class_weights, include_background=include_background, batch=batch, axis_name=axis_name,
          **scalars)
