"""Regression losses on the residual ``r = predictions - targets``, elementwise.

Each returns one loss per element (the shape of ``predictions``); reduce with
:mod:`jaxloss.reduce`.  Every function supports ``jit``, ``vmap``, forward and reverse
mode, ``jax.hessian`` and forward-over-reverse Hessian-vector products; its derivative
comes from the hand-derived rule under it, and ``fn.reference`` is plain autodiff of
the formula.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import log_2cosh_half
from jaxloss.gradients import hand_derivative, tangent_sum


def _check(predictions, targets, where=None, **options):
    _checks.float_array("predictions", predictions)
    _checks.numeric("targets", targets)
    shape = jnp.shape(predictions)
    _checks.broadcasts_to("targets", targets, shape, "predictions")
    _checks.broadcasts_to("where", where, shape, "predictions")
    for name, value in options.items():
        _checks.float_option(name, value, shape, "predictions")


def _residual_tangent(p, t, dloss_dr, *options):
    """Tangent of a loss of the residual: ``g·(dp − dt)`` plus each option's term."""
    return tangent_sum((dloss_dr, t.predictions), (-dloss_dr, t.targets), *options)


# ------------------------------------------------------------------ squared_error


def _squared_error_tangent(p, t, out, res):
    r = p.predictions - p.targets
    return _residual_tangent(p, t, 2 * r)


@hand_derivative(_squared_error_tangent, check=_check)
def squared_error(predictions, targets, *, where=None):
    r"""Squared error, elementwise.

    .. math:: \ell = (p - y)^2, \qquad \partial\ell/\partial p = 2(p - y) = -\partial\ell/\partial y.

    Args:
      predictions: float array, any shape.
      targets: array broadcasting to ``predictions``' shape.
      where: optional boolean mask broadcasting to ``predictions``; masked entries
        give loss 0 and derivative 0.

    Returns:
      ``predictions.shape`` losses, float32 for inputs of lower precision.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
      Array([1., 4.], dtype=float32)

    References:
      ``optax.losses.squared_error``; ``torch.nn.functional.mse_loss(reduction="none")``.
      Unlike ``optax.losses.l2_loss`` there is no factor 1/2.
    """
    return jnp.square(predictions - targets)


# ------------------------------------------------------------------ absolute_error


def _absolute_error_tangent(p, t, out, res):
    return _residual_tangent(p, t, jnp.sign(p.predictions - p.targets))


@hand_derivative(_absolute_error_tangent, check=_check)
def absolute_error(predictions, targets, *, where=None):
    r"""Absolute error (L1), elementwise.

    .. math:: \ell = |p - y|, \qquad \partial\ell/\partial p = \operatorname{sign}(p - y).

    At ``p = y`` the rule returns the subgradient 0 (``sign(0) = 0``, as
    ``torch.nn.functional.l1_loss`` does; plain JAX autodiff of ``abs`` gives 1).

    Args:
      predictions: float array, any shape.
      targets: array broadcasting to ``predictions``' shape.
      where: optional boolean mask broadcasting to ``predictions``.

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.absolute_error(jnp.array([1.0, -3.0]), jnp.array([0.0, 1.0]))
      Array([1., 4.], dtype=float32)

    References:
      ``torch.nn.functional.l1_loss(reduction="none")``.
    """
    return jnp.abs(predictions - targets)


# ------------------------------------------------------------------ huber_loss


def _check_huber(predictions, targets, delta, where):
    _check(predictions, targets, where, delta=delta)
    _checks.positive("delta", delta)


def _huber_tangent(p, t, out, res):
    r = p.predictions - p.targets
    small = jnp.abs(r) <= p.delta
    dr = jnp.clip(r, -p.delta, p.delta)
    ddelta = jnp.where(small, 0.0, jnp.abs(r) - p.delta)
    return _residual_tangent(p, t, dr, (ddelta, t.delta))


@hand_derivative(_huber_tangent, check=_check_huber)
def huber_loss(predictions, targets, *, delta=1.0, where=None):
    r"""Huber loss, elementwise: quadratic near zero, linear beyond ``delta``.

    .. math::
       \ell = \begin{cases} \tfrac12 r^2 & |r| \le \delta \\
                            \delta\,(|r| - \tfrac12\delta) & |r| > \delta \end{cases},
       \qquad r = p - y.

    Derivatives: ``∂ℓ/∂p = clip(r, −δ, δ) = −∂ℓ/∂y`` and ``∂ℓ/∂δ = max(|r| − δ, 0)``.
    The loss is continuously differentiable, so ``|r| = δ`` needs no subgradient choice:
    both sides give ``δ·sign(r)`` and ``∂ℓ/∂δ = 0`` there.

    Args:
      predictions: float array, any shape.
      targets: array broadcasting to ``predictions``' shape.
      delta: the switch point, > 0; a float or an array broadcasting to
        ``predictions`` (differentiated when traced).
      where: optional boolean mask broadcasting to ``predictions``.

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.huber_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]), delta=1.0)
      Array([0.125, 2.5  ], dtype=float32)

    References:
      Huber, "Robust Estimation of a Location Parameter", 1964.
      ``optax.losses.huber_loss``; ``torch.nn.functional.huber_loss(reduction="none")``.
    """
    abs_r = jnp.abs(predictions - targets)
    quadratic = jnp.minimum(abs_r, delta)
    return 0.5 * quadratic**2 + delta * (abs_r - quadratic)


# ------------------------------------------------------------------ smooth_l1_loss


def _check_smooth_l1(predictions, targets, beta, where):
    _check(predictions, targets, where, beta=beta)
    _checks.positive("beta", beta, allow_zero=True)


def _smooth_l1_tangent(p, t, out, res):
    r = p.predictions - p.targets
    small = jnp.abs(r) < p.beta
    safe_beta = jnp.where(small, p.beta, 1.0)
    dr = jnp.where(small, r / safe_beta, jnp.sign(r))
    # At r = 0 the loss is 0 for every beta >= 0, so its beta-derivative is 0 (also at beta = 0).
    dbeta = jnp.where(small, -0.5 * jnp.square(r / safe_beta), jnp.where(r == 0, 0.0, -0.5))
    return _residual_tangent(p, t, dr, (dbeta, t.beta))


@hand_derivative(_smooth_l1_tangent, check=_check_smooth_l1)
def smooth_l1_loss(predictions, targets, *, beta=1.0, where=None):
    r"""Smooth L1 loss, elementwise (``huber_loss / beta``, torch's definition).

    .. math::
       \ell = \begin{cases} \tfrac12 r^2/\beta & |r| < \beta \\
                            |r| - \tfrac12\beta & |r| \ge \beta \end{cases},
       \qquad r = p - y.

    Derivatives: ``∂ℓ/∂p = clip(r/β, −1, 1) = −∂ℓ/∂y``, and ``∂ℓ/∂β = −½(r/β)²`` inside
    (``|r| < β``), ``−½`` outside, except 0 at ``r = 0`` (where the loss is 0 for every β).
    ``beta = 0`` is the L1 loss (derivative ``sign(r)``, 0 at ``r = 0``), with no
    division by zero in the value or the derivative.

    Args:
      predictions: float array, any shape.
      targets: array broadcasting to ``predictions``' shape.
      beta: the switch point, >= 0; a float or an array broadcasting to ``predictions``.
      where: optional boolean mask broadcasting to ``predictions``.

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.smooth_l1_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]), beta=1.0)
      Array([0.125, 2.5  ], dtype=float32)

    References:
      Girshick, "Fast R-CNN", 2015.  ``torch.nn.functional.smooth_l1_loss(reduction="none")``.
    """
    r = predictions - targets
    abs_r = jnp.abs(r)
    small = abs_r < beta
    safe_beta = jnp.where(small, beta, 1.0)
    return jnp.where(small, 0.5 * jnp.square(r) / safe_beta, abs_r - 0.5 * beta)


# ------------------------------------------------------------------ log_cosh


def _log_cosh_tangent(p, t, out, res):
    return _residual_tangent(p, t, jnp.tanh(p.predictions - p.targets))


@hand_derivative(_log_cosh_tangent, check=_check)
def log_cosh(predictions, targets, *, where=None):
    r"""Log-cosh loss, elementwise: ≈ r²/2 near zero and ≈ |r| − log 2 far away.

    .. math:: \ell = \log\cosh r = |r| + \log(1 + e^{-2|r|}) - \log 2,
       \qquad \partial\ell/\partial p = \tanh r = -\partial\ell/\partial y.

    The second form never evaluates ``cosh``, so residuals up to 1e4 (and beyond) give
    finite values and derivatives.

    Args:
      predictions: float array, any shape.
      targets: array broadcasting to ``predictions``' shape.
      where: optional boolean mask broadcasting to ``predictions``.

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.log_cosh(jnp.array([0.0, 1e4]), jnp.array([0.0, 0.0]))
      Array([   0.   , 9999.307], dtype=float32)

    References:
      ``optax.losses.log_cosh``; Chen et al., "Log Hyperbolic Cosine Loss", 2019.
    """
    r = predictions - targets
    return log_2cosh_half(2 * r) - jnp.log(2.0).astype(r.dtype)
