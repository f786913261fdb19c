r"""Sparsemax and Fenchel–Young losses.

A Fenchel–Young loss pairs a regularised "max" :math:`\Omega^*` (log-sum-exp for softmax,
the sparsemax cumulant for sparsemax) with targets :math:`y`:
:math:`\ell(s; y) = \Omega^*(s) + \Omega(y) - \langle s, y\rangle`, whose gradient with respect
to the scores is :math:`\nabla\Omega^*(s) - y`, the prediction minus the target.  The
sparsemax losses here are those of the Gini negentropy :math:`\Omega(p) = \tfrac12(\|p\|^2 - 1)`
on the simplex; :func:`make_fenchel_young_loss` builds one from any max function.

Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products through its hand-derived rule;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._math import opaque, signed_labels
from jaxloss._softmax import (
    IGNORE_INDEX, check_classes, class_ids, class_sum, cofactor, label_value, loud, one_hot, times_nonzero,
)
from jaxloss.gradients import Loss, derived_loss, hand_derivative, tangent_sum
from jaxloss.types import Array

# ------------------------------------------------------------------ sparsemax_loss


def _signed(labels):
    """{0, 1} or {-1, 1} labels as ±1.0: positive when the label is > 0."""
    return jnp.where(labels > 0, 1.0, -1.0)


def _sparse_sigmoid(z):
    """``clip((z + 1)/2, 0, 1)``: the derivative of ``sparse_plus``."""
    return jnp.clip(0.5 * (z + 1), 0.0, 1.0)


def _sparsemax_tangent(p, t, out, res):
    y = _signed(p.labels)
    return tangent_sum((-y * _sparse_sigmoid(-y * p.logits), t.logits))


@hand_derivative(_sparsemax_tangent, check=lambda logits, labels, where: _checks.scores(
    logits, labels, where, name="logits"))
def sparsemax_loss(logits: Array, labels: Array, *, where: Array | None = None) -> jax.Array:
    r"""Binary sparsemax loss, elementwise: the sparse counterpart of the logistic loss.

    With :math:`y = \pm 1` (the positive class for a label ``> 0``) and :math:`z = -y x`,

    .. math:: \ell = \operatorname{sparse\_plus}(z) = \begin{cases}
                 0 & z \le -1 \\ (z + 1)^2 / 4 & -1 < z < 1 \\ z & z \ge 1,
              \end{cases}

    the Fenchel–Young loss of the two-class sparsemax (the sparse sigmoid): 0 exactly
    when ``jax.nn.sparse_sigmoid(x)`` equals the 0/1 label.  It is computed as
    ``(clip(z, −1, 1) + 1)²/4 + relu(z − 1)``, which cannot overflow.

    Derivative (hand rule): ``∂ℓ/∂x = −y·sparse_sigmoid(z) = −y·clip((z + 1)/2, 0, 1)``;
    the loss is continuously differentiable, so the rule is exact at the kinks
    ``z = ±1`` too (where only the second derivative, ½ inside and 0 outside, jumps).
    Labels are discrete and get no derivative.

    Differs from ``optax.losses.sparsemax_loss``: a label of −1 is the negative class here
    (optax reads any non-zero label as positive); on {0, 1} labels the two agree.

    Args:
      logits: float ``[...]`` scores, any shape.
      labels: ``[...]`` labels in {0, 1} or {-1, 1} (``> 0`` is positive), broadcasting to
        ``logits``; no derivative.
      where: optional bool ``[...]`` mask broadcasting to ``logits``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``logits.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.sparsemax_loss(jnp.array([0.5, 2.0, 0.5]), jnp.array([1, 1, 0]))
      Array([0.0625, 0.    , 0.5625], dtype=float32)

    References:
      Blondel, Martins & Niculae, "Learning with Fenchel-Young losses", JMLR 2020, §4.4.
      ``optax.losses.sparsemax_loss``.
    """
    # Constants opaque and labels signed without a select: XLA:CPU fuses this into the mean.  Integer
    # ids (int32 here) are signed in int32 and converted once, the one pass the mean cannot take in.
    zero, quarter, one = opaque(logits.dtype, 0.0, 0.25, 1.0)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        z = (1 - 2 * jnp.clip(labels, 0, 1)).astype(logits.dtype) * logits
    else:
        z = -signed_labels(labels, logits.dtype) * logits
    return quarter * jnp.square(jnp.clip(z, -one, one) + one) + jnp.maximum(z - one, zero)


# ------------------------------------------------------------------ multiclass_sparsemax_loss


def _sparsemax_support(z):
    """``(smallest, size)`` of the support of ``sparsemax(z)`` over the last axis: the
    smallest score ``z_(k)`` in it and its size ``k`` (at least 1), from the scores sorted
    in decreasing order, where ``k`` is the largest with ``1 + k·z_(k) > Σ_{i≤k} z_(i)``.
    Tied scores are all in or all out.  No derivative: the support is locally constant."""
    z = jax.lax.stop_gradient(z)
    ordered = -jnp.sort(-z, axis=-1)
    rank = jnp.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    size = jnp.maximum(jnp.sum(1 + rank * ordered > jnp.cumsum(ordered, axis=-1), axis=-1), 1)
    return jnp.take_along_axis(ordered, (size - 1)[..., None], axis=-1)[..., 0], size


def _sparsemax_threshold(z, smallest, size):
    r"""The sparsemax of ``z`` and its threshold ``τ = (Σ_{j∈S} z_j − 1)/k`` from the support
    ``S = {j: z_j ≥ smallest}`` of size ``k``, written so that autodiff gives the support-set
    Jacobian (``dτ = Σ_S dz_j / k``, ``dp = [S](dz − dτ)``)."""
    support = (z >= smallest[..., None]) & (z > -jnp.inf)
    tau = (jnp.sum(jnp.where(support, z, 0.0), axis=-1) - 1) / size
    return jnp.where(support, z - tau[..., None], 0.0), tau


def _shifted_scores(scores):
    """``s − max s`` (the maximum 0 for a row without a finite score), and the maximum."""
    m = jax.lax.stop_gradient(jnp.max(scores, axis=-1))
    m = jnp.where(jnp.isfinite(m), m, 0)
    return scores - m[..., None], m


def _check_multiclass_sparsemax(scores, labels, ignore_index, where):
    check_classes(scores, labels, where, name="scores", ignore_index=ignore_index)


def _multiclass_sparsemax_tangent(p, t, out, res):
    # ∂ℓ/∂s = sparsemax(s) − onehot(y), from the stored shift, threshold and support bound.
    m, tau, smallest = res
    z = p.scores - m[..., None]
    probs = jnp.where((z >= smallest[..., None]) & (z > -jnp.inf), z - tau[..., None], 0.0)
    ids, counted, _ = class_ids(p.labels, z.shape[-1], p.ignore_index)
    ds = jnp.where(counted[..., None], probs - one_hot(ids, z.shape[-1]), 0.0)
    return class_sum((ds, t.scores))


@hand_derivative(_multiclass_sparsemax_tangent, static=("ignore_index",), check=_check_multiclass_sparsemax,
                 residuals=True, class_axis=("scores", "labels"))
def multiclass_sparsemax_loss(scores: Array, labels: Array, *, axis: int = -1, ignore_index: int | None = IGNORE_INDEX,
                              where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""Multi-class sparsemax loss on scores ``[..., C]`` and class ids.

    With :math:`p = \operatorname{sparsemax}(s)`, the Euclidean projection of the scores
    onto the probability simplex, :math:`p_j = \max(s_j - \tau, 0)` where the threshold
    :math:`\tau` makes :math:`\sum_j p_j = 1`, and :math:`y` the label class:

    .. math:: \ell = \Omega^*(s) - s_y, \qquad
              \Omega^*(s) = \langle p, s\rangle + \tfrac12\bigl(1 - \|p\|^2\bigr),

    the Fenchel–Young loss of the Gini negentropy (0 exactly when :math:`p` is the one-hot
    of :math:`y`).  It is computed from the scores shifted by their maximum, in the form

    .. math:: \ell = \tfrac12\Bigl[\bigl(\textstyle\sum_{j \ne y} p_j\bigr)^2
              + \textstyle\sum_{j \ne y} p_j^2\Bigr] + \max(0,\, \tau - s_y),

    (:math:`\tfrac12\|e_y - p\|^2` plus the label's distance below the threshold; both
    terms are ≥ 0, so a small loss does not cancel as the textbook form's terms do).

    Derivatives (hand rule).  :math:`\Omega^*` is a maximum over :math:`p` of a function
    linear in :math:`s`, so by Danskin's theorem :math:`\nabla\Omega^* = p` and
    ``∂ℓ/∂s = sparsemax(s) − onehot(y)``.  Its derivative, the loss's Hessian, is the
    sparsemax Jacobian: on the support :math:`S = \{j : p_j > 0\}` (size :math:`k`),
    :math:`\sum_{j \in S}(s_j - \tau) = 1` gives :math:`\tau = (\sum_{S} s_j - 1)/k`, so
    :math:`d\tau = \sum_{S} ds_j / k` and :math:`dp_j = [j \in S](ds_j - d\tau)`:
    :math:`J = \operatorname{diag}(\mathbb 1_S) - \mathbb 1_S \mathbb 1_S^\top / k`.
    The rule computes :math:`p` in differentiable ``jnp`` from the support, so its own
    derivative is this :math:`J`.  The support is found by sorting (``O(C log C)``);
    reverse mode keeps the scores and, per example, the shift, the threshold and the
    support's smallest score.

    A score of ``-inf`` (a masked-out class) is never in the support and gets derivative
    0; a label class of ``-inf`` gives ``+inf``.  An id equal to ``ignore_index`` gives
    loss 0 and derivative exactly 0; any other id outside ``[0, C)`` gives NaN (ids are
    compared in int32).

    Differs from ``optax.losses.multiclass_sparsemax_loss``: ids may have any batch shape
    (optax takes one batch axis), and ``ignore_index`` / ``where`` are jaxloss's.

    Args:
      scores: float array ``[..., C]`` of class scores (C on ``axis``).
      labels: int ``[...]`` class ids with the batch shape (``scores``' shape without ``axis``);
        no derivative.
      axis: static; the class axis of ``scores`` (default −1, the last), an int.
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default) or ``None``.
      where: optional bool ``[...]`` mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``scores``' shape without ``axis``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.multiclass_sparsemax_loss(jnp.array([[2.0, 1.5, -1.0], [0.0, 3.0, 0.0]]), jnp.array([0, 0]))
      Array([0.0625, 3.    ], dtype=float32)

    References:
      Martins & Astudillo, "From softmax to sparsemax: a sparse model of attention and
      multi-label classification", ICML 2016.  Blondel, Martins & Niculae, "Learning with
      Fenchel-Young losses", JMLR 2020.  ``optax.losses.multiclass_sparsemax_loss``.
    """
    classes = scores.shape[-1]
    ids, counted, invalid = class_ids(labels, classes, ignore_index)
    z, m = _shifted_scores(scores)
    smallest, size = _sparsemax_support(z)
    probs, tau = _sparsemax_threshold(z, smallest, size)
    others = jnp.where(one_hot(ids, classes), 0.0, probs)
    loss = 0.5 * (jnp.square(jnp.sum(others, axis=-1)) + jnp.sum(jnp.square(others), axis=-1))
    loss = loss + jax.nn.relu(tau - label_value(z, ids))
    return loud(jnp.where(counted, loss, 0.0), invalid), (m, tau, smallest)


# ------------------------------------------------------------------ make_fenchel_young_loss


def _split_options(args, kwargs):
    """``(params, structure)``: the float array leaves of ``(args, kwargs)`` raveled into one
    vector (None without any), traced and differentiated, and the rest, hashable, to
    rebuild them with (:func:`_join_options`)."""
    leaves, tree = jax.tree.flatten((args, kwargs))
    arrays = [isinstance(x, jax.Array | np.ndarray) for x in leaves]
    for x, array in zip(leaves, arrays):
        if array and not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(f"array arguments of max_fun must be float arrays (they are differentiated), got "
                            f"{_checks._describe(x)}; bind other arrays into max_fun (functools.partial).")
    params = jnp.concatenate([jnp.ravel(x) for x, a in zip(leaves, arrays) if a]) if any(arrays) else None
    return params, (tree, tuple(np.shape(x) if a else x for x, a in zip(leaves, arrays)), tuple(arrays))


def _join_options(params, structure):
    """``(args, kwargs)`` from :func:`_split_options`'s parts."""
    tree, leaves, arrays = structure
    offsets = np.cumsum([0] + [int(np.prod(x)) for x, a in zip(leaves, arrays) if a])
    pieces = iter(params[lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:]))
    return jax.tree.unflatten(tree, [next(pieces).reshape(x) if a else x for x, a in zip(leaves, arrays)])


def _max_values(max_fun, scores, params, structure):
    """``max_fun(s, *args, **kwargs)`` for every example's scores ``s`` (the last axis)."""
    args, kwargs = _join_options(params, structure)
    return jnp.vectorize(lambda s: max_fun(s, *args, **kwargs), signature="(n)->()")(scores)


def _check_fenchel_young(scores, targets, max_fun, params, structure, where):
    _checks.float_array("scores", scores)
    _checks.float_array("targets", targets)
    shape = jnp.shape(scores)
    if len(shape) < 1:
        raise ValueError(f"scores must have a class axis (rank >= 1), got shape {shape}.")
    _checks.broadcasts_to("targets", targets, shape, "scores")
    _checks.broadcasts_to("where", where, shape[:-1], "the batch shape of scores")


def _fenchel_young_tangent(p, t, out, res):
    # The max function's own derivative (∇max_fun(s)·ds, and its options'), then −⟨y, ds⟩ − ⟨s, dy⟩.
    dmax = None
    if t.scores is not None or t.params is not None:
        def max_of(scores, params=None):
            return _max_values(p.max_fun, scores, params, p.structure)

        primals = (p.scores,) if p.params is None else (p.scores, p.params)
        # Tangents come in the inputs' own dtype, the primals upcast.
        tangents = tuple(jnp.zeros_like(x) if dx is None else dx.astype(x.dtype)
                         for x, dx in zip(primals, (t.scores, t.params)))
        dmax = jax.jvp(max_of, primals, tangents)[1]
    dlinear = class_sum((-p.targets, t.scores), (-cofactor(p.targets, p.scores), t.targets))
    return tangent_sum((1.0, dmax), (1.0, dlinear))


@hand_derivative(_fenchel_young_tangent, static=("max_fun", "structure"), check=_check_fenchel_young,
                 integer_options=())
def _fenchel_young_loss(scores, targets, *, max_fun, params=None, structure=None, where=None):
    """``max_fun(s) − ⟨y, s⟩`` per example; see :func:`make_fenchel_young_loss`."""
    return _max_values(max_fun, scores, params, structure) - jnp.sum(times_nonzero(targets, scores), axis=-1)


def make_fenchel_young_loss(max_fun: Callable[..., jax.Array]) -> Loss[...]:
    r"""A Fenchel–Young loss built from a max function.

    Given :math:`\Omega^*` = ``max_fun``, a convex function of one example's scores
    ``[C] -> scalar`` (``jax.nn.logsumexp`` gives the softmax cross-entropy with soft
    targets), the returned ``fenchel_young_loss(scores, targets, *args, where=None,
    **kwargs)`` computes, per example over the last axis,

    .. math:: \ell(s; y) = \Omega^*(s) - \langle y, s\rangle,

    calling ``max_fun(s, *args, **kwargs)`` on each example's scores ``s`` (so ``max_fun``
    written for one example works on any batch shape; the extra arguments are the same
    for every example).  This is the Fenchel–Young loss up to the term :math:`\Omega(y)`,
    which depends on the targets only.

    Derivatives (hand rule): ``∂ℓ/∂s = ∇max_fun(s) − y``, the max function's gradient
    obtained by differentiating ``max_fun`` itself (forward mode, inside the rule, which
    stays differentiable, so Hessians and HVPs work where ``max_fun`` is twice
    differentiable); ``∂ℓ/∂y = −s``.  A class with target 0 and score ``−inf`` (masked out)
    adds 0 to ``⟨y, s⟩`` (not ``0·(−inf)``), and its target's derivative is 0.  Float array
    arguments in ``args``/``kwargs`` are traced and differentiated through ``max_fun``;
    anything else but arrays (Python numbers, strings) is static and must be hashable;
    bind other arrays into ``max_fun`` (``functools.partial``).

    Differs from ``optax.losses.make_fenchel_young_loss``: the loss takes ``where`` (an
    example mask) and extra positional arguments for ``max_fun``, and ``targets`` must
    broadcast to ``scores``.

    Args:
      max_fun: ``max_fun(scores [C], *args, **kwargs) -> scalar``, convex in the scores.

    Returns:
      ``fenchel_young_loss(scores [..., C], targets, *args, where=None, **kwargs)``
      returning ``scores.shape[:-1]`` losses (float32 for lower-precision scores), with
      ``.reference`` (plain autodiff of the same formula).

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> loss = jaxloss.make_fenchel_young_loss(jax.nn.logsumexp)
      >>> loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([[0.0, 0.0, 1.0]]))
      Array([0.4076059], dtype=float32)

    References:
      Blondel, Martins & Niculae, "Learning with Fenchel-Young losses", JMLR 2020.
      ``optax.losses.make_fenchel_young_loss``.
    """
    if not callable(max_fun):
        raise TypeError(f"max_fun must be callable, got {type(max_fun).__name__}.")

    def call(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
        def fenchel_young_loss(scores: Array, targets: Array, *args: Any, where: Array | None = None,
                               **kwargs: Any) -> jax.Array:
            params, structure = _split_options(args, kwargs)
            return fn(scores, targets, max_fun=max_fun, params=params, structure=structure, where=where)

        fenchel_young_loss.__doc__ = make_fenchel_young_loss.__doc__
        return fenchel_young_loss

    reference = call(_fenchel_young_loss.reference)
    reference.__doc__ = "``fenchel_young_loss`` differentiated by plain autodiff of its formula."
    return derived_loss(call(_fenchel_young_loss), reference)
