"""Shared by the peer tests: jaxloss compiled per call site, and the jaxloss calls that give
optax's segmentation numbers.

Imported as ``_peer``: tests/peer has no __init__.py, so pytest puts it on sys.path.
optax's ``dice_loss`` is a Tversky index per class (``alpha = beta = 0.5`` by default)
averaged over the classes, with class weights multiplying the per-class losses before that
plain mean; jaxloss's ``tversky_loss`` takes the weighted mean ``Σ w_c L_c / Σ w_c``, so the
weighted form is rescaled by ``Σ w_c / C`` here.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxloss


_STATIC_FLOATS = ("p",)  # triplet_margin_loss's norm degree is a static Python number


def _traced(name, value):
    return name not in _STATIC_FLOATS and isinstance(value, (float, np.ndarray, np.generic, jax.Array))


@functools.lru_cache(maxsize=None)
def _compiled(name, static):
    return jax.jit(functools.partial(getattr(jaxloss, name), **dict(static)))


class _Compiled:
    """``J.name(*arrays, **options)`` is ``jaxloss.name`` under ``jax.jit``, compiled once per
    name and set of static options: float and array options are traced (as the losses allow),
    the others (ints, bools, strings, None, tuples, and the norm degree ``p``) are static."""

    def __getattr__(self, name):
        getattr(jaxloss, name)  # an AttributeError names the missing loss

        def call(*args, **options):
            static = tuple(sorted((k, v) for k, v in options.items() if not _traced(k, v)))
            return _compiled(name, static)(*args, **{k: v for k, v in options.items() if _traced(k, v)})
        return call


J = _Compiled()


@functools.partial(jax.jit, static_argnames=("apply_softmax", "ignore_background"))
def optax_dice(predictions, targets, *, smooth=1.0, alpha=0.5, beta=0.5, class_weights=None,
               apply_softmax=True, ignore_background=False):
    """``optax.losses.dice_loss(..., reduction="mean")`` [B] through ``jaxloss.tversky_loss`` (compiled).

    optax applies a sigmoid to a single class and a softmax to several; its
    ``ignore_background`` drops class 0 only when there are several classes (jaxloss warns
    for a single class, so it is not passed then).
    """
    classes = predictions.shape[-1]
    activation = ("sigmoid" if classes == 1 else "softmax") if apply_softmax else None
    drop_background = ignore_background and classes > 1
    losses = jaxloss.tversky_loss(predictions, jnp.asarray(targets, jnp.float32), smooth=smooth,
                                  alpha=alpha, beta=beta, class_weights=class_weights,
                                  include_background=not drop_background, from_logits=activation)
    if class_weights is None:
        return losses
    kept = class_weights[1:] if drop_background else class_weights
    return losses * jnp.sum(kept) / kept.shape[0]


def optax_binary_dice(predictions, targets, *, smooth=1.0, apply_sigmoid=True):
    """``optax.losses.binary_dice_loss`` on ``[...]`` or ``[..., 1]`` inputs: jaxloss wants the
    class axis, so a missing one is added."""
    if predictions.shape[-1] != 1:
        predictions, targets = predictions[..., None], targets[..., None]
    return optax_dice(predictions, targets, smooth=smooth, apply_softmax=apply_sigmoid)


def optax_multiclass_generalized_dice(predictions, targets, *, smooth=1.0, apply_softmax=True,
                                      ignore_background=False):
    """``optax.losses.multiclass_generalized_dice_loss``: a scalar, the batch mean of the
    class-weighted Dice with weights ``1/(batch class frequency² + 1e-7)`` normalised to sum
    to C (not jaxloss's per-example Sudre weights, :func:`jaxloss.generalized_dice_loss`)."""
    frequencies = jnp.sum(targets, axis=tuple(range(targets.ndim - 1)))
    weights = 1.0 / (frequencies**2 + 1e-7)
    weights = weights / jnp.sum(weights) * weights.shape[0]
    return jaxloss.reduce.mean(optax_dice(predictions, targets, smooth=smooth, class_weights=weights,
                                          apply_softmax=apply_softmax, ignore_background=ignore_background))
