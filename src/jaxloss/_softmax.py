"""Softmax statistics and class-id handling shared by the losses on logits ``[..., C]``
(multi-class, fused linear, angular margins, segmentation, sequence).

Class ids follow one rule everywhere: they are compared in int32 whatever their dtype; an
id equal to ``ignore_index`` gives its example loss 0 and derivative exactly 0; any other id
outside ``[0, C)`` gives a NaN loss (loud, as optax's gather) and derivative 0.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import compute_dtype
from jaxloss.gradients import tangent_sum

IGNORE_INDEX = -100  # torch's default ignore_index


def check_ignore_index(ignore_index) -> None:
    """``ignore_index`` (a static option) must be None or an integer (Python or NumPy)."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)):
        raise TypeError(f"ignore_index must be None or an int (a static option), got {ignore_index!r}.")


def class_ids(labels, classes, ignore_index):
    """``(ids, counted, invalid)``: the ids in int32; whether an example counts (its id lies
    in ``[0, classes)`` and is not ``ignore_index``); whether its id is invalid (outside
    ``[0, classes)`` and not ``ignore_index``).  None ignores nothing."""
    ids = jnp.asarray(labels).astype(jnp.int32)
    inside = (ids >= 0) & (ids < classes)
    if ignore_index is None:
        return ids, inside, ~inside
    ignored = ids == int(ignore_index)
    return ids, inside & ~ignored, ~inside & ~ignored


def loud(loss, invalid):
    """The losses, NaN where ``invalid`` (an id that is neither a class nor ignored).  A
    select: such an example counts as nothing in the rule, so its derivatives are 0 in
    every mode (as optax's, they are finite), and ``jnp.where`` masking afterwards works."""
    return jnp.where(invalid, jnp.nan, loss)


def counted_only(option, counted):
    """A per-example option or tangent, 0 on the examples that do not count (a select, so
    its derivative there is exactly 0); None and a constant 0 stay as they are."""
    if option is None or _constant_zero(option):
        return option
    return jnp.where(counted, option, 0.0)


def one_hot(labels, classes):
    """Boolean ``[..., C]`` mask of the label class (all False for an id outside ``[0, C)``).

    The ids are compared in int32: an iota in a narrow dtype wraps (a uint8 iota of 300
    classes holds 5 at class 261).  Built from an iota comparison rather than a gather, so
    XLA fuses it into the reductions over the class axis and its transpose is a select,
    not a scatter.
    """
    ids = jnp.asarray(labels).astype(jnp.int32)
    return ids[..., None] == jax.lax.broadcasted_iota(jnp.int32, (1,) * ids.ndim + (classes,), ids.ndim)


def label_value(x, labels):
    """``x[..., labels]`` along the last axis (0 for an id outside ``[0, C)``).

    A gather, whose transpose scatters one value per example into the gradient, so
    reverse mode never builds a ``[..., C]`` one-hot.
    """
    ids = jnp.asarray(labels).astype(jnp.int32)
    picked = jnp.take_along_axis(x, ids[..., None], axis=-1, mode="fill", fill_value=0,
                                 wrap_negative_indices=False)
    return picked[..., 0]


def cofactor(a, b):
    """``b`` as :func:`times_nonzero` reads it, 0 where ``a`` is 0 and ``b`` infinite: the
    derivative of ``times_nonzero(a, b)`` with respect to ``a``."""
    return jnp.where((a == 0) & jnp.isinf(b), 0.0, b)


def times_nonzero(a, b):
    """``a·b``, read as 0 where ``a`` is 0 and ``b`` infinite: a class of weight 0, or without
    target mass, is absent where its ``−log p`` is +inf (a logit of −inf), and adds 0 to the
    value and to every derivative, its own weight's included.  Elsewhere the derivatives are
    those of ``a·b`` (``∂/∂a = b`` at ``a = 0`` too); autodiff sees ``b`` through a select,
    so the 0 there is exact.
    """
    return a * cofactor(a, b)


def shifted_logsumexp(x):
    """The row maximum ``m`` (0 where the row is all −inf) and ``log Σ_c exp(x_c − m)``.

    Losses work with ``x − m`` so that ``lse − x_c`` is computed from small numbers: for
    logits near 1e4 the unshifted difference loses every digit below ~1e-3.
    The maximum is taken in ``x``'s own dtype (exactly) and the sum in at least float32,
    upcasting inside the one pass that reads ``x``: XLA:CPU materialises an upcast (or an
    ``x − m``) that more than one pass reads.
    """
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1)).astype(compute_dtype(x.dtype))
    m = jnp.where(jnp.isfinite(m), m, 0)
    return m, jnp.log(jnp.sum(jnp.exp(x.astype(m.dtype) - m[..., None]), axis=-1))


def label_logit(x, labels):
    """``x[..., labels]`` in at least float32 (0 for an id outside ``[0, C)``).  A 16-bit
    ``x`` is gathered as its bits: XLA:CPU gathers a bfloat16 array from a float32 copy
    of all of it.
    """
    if jnp.dtype(x.dtype).itemsize == 2:
        bits = label_value(jax.lax.bitcast_convert_type(x, jnp.uint16), labels)
        return jax.lax.bitcast_convert_type(bits, x.dtype).astype(jnp.float32)
    return label_value(x, labels).astype(compute_dtype(x.dtype))


def label_shifted_logsumexp(x, labels):
    """:func:`shifted_logsumexp` for class ids, shifted by the label logit ``x_y`` instead
    of the row maximum, which saves the pass that finds the maximum.

    ``Σ_c exp(x_c − x_y) >= 1`` cannot underflow, and it overflows only where the loss
    exceeds ~88.  If any row is not finite that way (such a loss, a label logit of ±inf or
    NaN, an id outside ``[0, C)``), the whole batch is redone with the maximum
    (``lax.cond``; under ``vmap`` the condition is batched and both run).
    """
    label = jax.lax.stop_gradient(label_logit(x, labels))
    shift = jnp.where(jnp.isfinite(label), label, 0)
    lse = jnp.log(jnp.sum(jnp.exp(x.astype(shift.dtype) - shift[..., None]), axis=-1))
    return jax.lax.cond(jnp.all(jnp.isfinite(lse)), lambda: (shift, lse), lambda: shifted_logsumexp(x))


def keeps_exponentials(x) -> bool:
    """Whether a softmax loss keeps ``exp(x − m)`` ``[..., C]`` from its forward for its rule
    (:func:`exp_logsumexp`) instead of recomputing it: on XLA:CPU for float32 or wider logits.
    There ``exp`` is compute-bound (~1 ns an element on a core), and a rule that evaluates it
    again takes ~1.2–1.7× the time of autodiff, which keeps the exponentials and writes the
    gradient over them (the same footprint: their buffer becomes the gradient's).  On an
    accelerator the passes are memory-bound and recomputing is the cheaper; 16-bit logits
    would need a float32 ``[..., C]`` buffer twice their size."""
    return jax.default_backend() == "cpu" and jnp.dtype(x.dtype).itemsize >= 4


def exp_logsumexp(x):
    """:func:`shifted_logsumexp`'s ``(m, lse)`` and the exponentials ``exp(x − m)`` they sum,
    for :func:`softmax_from` to reuse (see :func:`keeps_exponentials`)."""
    m = jax.lax.stop_gradient(jnp.max(x, axis=-1)).astype(compute_dtype(x.dtype))
    m = jnp.where(jnp.isfinite(m), m, 0)
    e = jnp.exp(x.astype(m.dtype) - m[..., None])
    return m, jnp.log(jnp.sum(e, axis=-1)), e


def softmax_from(nll, res):
    """``softmax(x) = exp(−nll)`` per class: from the forward's exponentials when the residuals
    ``res`` hold them (:func:`exp_logsumexp`), else from ``nll`` (:func:`minus_log_softmax`)."""
    if len(res) == 3:
        return res[2] * jnp.exp(-res[1])[..., None]
    return jnp.exp(-nll)


def minus_log_softmax(x, shift, lse):
    """``lse(x) − x_c`` per class (+inf for a logit of −inf) from the shifted statistics."""
    return lse[..., None] - (x - shift[..., None])


def smoothing(label_smoothing, classes):
    """Label smoothing of class ids: the targets ``(1 − ε)·onehot(y) + ε/C`` as the pair
    ``(ε/C, 1 − ε)``: the mass on every class and the extra mass on the label."""
    return label_smoothing / classes, 1 - label_smoothing


def _constant_zero(weight):
    return isinstance(weight, int | float) and weight == 0


def z_loss(log_z, weight):
    r"""PaLM's z-loss ``λ·(log Z)²`` per example (Chowdhery et al. 2022, §5), which keeps the
    log-normaliser near 0; ``None`` for a constant ``λ = 0`` (no term in the program).
    Its partials: ``∂/∂x_c = 2λ·log Z·softmax(x)_c``, ``∂/∂λ = (log Z)²``."""
    return None if _constant_zero(weight) else weight * jnp.square(log_z)


def z_loss_tangent(log_z, weight, dweight):
    """``(2λ·log Z, (log Z)²·dλ)``: the z-loss's factor on the softmax tangent ``Σ_c p_c dx_c``
    and its ``λ`` tangent (``(0, None)`` for a constant ``λ = 0``)."""
    if _constant_zero(weight):
        return 0.0, None
    return 2 * weight * log_z, tangent_sum((jnp.square(log_z), dweight))


def check_classes(logits, labels, where=None, *, name="logits", probabilities=False, ignore_index=None,
                  **options):
    """Logits ``[..., C]``; integer labels of the batch shape (or, with
    ``probabilities``, float targets of the logits' shape); options broadcasting to
    the batch shape, or per class (``[C]``) where named ``class_weights``."""
    _checks.float_array(name, logits)
    shape = jnp.shape(logits)
    if len(shape) < 1:
        raise ValueError(f"{name} must have a class axis (rank >= 1), got shape {shape}.")
    labels_dtype = jnp.result_type(labels)
    if jnp.issubdtype(labels_dtype, jnp.integer):
        if jnp.shape(labels) != shape[:-1]:
            raise ValueError(f"integer labels (class ids) must have the batch shape of {name}, "
                             f"{shape[:-1]}, got shape {jnp.shape(labels)}.")
    elif probabilities and jnp.issubdtype(labels_dtype, jnp.floating):
        if jnp.shape(labels) != shape:
            raise ValueError(f"float labels (probability targets) must have the shape of {name}, "
                             f"{shape}, got shape {jnp.shape(labels)}; pass class ids as integers.")
    else:
        kinds = "integer class ids or float probability targets" if probabilities else "integer class ids"
        raise TypeError(f"labels must be {kinds}, got {_checks._describe(labels)}.")
    check_ignore_index(ignore_index)
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {name}")
    for option, value in options.items():
        if option == "class_weights":
            _checks.float_option(option, value, shape[-1:], f"the class axis of {name}")
            _checks.positive(option, value, allow_zero=True)
        else:
            _checks.float_option(option, value, shape[:-1], f"the batch shape of {name}")


def gather_class(v, labels, shape):
    """``v[..., labels]`` for an array ``v`` broadcasting to ``shape`` (a per-class option or
    a tangent); ``None`` stays ``None``."""
    return None if v is None else label_value(jnp.broadcast_to(v, shape), labels)


def label_weight(class_weights, ids, counted, x):
    """``w_y``, the weight of each example's label class for logits ``x``: 0 for an example
    that does not count (an ignored or invalid id), else 1 without class weights."""
    if class_weights is None:
        return counted.astype(x.dtype)
    return jnp.where(counted, gather_class(class_weights, ids, x.shape), 0.0)


def class_sum(*terms):
    """``Σ_c partial_c · tangent_c`` over the class axis, for the non-zero tangents."""
    total = tangent_sum(*terms)
    return None if total is None else jnp.sum(total, axis=-1)


def per_example(option):
    """A per-example option (or its tangent) lined up against ``[..., C]`` arrays."""
    return None if option is None else jnp.asarray(option)[..., None]


def smoothed(label_smoothing):
    """Whether label smoothing is on: anything but a constant 0 (which adds no term)."""
    return not (isinstance(label_smoothing, int | float) and label_smoothing == 0)


def id_targets(label_smoothing, counted, classes):
    """The smoothed targets of class ids, ``ỹ = keep·onehot(y) + dense``, as the per-example
    pair ``(dense, keep) = (ε/C, 1 − ε)``, both 0 on an example that does not count.  ``classes``
    may be a per-example count (the classes a class mask leaves)."""
    return tuple(jnp.where(counted, v, 0.0) for v in smoothing(jnp.asarray(label_smoothing), classes))


def check_class_mask(class_mask, logits, name="logits"):
    """``class_mask`` (optax's ``where`` on the class axis): None or a boolean mask
    broadcasting to the shape of the logits."""
    _checks.mask("class_mask", class_mask)
    _checks.broadcasts_to("class_mask", class_mask, jnp.shape(logits), f"the shape of {name}")


class ClassMask(NamedTuple):
    """What a class mask (optax's ``where`` on the class axis) does to logits ``[..., C]``.

    Attributes:
      logits: the masked classes at −inf, so that they leave the softmax and every sum over
        the classes (a row with no class left is all 0 instead: its statistics stay finite,
        and the losses give it 0);
      keep: the mask as 0/1 floats of the logits' shape (1.0 without a mask);
      live: whether an example has a class left (True without a mask);
      classes: how many it has, at least 1 (``C`` without a mask).
    """

    logits: jax.Array
    keep: jax.Array | float
    live: jax.Array | bool
    classes: jax.Array | int


def class_masked(logits, class_mask) -> ClassMask:
    """:class:`ClassMask` of ``logits`` under ``class_mask`` (None: nothing masked)."""
    if class_mask is None:
        return ClassMask(logits, 1.0, True, logits.shape[-1])
    mask = jnp.broadcast_to(class_mask, logits.shape)
    count = jnp.sum(mask, axis=-1)
    fill = jnp.where(count > 0, -jnp.inf, 0.0).astype(logits.dtype)[..., None]
    return ClassMask(jnp.where(mask, logits, fill), mask.astype(compute_dtype(logits.dtype)), count > 0,
                     jnp.maximum(count, 1))


def smoothed_targets(labels, label_smoothing, mask: ClassMask, ignore_index=None):
    """The smoothed targets ``ỹ = keep·((1 − ε)·y + ε/K)`` over the classes ``mask`` leaves
    (``y`` one-hot for class ids, 0 on an example that does not count), with their partials:
    ``(ỹ, ∂ỹ/∂y, ∂ỹ/∂ε, invalid)``, the last the ids' :func:`class_ids` flag (None for
    probability targets).  Every array is ``[..., C]`` but ``invalid``."""
    eps, classes = per_example(label_smoothing), per_example(mask.classes)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        ids, counted, invalid = class_ids(labels, mask.logits.shape[-1], ignore_index)
        y, keep = one_hot(ids, mask.logits.shape[-1]), mask.keep * counted[..., None]
    else:
        y, keep, invalid = labels, mask.keep, None
    return keep * ((1 - eps) * y + eps / classes), keep * (1 - eps), keep * (1 / classes - y), invalid


class PerClass(NamedTuple):
    """The residuals of a loss's per-class path (probability targets or label smoothing), so
    that its rule takes the path its forward took: options reach the rule traced, where a
    constant ``label_smoothing=0`` (the class-id path) cannot be told from a traced one."""

    shift: jax.Array
    lse: jax.Array
