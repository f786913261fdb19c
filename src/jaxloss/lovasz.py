"""Lovász losses (Berman et al. 2018): the Lovász extension of the Jaccard loss, which
optimises the intersection-over-union directly: on softmax probabilities
(:func:`lovasz_softmax_loss`) and on binary logits through a hinge (:func:`lovasz_hinge_loss`).

Both sort each image's (or, with ``batch=True``, the batch's) pixel errors ``e`` in
decreasing order and weigh the ``k``-th largest by ``g_k = J_k − J_{k−1}``, where
``J_k = 1 − (G − Σ_{j≤k} y_(j)) / (G + Σ_{j≤k} (1 − y_(j)))`` is the Jaccard loss of
predicting the first ``k`` sorted pixels as foreground (``y`` the sorted binary targets,
``G`` their sum): the loss is ``Σ_k g_k e_(k)``, the Lovász extension of the Jaccard loss at
``e``.  The weights depend only on the targets and on the order of the errors, so the loss is
piecewise linear in the errors, with gradient ``∂ℓ/∂e_i = g_{rank(i)}`` (the Lovász
extension's gradient, Berman et al.'s Eq. 9) wherever the errors are distinct: the sort
permutation is constant there.  At ties (equal errors) the value does not depend on how the
tied pixels are ordered (the extension is continuous), but its gradient does: the rule takes
the stable sort's order (ties by pixel index), which gives one of the subgradients (the
reference code's ``torch.sort`` may order ties otherwise).  Second derivatives are 0 wherever
the gradient exists.

Layout and masks follow the overlap losses (:mod:`jaxloss.segmentation`): one batch axis,
any number of spatial axes; class ids compared in int32, ``ignore_index`` (−100 by default)
and ``where`` leave pixels out of the sort and the sums (derivative exactly 0, also for NaN
padding), any other id outside the classes makes its example's loss NaN.  Reverse mode keeps
the inputs and recomputes the sort.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, loud, one_hot
from jaxloss.gradients import Args, hand_derivative
from jaxloss.types import Array


def _lovasz_weights(errors, targets):
    """The Lovász extension's gradient ``[..., N]``: for each pixel, ``g`` at its rank when the
    ``errors`` ``[..., N]`` (``-inf`` for the pixels left out) are sorted in decreasing order
    (stable), for binary ``targets`` ``[..., N]`` (0 at the pixels left out)."""
    order = jnp.argsort(-errors, axis=-1, stable=True)
    y = jnp.take_along_axis(targets, order, axis=-1)
    total = jnp.sum(y, axis=-1, keepdims=True)
    jaccard = 1 - (total - jnp.cumsum(y, axis=-1)) / (total + jnp.cumsum(1 - y, axis=-1))
    g = jnp.diff(jaccard, axis=-1, prepend=0.0)
    return jnp.take_along_axis(g, jnp.argsort(order, axis=-1), axis=-1)


def _pixels_last(x, batch, classes):
    """``[B, ..spatial.., C]`` as ``[B, C, N]`` (``[1, C, B·N]`` with ``batch``)."""
    x = x.reshape((1 if batch else x.shape[0], -1, classes))
    return jnp.swapaxes(x, -1, -2)


def _keep(p, shape):
    """``(keep, ids, invalid)``: the pixels that count (``where`` and not ``ignore_index``),
    the ids in int32 and the examples (the batch, with ``batch``) holding an invalid id."""
    ids, counted, invalid = class_ids(p["labels"], p["classes_count"], p["ignore_index"])
    where = p["where"]
    if where is not None:
        where = jnp.reshape(where, where.shape + (1,) * (len(shape) - where.ndim))
        where = jnp.broadcast_to(where, shape)
        counted, invalid = counted & where, invalid & where
    axes = tuple(range(0 if p["batch"] else 1, invalid.ndim))
    return counted, ids, jnp.any(invalid, axis=axes)


# ------------------------------------------------------------------ lovasz_softmax_loss


def _softmax_terms(p):
    """``(errors, targets, keep, present, invalid)`` per class: errors ``|y − p_c|`` and
    binary targets ``[B, C, N]`` with the left-out pixels at ``-inf`` and 0, ``keep`` over
    the pixels, which classes count and the invalid flag."""
    probs = p["probabilities"]
    classes = probs.shape[-1]
    keep, ids, invalid = _keep(dict(p, classes_count=classes), probs.shape[:-1])
    probs = jnp.where(keep[..., None], probs, 0)
    y = (one_hot(ids, classes) & keep[..., None]).astype(probs.dtype)
    y, probs = _pixels_last(y, p["batch"], classes), _pixels_last(probs, p["batch"], classes)
    kept = _pixels_last(jnp.broadcast_to(keep[..., None], keep.shape + (classes,)), p["batch"], classes)
    errors = jnp.abs(y - probs)
    present = jnp.sum(y, axis=-1) > 0 if p["classes"] == "present" else jnp.ones(y.shape[:-1], bool)
    return jnp.where(kept, errors, -jnp.inf), y, kept, present, invalid


def _class_mean(per_class, present):
    """The mean over the classes that count, 0 where none does."""
    count = jnp.sum(present, axis=-1)
    total = jnp.sum(jnp.where(present, per_class, 0.0), axis=-1)
    return jnp.where(count > 0, total / jnp.maximum(count, 1), 0.0)


def _out(p, loss):
    """``[B]`` losses (a scalar with ``batch``)."""
    return loss[0] if p["batch"] else loss


def _lovasz_softmax_tangent(p, t, out, res):
    # d ℓ = mean_c Σ_i g_ic (1 − 2 y_ic) dp_ic: the sign of |y − p| is that of p − y.
    dp = t["probabilities"]
    if dp is None:
        return None
    key, y, kept, present, invalid = _softmax_terms(p)
    classes = dp.shape[-1]
    dp = _pixels_last(dp, p["batch"], classes)
    de = jnp.where(kept, (1 - 2 * y) * dp, 0.0)
    d = _class_mean(jnp.sum(_lovasz_weights(key, y) * de, axis=-1), present)
    return jnp.where(invalid, 0.0, _out(p, d))


def _check_arrays(name, x, labels, layout, kind):
    """Check that ``x`` is a float array of rank >= 2 (``layout`` in the message) and ``labels``
    integer (``kind``); return the shape of ``x``."""
    _checks.float_array(name, x)
    shape = tuple(jnp.shape(x))
    if len(shape) < 2:
        raise ValueError(f"{name} must be {layout} (rank >= 2), got shape {shape}.")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be {kind}, got {_checks._describe(labels)}.")
    return shape


def _check_softmax(probabilities, labels, classes, ignore_index, where, batch):
    shape = _check_arrays("probabilities", probabilities, labels, "[batch, ..spatial.., classes]",
                          "integer class ids")
    if tuple(jnp.shape(labels)) != shape[:-1]:
        raise ValueError(f"labels (class ids) must have the pixel shape of probabilities, {shape[:-1]}, "
                         f"got shape {tuple(jnp.shape(labels))}.")
    if classes not in ("present", "all"):
        raise ValueError(f'classes must be "present" or "all" (static), got {classes!r}.')
    _check_common(ignore_index, where, batch, shape[:-1], "the pixel shape of probabilities")


def _check_common(ignore_index, where, batch, shape, what):
    check_ignore_index(ignore_index)
    _checks.broadcasts_to("where", where, shape, what)
    if not isinstance(batch, bool):
        raise TypeError(f"batch must be a bool (static), got {batch!r}.")


@hand_derivative(_lovasz_softmax_tangent, static=("classes", "ignore_index", "batch"), check=_check_softmax,
                 where_of="inputs", class_axis=("probabilities",))
def lovasz_softmax_loss(probabilities: Array, labels: Array, *, axis: int = -1,
                        classes: Literal["present", "all"] = "present", ignore_index: int | None = IGNORE_INDEX,
                        where: Array | None = None, batch: bool = False) -> jax.Array:
    r"""Lovász-softmax loss per image: the Lovász extension of each class's Jaccard loss,
    averaged over the classes present.

    For class ``c`` with pixel errors ``e_i = |y_ic − p_ic|`` (``y`` one-hot) sorted in
    decreasing order and the Jaccard increments ``g_k`` of the sorted targets (module
    docstring):

    .. math:: \ell = \frac{1}{|K|} \sum_{c \in K} \sum_k g^c_k\, e^c_{(k)}

    over the classes ``K`` present in the image's labels (``classes="present"``, the
    reference code's default; 0 when none is) or all of them (``"all"``).
    Derivative (hand rule): ``∂ℓ/∂p_ic = g^c_{rank(i)}·(1 − 2 y_ic)/|K|`` (the sort
    permutation held constant; at tied errors one subgradient, see the module docstring);
    second derivatives are 0.

    Args:
      probabilities: float ``[B, ..spatial.., C]`` with C on ``axis``: class probabilities
        (a softmax output; not checked).
      labels: integer class ids ``[B, ..spatial..]`` (no derivative).
      axis: static; the class axis of ``probabilities`` (-1 by default; 1 for ``[B, C, H, W]``).
      classes: static; ``"present"`` (default) or ``"all"``.
      ignore_index: static; the id of unlabelled pixels, left out (−100 by default, or None;
        the reference code's ``ignore``).
      where: optional boolean pixel mask broadcasting to ``[B, ..spatial..]``.
      batch: static; sort the pixels of the whole batch together and return one loss (a
        scalar): the reference code's ``per_image=False``, its default for this loss.

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p = jnp.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]])  # [B=1, pixels=3, C=2]
      >>> jaxloss.lovasz_softmax_loss(p, jnp.array([[0, 1, 1]]))
      Array([0.38333333], dtype=float32)

    References:
      Berman, Rannen Triki & Blaschko, "The Lovász-Softmax Loss: A Tractable Surrogate for
      the Optimization of the Intersection-Over-Union Measure in Neural Networks", CVPR 2018,
      and its reference code's ``lovasz_softmax``; segmentation_models_pytorch's
      ``LovaszLoss(mode="multiclass")``.  Differs from the reference code: per image by
      default (its ``per_image=False`` is ``batch=True``); no explicit list of classes.
    """
    key, y, kept, present, invalid = _softmax_terms(Args(locals()))
    errors = jnp.where(kept, key, 0.0)
    loss = _class_mean(jnp.sum(jax.lax.stop_gradient(_lovasz_weights(key, y)) * errors, axis=-1), present)
    return loud(_out({"batch": batch}, loss), invalid)


# ------------------------------------------------------------------ lovasz_hinge_loss


def _hinge_terms(p):
    """``(key, errors, y, sign, invalid)`` over ``[B, N]`` (``[1, B·N]`` with ``batch``):
    hinge errors ``1 − x·s`` (``-inf`` at the left-out pixels in ``key``, 0 in ``errors``),
    binary targets, the signs ``s = 2y − 1`` and the invalid flag."""
    x = p["logits"]
    keep, ids, invalid = _keep(dict(p, classes_count=2), x.shape)
    x = jnp.where(keep, x, 0)
    y = (keep & (ids == 1)).astype(x.dtype)
    sign = 2 * y - 1
    errors = 1 - x * sign
    flat = lambda a: a.reshape((1, -1)) if p["batch"] else a.reshape((a.shape[0], -1))  # noqa: E731
    key = jnp.where(keep, errors, -jnp.inf)
    return flat(key), flat(jnp.where(keep, errors, 0.0)), flat(y), flat(sign), invalid


def _lovasz_hinge_tangent(p, t, out, res):
    # d ℓ = Σ_i g_i [e_i > 0] (−s_i) dx_i.
    dx = t["logits"]
    if dx is None:
        return None
    key, errors, y, sign, invalid = _hinge_terms(p)
    dx = dx.reshape(errors.shape)
    d = jnp.sum(_lovasz_weights(key, y) * jnp.where(errors > 0, -sign * dx, 0.0), axis=-1)
    return jnp.where(invalid, 0.0, _out(p, d))


def _check_hinge(logits, labels, ignore_index, where, batch):
    shape = _check_arrays("logits", logits, labels, "[batch, ..spatial..]", "integer (or boolean) binary labels")
    if tuple(jnp.shape(labels)) != shape:
        raise ValueError(f"labels must have the shape of logits, {shape}, got shape {tuple(jnp.shape(labels))}.")
    leading = shape[:jnp.ndim(where)] if where is not None and jnp.ndim(where) <= len(shape) else shape
    _check_common(ignore_index, where, batch, leading, "the leading axes of logits")


@hand_derivative(_lovasz_hinge_tangent, static=("ignore_index", "batch"), check=_check_hinge, where_of="inputs")
def lovasz_hinge_loss(logits: Array, labels: Array, *, ignore_index: int | None = IGNORE_INDEX,
                      where: Array | None = None, batch: bool = False) -> jax.Array:
    r"""Lovász hinge loss per image: the Lovász extension of the binary Jaccard loss at the
    hinge errors.

    With signs ``s_i = 2 y_i − 1`` and errors ``e_i = 1 − x_i s_i`` sorted in decreasing
    order, and the Jaccard increments ``g_k`` of the sorted labels (module docstring):

    .. math:: \ell = \sum_k g_k \max(e_{(k)}, 0)

    Derivative (hand rule): ``∂ℓ/∂x_i = −s_i g_{rank(i)} [e_i > 0]`` (the sort permutation
    held constant; at tied errors one subgradient, and 0 at the hinge's kink ``e_i = 0``);
    second derivatives are 0.

    Args:
      logits: float ``[B, ..spatial..]``: one logit per pixel (foreground).
      labels: integer or boolean ``[B, ..spatial..]``: 1 foreground, 0 background,
        ``ignore_index`` left out; any other id makes the image's loss NaN.
      ignore_index: static; the label of unlabelled pixels (−100 by default, or None; the
        reference code's ``ignore``).
      where: optional boolean pixel mask broadcasting to ``logits`` (a mask of fewer axes
        covers the leading ones).
      batch: static; sort the pixels of the whole batch together and return one loss (a
        scalar): the reference code's ``per_image=False``.

    Returns:
      Losses ``[B]`` (a scalar with ``batch=True``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[2.0, -0.5, 0.3, -3.0]])
      >>> jaxloss.lovasz_hinge_loss(x, jnp.array([[1, 1, 0, 0]]))
      Array([0.9666666], dtype=float32)

    References:
      Berman, Rannen Triki & Blaschko, CVPR 2018, and its reference code's ``lovasz_hinge``
      (``per_image=True``, its default, is the default here); segmentation_models_pytorch's
      ``LovaszLoss(mode="binary")``.
    """
    key, errors, y, sign, invalid = _hinge_terms(Args(locals()))
    loss = jnp.sum(jax.lax.stop_gradient(_lovasz_weights(key, y)) * jax.nn.relu(errors), axis=-1)
    return loud(_out({"batch": batch}, loss), invalid)
