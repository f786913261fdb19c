"""Reductions of per-example losses: masked, weighted, and global across devices.

Losses return one value per example; these functions turn them into the scalar a
training step minimises.  With ``axis_name`` the result is global over a named axis
(``vmap``, ``pmap`` or ``shard_map``): the psum of the weighted sum over the psum of
the weights, so a batch split over devices gives the same number as the whole batch on
one device.  An all-masked (or all-zero-weight) batch gives 0, never NaN.

Masking recipe: give the same mask to the loss **and** to the reduction::

    losses = jaxloss.softmax_cross_entropy(logits, labels, where=mask)
    loss = jaxloss.reduce.mean(losses, where=mask)

The reduction alone would let a NaN or inf computed in a padded row through the gradient
(``0 * NaN`` is NaN in the backward pass of the loss); the loss alone gives masked rows
loss 0 but leaves them in the mean's count (a mean over the whole batch, padding included).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss.types import Array, AxisName

__all__ = ["sum", "mean", "ratio"]


def _weighted_terms(losses: Array, where: Array | None, weights: Array | None) -> tuple[jax.Array, jax.Array]:
    """``(wᵢℓᵢ, wᵢ)`` with masked entries set to 0 by ``jnp.where``, so inf or NaN in a
    masked loss never leaks into the result or its gradient."""
    _checks.float_array("losses", losses)
    _checks.mask("where", where)
    shape = jnp.shape(losses)
    _checks.broadcasts_to("where", where, shape, "losses")
    if weights is not None:
        _checks.float_array("weights", weights)
        _checks.broadcasts_to("weights", weights, shape, "losses")
    w = jnp.broadcast_to(jnp.ones((), losses.dtype) if weights is None else weights, shape)
    losses = jnp.asarray(losses)
    if where is None:
        return losses * w, w
    losses, w = jnp.where(where, losses, 0), jnp.where(where, w, 0)
    return losses * w, w


def sum(losses: Array, *, where: Array | None = None, weights: Array | None = None,  # noqa: A001
        axis_name: AxisName | None = None) -> jax.Array:
    r"""Weighted sum of the unmasked losses, :math:`\sum_i w_i \ell_i [\text{where}_i]`.

    Args:
      losses: float ``[...]``, the per-example losses, any shape.
      where: optional boolean mask broadcasting to ``losses``; masked entries count 0.
        Give the loss the same mask (see the module's masking recipe).
      weights: optional float weights broadcasting to ``losses`` (differentiated).
      axis_name: optional named axis (or tuple of names) to sum over as well, under
        ``vmap``, ``pmap`` or ``shard_map``.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.reduce.sum(jnp.array([1.0, 2.0, 4.0]), where=jnp.array([True, True, False]))
      Array(3., dtype=float32)
    """
    total = jnp.sum(_weighted_terms(losses, where, weights)[0])
    return total if axis_name is None else jax.lax.psum(total, axis_name)


def mean(losses: Array, *, where: Array | None = None, weights: Array | None = None,
         axis_name: AxisName | None = None) -> jax.Array:
    r"""Mean over the unmasked losses, weighted when ``weights`` is given.

    .. math:: \frac{\sum_i w_i \ell_i [\text{where}_i]}{\sum_i w_i [\text{where}_i]}

    With ``weights=None`` this is the plain mean over valid entries.  With per-example
    weights it is the weighted mean: on unweighted losses, ``weights=class_weights[labels]``
    is PyTorch's class-weighted ``reduction="mean"`` (for losses already weighted by
    class, use :func:`ratio`).  With ``axis_name`` both sums are ``psum``-ed over the
    axis first, so the mean is global.  A denominator of 0 gives 0.

    Args:
      losses: float ``[...]``, the per-example losses, any shape.
      where: optional boolean mask broadcasting to ``losses``: masked entries leave the
        numerator and the count.  Give the loss the same mask, so that a NaN in a padded
        row cannot reach the gradient (see the module's masking recipe).
      weights: optional float weights broadcasting to ``losses`` (differentiated).
      axis_name: optional named axis (or tuple of names) to reduce over as well.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.reduce.mean(jnp.array([1.0, 2.0, 4.0]), weights=jnp.array([1.0, 1.0, 2.0]))
      Array(2.75, dtype=float32)
    """
    return _divide(*_weighted_terms(losses, where, weights), axis_name)


def ratio(numerators: Array, denominators: Array, *, where: Array | None = None,
          axis_name: AxisName | None = None) -> jax.Array:
    r"""Sum of the unmasked numerators over the sum of the unmasked denominators.

    .. math:: \frac{\sum_i n_i [\text{where}_i]}{\sum_i d_i [\text{where}_i]}

    This is PyTorch's class-weighted ``reduction="mean"`` for losses that are already
    weighted by class (its ``reduction="none"`` with ``weight=w``, as
    :func:`jaxloss.softmax_cross_entropy` and :func:`jaxloss.nll_loss` return them):
    ``ratio(losses, w[labels], where=mask)``.  With ``axis_name`` both sums are global.
    A denominator of 0 gives 0.

    Args:
      numerators: float ``[...]``, any shape.
      denominators: float ``[...]`` broadcasting to ``numerators``.
      where: optional boolean mask broadcasting to ``numerators``.
      axis_name: optional named axis (or tuple of names) to reduce over as well.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.reduce.ratio(jnp.array([2.0, 1.0, 8.0]), jnp.array([2.0, 1.0, 2.0]))
      Array(2.2, dtype=float32)
    """
    _checks.float_array("denominators", denominators)
    _checks.broadcasts_to("denominators", denominators, jnp.shape(numerators), "numerators")
    numerators, _ = _weighted_terms(numerators, where, None)
    denominators, _ = _weighted_terms(jnp.broadcast_to(denominators, jnp.shape(numerators)), where, None)
    return _divide(numerators, denominators, axis_name)


def _divide(numerators, denominators, axis_name):
    total, count = jnp.sum(numerators), jnp.sum(denominators)
    if axis_name is not None:
        total, count = jax.lax.psum((total, count), axis_name)
    return jnp.where(count != 0, total / jnp.where(count != 0, count, 1), 0)
