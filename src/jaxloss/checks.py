"""Value checks for loss inputs that cannot raise inside ``jit``, via :mod:`jax.experimental.checkify`.

The losses check shapes and dtypes at trace time, but not values: an out-of-range class id
cannot raise inside ``jit`` (each loss documents what it gives) and a NaN propagates.
:func:`checked` wraps a loss so that it also checks, at run time,

* class ids: each argument that a loss's catalogue entry declares in ``class_ids`` (see
  :class:`jaxloss.catalogue.Entry`) lies in ``[0, C)`` or equals the loss's ``ignore_index``
  (its value in the call, or its default; a loss without that option ignores no id), ``C``
  read from the shape of the argument that counts the classes (the class axis of the logits,
  the number of class centres for the angular losses, the vocabulary for
  :func:`~jaxloss.ctc_loss`); an id equal to a ``blank_id`` option is invalid too (CTC
  reserves it), and positions whose ``label_paddings`` are set hold no id and are skipped;
* finiteness: every float array argument is free of NaN and inf (``finite=True``).

Examples masked by ``where`` are skipped: ``where`` is broadcast to the loss's shape (or
taken as it is, for a per-pixel mask) and applied to the arguments whose leading axes have
that shape.  Checks read values only: derivatives are the wrapped loss's.

A failed check raises an error naming the loss, the argument, the first offending index and
its value, when the wrapped loss is called eagerly (checkify's ``JaxRuntimeError``, a
``ValueError``) and when a computation that uses it under ``jit``, ``vmap`` or ``grad``
runs (``jax.jit(checked(loss))(logits, labels)``).  The wrapper functionalises its checks
with :func:`jax.experimental.checkify.checkify` itself and throws the error from a host
callback (:func:`jax.debug.callback`) that only a failed check reaches, so a passing call
costs no transfer to the host; under ``jit`` JAX reports the throw as a failed callback,
:class:`jax.errors.JaxRuntimeError`, whose message ends with the check's.  For the error as
a value instead (no host callback), wrap with ``throw=False`` and functionalise yourself::

    err, losses = jax.jit(checkify.checkify(checked(loss, throw=False)))(logits, labels)
    err.throw()
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any, ParamSpec

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxloss.gradients import class_axes

P = ParamSpec("P")
_SHARED = ("class_centers",)  # arguments never masked by ``where`` (not per example)
_PADDINGS = {"labels": "label_paddings"}  # class-id argument -> the array marking its padded positions


def checked(loss: Callable[P, jax.Array], *, finite: bool = True, throw: bool = True) -> Callable[P, jax.Array]:
    """``loss`` with run-time checks of its class ids and (``finite``) float inputs.

    Args:
      loss: a jaxloss loss (or any function of arrays with a ``where=`` option or none).
      finite: also check that every float array argument is finite at unmasked examples.
      throw: raise when a check fails, eagerly or when a jitted computation runs (default);
        False leaves the checks as :func:`jax.experimental.checkify.check` calls, for your
        own :func:`~jax.experimental.checkify.checkify` to return as an error value (under
        ``jit`` they must be functionalised that way).

    Returns:
      A function with ``loss``'s signature and values.  A failed check names the loss, the
      argument, the first offending index and its value.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> loss = jax.jit(jaxloss.checks.checked(jaxloss.softmax_cross_entropy))
      >>> loss(jnp.zeros((2, 3)), jnp.array([0, 2]))
      Array([1.0986123, 1.0986123], dtype=float32)
      >>> loss(jnp.zeros((2, 3)), jnp.array([0, 3]))
      Traceback (most recent call last):
        ...
      jax.errors.JaxRuntimeError: ...softmax_cross_entropy: labels[1] = 3 is outside [0, 3)...

      With ``throw=False``, the error as a value:

      >>> from jax.experimental import checkify
      >>> loss = jaxloss.checks.checked(jaxloss.softmax_cross_entropy, throw=False)
      >>> err, _ = jax.jit(checkify.checkify(loss))(jnp.zeros((2, 3)), jnp.array([0, 3]))
      >>> err.get()
      'softmax_cross_entropy: labels[1] = 3 is outside [0, 3)...'
    """
    signature, name = inspect.signature(loss), getattr(loss, "__name__", "loss")
    class_ids = class_id_arguments(loss)

    def check(arguments, a):
        """The ``checkify.check`` of every condition on the arrays ``a``; whether all hold."""
        keep = _keep(loss, arguments, a)
        moved = _moved_axes(loss, arguments, a)
        oks = []
        for arg, counted_by, axis in class_ids:
            if arg not in a or not (jnp.issubdtype(a[arg].dtype, jnp.integer) or a[arg].dtype == bool):
                continue  # absent, or float targets (probabilities): no ids to check
            axis = axis(arguments) if callable(axis) else axis
            axes = moved.get(counted_by) if axis == -1 else None
            ids = a[arg].astype(jnp.int32)
            classes = a[counted_by].shape[axis] if axes is None else math.prod(a[counted_by].shape[i] for i in axes)
            skip = ~_mask(keep, arg, ids, moved)
            if _PADDINGS.get(arg) in a:
                skip |= a[_PADDINGS[arg]] >= 0.5
            outside = f"{name}: {arg}{{}} = {{}} is outside [0, {classes})"
            ignored = arguments.get("ignore_index")
            if ignored is not None:
                skip |= ids == ignored
                outside += f" and is not the ignore_index ({ignored})"
            oks.append(_check((ids >= 0) & (ids < classes) | skip, ids, outside))
            blank = arguments.get("blank_id")
            if blank is not None:
                oks.append(_check((ids != blank) | skip, ids, f"{name}: {arg}{{}} = {{}} is the blank id "
                                                               f"(blank_id={blank})"))
        if finite:
            for arg, x in a.items():
                if jnp.issubdtype(x.dtype, jnp.floating):
                    ok = jnp.isfinite(x) | ~_mask(keep, arg, x, moved)
                    oks.append(_check(ok, x, f"{name}: {arg}{{}} = {{}} is not finite"))
        return jnp.all(jnp.stack(oks)) if oks else jnp.bool_(True)

    @functools.wraps(loss, updated=())  # not ``__dict__``: no ``.reference`` on the wrapper
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        arrays = {k: jnp.asarray(v) for k, v in bound.arguments.items() if isinstance(v, jax.Array | np.ndarray)}
        if throw:
            _throw(*checkify.checkify(functools.partial(check, bound.arguments))(arrays))
        else:
            check(bound.arguments, arrays)
        return loss(*args, **kwargs)

    return wrapper


def _throw(err, ok):
    """Raise ``err`` now if it is concrete; otherwise when the computation runs, from a host
    callback that only a failed check reaches."""
    if not isinstance(ok, jax.core.Tracer):
        err.throw()
        return
    jax.lax.cond(ok, lambda err: None, lambda err: jax.debug.callback(checkify.Error.throw, err), err)


def class_id_arguments(loss: Callable[..., Any]) -> tuple[tuple[str, str, int | Callable[[dict], int]], ...]:
    """The ``class_ids`` of ``loss``'s catalogue entry, or ``()`` for a loss not in the catalogue."""
    from jaxloss import catalogue  # here: the catalogue imports every loss module

    entry = catalogue.BY_NAME.get(getattr(loss, "__name__", ""))
    return entry.class_ids if entry is not None and entry.fn is loss else ()


def _keep(loss, arguments, arrays):
    """The ``where`` mask as it applies to the per-example arguments, or None."""
    where = arguments.get("where")
    if where is None:
        return None
    out = jax.eval_shape(lambda arrays: loss(**{**arguments, **arrays}), arrays).shape
    try:
        return jnp.broadcast_to(where, out)
    except ValueError:  # a per-position mask (segmentation): as it is
        return jnp.asarray(where)


def _moved_axes(loss, arguments, arrays):
    """``{argument: axes}`` for the arguments of ``loss``'s ``axis=`` option that carry that
    axis (those of the primary's rank): the class axes, where the losses' shape leaves them out."""
    names = getattr(loss, "class_axis", ())
    if not names or names[0] not in arrays:
        return {}
    shape = arrays[names[0]].shape
    axes = class_axes(arguments.get("axis", -1), shape, tuples=True, name=names[0])
    return {n: axes for n in names if n in arrays and arrays[n].ndim == len(shape)}


def _mask(keep, arg, x, moved):
    """``keep`` extended over ``x``'s class axes (``moved[arg]``, see :func:`_moved_axes`) or
    else its trailing axes, where its other axes are ``keep``'s shape; no mask for an argument
    whose other axes are not (the keys of a contrastive loss, shared by every query)."""
    if keep is None or arg in _SHARED:
        return jnp.ones((), bool)
    if arg in moved:
        per_example = tuple(n for i, n in enumerate(x.shape) if i not in moved[arg])
        return jnp.expand_dims(keep, moved[arg]) if per_example == keep.shape else jnp.ones((), bool)
    if x.shape[: keep.ndim] != keep.shape:
        return jnp.ones((), bool)
    return keep.reshape(keep.shape + (1,) * (x.ndim - keep.ndim))


def _check(ok, x, message):
    """``checkify.check(all(ok))``, formatting ``message`` with the first bad index and value;
    returns ``all(ok)``."""
    ok = jnp.broadcast_to(ok, x.shape)
    first = jnp.argmin(ok.ravel()) if x.size else 0
    index = jnp.unravel_index(first, x.shape) if x.ndim else ()
    brackets = "[" + ", ".join("{}" for _ in index) + "]" if index else ""
    message = message.replace("{}", brackets, 1)
    value = x.ravel()[first] if x.size else jnp.zeros((), x.dtype)
    checkify.check(jnp.all(ok), message, *index, value)
    return jnp.all(ok)
