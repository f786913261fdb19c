"""Reductions of per-example losses: masked, weighted, and global across devices.

Losses return one value per example; these functions turn them into the scalar a
training step minimises.  With ``axis_name`` the result is global over a named axis
(``vmap``, ``pmap`` or ``shard_map``): the psum of the weighted sum over the psum of
the weights, so a batch split over devices gives the same number as the whole batch on
one device.  An all-masked (or all-zero-weight) batch gives 0, never NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks

__all__ = ["sum", "mean"]


def _weighted_terms(losses, where, weights):
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
    if where is None:
        return losses * w, w
    losses, w = jnp.where(where, losses, 0), jnp.where(where, w, 0)
    return losses * w, w


def sum(losses, *, where=None, weights=None, axis_name=None):  # noqa: A001
    r"""Weighted sum of the unmasked losses, :math:`\sum_i w_i \ell_i [\text{where}_i]`.

    Args:
      losses: float array of per-example losses, any shape.
      where: optional boolean mask broadcasting to ``losses``; masked entries count 0.
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


def mean(losses, *, where=None, weights=None, axis_name=None):
    r"""Mean over the unmasked losses, weighted when ``weights`` is given.

    .. math:: \frac{\sum_i w_i \ell_i [\text{where}_i]}{\sum_i w_i [\text{where}_i]}

    With ``weights=None`` this is the plain mean over valid entries.  With per-example
    weights it is the weighted mean; ``weights=class_weights[labels]`` reproduces
    PyTorch's class-weighted ``reduction="mean"`` (it divides by the sum of the weights
    of the unmasked targets).  With ``axis_name`` both sums are ``psum``-ed over the
    axis first, so the mean is global.  A denominator of 0 gives 0.

    Args:
      losses: float array of per-example losses, any shape.
      where: optional boolean mask broadcasting to ``losses``.
      weights: optional float weights broadcasting to ``losses`` (differentiated).
      axis_name: optional named axis (or tuple of names) to reduce over as well.

    Returns:
      A scalar.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.reduce.mean(jnp.array([1.0, 2.0, 4.0]), weights=jnp.array([1.0, 1.0, 2.0]))
      Array(2.75, dtype=float32)
    """
    terms, w = _weighted_terms(losses, where, weights)
    total, count = jnp.sum(terms), jnp.sum(w)
    if axis_name is not None:
        total, count = jax.lax.psum((total, count), axis_name)
    return jnp.where(count != 0, total / jnp.where(count != 0, count, 1), 0)
