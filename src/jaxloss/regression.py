"""Regression losses on the residual ``r = predictions - targets``.

Each returns one loss per element (the shape of ``predictions``), except
:func:`quantile_loss`, which sums over its trailing quantile axis, and
:func:`cosine_similarity` / :func:`cosine_distance`, which reduce the feature axis: they
return one loss per example; reduce with :mod:`jaxloss.reduce`.  ``targets=None`` means
zeros where optax allows it (:func:`squared_error`, :func:`l2_loss`, :func:`huber_loss`,
:func:`log_cosh`).  Every function supports ``jit``, ``vmap``, forward and reverse
mode, ``jax.hessian`` and forward-over-reverse Hessian-vector products; its derivative
comes from the hand-derived rule under it, and ``fn.reference`` is plain autodiff of
the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks, _math
from jaxloss._math import log_2cosh_half
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis


def _check(predictions, targets, where=None, **options):
    _checks.float_array("predictions", predictions)
    _checks.numeric("targets", targets)
    shape = jnp.shape(predictions)
    _checks.broadcasts_to("targets", targets, shape, "predictions")
    _checks.broadcasts_to("where", where, shape, "predictions")
    for name, value in options.items():
        _checks.float_option(name, value, shape, "predictions")


def _check_optional_targets(predictions, targets, where=None, **options):
    """:func:`_check`, with ``targets=None`` standing for zeros (optax's default)."""
    _check(predictions, 0.0 if targets is None else targets, where, **options)


def _residual(predictions, targets):
    """``r = predictions − targets``; ``predictions`` itself for ``targets=None``."""
    return predictions if targets is None else predictions - targets


def _residual_tangent(p, t, dloss_dr, *options):
    """Tangent of a loss of the residual: ``g·(dp − dt)`` plus each option's term."""
    return tangent_sum((dloss_dr, t.predictions), (-dloss_dr, t.targets), *options)


# ------------------------------------------------------------------ squared_error


def _squared_error_tangent(p, t, out, res):
    return _residual_tangent(p, t, 2 * _residual(p.predictions, p.targets))


@hand_derivative(_squared_error_tangent, check=_check_optional_targets)
def squared_error(predictions: Array, targets: Array | None = None, *, where: Array | None = None) -> jax.Array:
    r"""Squared error, elementwise.

    .. math:: \ell = (p - y)^2, \qquad \partial\ell/\partial p = 2(p - y) = -\partial\ell/\partial y.

    Args:
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape; None (default) means zeros,
        as in optax.
      where: optional boolean mask broadcasting to ``predictions``; masked entries
        give loss 0 and derivative 0.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``predictions.shape`` losses, float32 for inputs of lower precision.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.squared_error(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
      Array([1., 4.], dtype=float32)

    References:
      ``optax.losses.squared_error``; ``torch.nn.functional.mse_loss(reduction="none")``
      (also exported as ``jaxloss.mse_loss``, the same function).  Unlike :func:`l2_loss`
      (``optax.losses.l2_loss``) there is no factor 1/2.
    """
    return jnp.square(_residual(predictions, targets))


mse_loss = squared_error  # PyTorch's name (torch.nn.functional.mse_loss, reduction="none")


# ------------------------------------------------------------------ l2_loss


def _l2_tangent(p, t, out, res):
    return _residual_tangent(p, t, _residual(p.predictions, p.targets))


@hand_derivative(_l2_tangent, check=_check_optional_targets)
def l2_loss(predictions: Array, targets: Array | None = None, *, where: Array | None = None) -> jax.Array:
    r"""Half the squared error, elementwise (optax's L2 loss).

    .. math:: \ell = \tfrac12 (p - y)^2, \qquad \partial\ell/\partial p = p - y = -\partial\ell/\partial y.

    Args:
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape; None (default) means zeros.
      where: optional boolean mask broadcasting to ``predictions``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.l2_loss(jnp.array([1.0, 3.0]), jnp.array([0.0, 1.0]))
      Array([0.5, 2. ], dtype=float32)

    References:
      ``optax.losses.l2_loss`` (Bishop, "Pattern Recognition and Machine Learning", keeps
      the ½).
    """
    return 0.5 * jnp.square(_residual(predictions, targets))


# ------------------------------------------------------------------ absolute_error


def _absolute_error_tangent(p, t, out, res):
    return _residual_tangent(p, t, jnp.sign(p.predictions - p.targets))


@hand_derivative(_absolute_error_tangent, check=_check)
def absolute_error(predictions: Array, targets: Array, *, where: Array | None = None) -> jax.Array:
    r"""Absolute error (L1), elementwise.

    .. math:: \ell = |p - y|, \qquad \partial\ell/\partial p = \operatorname{sign}(p - y).

    At ``p = y`` the rule returns the subgradient 0 (``sign(0) = 0``, as
    ``torch.nn.functional.l1_loss`` does; plain JAX autodiff of ``abs`` gives 1).

    Args:
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape.
      where: optional boolean mask broadcasting to ``predictions``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.absolute_error(jnp.array([1.0, -3.0]), jnp.array([0.0, 1.0]))
      Array([1., 4.], dtype=float32)

    References:
      ``torch.nn.functional.l1_loss(reduction="none")`` (also exported as
      ``jaxloss.l1_loss``, the same function).
    """
    return jnp.abs(predictions - targets)


l1_loss = absolute_error  # PyTorch's name (torch.nn.functional.l1_loss, reduction="none")


# ------------------------------------------------------------------ huber_loss


def _check_huber(predictions, targets, delta, where):
    _check_optional_targets(predictions, targets, where, delta=delta)
    _checks.positive("delta", delta)


def _huber_tangent(p, t, out, res):
    r = _residual(p.predictions, p.targets)
    small = jnp.abs(r) <= p.delta
    dr = jnp.clip(r, -p.delta, p.delta)
    ddelta = jnp.where(small, 0.0, jnp.abs(r) - p.delta)
    return _residual_tangent(p, t, dr, (ddelta, t.delta))


@hand_derivative(_huber_tangent, check=_check_huber)
def huber_loss(predictions: Array, targets: Array | None = None, *, delta: ArrayLike = 1.0,
               where: Array | None = None) -> jax.Array:
    r"""Huber loss, elementwise: quadratic near zero, linear beyond ``delta``.

    .. math::
       \ell = \begin{cases} \tfrac12 r^2 & |r| \le \delta \\
                            \delta\,(|r| - \tfrac12\delta) & |r| > \delta \end{cases},
       \qquad r = p - y.

    Derivatives: ``∂ℓ/∂p = clip(r, −δ, δ) = −∂ℓ/∂y`` and ``∂ℓ/∂δ = max(|r| − δ, 0)``.
    The loss is continuously differentiable, so ``|r| = δ`` needs no subgradient choice:
    both sides give ``δ·sign(r)`` and ``∂ℓ/∂δ = 0`` there.

    Args:
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape; None (default) means zeros.
      delta: the switch point, > 0; a float or an array broadcasting to
        ``predictions`` (differentiated when traced).
      where: optional boolean mask broadcasting to ``predictions``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

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
    abs_r = jnp.abs(_residual(predictions, targets))
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
def smooth_l1_loss(predictions: Array, targets: Array, *, beta: ArrayLike = 1.0,
                   where: Array | None = None) -> jax.Array:
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
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape.
      beta: the switch point, >= 0; a float or an array broadcasting to ``predictions``.
      where: optional boolean mask broadcasting to ``predictions``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.smooth_l1_loss(jnp.array([0.5, 3.0]), jnp.array([0.0, 0.0]), beta=1.0)
      Array([0.125, 2.5  ], dtype=float32)

    References:
      Girshick, "Fast R-CNN", 2015.  ``torch.nn.functional.smooth_l1_loss(reduction="none")``.
    """
    # huber_loss's form over β, ½q·ρ + (|r| − q) with q = min(|r|, β) and ρ = min(|r|/β, 1): no compare or
    # select over the elements (1/β and [β = 0] are per-option: scalars by default), and β opaque (the rule
    # uses it too), so that XLA:CPU fuses this into the mean (see _math.opaque).  At β = 0, ρ = sign|r| and
    # q = 0: the term is 0, nothing is infinite, and autodiff's β-derivative there is ½ (not 0/0).
    abs_r = jnp.abs(predictions - targets)
    dtype = jnp.result_type(abs_r, beta)
    beta, one = _math.opaque(dtype, beta, 1.0)
    positive = jnp.greater(beta, 0)
    inverse = jnp.where(positive, 1 / jnp.where(positive, beta, 1.0), 0.0)
    ratio = jnp.minimum(abs_r * inverse + jnp.sign(abs_r) * jnp.logical_not(positive).astype(dtype), one)
    quadratic = jnp.minimum(abs_r, beta)
    return 0.5 * quadratic * ratio + (abs_r - quadratic)


# ------------------------------------------------------------------ log_cosh


def _log_cosh_tangent(p, t, out, res):
    return _residual_tangent(p, t, jnp.tanh(_residual(p.predictions, p.targets)))


@hand_derivative(_log_cosh_tangent, check=_check_optional_targets)
def log_cosh(predictions: Array, targets: Array | None = None, *, where: Array | None = None) -> jax.Array:
    r"""Log-cosh loss, elementwise: ≈ r²/2 near zero and ≈ ``|r|`` − log 2 far away.

    .. math:: \ell = \log\cosh r = |r| + \log(1 + e^{-2|r|}) - \log 2,
       \qquad \partial\ell/\partial p = \tanh r = -\partial\ell/\partial y.

    The second form never evaluates ``cosh``, so residuals up to 1e4 (and beyond) give
    finite values and derivatives.

    Args:
      predictions: float ``[...]``, any shape.
      targets: ``[...]`` broadcasting to ``predictions``' shape; None (default) means zeros.
      where: optional boolean mask broadcasting to ``predictions``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``predictions.shape`` losses.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.log_cosh(jnp.array([0.0, 1e4]), jnp.array([0.0, 0.0]))
      Array([   0.   , 9999.307], dtype=float32)

    References:
      ``optax.losses.log_cosh``; Chen et al., "Log Hyperbolic Cosine Loss", 2019.
    """
    r = _residual(predictions, targets)
    return log_2cosh_half(2 * r) - jnp.log(2.0).astype(r.dtype)


# ------------------------------------------------------------------ quantile_loss


def _quantile_targets(targets, predictions):
    """Targets without the quantile axis (fewer axes than ``predictions``) get it appended."""
    return jnp.expand_dims(targets, -1) if jnp.ndim(targets) < jnp.ndim(predictions) else targets


def _check_quantile(predictions, targets, quantiles, where):
    _checks.float_array("predictions", predictions)
    shape = jnp.shape(predictions)
    if len(shape) < 1:
        raise ValueError(f"predictions must have a quantile axis (rank >= 1), got shape {shape}.")
    _checks.numeric("targets", targets)
    try:
        fits = jnp.broadcast_shapes(jnp.shape(_quantile_targets(jnp.zeros(jnp.shape(targets)), predictions)),
                                    shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"targets with shape {jnp.shape(targets)} broadcast neither to the batch shape "
                         f"{shape[:-1]} nor to the shape {shape} of predictions.")
    if quantiles is None:
        raise TypeError("quantiles must be given: a float or a float array broadcasting to predictions.")
    _checks.float_option("quantiles", quantiles, shape, "predictions")
    concrete = not isinstance(quantiles, jax.core.Tracer)
    if concrete and np.any((np.asarray(quantiles) <= 0) | (np.asarray(quantiles) >= 1)):
        raise ValueError(f"quantiles must lie in (0, 1), got {np.asarray(quantiles)}.")
    _checks.broadcasts_to("where", where, shape[:-1], "the batch shape of predictions")


def _signed_pinball(r, quantiles, zero):
    """``ρ_τ(r)·sign(r)``: ``τr`` above 0 and ``(1 − τ)r`` below, each one rounded product (``r − τr``
    would lose digits for τ near 1); no compare or select."""
    return quantiles * jnp.maximum(r, zero) + (1 - quantiles) * jnp.minimum(r, zero)


def _quantile_tangent(p, t, out, res):
    r = _quantile_targets(p.targets, p.predictions) - p.predictions
    # ∂ρ/∂r: τ above, τ − 1 below, and the minimum-norm subgradient 0 at r = 0; the sign is read from the
    # forward's signed terms where it kept them (their buffer then becomes the gradient's), which have
    # r's sign (0 only for r = 0, or a residual so small that τr underflows: below 1e-44 in float32).
    sign_of_r = r if res is None else res
    dr = jnp.where(sign_of_r > 0, p.quantiles, jnp.where(sign_of_r < 0, p.quantiles - 1, 0.0))
    dtargets = None if t.targets is None else _quantile_targets(t.targets, p.predictions)
    dterms = tangent_sum((-dr, t.predictions), (dr, dtargets), (r, t.quantiles))
    return None if dterms is None else jnp.sum(jnp.broadcast_to(dterms, jnp.shape(r)), axis=-1)


@hand_derivative(_quantile_tangent, check=_check_quantile, residuals=True, own_precision=("predictions",))
def quantile_loss(predictions: Array, targets: Array, *, quantiles: ArrayLike,
                  where: Array | None = None) -> tuple[jax.Array, jax.Array | None]:
    r"""Quantile (pinball) loss of several quantile predictions, summed per example.

    .. math:: \ell = \sum_q \rho_{\tau_q}(y - \hat y_q), \qquad
       \rho_\tau(r) = \max(\tau r, (\tau - 1) r) = r\,(\tau - [r < 0]),

    over the quantile axis (the last) of ``predictions`` :math:`\hat y`, with
    ``quantiles`` :math:`\tau`.  Its minimiser over :math:`\hat y_q` is the
    :math:`\tau_q`-quantile of :math:`y`; at :math:`\tau = \tfrac12`, :math:`\rho` is half
    the absolute error.

    Derivatives (hand rule), with :math:`r = y - \hat y_q`: ``∂ℓ/∂ŷ_q = −ρ′(r)``,
    ``∂ℓ/∂y = Σ_q ρ′(r)`` and ``∂ℓ/∂τ_q = r``, where ``ρ′(r) = τ`` for ``r > 0`` and
    ``τ − 1`` for ``r < 0``.  At ``r = 0`` the rule returns the subgradient 0 (in
    ``[τ − 1, τ]``, the one of least norm, as :func:`absolute_error` does; plain autodiff
    of ``r·(τ − [r < 0])`` gives ``τ``, of torch's ``max`` form ``τ − ½``, and of the form
    computed here, ``|τ·max(r, 0) + (1 − τ)·min(r, 0)|``, ``½``: JAX splits the tie of the
    maxima and takes ``abs′(0) = 1``).

    Memory: for float32 (and float64) predictions, reverse mode keeps the signed terms
    ``ρ(r)·sign(r)`` (``[..., Q]``, the predictions' size) for the backward pass, which reads
    ``ρ′`` from their sign and overwrites them with the gradient: autodiff of the plain formula
    keeps as much, and it runs about 3x faster on XLA:CPU than recomputing ``r`` with the targets
    broadcast along rows of Q.  Lower-precision predictions keep nothing (their float32 terms
    could not hold the gradient).

    Args:
      predictions: float array ``[..., Q]``: one prediction per quantile.
      targets: array of the batch shape ``[...]`` (one observation per example: it is
        compared with every quantile), or broadcasting to ``[..., Q]``.  Targets with
        fewer axes than ``predictions`` get the quantile axis appended.
      quantiles: required; the levels :math:`\tau` in (0, 1): a float, or a float array
        broadcasting to ``[..., Q]`` (usually ``[Q]``); differentiated when traced.
      where: optional boolean mask broadcasting to the batch shape ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``predictions.shape[:-1]``, float32 for lower-precision
      inputs.  The sum over quantiles is the reduction of the Temporal Fusion Transformer's
      loss; ``pytorch_forecasting.metrics.QuantileLoss`` keeps the quantile axis and
      doubles each term (``2ρ`` is the absolute error at τ = ½).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.quantile_loss(jnp.array([[0.0, 1.0, 4.0]]), jnp.array([2.0]),
      ...                       quantiles=jnp.array([0.25, 0.5, 0.75]))
      Array([1.5], dtype=float32)

    References:
      Koenker & Bassett, "Regression Quantiles", Econometrica 1978.
      Lim et al., "Temporal Fusion Transformers for interpretable multi-horizon time
      series forecasting", 2021.  ``pytorch_forecasting.metrics.QuantileLoss`` (halved,
      summed over quantiles).
    """
    # ρ(r) = |s| for the signed terms s = ρ(r)·sign(r): no compare or select, and an opaque 0, so that XLA:CPU
    # can fuse this into the mean (see _math.opaque).  Where the predictions are in the compute dtype (float32), s is
    # also the residual the rule reads r's sign from: XLA then computes s into one full-size buffer that
    # the gradient overwrites, as for autodiff of the one-liner, instead of a mean fused over rows of Q
    # with the targets and quantiles broadcast along them (about 3x slower on XLA:CPU).  For lower-precision
    # predictions (computed upcast) s is float32 and could not share the gradient's buffer: nothing is kept.
    p = predictions.astype(_math.compute_dtype(predictions.dtype))
    zero, = _math.opaque(p.dtype, 0.0)
    signed = _signed_pinball(_quantile_targets(targets, p) - p, quantiles, zero)
    return jnp.sum(jnp.abs(signed), axis=-1), (signed if signed.dtype == predictions.dtype else None)


# ------------------------------------------------------------------ cosine_similarity, cosine_distance


# The arguments that carry the feature axis (``axis=``, moved last by the mechanism).
_FEATURE_ARGUMENTS = ("predictions", "targets", "feature_mask")


def _check_cosine(predictions, targets, epsilon, feature_mask, where):
    _checks.float_array("predictions", predictions)
    _checks.float_array("targets", targets)
    shape = jnp.shape(predictions)
    if len(shape) < 1 or jnp.shape(targets) != shape:
        raise ValueError(f"predictions and targets must have the same shape [..., D], got {shape} and "
                         f"{jnp.shape(targets)}.")
    _checks.float_option("epsilon", epsilon, shape[:-1], "the batch shape of predictions")
    _checks.positive("epsilon", epsilon, allow_zero=True)
    _checks.mask("feature_mask", feature_mask)
    _checks.broadcasts_to("feature_mask", feature_mask, shape, "predictions")
    _checks.broadcasts_to("where", where, shape[:-1], "the batch shape of predictions")


def _masked_features(x, feature_mask):
    """``x`` (or its tangent) with the features ``feature_mask`` leaves out set to 0."""
    return x if x is None or feature_mask is None else jnp.where(feature_mask, x, 0.0)


def _norm_floor(epsilon):
    """``√ε``, optax's floor on the norms (it clips the squared norms at ε); its derivative
    is kept finite at ε = 0 (a double ``where``), where no norm is floored but a zero one."""
    positive = epsilon > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, epsilon, 1.0)), 0.0)


def _cosine(predictions, targets, epsilon, feature_mask):
    a, b = (_masked_features(x, feature_mask) for x in (predictions, targets))
    return _math.floored_cosine(a, b, _norm_floor(epsilon))


def _cosine_tangent(p, t):
    """The tangent of :func:`_cosine`; ``d√ε = dε/(2√ε)`` (0 at ε = 0)."""
    floor = _norm_floor(p.epsilon)
    dfloor = None if t.epsilon is None else jnp.where(floor > 0, t.epsilon / (2 * jnp.where(floor > 0, floor, 1.0)),
                                                     0.0)
    a, b, da, db = (_masked_features(x, p.feature_mask) for x in (p.predictions, p.targets, t.predictions, t.targets))
    return _math.floored_cosine_tangent(a, b, floor, da, db, dfloor)


def _cosine_similarity_tangent(p, t, out, res):
    return _cosine_tangent(p, t)


@hand_derivative(_cosine_similarity_tangent, check=_check_cosine, class_axis=_FEATURE_ARGUMENTS, axis_tuples=True)
def cosine_similarity(predictions: Array, targets: Array, *, axis: Axis = -1, epsilon: ArrayLike = 0.0,
                      feature_mask: Array | None = None, where: Array | None = None) -> jax.Array:
    r"""Cosine similarity per example, over the feature axis, as optax computes it.

    With each norm floored at :math:`\sqrt\varepsilon` (optax clips the squared norms at ε):

    .. math:: c = \langle \hat p, \hat y\rangle, \qquad \hat x = x / \max(\lVert x\rVert, \sqrt\varepsilon).

    Derivatives (hand rule): ``∂c/∂p = (ŷ − p̂·c')/‖p‖`` with ``c' = ⟨p̂, ŷ⟩`` (the
    projection of ŷ off p̂) where ``‖p‖ > √ε``, and ``ŷ/√ε`` where the floor is active;
    symmetrically for ``y``; ``∂c/∂ε = −(⟨p̂, ŷ⟩/(2ε))·(#floored norms among p, y)``.
    A zero vector with ``epsilon = 0`` has similarity 0 and derivative 0 (optax gives
    ``0/0 = NaN`` there); at ``ε = 0`` the ε-derivative is 0.

    Args:
      predictions: float ``[..., D]`` with D on ``axis``.
      targets: float ``[..., D]``, the shape of ``predictions``.
      axis: static; the feature axis (default −1, the last): an int, a tuple of ints (those
        axes together, as optax) or None (every axis).
      epsilon: ε ≥ 0, the floor of the squared norms: a float or an array broadcasting to
        ``[...]`` (differentiated when traced).
      feature_mask: optional boolean mask broadcasting to ``predictions``: the features left
        out of the dot product and both norms (optax's ``where``); their derivative is 0.
      where: optional boolean mask broadcasting to ``[...]``: the example mask (loss and
        derivative 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` similarities in [−1, 1] (``predictions``' shape without ``axis``), float32
      for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p, y = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[2.0, 0.0], [-1.0, 0.0]])
      >>> jaxloss.cosine_similarity(p, y)
      Array([ 1.        , -0.70710677], dtype=float32)

    References:
      ``optax.losses.cosine_similarity`` (its ``where`` over the features is
      ``feature_mask`` here; ``where`` here masks examples).
      ``torch.nn.functional.cosine_similarity`` floors each norm at its ``eps`` (1e-8) instead.
    """
    return _cosine(predictions, targets, epsilon, feature_mask)


def _cosine_distance_tangent(p, t, out, res):
    dcos = _cosine_tangent(p, t)
    return None if dcos is None else -dcos


@hand_derivative(_cosine_distance_tangent, check=_check_cosine, class_axis=_FEATURE_ARGUMENTS, axis_tuples=True)
def cosine_distance(predictions: Array, targets: Array, *, axis: Axis = -1, epsilon: ArrayLike = 0.0,
                    feature_mask: Array | None = None, where: Array | None = None) -> jax.Array:
    r"""Cosine distance per example: ``1 − cosine_similarity``, as optax computes it.

    .. math:: \ell = 1 - \langle \hat p, \hat y\rangle, \qquad \hat x = x / \max(\lVert x\rVert, \sqrt\varepsilon).

    Derivatives: the negated ones of :func:`cosine_similarity`.  A zero vector with
    ``epsilon = 0`` gives distance 1 and derivative 0 (optax: NaN).

    Args:
      predictions: float ``[..., D]`` with D on ``axis``.
      targets: float ``[..., D]``, the shape of ``predictions``.
      axis: static; the feature axis (default −1): an int, a tuple of ints or None.
      epsilon: ε ≥ 0, the floor of the squared norms, a float or an array broadcasting to
        ``[...]``.
      feature_mask: optional boolean mask broadcasting to ``predictions`` (optax's ``where``).
      where: optional boolean mask broadcasting to ``[...]``: the example mask.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` distances in [0, 2].

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> p, y = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[2.0, 0.0], [-1.0, 0.0]])
      >>> jaxloss.cosine_distance(p, y)
      Array([0.       , 1.7071068], dtype=float32)

    References:
      ``optax.losses.cosine_distance`` (its ``where`` is ``feature_mask`` here).
    """
    return 1 - _cosine(predictions, targets, epsilon, feature_mask)
