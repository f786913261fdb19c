"""Multi-class classification losses on logits ``[..., classes]``.

Each returns one loss per example: the batch shape, the class axis (``axis``, the last by
default) reduced.
Labels are integer class ids of the batch shape or, where a loss says so, probability
targets of the logits' shape.  Class ids are compared in int32 whatever their dtype.  Out-of-range
ids cannot raise inside ``jit``: an id equal to ``ignore_index`` (PyTorch's −100 by default;
``None`` ignores nothing) gives loss 0 and derivative exactly 0 with respect to every
argument, and any other id outside ``[0, classes)`` gives NaN, loss and derivatives, as optax
does (:func:`jaxloss.checks.checked` names it).

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian``
and forward-over-reverse Hessian-vector products through its hand-derived rule, which
keeps only the inputs and per-example statistics (a log-sum-exp) for reverse mode and
recomputes the softmax there; ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._softmax import (
    IGNORE_INDEX, PerClass, check_class_mask, check_classes, class_ids, class_masked, class_sum, cofactor, counted_only,
    exp_logsumexp, gather_class, id_targets, keeps_exponentials, label_logit, label_shifted_logsumexp, label_value,
    label_weight, loud, minus_log_softmax, one_hot, per_example, shifted_logsumexp, smoothed, smoothed_targets,
    softmax_from, times_nonzero, z_loss_tangent,
)
from jaxloss._softmax import z_loss as z_loss_term
from jaxloss.gradients import Loss, derived_loss, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis

P = ParamSpec("P")


# ------------------------------------------------------------------ softmax_cross_entropy


def _check_cross_entropy(logits, labels, label_smoothing, z_loss, class_weights, class_mask, ignore_index, where):
    check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index,
                  class_weights=class_weights, label_smoothing=label_smoothing, z_loss=z_loss)
    check_class_mask(class_mask, logits)
    _checks.in_unit_interval("label_smoothing", label_smoothing)
    _checks.positive("z_loss", z_loss, allow_zero=True)


def _class_weights(logits, class_weights, mask):
    """The class weights (1 when not given), 0 at the classes ``mask`` leaves out."""
    return mask.keep * (jnp.ones(logits.shape[-1]) if class_weights is None else class_weights)


def _label_nll(logits, ids, counted, shift, lse, class_mask):
    """``lse − x_y`` from the shifted statistics, with the label's own logit even where a class
    mask masks it (optax's integer-label loss); ``lse`` where an example has no class left."""
    label = label_logit(logits, ids) - shift
    return lse - (label if class_mask is None else jnp.where(counted, label, 0.0))


def _live_only(option, mask, class_mask):
    """A per-example option or tangent, 0 on the examples a class mask leaves no class."""
    return option if class_mask is None else counted_only(option, mask.live)


def _targets_loss(a, nll):
    """``Σ_c a_c·(lse − x_c)``: a class of weight ``a_c = 0`` adds 0, also where its logit is −inf."""
    return jnp.sum(times_nonzero(a, nll), axis=-1)


def _probability_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for probability targets ``y``."""
    mask = class_masked(x, p.class_mask)
    w, nll = _class_weights(x, p.class_weights, mask), minus_log_softmax(mask.logits, *res[:2])  # +inf at −inf
    eps, classes = per_example(p.label_smoothing), per_example(mask.classes)
    dense = (1 - eps) * p.labels + eps / classes
    a = w * dense
    nll_a = cofactor(a, nll)  # ∂ℓ/∂a_c: 0 at a class of no weight or mass and logit −inf
    z_live = (_live_only(z, mask, p.class_mask) for z in (p.z_loss, t.z_loss))
    z_factor, per_z = z_loss_tangent(res[0] + res[1], *z_live)
    per_class = class_sum(
        ((jnp.sum(a, axis=-1) + z_factor)[..., None] * softmax_from(nll, res) - a, t.logits),
        ((1 - eps) * w * nll_a, t.labels),
        (w * (1 / classes - p.labels) * nll_a, per_example(t.label_smoothing)),
        (mask.keep * dense * nll_a, t.class_weights),
    )
    return tangent_sum((1.0, per_class), (1.0, per_z))


def _id_tangent(p, t, x, res):
    """The rule of :func:`softmax_cross_entropy` for class ids: every partial is 0 (a select,
    never 0·inf) on an example that does not count, and NaN on an invalid id."""
    (shift, lse), mask = res[:2], class_masked(x, p.class_mask)
    ids, counted, _ = class_ids(p.labels, x.shape[-1], p.ignore_index)
    counted = counted & mask.live
    w, nll = _class_weights(x, p.class_weights, mask), minus_log_softmax(mask.logits, shift, lse)
    dense, keep = id_targets(p.label_smoothing, counted, mask.classes)
    w_label = label_weight(p.class_weights, ids, counted, x)
    b, a = keep * w_label, w * dense[..., None]
    nll_b = cofactor(b, _label_nll(p.logits, ids, counted, shift, lse, p.class_mask))
    z_factor, per_z = z_loss_tangent(shift + lse, counted_only(p.z_loss, counted), counted_only(t.z_loss, counted))
    # A = Σ_c a_c + b = (ε/C)·Σ_c w_c + (1 − ε)·w_y per example, not a sum over classes.
    # The label term −b goes in through a select in the one elementwise pass that
    # writes the gradient (a gather's transpose would scatter into it afterwards, which
    # for low-precision logits needs a float32 [..., C] buffer).
    total = b + dense * jnp.sum(w, axis=-1) + z_factor
    onehot_b = jnp.where(one_hot(ids, x.shape[-1]), b[..., None], 0.0)
    nll_a = cofactor(a, nll)
    per_class = class_sum(
        (total[..., None] * softmax_from(nll, res) - a - onehot_b, t.logits),
        (jnp.where(counted, 1 / mask.classes, 0.0)[..., None] * w * nll_a, per_example(t.label_smoothing)),
        (dense[..., None] * nll_a, t.class_weights),
    )
    per_label = tangent_sum(
        (-w_label * nll_b, t.label_smoothing),
        (keep * nll_b, gather_class(t.class_weights, ids, x.shape)),
    )
    return tangent_sum((1.0, per_class), (1.0, per_label), (1.0, per_z))


def _softmax_cross_entropy_tangent(p, t, out, res):
    # The logits come in their own dtype (own_precision): upcast here, in the one
    # elementwise pass that reads them.
    x = p.logits.astype(res[1].dtype)
    integer = jnp.issubdtype(p.labels.dtype, jnp.integer)
    return (_id_tangent if integer else _probability_tangent)(p, t, x, res)


@hand_derivative(_softmax_cross_entropy_tangent, static=("ignore_index",), check=_check_cross_entropy,
                 residuals=True, own_precision=("logits",), class_axis=("logits", "labels", "class_mask"),
                 axis_tuples=True)
def softmax_cross_entropy(logits: Array, labels: Array, *, axis: Axis = -1, label_smoothing: ArrayLike = 0.0,
                          z_loss: ArrayLike = 0.0, class_weights: Array | None = None, class_mask: Array | None = None,
                          ignore_index: int | None = IGNORE_INDEX,
                          where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""Softmax cross-entropy per example, with class ids or probability targets.

    With smoothed targets :math:`\tilde y = (1 - \varepsilon) y + \varepsilon / C` (``y``
    one-hot for class ids) and class weights :math:`w` (1 when not given):

    .. math:: \ell = \sum_c w_c \tilde y_c \,(\operatorname{lse}(x) - x_c)
                   + \lambda \operatorname{lse}(x)^2
                   = A\,\operatorname{lse}(x) - \sum_c a_c x_c + \lambda \operatorname{lse}(x)^2,
       \qquad a_c = w_c \tilde y_c,\; A = \sum_c a_c ,

    where the last term is PaLM's z-loss (``z_loss=λ``, 0 by default).  A class of weight
    :math:`a_c = 0` adds 0, also where :math:`x_c = -\infty` (0·∞ is read as 0).

    Derivatives (hand rule): ``∂ℓ/∂x_c = (A + 2λ·lse)·softmax(x)_c − a_c``;
    ``∂ℓ/∂λ = lse²``;
    ``∂ℓ/∂y_c = (1 − ε)·w_c·(lse − x_c)`` for probability targets;
    ``∂ℓ/∂ε = Σ_c w_c (lse − x_c)(1/C − y_c)``; ``∂ℓ/∂w_c = ỹ_c (lse − x_c)``, each term of
    weight ``w_c = 0`` or target ``ỹ_c = 0`` taken as 0 where ``lse − x_c`` is +inf.
    Reverse mode keeps only the logits and two per-example statistics, a shift and the
    log-sum-exp shifted by it, and recomputes the softmax; no other ``[..., C]`` array is
    stored.  For class ids the shift is the label logit (which saves a pass finding the row
    maximum), unless some row's loss exceeds ~88 in float32, when the batch is redone
    shifted by the maximum.  On XLA:CPU, float32 logits instead keep ``exp(x − max)`` in place
    of the logits (the same memory; the gradient is written over it): there ``exp`` is
    compute-bound and evaluating it twice took ~1.2–1.7× optax's time.  Lower-precision logits are computed in float32 inside each
    pass that reads them, with no float32 copy of the logits.

    Logits of ±1e4 are exact, and a class with logit −inf (masked out) costs nothing as
    long as the targets give it no mass: its term, its softmax and its derivatives are 0.
    With ``label_smoothing > 0`` such a class receives ε/C of the target mass, so the loss
    is +inf, as in optax and PyTorch (unless its class weight is 0).

    ``class_mask`` is optax's ``where`` here: the classes it masks are left out, as if their
    logits were −inf and their targets and weights 0 (masked logits may hold anything, inf
    and NaN included, and get derivative 0, but for a label's own logit, below); ε/C becomes
    ε/K with K the classes left, and an example with no class left has loss 0 (z-loss
    included) and derivative 0.  These are optax's numbers, also for a class id on a masked
    class: as in
    ``optax.losses.softmax_cross_entropy_with_integer_labels`` its loss is
    ``lse_{unmasked}(x) − x_y`` and ``∂ℓ/∂x_y = −w_y·(1 − ε)`` (probability targets, like
    optax's one-hot ones, lose such a class's mass instead).  ``where=`` is not optax's: it
    masks examples, as everywhere in jaxloss.

    Class ids are compared in int32.  An id equal to ``ignore_index`` gives loss 0 — the
    smoothing and z-loss terms included — and derivative exactly 0 with respect to every
    argument; any other id outside ``[0, C)`` gives NaN, loss and derivatives.  PyTorch's
    weighted ``reduction="mean"`` divides by the summed weight of the counted targets
    (not ignored, not masked), not by their count.  The per-example losses here are
    weighted as PyTorch's ``reduction="none"`` ones, and :func:`jaxloss.reduce.ratio`
    gives its mean::

        mask = labels != -100
        losses = softmax_cross_entropy(logits, labels, class_weights=w, where=mask)
        loss = jaxloss.reduce.ratio(losses, w[jnp.where(mask, labels, 0)], where=mask)

    Args:
      logits: float array ``[..., C]`` with C on ``axis``.
      labels: int ``[...]`` class ids of the batch shape (``logits`` without ``axis``; no
        derivative), or float ``[..., C]`` probability targets of the shape of ``logits`` (differentiated).
      axis: static; the class axis of ``logits`` (default -1, the last): an int, or a tuple
        of ints (as optax), moved last in the order given and flattened into one class axis,
        which class ids and ``class_weights`` then index.
      label_smoothing: ε in [0, 1]; a float or an array of the batch shape.
      z_loss: λ >= 0, the weight of ``lse(x)²`` (PaLM uses 1e-4); a float or an array of
        the batch shape.  The class weights do not scale it.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      class_mask: optional bool ``[..., C]`` mask broadcasting to ``logits``: the classes to keep
        (optax's ``where``); None keeps them all.
      ignore_index: static; the class id that marks an example to ignore, an int (−100 by
        default, as in PyTorch) or ``None`` (every id outside ``[0, C)`` is invalid).
        Unused with probability targets.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
      >>> jaxloss.softmax_cross_entropy(logits, jnp.array([0, 2, -100]))
      Array([0.12692805, 1.0986123 , 0.        ], dtype=float32)

    Also exported under optax's names, as the same function:
    ``softmax_cross_entropy_with_integer_labels`` and ``safe_softmax_cross_entropy``
    (whose 0·log 0 = 0 at a −inf logit without target mass is the rule here too).  Their
    defaults are optax's (no smoothing, no z-loss, the last axis, nothing masked).
    Differs from optax: ``where`` masks examples (optax's ``where`` is ``class_mask``), and
    one function takes class ids and probability targets, ``ignore_index``, class weights,
    smoothing and z-loss (optax's three take none of these options).

    References:
      ``optax.losses.softmax_cross_entropy``,
      ``optax.losses.softmax_cross_entropy_with_integer_labels`` and
      ``optax.losses.safe_softmax_cross_entropy``;
      ``torch.nn.functional.cross_entropy(reduction="none")`` (``weight``,
      ``label_smoothing``, ``ignore_index``, class ids or probabilities); Szegedy et al.,
      "Rethinking the Inception Architecture", 2016 (label smoothing); Chowdhery et al.,
      "PaLM: Scaling Language Modeling with Pathways", 2022, §5 (z-loss; optax issue #64).
    """
    # Nothing of shape [..., C] is formed but the passes of the max and Σ exp: the label
    # logit is gathered, and the smoothing term Σ_c a_c (x_c − m) is left out for a
    # constant ε = 0 (the default).
    mask = class_masked(logits, class_mask)
    w = _class_weights(logits, class_weights, mask)
    keep_exp = keeps_exponentials(logits)
    if not jnp.issubdtype(labels.dtype, jnp.integer):  # probability targets
        shift, lse, *e = exp_logsumexp(mask.logits) if keep_exp else shifted_logsumexp(mask.logits)
        eps = per_example(label_smoothing)
        a = w * ((1 - eps) * labels + eps / per_example(mask.classes))
        loss = _targets_loss(a, minus_log_softmax(mask.logits.astype(lse.dtype), shift, lse))
        z_term = z_loss_term(shift + lse, _live_only(z_loss, mask, class_mask))
        return (loss if z_term is None else loss + z_term), (shift, lse, *e)
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    counted = counted & mask.live
    shift, lse, *e = exp_logsumexp(mask.logits) if keep_exp else label_shifted_logsumexp(mask.logits, ids)
    dense, keep = id_targets(label_smoothing, counted, mask.classes)
    b = keep * label_weight(class_weights, ids, counted, logits)
    loss = times_nonzero(b, _label_nll(logits, ids, counted, shift, lse, class_mask))
    if smoothed(label_smoothing):
        loss = loss + _targets_loss(w * dense[..., None], minus_log_softmax(mask.logits.astype(lse.dtype), shift, lse))
    z_term = z_loss_term(shift + lse, counted_only(z_loss, counted))
    return loud(loss if z_term is None else loss + z_term, invalid), (shift, lse, *e)


# ------------------------------------------------------------------ nll_loss


def _check_nll(log_probs, labels, class_weights, ignore_index, where):
    check_classes(log_probs, labels, where, name="log_probs", ignore_index=ignore_index,
                  class_weights=class_weights)


def _nll_tangent(p, t, out, res):
    ids, counted, _ = class_ids(p.labels, p.log_probs.shape[-1], p.ignore_index)
    gather = lambda v: gather_class(v, ids, p.log_probs.shape)  # noqa: E731
    w_label = label_weight(p.class_weights, ids, counted, p.log_probs)
    nll = jnp.where(counted, cofactor(w_label, -gather(p.log_probs)), 0.0)  # ∂ℓ/∂w_y
    return tangent_sum((-w_label, gather(t.log_probs)), (nll, gather(t.class_weights)))


@hand_derivative(_nll_tangent, static=("ignore_index",), check=_check_nll, class_axis=("log_probs", "labels"))
def nll_loss(log_probs: Array, labels: Array, *, axis: int = -1, class_weights: Array | None = None,
             ignore_index: int | None = IGNORE_INDEX, where: Array | None = None) -> jax.Array:
    r"""Negative log-likelihood of the label class, per example: :math:`\ell = -w_y \log p_y`.

    Derivatives (hand rule): ``∂ℓ/∂(log p)_c = −w_y·[c = y]`` and
    ``∂ℓ/∂w_c = −log p_y·[c = y]``.  Other classes may hold −inf (probability 0): they
    are never read; a label class of weight 0 adds 0 even where its ``log p`` is −inf.
    An id equal to ``ignore_index`` gives loss 0 and derivative exactly 0; any other id
    outside ``[0, C)`` gives NaN (ids are compared in int32).  PyTorch's weighted mean is
    ``jaxloss.reduce.ratio(losses, class_weights[jnp.where(mask, labels, 0)], where=mask)``
    with ``mask = labels != ignore_index``.

    Args:
      log_probs: float array ``[..., C]`` of log-probabilities (e.g. ``jax.nn.log_softmax``),
        C on ``axis``.
      labels: int ``[...]`` class ids of the batch shape (``log_probs`` without ``axis``); no derivative.
      axis: static; the class axis of ``log_probs`` (default -1, the last), an int: ``axis=1``
        takes PyTorch's ``[N, C, d1, ...]`` layout.
      class_weights: optional float weights ``[C]``, >= 0 (differentiated when traced).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``log_probs.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> log_probs = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7], [0.1, 0.2, 0.7]]))
      >>> jaxloss.nll_loss(log_probs, jnp.array([0, 2, -100]), class_weights=jnp.array([1.0, 1.0, 2.0]))
      Array([0.6931472 , 0.71334994, 0.        ], dtype=float32)

    References:
      ``torch.nn.functional.nll_loss(reduction="none")`` (with ``weight`` and ``ignore_index``).
    """
    ids, counted, invalid = class_ids(labels, log_probs.shape[-1], ignore_index)
    w_label = label_weight(class_weights, ids, counted, log_probs)
    return loud(jnp.where(counted, times_nonzero(w_label, -label_value(log_probs, ids)), 0.0), invalid)


# ------------------------------------------------------------------ poly1_cross_entropy



def _check_poly1(logits, labels, epsilon, label_smoothing, class_mask, ignore_index, where):
    check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index, epsilon=epsilon,
                  label_smoothing=label_smoothing)
    check_class_mask(class_mask, logits)
    _checks.in_unit_interval("label_smoothing", label_smoothing)


def _poly1_ids(labels, mask, class_mask, ignore_index):
    """Class ids without smoothing: ``(ids, counted, invalid)``; with a class mask an example
    counts only where its label's class is left (a one-hot target on a masked class is absent)."""
    ids, counted, invalid = class_ids(labels, mask.logits.shape[-1], ignore_index)
    return ids, counted if class_mask is None else counted & (label_value(mask.keep, ids) > 0), invalid


def _poly1_tangent(p, t, out, res):
    mask = class_masked(p.logits, p.class_mask)
    nll = minus_log_softmax(mask.logits, *res)  # −log p_c, +inf for a class with logit −inf
    softmax = jnp.exp(-nll)
    if not isinstance(res, PerClass):
        # ℓ = f(nll_y) with f(z) = z − ε·expm1(−z), f' = 1 + ε·p_y; ∂nll_y/∂x_c = p_c − [c = y].
        ids, counted, _ = _poly1_ids(p.labels, mask, p.class_mask, p.ignore_index)
        nll_y = label_value(nll, ids)
        slope = jnp.where(counted, 1 + p.epsilon * jnp.exp(-nll_y), 0.0)
        gather = None if t.logits is None else label_value(t.logits, ids)
        return tangent_sum(
            (slope, class_sum((softmax, t.logits))),
            (-slope, gather),
            (jnp.where(counted, -jnp.expm1(-nll_y), 0.0), t.epsilon),
        )
    y, dy, dy_deps, _ = smoothed_targets(p.labels, p.label_smoothing, mask, p.ignore_index)
    e = per_example(p.epsilon)
    p_t = jnp.sum(y * softmax, axis=-1, keepdims=True)
    # As in softmax_cross_entropy, a target's derivative at a class ruled out (logit −inf)
    # is +inf; the rule returns 0 there for a class the targets give no mass.
    dtargets = jnp.where((y == 0) & jnp.isinf(nll), 0.0, nll - e * jnp.expm1(-nll))
    return class_sum(
        (jnp.sum(y, axis=-1, keepdims=True) * softmax - y - e * softmax * (y - p_t), t.logits),
        (dtargets, tangent_sum((dy, t.labels), (dy_deps, per_example(t.label_smoothing)))),
        (-y * jnp.expm1(-nll), per_example(t.epsilon)),
    )


@hand_derivative(_poly1_tangent, static=("ignore_index",), check=_check_poly1, residuals=True,
                 class_axis=("logits", "labels", "class_mask"), axis_tuples=True)
def poly1_cross_entropy(logits: Array, labels: Array, *, axis: Axis = -1, epsilon: ArrayLike = 1.0,
                        label_smoothing: ArrayLike = 0.0, class_mask: Array | None = None,
                        ignore_index: int | None = IGNORE_INDEX,
                        where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""Poly-1 cross-entropy (PolyLoss) per example: cross-entropy plus ε·(1 − p_t).

    With targets :math:`y` (one-hot for class ids) and :math:`p = \operatorname{softmax}(x)`:

    .. math:: \ell = \sum_c y_c\,\bigl(-\log p_c + \varepsilon\,(1 - p_c)\bigr)
                   = \mathrm{CE}(x, y) + \varepsilon\,(1 - p_t),
       \qquad p_t = \sum_c y_c p_c ,

    the second form for targets summing to 1 (class ids, probability targets).  With
    ``label_smoothing=s`` the targets are :math:`(1 - s)\,y + s/C` (the paper's Poly-1 with
    label smoothing, and optax's loss of ``optax.losses.smooth_labels(y, s)``).  ε is the
    first coefficient of the loss's expansion in :math:`(1 - p_t)^j`: the paper
    recommends ε = 2 on ImageNet and ε = −1 for detection; ε >= −1 keeps the loss
    decreasing in :math:`p_t` (not checked, any real ε is accepted).  ``epsilon = 0`` is
    :func:`softmax_cross_entropy`.

    Derivatives (hand rule), with :math:`A = \sum_c y_c`:
    ``∂ℓ/∂x_c = A·p_c − y_c − ε·p_c·(y_c − p_t)`` (for class ids without smoothing
    ``(1 + ε p_y)(p_c − [c = y])``); ``∂ℓ/∂y_c = (1 − s)·g_c`` for probability targets,
    where ``g_c = −log p_c + ε·(1 − p_c)`` is the derivative with respect to the smoothed
    target (taken as 0 at a class with logit −inf and target 0); ``∂ℓ/∂s = Σ_c g_c (1/C − y_c)``;
    ``∂ℓ/∂ε = Σ_c y_c (1 − p_c)`` (smoothed targets).
    Reverse mode keeps the logits and the per-example maximum and log-sum-exp and
    recomputes the softmax.  Logits of ±1e4 and classes masked with −inf (given no
    target mass) are handled as in :func:`softmax_cross_entropy`, and so are class ids:
    an id equal to ``ignore_index`` gives loss 0 and derivative exactly 0, any other id
    outside ``[0, C)`` gives NaN.

    ``class_mask`` is optax's ``where``: the masked classes are left out of the softmax and
    of the targets (C becomes K, the classes left, in the smoothing), so that the loss is
    ``optax.losses.poly_loss_cross_entropy(x, y, where=class_mask)`` exactly.  A class id
    on a masked class is optax's one-hot target there: no target mass left, loss 0 (unlike
    :func:`softmax_cross_entropy`, which follows optax's integer-label loss).  Masked
    logits may hold anything and get derivative 0; an example with no class left has loss
    0 and derivative 0.

    Args:
      logits: float array ``[..., C]`` with C on ``axis``.
      labels: int ``[...]`` class ids of the batch shape (``logits`` without ``axis``; no
        derivative), or float ``[..., C]`` probability targets of the shape of ``logits`` (differentiated).
      axis: static; the class axis of ``logits`` (default -1, the last): an int, or a tuple
        of ints (as optax), moved last in the order given and flattened into one class axis,
        which class ids then index.
      epsilon: ε, a float or an array of the batch shape (differentiated when traced);
        may be negative.
      label_smoothing: s in [0, 1]; a float or an array of the batch shape.
      class_mask: optional bool ``[..., C]`` mask broadcasting to ``logits``: the classes to keep
        (optax's ``where``); None keeps them all.
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.  Unused with probability targets.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0]])
      >>> jaxloss.poly1_cross_entropy(logits, jnp.array([0, 2]))
      Array([0.24613097, 1.765279  ], dtype=float32)

    References:
      Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
      Functions", ICLR 2022.  ``optax.losses.poly_loss_cross_entropy``: the same values
      and derivatives for the same targets (``Σ_c y_c (1 − p_c)`` is optax's form, also
      for targets that do not sum to 1).  Differs from optax: optax takes float (one-hot)
      targets only, defaults to ε = 2 and its ``where`` masks classes; here class ids are
      accepted, ε defaults to 1 (the paper's Poly-1 baseline), ``class_mask`` masks classes
      and ``where`` masks examples.  :func:`poly_loss_cross_entropy` is this loss with
      optax's default ε = 2.
    """
    mask = class_masked(logits, class_mask)
    shift, lse = shifted_logsumexp(mask.logits)
    if jnp.issubdtype(labels.dtype, jnp.integer) and not smoothed(label_smoothing):
        ids, counted, invalid = _poly1_ids(labels, mask, class_mask, ignore_index)
        nll_y = lse - label_value(mask.logits - shift[..., None], ids)
        return loud(jnp.where(counted, nll_y - epsilon * jnp.expm1(-nll_y), 0.0), invalid), (shift, lse)
    y, _, _, invalid = smoothed_targets(labels, label_smoothing, mask, ignore_index)
    nll = minus_log_softmax(mask.logits, shift, lse)
    loss = jnp.sum(times_nonzero(y, nll), axis=-1) - epsilon * jnp.sum(y * jnp.expm1(-nll), axis=-1)
    return (loss if invalid is None else loud(loss, invalid)), PerClass(shift, lse)


def _preset(loss: Loss[...], **defaults: Any) -> Callable[[Callable[P, jax.Array]], Loss[P]]:
    """Make a ``def`` that calls ``loss`` with other ``defaults`` (optax's name for it) a loss
    of its own, whose ``.reference`` is ``loss.reference`` with those defaults."""

    def decorate(fn: Callable[P, jax.Array]) -> Loss[P]:
        return derived_loss(fn, functools.partial(loss.reference, **defaults), like=loss)

    return decorate


@_preset(poly1_cross_entropy, epsilon=2.0)
def poly_loss_cross_entropy(logits: Array, labels: Array, *, axis: Axis = -1, epsilon: ArrayLike = 2.0,
                            label_smoothing: ArrayLike = 0.0, class_mask: Array | None = None,
                            ignore_index: int | None = IGNORE_INDEX, where: Array | None = None) -> jax.Array:
    """:func:`poly1_cross_entropy` with optax's default ``epsilon=2.0`` (optax's name).

    The same loss, derivative rule and options: ``poly1_cross_entropy(..., epsilon=2.0)``.
    ``class_mask`` is optax's ``where`` (the classes to keep); ``where`` masks examples.
    ``.reference`` is plain autodiff of the formula, as for every loss.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
      >>> jaxloss.poly_loss_cross_entropy(logits, jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
      Array([0.48225653, 2.4319458 ], dtype=float32)

    References:
      ``optax.losses.poly_loss_cross_entropy`` (with ``where=class_mask``).
    """
    return poly1_cross_entropy(logits, labels, axis=axis, epsilon=epsilon, label_smoothing=label_smoothing,
                               class_mask=class_mask, ignore_index=ignore_index, where=where)

softmax_cross_entropy_with_integer_labels = softmax_cross_entropy
safe_softmax_cross_entropy = softmax_cross_entropy


def smooth_labels(labels: Array, alpha: ArrayLike, *, axis: int | tuple[int, ...] = -1,
                  class_mask: Array | None = None) -> jax.Array:
    r"""Label smoothing: :math:`(1 - \alpha)\,y + \alpha / K` (optax's ``smooth_labels``).

    ``K`` is the number of classes along ``axis`` (an int or a tuple of ints), or, with
    ``class_mask`` (optax's ``where``), the number of classes it keeps per example; as in
    optax every class gets :math:`\alpha / K`, the masked ones included (a loss given the
    same ``class_mask`` leaves them out).  Linear in ``labels`` and ``alpha``, so plain
    autodiff is its derivative rule, in every mode and order:
    ``∂/∂y = 1 − α``, ``∂/∂α = 1/K − y``.  The losses take ``label_smoothing=`` directly.

    Args:
      labels: float ``[..., C]`` targets (one-hot or probabilities), the classes along ``axis``.
      alpha: the smoothing factor, a float or an array broadcasting to ``labels``.
      axis: static; the class axis or axes.
      class_mask: optional bool ``[..., C]`` mask broadcasting to ``labels``: the classes to count.

    Returns:
      The smoothed targets, of the shape of ``labels``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.smooth_labels(jnp.array([[1.0, 0.0, 0.0, 0.0]]), 0.2)
      Array([[0.85, 0.05, 0.05, 0.05]], dtype=float32)

    References:
      ``optax.losses.smooth_labels``; Müller et al., "When Does Label Smoothing Help?", 2019.
    """
    _checks.float_array("labels", labels)
    _checks.mask("class_mask", class_mask)
    _checks.broadcasts_to("class_mask", class_mask, jnp.shape(labels), "the shape of labels")
    axes = tuple(np.atleast_1d(axis).tolist())
    if class_mask is None:
        classes = np.prod([jnp.shape(labels)[a] for a in axes])
    else:
        classes = jnp.sum(jnp.broadcast_to(class_mask, jnp.shape(labels)), axis=axes, keepdims=True)
    return (1.0 - alpha) * labels + alpha / classes
