"""Value checks for loss inputs that cannot raise inside ``jit``, via :mod:`jax.experimental.checkify`.

The losses check shapes and dtypes at trace time, but not values: an out-of-range class id
selects no class (see :mod:`jaxloss.multiclass`) and a NaN propagates.  :func:`checked`
wraps a loss so that it also checks, at run time,

* class ids: ``labels`` in ``[0, C)``, for the losses whose labels are class ids (``C`` the
  class axis of the first argument, the number of class centres for the angular losses, the
  vocabulary for :func:`~jaxloss.ctc_loss`, whose padded labels are skipped);
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

# Losses whose ``labels`` are class ids: name -> the number of classes, from the bound arguments.
_CLASSES = {
    **dict.fromkeys(("softmax_cross_entropy", "nll_loss", "softmax_focal_loss", "poly1_cross_entropy",
                     "multiclass_hinge_loss", "ctc_loss"), lambda a: next(iter(a.values())).shape[-1]),
    **dict.fromkeys(("angular_margin_loss", "arcface_loss", "cosface_loss", "sphereface_loss"),
                    lambda a: a["class_centers"].shape[0]),
}
_SHARED = ("class_centers",)  # arguments never masked by ``where`` (not per example)


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

    @functools.wraps(loss, updated=())  # not ``__dict__``: no ``.reference`` on the wrapper
    def wrapper(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = {k: jnp.asarray(v) for k, v in bound.arguments.items() if isinstance(v, (jax.Array, np.ndarray))}
        keep = _keep(loss, bound.arguments, a)
        if name in _CLASSES and jnp.issubdtype(a["labels"].dtype, jnp.integer):
            classes, labels = _CLASSES[name](a), a["labels"]
            ok = (labels >= 0) & (labels < classes) | ~_mask(keep, "labels", labels)
            if name == "ctc_loss":
                ok |= a["label_paddings"] >= 0.5
            _check(ok, labels, f"{name}: labels{{}} = {{}} is outside [0, {classes})")
        if finite:
            for arg, x in a.items():
                if jnp.issubdtype(x.dtype, jnp.floating):
                    ok = jnp.isfinite(x) | ~_mask(keep, arg, x)
                    _check(ok, x, f"{name}: {arg}{{}} = {{}} is not finite")
        return loss(*args, **kwargs)

    return wrapper


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
