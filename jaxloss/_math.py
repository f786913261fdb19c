"""Numerically careful building blocks shared by several losses."""

import jax.numpy as jnp


def log_2cosh_half(x):
    r"""``log(2·cosh(x/2)) = softplus(x) − x/2``, an even function, for any ``|x|``.

    Computed as ``|x|/2 + log1p(exp(−|x|))``: one ``exp`` and one ``log1p``, no overflow,
    and plain autodiff of this form is exact to second order, also at ``x = 0``
    (``abs``'s derivative 1 there is multiplied by ``½ − σ(0) = 0``).  ``log_cosh`` is
    ``log_2cosh_half(2r) − log 2``.
    """
    abs_x = jnp.abs(x)
    return 0.5 * abs_x + jnp.log1p(jnp.exp(-abs_x))


def softplus_pair(x):
    r"""``(softplus(x), softplus(−x))`` from one ``exp`` and one ``log1p``, each to full
    relative precision, ±inf included: ``relu(±x) + log1p(exp(−|x|))``.
    (``log_2cosh_half(x) ± x/2`` would lose the small one's digits: at x = 17 in float32
    ``softplus(−x)`` rounds to 0.)  Plain autodiff of this form is exact to second order,
    at ``x = 0`` too: the ``relu``s take the derivative of ``x ≥ 0``'s side, as ``abs`` does.
    """
    tail = jnp.log1p(jnp.exp(-jnp.abs(x)))
    positive = x >= 0
    return jnp.where(positive, x, 0.0) + tail, jnp.where(positive, 0.0, -x) + tail
