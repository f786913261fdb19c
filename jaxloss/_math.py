"""Numerically careful building blocks shared by several losses."""

import jax.numpy as jnp


def log_2cosh_half(x):
    r"""``log(2·cosh(x/2)) = softplus(x) − x/2``, an even function, for any ``|x|``.

    Computed as ``|x|/2 + log1p(exp(−|x|))``: one ``exp`` and one ``log1p``, no overflow,
    and plain autodiff of this form is exact to second order, also at ``x = 0``
    (``abs``'s derivative 1 there is multiplied by ``½ − σ(0) = 0``).  Both softplus
    terms of a binary cross-entropy come from it: ``softplus(±x) = log_2cosh_half(x) ± x/2``.
    """
    abs_x = jnp.abs(x)
    return 0.5 * abs_x + jnp.log1p(jnp.exp(-abs_x))
