"""Partial FC class sampling for the angular-margin losses: which class centres a step keeps.

Each step (and each shard of the classes) keeps a static number ``k`` of its classes: the
classes of the batch's labels first, then random others.  The kept indices are integers, so
they are constants of every derivative: the unsampled centres get a derivative of exactly 0.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.types import Array, AxisName


def kept_count(sample_rate: float, classes: int) -> int:
    """``k = max(1, ⌈sample_rate · classes⌉)`` (the product rounded to 1e-9 first, so that
    0.07 · 100 = 7.000000000000001 keeps 7 classes, not 8), at most ``classes``."""
    return min(classes, max(1, math.ceil(round(sample_rate * classes, 9))))


def check_sampling(sample_rate, key) -> None:
    """``sample_rate`` a static Python or NumPy real in (0, 1]; ``key`` a PRNG key (a typed
    ``jax.random.key`` or a raw integer ``jax.random.PRNGKey``), required when ``sample_rate < 1``."""
    if isinstance(sample_rate, bool | np.bool_) or not isinstance(sample_rate, numbers.Real) \
            or not 0 < float(sample_rate) <= 1:
        raise ValueError("sample_rate (the share of each shard's classes a step keeps, static) must be a "
                         f"Python float in (0, 1], got {sample_rate!r}.")
    if key is None:
        if sample_rate < 1:
            raise ValueError(f"sample_rate={sample_rate} < 1 samples the classes at random: pass key= "
                             "(a jax.random.key, a new one each step).")
        return
    dtype = jnp.result_type(key)
    typed = jnp.issubdtype(dtype, jax.dtypes.prng_key)
    if not (typed and np.ndim(key) == 0) and not (jnp.issubdtype(dtype, jnp.integer) and np.ndim(key) == 1):
        raise TypeError("key must be one PRNG key (jax.random.key(seed), or a raw jax.random.PRNGKey(seed)), "
                        f"got shape {np.shape(key)}, dtype {dtype}.")


def partial_fc_classes(labels: Array, classes: int, sample_rate: float, key: Array | None, *,
                       axis_name: AxisName | None = None, counted: Array | None = None) -> jax.Array | None:
    """The classes a Partial FC step keeps, as local indices ``[k]`` into this shard's
    ``classes`` centres (ascending), or None when it keeps them all (``k == classes``).

    ``k = max(1, ⌈sample_rate · classes⌉)`` (:func:`kept_count`).  Every class gets a
    uniform random score in [0, 1) from ``key`` (folded with the shard's index along
    ``axis_name``, so each shard draws its own); the classes of the labels that count
    (``counted``, ``[...]``, default every label) and that this shard owns (global ids in
    ``[i·classes, (i+1)·classes)`` on shard ``i``) get 1 added; the ``k`` highest scores are
    kept.  So the batch's classes come first (a random ``k`` of them when there are more),
    then random other classes.  ``jaxloss.angular_margin_loss(..., sample_rate=, key=)``
    keeps the same set: call this with the same ``labels`` (global ids), ``classes`` (the
    local count ``class_centers.shape[0]``), ``sample_rate``, ``key`` and ``axis_name`` (and
    ``counted = (labels != ignore_index) & where``) to know which centres a step updates.
    """
    k = kept_count(sample_rate, classes)
    if k == classes:
        return None
    if key is None:
        raise ValueError(f"sample_rate={sample_rate} < 1 samples the classes at random: pass key=.")
    if not jnp.issubdtype(jnp.result_type(key), jax.dtypes.prng_key):
        key = jax.lax.bitcast_convert_type(jnp.asarray(key, jnp.int32), jnp.uint32)  # the ids' int32 back to raw
    if axis_name is not None:
        key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * classes
    local = jnp.asarray(labels, jnp.int32) - offset
    owned = (local >= 0) & (local < classes)
    if counted is not None:
        owned = owned & counted
    # Not owned → index `classes`, out of bounds and dropped (a negative index would wrap).
    present = jnp.zeros(classes, bool).at[jnp.where(owned, local, classes).reshape(-1)].set(True, mode="drop")
    scores = jax.random.uniform(key, (classes,)) + present
    return jnp.sort(jax.lax.top_k(scores, k)[1]).astype(jnp.int32)
