"""Value checks for loss inputs that cannot raise inside ``jit``, via :mod:`jax.experimental.checkify`.

The losses check shapes and dtypes at trace time, but not values: an out-of-range class id
selects no class (see :mod:`jaxloss.multiclass`) and a NaN propagates.  :func:`checked`
wraps a loss so that it also checks, at run time,

* class ids: each argument that a loss's catalogue entry declares in ``class_ids`` (see
  :class:`jaxloss.catalogue.Entry`) lies in ``[0, C)``, ``C`` read from the shape of the
  argument that counts the classes (the class axis of the logits, the number of class centres
  for the angular losses, the vocabulary for :func:`~jaxloss.ctc_loss`); an id equal to a
  ``blank_id`` option is invalid too (CTC reserves it), and positions whose
  ``label_paddings`` are set hold no id and are skipped;
* finiteness: every float array argument is free of NaN and inf (``finite=True``).

Examples masked by ``where`` are skipped: ``where`` is broadcast to the loss's shape (or
taken as it is, for a per-pixel mask) and applied to the arguments whose leading axes have
that shape.  Checks read values only: derivatives are the wrapped loss's.

Eagerly a failed check raises at once.  Under ``jit``, ``vmap`` or ``grad``, functionalise
the checks with :func:`jax.experimental.checkify.checkify` and throw outside::

    err, losses = jax.jit(checkify.checkify(checked_loss))(logits, labels)
    err.throw()
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

_SHARED = ("class_centers",)  # arguments never masked by ``where`` (not per example)
_PADDINGS = {"labels": "label_paddings"}  # class-id argument -> the array marking its padded positions


def checked(loss, *, finite=True):
    """``loss`` with run-time checks of its class ids and (``finite``) float inputs.

    Args:
      loss: a jaxloss loss (or any function of arrays with a ``where=`` option or none).
      finite: also check that every float array argument is finite at unmasked examples.

    Returns:
      A function with ``loss``'s signature and values.  A failed check names the loss, the
      argument, the first offending index and its value.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> from jax.experimental import checkify
      >>> loss = jaxloss.checks.checked(jaxloss.softmax_cross_entropy)
      >>> err, _ = jax.jit(checkify.checkify(loss))(jnp.zeros((2, 3)), jnp.array([0, 3]))
      >>> err.get()
      'softmax_cross_entropy: labels[1] = 3 is outside [0, 3)...'
    """
    signature, name = inspect.signature(loss), getattr(loss, "__name__", "loss")
    class_ids = class_id_arguments(loss)

    @functools.wraps(loss, updated=())  # not ``__dict__``: no ``.reference`` on the wrapper
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = {k: jnp.asarray(v) for k, v in bound.arguments.items() if isinstance(v, (jax.Array, np.ndarray))}
        keep = _keep(loss, bound.arguments, a)
        for arg, counted_by, axis in class_ids:
            if arg not in a or not jnp.issubdtype(a[arg].dtype, jnp.integer):
                continue  # absent, or float targets (probabilities): no ids to check
            axis = axis(bound.arguments) if callable(axis) else axis
            ids, classes = a[arg], a[counted_by].shape[axis]
            skip = ~_mask(keep, arg, ids)
            if _PADDINGS.get(arg) in a:
                skip |= a[_PADDINGS[arg]] >= 0.5
            _check((ids >= 0) & (ids < classes) | skip, ids, f"{name}: {arg}{{}} = {{}} is outside [0, {classes})")
            blank = bound.arguments.get("blank_id")
            if blank is not None:
                _check((ids != blank) | skip, ids, f"{name}: {arg}{{}} = {{}} is the blank id (blank_id={blank})")
        if finite:
            for arg, x in a.items():
                if jnp.issubdtype(x.dtype, jnp.floating):
                    ok = jnp.isfinite(x) | ~_mask(keep, arg, x)
                    _check(ok, x, f"{name}: {arg}{{}} = {{}} is not finite")
        return loss(*args, **kwargs)

    return wrapper


def class_id_arguments(loss) -> tuple[tuple[str, str, int], ...]:
    """The ``class_ids`` of ``loss``'s catalogue entry, or ``()`` for a loss not in the catalogue."""
    from jaxloss import catalogue  # here: the catalogue imports every loss module

    entry = catalogue.BY_NAME.get(getattr(loss, "__name__", None))
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


def _mask(keep, arg, x):
    """``keep`` extended over ``x``'s trailing axes, where its leading axes are ``keep``'s shape."""
    if keep is None or arg in _SHARED or x.shape[: keep.ndim] != keep.shape:
        return jnp.ones((), bool)
    return keep.reshape(keep.shape + (1,) * (x.ndim - keep.ndim))


def _check(ok, x, message):
    """``checkify.check(all(ok))``, formatting ``message`` with the first bad index and value."""
    ok = jnp.broadcast_to(ok, x.shape)
    first = jnp.argmin(ok.ravel()) if x.size else 0
    index = jnp.unravel_index(first, x.shape) if x.ndim else ()
    brackets = "[" + ", ".join("{}" for _ in index) + "]" if index else ""
    message = message.replace("{}", brackets, 1)
    value = x.ravel()[first] if x.size else jnp.zeros((), x.dtype)
    checkify.check(jnp.all(ok), message, *index, value)
