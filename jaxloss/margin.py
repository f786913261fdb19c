"""Multi-class margin losses on scores ``[..., classes]``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._softmax import (
    IGNORE_INDEX, check_classes, class_ids, class_sum, label_value, loud, one_hot,
)
from jaxloss.gradients import hand_derivative, tangent_sum


_HINGE_KINDS = ("crammer_singer", "weston_watkins")


def _check_multiclass_hinge(scores, labels, margin, kind, p, ignore_index, where):
    check_classes(scores, labels, where, name="scores", ignore_index=ignore_index, margin=margin)
    _checks.positive("margin", margin, allow_zero=True)
    if not isinstance(kind, str) or kind not in _HINGE_KINDS:
        raise ValueError(f"kind must be 'crammer_singer' or 'weston_watkins', got {kind!r}.")
    if not isinstance(p, int) or isinstance(p, bool) or p not in (1, 2):
        raise ValueError(f"p must be the int 1 (hinge) or 2 (squared hinge), got {p!r}.")


def _multiclass_hinge_slope(z, p):
    """``d max(0, z)^p / dz``, with 0 at the corner ``z = 0`` (as ``jax.nn.relu``)."""
    return jnp.where(z > 0, 1.0, 0.0) if p == 1 else 2 * jax.nn.relu(z)


def _multiclass_hinge_tangent(p, t, out, res):
    # Subgradients autodiff would not pick: 0 at the corners; ties split evenly.
    s, classes = p.scores, p.scores.shape[-1]
    ids, counted, _ = class_ids(p.labels, classes, p.ignore_index)
    label = one_hot(ids, classes)
    m = jnp.asarray(p.margin)
    if p.kind == "crammer_singer":
        # z = m + max_{j≠y} s_j − s_y; the max's derivative is split evenly among ties.
        runner_up = res
        z = m + runner_up - label_value(s, ids)
        tied = jnp.where(~label & (s == runner_up[..., None]), 1.0, 0.0)
        share = tied / jnp.maximum(jnp.sum(tied, axis=-1, keepdims=True), 1.0)
        slope = jnp.where(counted, _multiclass_hinge_slope(z, p.p), 0.0)
        ds = slope[..., None] * (share - label)  # ∂ℓ/∂s_j
        dm = slope
    else:
        # ℓ = Σ_{j≠y} max(0, z_j)^p / C with z_j = m − s_y + s_j.
        z = m[..., None] - label_value(s, ids)[..., None] + s
        slope = jnp.where(label | ~counted[..., None], 0.0, _multiclass_hinge_slope(z, p.p)) / max(classes, 1)
        dm = jnp.sum(slope, axis=-1)
        ds = slope - dm[..., None] * label  # ∂ℓ/∂s_j
    return tangent_sum((1.0, class_sum((ds, t.scores))), (dm, t.margin))


@hand_derivative(_multiclass_hinge_tangent, static=("kind", "p", "ignore_index"), check=_check_multiclass_hinge,
                 residuals=True)
def multiclass_hinge_loss(scores, labels, *, margin=1.0, kind="crammer_singer", p=1, ignore_index=IGNORE_INDEX,
                          where=None):
    r"""Multi-class hinge loss on scores ``[..., C]``: Crammer–Singer or Weston–Watkins.

    With :math:`y` the label class and margin :math:`m`:

    * ``kind="crammer_singer"`` (default), the hinge on the runner-up class:

      .. math:: \ell = \max\bigl(0,\; m + \max_{j \ne y} s_j - s_y\bigr)^p;

    * ``kind="weston_watkins"``, one hinge per wrong class, divided by the number of
      classes :math:`C` as PyTorch does (``torch.nn.functional.multi_margin_loss``
      divides by ``x.size(-1)``, the class count, not by :math:`C - 1`):

      .. math:: \ell = \frac{1}{C} \sum_{j \ne y} \max(0,\; m - s_y + s_j)^p.

    ``p = 2`` is the squared hinge.  Derivatives (hand rule), with the hinge slope
    :math:`g(z) = [z > 0]` for ``p = 1`` and :math:`2\max(0, z)` for ``p = 2``:
    Crammer–Singer, with :math:`z = m + \max_{j \ne y} s_j - s_y`:
    ``∂ℓ/∂s_j = g(z)·(w_j − [j = y])`` and ``∂ℓ/∂m = g(z)``, where :math:`w_j` is 1 for
    the runner-up class; when several wrong classes tie for the maximum, the rule splits
    the derivative evenly among them (``w_j = 1/k`` for each of the ``k`` tied classes:
    the average of the subgradients, itself a subgradient, and what autodiff of
    ``jnp.max`` gives).  Weston–Watkins, with :math:`z_j = m - s_y + s_j`:
    ``∂ℓ/∂s_j = g(z_j)/C`` for ``j ≠ y``, ``∂ℓ/∂s_y = −Σ_{j≠y} g(z_j)/C`` and
    ``∂ℓ/∂m = Σ_{j≠y} g(z_j)/C``.  At a hinge corner (``z = 0``) the rule returns the
    subgradient 0, as ``jax.nn.relu`` and PyTorch do.

    A score of ``-inf`` for a wrong class (a masked-out class) contributes 0 to the loss
    and gets derivative 0; the label class's score must be finite.  An id equal to
    ``ignore_index`` gives loss 0 and derivative exactly 0; any other id outside
    ``[0, C)`` gives NaN (ids are compared in int32).  Reverse mode keeps the inputs and,
    for Crammer–Singer, the runner-up
    score per example.

    Args:
      scores: float array ``[..., C]`` of class scores (logits), the class axis last.
      labels: integer class ids with the batch shape ``scores.shape[:-1]``; no derivative.
      margin: float >= 0, or a float array broadcasting to the batch shape
        (differentiated when traced).
      kind: static; ``"crammer_singer"`` or ``"weston_watkins"``.
      p: static; 1 (hinge) or 2 (squared hinge).
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.
      where: optional boolean mask broadcasting to the batch shape.

    Returns:
      ``scores.shape[:-1]`` losses.

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
      ``torch.nn.functional.multi_margin_loss(reduction="none", p=p, margin=margin)``
      (without its ``weight``); the default (Crammer–Singer, margin 1, p=1) matches
      ``optax.losses.multiclass_hinge_loss``.
    """
    ids, counted, invalid = class_ids(labels, scores.shape[-1], ignore_index)
    label = one_hot(ids, scores.shape[-1])
    m = jnp.asarray(margin)
    if kind == "crammer_singer":
        runner_up = jnp.max(jnp.where(label, -jnp.inf, scores), axis=-1, initial=-jnp.inf)
        hinge = jax.nn.relu(m + runner_up - label_value(scores, ids))
        return loud(jnp.where(counted, hinge if p == 1 else jnp.square(hinge), 0.0), invalid), runner_up
    hinges = jax.nn.relu(m[..., None] - label_value(scores, ids)[..., None] + scores)
    hinges = hinges if p == 1 else jnp.square(hinges)
    loss = jnp.sum(jnp.where(label | ~counted[..., None], 0.0, hinges), axis=-1) / max(scores.shape[-1], 1)
    return loud(loss, invalid), ()


# ------------------------------------------------------------------ kl_divergence, distillation_loss
