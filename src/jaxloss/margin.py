"""Multi-class and multi-label margin losses on scores ``[..., C]`` (the classes on ``axis=``, the last by default).

Every loss here returns one loss per example (the class axis reduced) and supports
``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and forward-over-reverse
Hessian-vector products through its hand-derived rule; ``fn.reference`` is plain
autodiff of the formula.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import softplus_pair
from jaxloss._softmax import (
    IGNORE_INDEX, check_classes, class_ids, class_sum, gather_class, label_value, loud, one_hot,
)
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike


def _tied_share(s, top):
    """``[s_j = top] / #{k: s_k = top}`` over the class axis: the derivative of a maximum
    split evenly among the tied classes (what autodiff of ``jnp.max`` gives)."""
    tied = jnp.where(s == top[..., None], 1.0, 0.0)
    return tied / jnp.maximum(jnp.sum(tied, axis=-1, keepdims=True), 1.0)


# ------------------------------------------------------------------ multiclass_hinge_loss

_HINGE_KINDS = ("crammer_singer", "weston_watkins")


def _check_multiclass_hinge(scores, labels, margin, kind, p, class_weights, ignore_index, where):
    check_classes(scores, labels, where, name="scores", ignore_index=ignore_index, margin=margin,
                  class_weights=class_weights)
    _checks.positive("margin", margin, allow_zero=True)
    if not isinstance(kind, str) or kind not in _HINGE_KINDS:
        raise ValueError(f"kind must be 'crammer_singer' or 'weston_watkins', got {kind!r}.")
    if not isinstance(p, int) or isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be the int 1 (hinge) or 2 (squared hinge), got {p!r}.")


def _hinge_arguments(s, ids, counted, margin, kind, runner_up):
    """``(z, keep)``: the hinge arguments and which of them count.  Crammer–Singer: one per
    example, ``z = m + runner_up − s_y``; Weston–Watkins: ``z_j = m − s_y + s_j`` over the
    class axis, kept for the wrong classes."""
    m, s_y = jnp.asarray(margin), label_value(s, ids)
    if kind == "crammer_singer":
        return m + runner_up - s_y, counted
    return m[..., None] - s_y[..., None] + s, ~one_hot(ids, s.shape[-1]) & counted[..., None]


def _unweighted_hinge(z, keep, kind, p):
    """``max(0, z)^p`` of the kept arguments; for Weston–Watkins their sum over ``C``."""
    h = jax.nn.relu(z)
    h = jnp.where(keep, h if p == 1 else jnp.square(h), 0.0)
    return h if kind == "crammer_singer" else jnp.sum(h, axis=-1) / max(z.shape[-1], 1)


def _hinge_slope(z, keep, p):
    """``d max(0, z)^p / dz`` of the kept arguments, with 0 at the corner ``z = 0`` (as ``jax.nn.relu``)."""
    return jnp.where(keep, jnp.where(z > 0, 1.0, 0.0) if p == 1 else 2 * jax.nn.relu(z), 0.0)


def _multiclass_hinge_tangent(p, t, out, res):
    # Subgradients autodiff would not pick: 0 at the corners; ties split evenly.
    s, classes = p.scores, p.scores.shape[-1]
    ids, counted, _ = class_ids(p.labels, classes, p.ignore_index)
    z, keep = _hinge_arguments(s, ids, counted, p.margin, p.kind, res)
    w_y = 1.0 if p.class_weights is None else gather_class(p.class_weights, ids, s.shape)
    label = one_hot(ids, classes)
    if p.kind == "crammer_singer":
        dm = w_y * _hinge_slope(z, keep, p.p)
        ds = dm[..., None] * (_tied_share(jnp.where(label, -jnp.inf, s), res) - label)  # ∂ℓ/∂s_j
    else:
        slope = jnp.asarray(w_y)[..., None] * _hinge_slope(z, keep, p.p) / max(classes, 1)
        dm = jnp.sum(slope, axis=-1)
        ds = slope - dm[..., None] * label  # ∂ℓ/∂s_j
    return tangent_sum((1.0, class_sum((ds, t.scores))), (dm, t.margin),
                       (_unweighted_hinge(z, keep, p.kind, p.p), gather_class(t.class_weights, ids, s.shape)))


@hand_derivative(_multiclass_hinge_tangent, static=("kind", "p", "ignore_index"), check=_check_multiclass_hinge,
                 residuals=True, class_axis=("scores", "labels"))
def multiclass_hinge_loss(scores: Array, labels: Array, *, axis: int = -1, margin: ArrayLike = 1.0,
                          kind: Literal["crammer_singer", "weston_watkins"] = "crammer_singer", p: Literal[1, 2] = 1,
                          class_weights: Array | None = None, ignore_index: int | None = IGNORE_INDEX,
                          where: Array | None = None) -> tuple[jax.Array, jax.Array | tuple[()]]:
    r"""Multi-class hinge loss on scores ``[..., C]``: Crammer–Singer or Weston–Watkins.

    With :math:`y` the label class, margin :math:`m` and class weight :math:`w_y`
    (1 without ``class_weights``):

    * ``kind="crammer_singer"`` (default), the hinge on the runner-up class:

      .. math:: \ell = w_y \max\bigl(0,\; m + \max_{j \ne y} s_j - s_y\bigr)^p;

    * ``kind="weston_watkins"``, one hinge per wrong class, divided by the number of
      classes :math:`C` as PyTorch does (``torch.nn.functional.multi_margin_loss``
      divides by ``x.size(-1)``, the class count, not by :math:`C - 1`):

      .. math:: \ell = \frac{w_y}{C} \sum_{j \ne y} \max(0,\; m - s_y + s_j)^p.

    ``p = 2`` is the squared hinge; the weight multiplies the powered hinge, as PyTorch's
    ``weight`` does.  Derivatives (hand rule), with the hinge slope
    :math:`g(z) = [z > 0]` for ``p = 1`` and :math:`2\max(0, z)` for ``p = 2``:
    Crammer–Singer, with :math:`z = m + \max_{j \ne y} s_j - s_y`:
    ``∂ℓ/∂s_j = w_y g(z)·(v_j − [j = y])`` and ``∂ℓ/∂m = w_y g(z)``, where :math:`v_j` is 1 for
    the runner-up class; when several wrong classes tie for the maximum, the rule splits
    the derivative evenly among them (``v_j = 1/k`` for each of the ``k`` tied classes:
    the average of the subgradients, itself a subgradient, and what autodiff of
    ``jnp.max`` gives).  Weston–Watkins, with :math:`z_j = m - s_y + s_j`:
    ``∂ℓ/∂s_j = w_y g(z_j)/C`` for ``j ≠ y``, ``∂ℓ/∂s_y = −Σ_{j≠y} w_y g(z_j)/C`` and
    ``∂ℓ/∂m = Σ_{j≠y} w_y g(z_j)/C``.  Both: ``∂ℓ/∂w_c = [c = y]·ℓ/w_y`` (the unweighted
    hinge).  At a hinge corner (``z = 0``) the rule returns the subgradient 0, as
    ``jax.nn.relu`` and PyTorch do.

    A score of ``-inf`` for a wrong class (a masked-out class) contributes 0 to the loss
    and gets derivative 0; the label class's score must be finite.  An id equal to
    ``ignore_index`` gives loss 0 and derivative exactly 0; any other id outside
    ``[0, C)`` gives NaN (ids are compared in int32).  Reverse mode keeps the inputs and,
    for Crammer–Singer, the runner-up score per example.

    Args:
      scores: float array ``[..., C]`` of class scores (logits), with ``C`` on ``axis``.
      labels: int ``[...]`` class ids with the batch shape (``scores``' shape without ``axis``); no
        derivative.
      axis: static; the class axis of ``scores`` (default -1, the last), an int.
      margin: float >= 0, or a float array broadcasting to the batch shape
        (differentiated when traced).
      kind: static; ``"crammer_singer"`` or ``"weston_watkins"``.
      p: static; 1 (hinge) or 2 (squared hinge).
      class_weights: optional float weights ``[C]``, >= 0 (PyTorch's ``weight``); an
        example's loss is scaled by the weight of its label class (differentiated when
        traced).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      the batch shape (``scores``' shape without ``axis``) of losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores, labels = jnp.array([[1.0, 2.0, 0.5], [3.0, 0.0, 1.0]]), jnp.array([0, 0])
      >>> jaxloss.multiclass_hinge_loss(scores, labels)
      Array([2., 0.], dtype=float32)
      >>> jaxloss.multiclass_hinge_loss(scores, labels, kind="weston_watkins", p=2)
      Array([1.4166667, 0.       ], dtype=float32)

    References:
      Crammer & Singer, "On the algorithmic implementation of multiclass kernel-based
      vector machines", JMLR 2001.  Weston & Watkins, "Support vector machines for
      multi-class pattern recognition", ESANN 1999.  ``kind="weston_watkins"`` matches
      ``torch.nn.functional.multi_margin_loss(reduction="none", p=p, margin=margin,
      weight=class_weights)``; the default (Crammer–Singer, margin 1, p=1) matches
      ``optax.losses.multiclass_hinge_loss``.  Differs from PyTorch: the weights get a
      derivative (PyTorch refuses one), and an id outside ``[0, C)`` gives NaN instead of
      raising.
    """
    ids, counted, invalid = class_ids(labels, scores.shape[-1], ignore_index)
    runner_up: jax.Array | tuple[()] = ()
    if kind == "crammer_singer":
        runner_up = jnp.max(jnp.where(one_hot(ids, scores.shape[-1]), -jnp.inf, scores), axis=-1, initial=-jnp.inf)
    z, keep = _hinge_arguments(scores, ids, counted, margin, kind, runner_up)
    loss = _unweighted_hinge(z, keep, kind, p)
    if class_weights is not None:
        loss = gather_class(class_weights, ids, scores.shape) * loss
    return loud(loss, invalid), runner_up


# ------------------------------------------------------------------ multiclass_perceptron_loss


def _check_multiclass_perceptron(scores, labels, ignore_index, where):
    check_classes(scores, labels, where, name="scores", ignore_index=ignore_index)


def _multiclass_perceptron_tangent(p, t, out, res):
    # The maximum's derivative is split evenly among tied classes, the label's included.
    if t.scores is None:
        return None
    ids, counted, _ = class_ids(p.labels, p.scores.shape[-1], p.ignore_index)
    dt = class_sum((_tied_share(p.scores, res), t.scores)) - label_value(t.scores, ids)
    return jnp.where(counted, dt, 0.0)


@hand_derivative(_multiclass_perceptron_tangent, static=("ignore_index",), check=_check_multiclass_perceptron,
                 residuals=True, class_axis=("scores", "labels"))
def multiclass_perceptron_loss(scores: Array, labels: Array, *, axis: int = -1, ignore_index: int | None = IGNORE_INDEX,
                               where: Array | None = None) -> tuple[jax.Array, jax.Array]:
    r"""Multi-class perceptron loss on scores ``[..., C]``: the best score's lead over the label's.

    .. math:: \ell = \max_c s_c - s_y \;\ge 0.

    Derivative (hand rule): ``∂ℓ/∂s_j = v_j − [j = y]``, where :math:`v_j` is 1 for the
    top class; when ``k`` classes tie for the maximum, ``v_j = 1/k`` for each of them
    (the label class included: an example whose label ties for the top gets
    ``∂ℓ/∂s_y = 1/k − 1``), the average of the subgradients and what autodiff of
    ``jnp.max`` (hence ``optax.losses.multiclass_perceptron_loss``) gives.  The loss is
    piecewise linear: every second derivative is 0.

    The loss is the difference of two of the scores themselves, so it is exact and never
    negative, for scores of ±1e4 too.  A score of ``-inf`` for a wrong class contributes
    nothing; the label class's score must be finite.  An id equal to ``ignore_index``
    gives loss 0 and derivative exactly 0; any other id outside ``[0, C)`` gives NaN (ids
    are compared in int32).  Reverse mode keeps the inputs and the top score per example.

    Args:
      scores: float array ``[..., C]`` of class scores, with ``C`` on ``axis``.
      labels: int ``[...]`` class ids with the batch shape (``scores``' shape without ``axis``); no
        derivative.
      axis: static; the class axis of ``scores`` (default -1, the last), an int.
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      the batch shape (``scores``' shape without ``axis``) of losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([[1.0, 2.0, 0.5], [3.0, 0.0, 1.0]])
      >>> jaxloss.multiclass_perceptron_loss(scores, jnp.array([0, -100]))
      Array([1., 0.], dtype=float32)

    References:
      Collins, "Discriminative training methods for hidden Markov models: theory and
      experiments with perceptron algorithms", EMNLP 2002.
      ``optax.losses.multiclass_perceptron_loss``.  Differs from optax: an id outside
      ``[0, C)`` gives NaN (optax's one-hot gives ``max_c s_c``) unless it is
      ``ignore_index``, and a ``-inf`` wrong-class score gives a finite loss (optax's
      one-hot product gives NaN).
    """
    ids, counted, invalid = class_ids(labels, scores.shape[-1], ignore_index)
    top = jnp.max(scores, axis=-1, initial=-jnp.inf)
    return loud(jnp.where(counted, top - label_value(scores, ids), 0.0), invalid), top


# ------------------------------------------------------------------ multilabel_margin_loss


def _check_multilabel(scores, labels, where, *, name, integer, class_weights=None):
    _checks.float_array(name, scores)
    shape = jnp.shape(scores)
    if len(shape) < 1:
        raise ValueError(f"{name} must have a class axis (rank >= 1), got shape {shape}.")
    if integer and not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer class ids, got {_checks._describe(labels)}.")
    _checks.numeric("labels", labels)
    if jnp.shape(labels) != shape:
        raise ValueError(f"labels must have the shape of {name}, {shape}, got shape {jnp.shape(labels)}.")
    _checks.float_option("class_weights", class_weights, shape[-1:], f"the class axis of {name}")
    _checks.positive("class_weights", class_weights, allow_zero=True)
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {name}")


def _check_multilabel_margin(scores, labels, where):
    _check_multilabel(scores, labels, where, name="scores", integer=True)


def _target_pairs(scores, labels):
    """``(n, z, keep, invalid)``: ``n`` [..., C], how many times each class is listed before
    the first −1; ``z`` [..., C, C], ``z_ji = 1 − (s_j − s_i)``; ``keep``, the pairs of a
    target ``j`` and a non-target ``i``; ``invalid``, the examples holding an id outside
    ``[−1, C)``."""
    classes = scores.shape[-1]
    listed = jnp.cumsum(labels == -1, axis=-1) == 0
    n = jnp.sum(one_hot(labels, classes) & listed[..., None], axis=-2)
    z = 1 - (scores[..., :, None] - scores[..., None, :])
    keep = (n > 0)[..., :, None] & (n == 0)[..., None, :]
    invalid = jnp.any((labels < -1) | (labels >= classes), axis=-1)
    return n, z, keep, invalid


def _multilabel_margin_tangent(p, t, out, res):
    # 0 at the hinge corners (z = 0), as torch and jax.nn.relu.
    if t.scores is None:
        return None
    n, z, keep, invalid = _target_pairs(p.scores, p.labels)
    g = jnp.where(keep & (z > 0), n[..., :, None].astype(z.dtype) / max(z.shape[-1], 1), 0.0)  # ∂ℓ/∂z_ji
    ds = jnp.sum(g, axis=-2) - jnp.sum(g, axis=-1)
    return jnp.where(invalid, 0.0, class_sum((ds, t.scores)))


@hand_derivative(_multilabel_margin_tangent, check=_check_multilabel_margin, class_axis=("scores", "labels"))
def multilabel_margin_loss(scores: Array, labels: Array, *, axis: int = -1, where: Array | None = None) -> jax.Array:
    r"""Multi-label hinge loss on scores ``[..., C]``: every target class above every other by a margin of 1.

    ``labels`` lists the target class ids of each example, ended by the first ``-1``
    (PyTorch's format): ``[3, 0, -1, 1]`` means the targets ``{3, 0}``.  With :math:`n_j`
    the number of times class :math:`j` is listed and :math:`T = \{j: n_j > 0\}`:

    .. math:: \ell = \frac{1}{C} \sum_{j \in T} n_j \sum_{i \notin T} \max\bigl(0,\; 1 - (s_j - s_i)\bigr).

    A class listed twice counts twice, as in PyTorch.  Derivatives (hand rule), with
    :math:`g_{ji} = n_j [1 - (s_j - s_i) > 0] / C` for :math:`j \in T, i \notin T`:
    ``∂ℓ/∂s_i = Σ_j g_ji`` for a non-target, ``∂ℓ/∂s_j = −Σ_i g_ji`` for a target; at a
    hinge corner the subgradient 0, as PyTorch and ``jax.nn.relu``.  Piecewise linear:
    every second derivative is 0.  No target (a list starting with ``-1``) or no
    non-target gives loss 0.  A non-target score of ``-inf`` contributes nothing.

    An example holding an id outside ``[−1, C)`` anywhere in its row, after the ``-1``
    too, gives NaN and derivative 0 (PyTorch raises for it); ids are compared in int32.
    The loss builds ``[..., C, C]`` pairs (as PyTorch's kernel visits them), so it suits
    up to a few thousand classes.

    Args:
      scores: float array ``[..., C]``, with ``C`` on ``axis``.
      labels: int ``[..., C]``, of the shape of ``scores``: target class ids along ``axis``, the
        list ending at the first ``-1``; no derivative.
      axis: static; the class axis of ``scores`` and ``labels`` (default -1, the last), an int.
      where: optional bool ``[...]`` mask broadcasting to the batch shape (``scores``' shape without
        ``axis``).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      the batch shape (``scores``' shape without ``axis``) of losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> scores = jnp.array([[0.1, 0.2, 0.4, 0.8]])
      >>> jaxloss.multilabel_margin_loss(scores, jnp.array([[3, 0, -1, 1]]))
      Array([0.85], dtype=float32)

    References:
      ``torch.nn.functional.multilabel_margin_loss(reduction="none")``.  Differs from
      PyTorch: any leading batch shape (PyTorch takes ``[C]`` or ``[N, C]``), and NaN
      instead of an error for an id outside ``[−1, C)``.
    """
    n, z, keep, invalid = _target_pairs(scores, labels)
    per_target = jnp.sum(jnp.where(keep, jax.nn.relu(z), 0.0), axis=-1)
    return loud(jnp.sum(n * per_target, axis=-1) / max(scores.shape[-1], 1), invalid)


# ------------------------------------------------------------------ multilabel_soft_margin_loss


def _check_multilabel_soft_margin(logits, labels, class_weights, where):
    _check_multilabel(logits, labels, where, name="logits", integer=False, class_weights=class_weights)


def _multilabel_soft_margin_tangent(p, t, out, res):
    x, y, classes = p.logits, p.labels, p.logits.shape[-1]
    w = 1.0 if p.class_weights is None else p.class_weights
    softplus, softplus_neg = softplus_pair(x)
    scale = w / max(classes, 1)
    return class_sum(
        (scale * (jax.nn.sigmoid(x) - y), t.logits),
        (-scale * x, t.labels),
        ((y * softplus_neg + (1 - y) * softplus) / max(classes, 1), t.class_weights),
    )


@hand_derivative(_multilabel_soft_margin_tangent, check=_check_multilabel_soft_margin, class_axis=("logits", "labels"))
def multilabel_soft_margin_loss(logits: Array, labels: Array, *, axis: int = -1, class_weights: Array | None = None,
                                where: Array | None = None) -> jax.Array:
    r"""Multi-label logistic loss on logits ``[..., C]``: the class-mean of weighted binary cross-entropies.

    With class weights :math:`w_c` (1 without ``class_weights``):

    .. math:: \ell = -\frac{1}{C} \sum_c w_c \bigl[y_c \log\sigma(x_c) + (1 - y_c)\log\sigma(-x_c)\bigr]
                   = \frac{1}{C} \sum_c w_c \bigl[y_c \operatorname{softplus}(-x_c)
                     + (1 - y_c)\operatorname{softplus}(x_c)\bigr].

    Derivatives (hand rule): ``∂ℓ/∂x_c = w_c (σ(x_c) − y_c)/C``; for float (soft) labels
    ``∂ℓ/∂y_c = w_c (softplus(−x_c) − softplus(x_c))/C = −w_c x_c/C``; ``∂ℓ/∂w_c`` is the
    class's unweighted term over ``C``.  Through ``softplus`` and ``sigmoid``, logits of
    ±1e4 give finite values and derivatives.

    Args:
      logits: float array ``[..., C]``, with ``C`` on ``axis``.
      labels: ``[..., C]`` targets in [0, 1] of the shape of ``logits``: integer/boolean hard labels
        (no derivative) or float soft labels (differentiated).
      axis: static; the class axis of ``logits`` and ``labels`` (default -1, the last), an int.
      class_weights: optional float weights ``[C]``, >= 0 (PyTorch's ``weight``;
        differentiated when traced).
      where: optional bool ``[...]`` mask broadcasting to the batch shape (``logits``' shape without
        ``axis``).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      the batch shape (``logits``' shape without ``axis``) of losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.multilabel_soft_margin_loss(jnp.array([[0.0, 1e4]]), jnp.array([[1, 0]]))
      Array([5000.3467], dtype=float32)

    References:
      ``torch.nn.functional.multilabel_soft_margin_loss(reduction="none", weight=class_weights)``.
      Differs from PyTorch: any leading batch shape (PyTorch takes ``[N, C]``), and the
      weights get a derivative.  With one class it is
      :func:`~jaxloss.sigmoid_binary_cross_entropy`.
    """
    softplus, softplus_neg = softplus_pair(logits)
    terms = labels * softplus_neg + (1 - labels) * softplus
    if class_weights is not None:
        terms = class_weights * terms
    return jnp.sum(terms, axis=-1) / max(logits.shape[-1], 1)
