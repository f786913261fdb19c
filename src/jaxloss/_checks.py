"""Trace-time input checks shared by every loss: clear errors naming the argument."""

from __future__ import annotations

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np


def _describe(x) -> str:
    return f"shape {tuple(np.shape(x))}, dtype {jnp.result_type(x)}"


def float_array(name: str, x) -> None:
    """``x`` must be a floating-point array (logits, predictions, embeddings)."""
    if x is None or not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got {'None' if x is None else _describe(x)}.")


def numeric(name: str, x) -> None:
    """``x`` must be a real number array (integer, boolean or float)."""
    if x is None or jnp.issubdtype(jnp.result_type(x), jnp.complexfloating):
        raise TypeError(f"{name} must be a real array, got {'None' if x is None else _describe(x)}.")


def integer_array(name: str, x) -> None:
    """``x`` must be an integer array (labels, class ids)."""
    if x is None or not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise TypeError(f"{name} must be an integer array, got {'None' if x is None else _describe(x)}.")


def paddings_like(name: str, x, like, like_name: str) -> None:
    """``x`` (paddings) must be a real array with the shape of argument ``like_name``."""
    numeric(name, x)
    if np.shape(x) != np.shape(like):
        raise ValueError(f"{name} with shape {np.shape(x)} must have the shape {np.shape(like)} of {like_name}.")


def broadcasts_to(name: str, x, shape: tuple[int, ...], to: str) -> None:
    """``x`` must broadcast to ``shape`` (the shape of argument ``to``) without growing it."""
    if x is None:
        return
    try:
        ok = jnp.broadcast_shapes(np.shape(x), shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{name} with shape {tuple(np.shape(x))} does not broadcast to "
                         f"{to} with shape {tuple(shape)}.")


def positive(name: str, x, *, allow_zero: bool = False) -> None:
    """A concrete option (Python number or array) must be > 0 (or >= 0); traced ones pass."""
    if isinstance(x, jax.core.Tracer) or x is None:
        return
    value = np.asarray(x)
    bad = np.any(value < 0) if allow_zero else np.any(value <= 0)
    if bad:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {x if isinstance(x, numbers.Number) else value}.")


def warn_if_implausible(name: str, x, plausible, advice: str) -> None:
    """A ``UserWarning`` at trace time when a concrete option fails ``plausible`` (a
    function of its NumPy value): for options whose meaning is easy to mistake (a log
    scale passed as the scale); traced values pass."""
    if isinstance(x, jax.core.Tracer) or x is None:
        return
    value = np.asarray(x)
    if not np.all(plausible(value)):
        shown = x if isinstance(x, numbers.Number) else value
        warnings.warn(f"{name}={shown}: {advice}", UserWarning, stacklevel=4)


def in_unit_interval(name: str, x) -> None:
    """A concrete option must lie in [0, 1]; traced ones pass."""
    if isinstance(x, jax.core.Tracer) or x is None:
        return
    value = np.asarray(x)
    if np.any((value < 0) | (value > 1)):
        raise ValueError(f"{name} must lie in [0, 1], got {x if isinstance(x, numbers.Number) else value}.")


def float_option(name: str, x, shape: tuple[int, ...], to: str) -> None:
    """A float option (margin, delta, weight): a float scalar or array broadcasting to ``to``."""
    if x is None:
        return
    if not isinstance(x, numbers.Real) or isinstance(x, bool):
        float_array(name, x)
    broadcasts_to(name, x, shape, to)


def mask(name: str, x) -> None:
    """``x`` must be a boolean mask (or None)."""
    if x is not None and jnp.result_type(x) != jnp.bool_:
        raise TypeError(f"{name} must be a boolean mask, got {_describe(x)}.")


def hashable(name: str, x) -> None:
    """A static option (it changes the program) must be hashable."""
    try:
        hash(x)
    except TypeError:
        raise TypeError(f"{name} is a static option and must be hashable (str, bool, int, tuple), "
                        f"got {type(x).__name__} {x!r}.") from None


def scores(scores, labels, where=None, *, name="scores", labels_name="labels", **options):
    """Scores of any shape; numeric labels and ``where`` broadcasting to them; float options too."""
    float_array(name, scores)
    numeric(labels_name, labels)
    shape = jnp.shape(scores)
    broadcasts_to(labels_name, labels, shape, name)
    broadcasts_to("where", where, shape, name)
    for option, value in options.items():
        float_option(option, value, shape, name)


def class_vectors(embeddings, vectors, labels, name: str, batch_rank: int | None = None,
                  vector_rank: int = 2) -> tuple[int, ...]:
    """Embeddings ``[..., D]`` (rank ``batch_rank + 1`` if given), class vectors ``[C, ..., D]``
    of rank ``vector_rank`` (angular, centre and proxy losses), integer labels of the batch shape;
    returns the batch shape."""
    float_array("embeddings", embeddings)
    float_array(name, vectors)
    shape, vshape = tuple(jnp.shape(embeddings)), tuple(jnp.shape(vectors))
    if len(shape) < 1 or (batch_rank is not None and len(shape) != batch_rank + 1):
        want = "[..., features]" if batch_rank is None else "[examples, features]"
        raise ValueError(f"embeddings must be {want}, got shape {shape}.")
    if len(vshape) != vector_rank or min(vshape) < 1 or vshape[-1] != shape[-1]:
        raise ValueError(f"{name} must have rank {vector_rank}, at least one class and the features of embeddings "
                         f"({shape[-1]}) last, got shape {vshape} (embeddings: shape {shape}).")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer class ids, got {_describe(labels)}.")
    if tuple(jnp.shape(labels)) != shape[:-1]:
        raise ValueError(f"labels must have the batch shape of embeddings, {shape[:-1]}, "
                         f"got shape {tuple(jnp.shape(labels))}.")
    return shape[:-1]
