"""A functional queue of negatives: MoCo's queue, cross-batch memory.

A fixed-size ring buffer of embeddings, as a pytree (:class:`QueueState`) that a training
step carries like its optimiser state: :func:`queue_init` makes an empty one,
:func:`queue_push` writes a batch over the oldest entries and :func:`queue_read` returns
every slot with the mask of those written so far, which are the ``negatives=`` and
``negatives_where=`` of :func:`jaxloss.info_nce_loss` (and of
:func:`jaxloss.multiple_negatives_ranking_loss`)::

    state = jaxloss.queue.queue_init(65536, 128)
    ...  # in the step:
    keys, filled = jaxloss.queue.queue_read(state)
    losses = jaxloss.info_nce_loss(q, k, negatives=keys, negatives_where=filled)
    state = jaxloss.queue.queue_push(state, k)

The queue never passes gradient on: what it holds is pushed under ``stop_gradient`` (MoCo's
keys come from a momentum encoder; cross-batch memory stores embeddings of past steps).
Inside ``shard_map`` (or ``pmap``), ``axis_name=`` pushes the whole global batch (all-gathered
over the axis), so every device holds the same queue, which the losses take as it is.
Every function works under ``jit``, ``vmap`` and ``shard_map``.

References:
  He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (MoCo),
  2020; Wang et al., "Cross-Batch Memory for Embedding Learning" (XBM), 2020.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from jaxloss._streaming import gather
from jaxloss.types import Array, AxisName

__all__ = ["QueueState", "queue_init", "queue_push", "queue_read"]


class QueueState(NamedTuple):
    """A queue of ``capacity`` embeddings (a pytree).

    Attributes:
      keys: ``[capacity, D]``, the slots (zeros where nothing was written yet).
      filled: boolean ``[capacity]``, the slots written so far.
      position: int32 scalar, the slot the next push writes first (the oldest entry once full).
    """

    keys: jax.Array
    filled: jax.Array
    position: jax.Array


def queue_init(capacity: int, features: int, dtype: DTypeLike = jnp.float32) -> QueueState:
    """An empty queue of ``capacity`` embeddings of ``features`` numbers.

    Args:
      capacity: the number of slots (a positive int).
      features: the size D of each embedding (a positive int).
      dtype: the dtype the queue stores (float32 by default; a pushed batch is cast to it).

    Returns:
      A :class:`QueueState` with every slot empty.

    Example:
      >>> import jaxloss
      >>> jaxloss.queue.queue_init(4, 2).filled
      Array([False, False, False, False], dtype=bool)
    """
    for name, n in (("capacity", capacity), ("features", features)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int, got {n!r}.")
    return QueueState(jnp.zeros((capacity, features), dtype), jnp.zeros(capacity, bool), jnp.zeros((), jnp.int32))


def queue_push(state: QueueState, batch: Array, *, axis_name: AxisName | None = None) -> QueueState:
    """``state`` with ``batch`` written over its oldest slots (first in, first out).

    Row ``r`` of the batch goes to slot ``(position + r) mod capacity``; the position then
    moves on by the batch size.  The batch is stored under ``stop_gradient`` (no gradient
    reaches it through the queue) and cast to the queue's dtype.

    Args:
      state: a :class:`QueueState`.
      batch: float ``[B, D]`` with ``B ≤ capacity`` (under ``axis_name``: each device's
        ``[B/devices, D]``, with the global ``B ≤ capacity``).
      axis_name: static; None, or a ``shard_map``/``pmap`` axis the batch is sharded over:
        the batch is all-gathered first, in device order, so every device pushes the same
        global batch and keeps the same queue.

    Returns:
      The new :class:`QueueState`.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> state = jaxloss.queue.queue_init(3, 1)
      >>> state = jaxloss.queue.queue_push(state, jnp.array([[1.0], [2.0]]))
      >>> state = jaxloss.queue.queue_push(state, jnp.array([[3.0], [4.0]]))
      >>> state.keys[:, 0], state.position
      (Array([4., 2., 3.], dtype=float32), Array(1, dtype=int32))
    """
    keys = state.keys
    if jnp.ndim(batch) != 2 or jnp.shape(batch)[1] != keys.shape[1]:
        raise ValueError(f"batch must be [B, {keys.shape[1]}] (the queue's features), got shape {jnp.shape(batch)}.")
    if not jnp.issubdtype(jnp.result_type(batch), jnp.floating):
        raise TypeError(f"batch must be a floating-point array, got dtype {jnp.result_type(batch)}.")
    batch = jax.lax.stop_gradient(gather(jnp.asarray(batch), axis_name))
    capacity, size = keys.shape[0], batch.shape[0]
    if size > capacity:
        raise ValueError(f"batch of {size} rows (the global batch, under axis_name) does not fit a queue of "
                         f"capacity {capacity}.")
    slots = (state.position + jnp.arange(size)) % capacity
    return QueueState(keys.at[slots].set(batch.astype(keys.dtype)), state.filled.at[slots].set(True),
                      ((state.position + size) % capacity).astype(jnp.int32))


def queue_read(state: QueueState) -> tuple[jax.Array, jax.Array]:
    """Every slot of the queue and which were written: ``(keys [capacity, D], filled
    [capacity])``, the ``negatives=`` and ``negatives_where=`` of the contrastive losses
    (empty slots masked out).  Slots are in storage order, not age order; the losses do not
    depend on the order of their negatives.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> state = jaxloss.queue.queue_push(jaxloss.queue.queue_init(3, 1), jnp.ones((1, 1)))
      >>> jaxloss.queue.queue_read(state)[1]
      Array([ True, False, False], dtype=bool)
    """
    return state.keys, state.filled
