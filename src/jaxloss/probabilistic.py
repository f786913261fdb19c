"""Probabilistic losses: negative log-likelihoods and divergences of parametric distributions.

:func:`gaussian_kl_divergence` returns one loss per example (the latent axis, the last,
summed); :func:`gaussian_nll_loss` and :func:`poisson_nll_loss` are elementwise, like
their PyTorch namesakes with ``reduction="none"``.  Reduce with :mod:`jaxloss.reduce`.
Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; its derivative comes from the
hand-derived rule under it, and ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._math import opaque
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis


def _masked(x, where, fill):
    """``x`` broadcast against ``where`` with masked entries set to ``fill``: a select, so
    inf or NaN there reaches neither the value nor any derivative."""
    return x if where is None else jnp.where(where, x, fill)


# ------------------------------------------------------------------ gaussian_kl_divergence


def _check_kl(mean, log_variance, prior_mean, prior_log_variance, where):
    _checks.float_array("mean", mean)
    shape = jnp.shape(mean)
    if len(shape) < 1:
        raise ValueError(f"mean must have a latent axis (rank >= 1), got shape {shape}.")
    _checks.float_array("log_variance", log_variance)
    _checks.broadcasts_to("log_variance", log_variance, shape, "mean")
    _checks.float_option("prior_mean", prior_mean, shape, "mean")
    _checks.float_option("prior_log_variance", prior_log_variance, shape, "mean")
    _checks.broadcasts_to("where", where, shape[:-1], "the batch shape of mean")


def _kl_parts(mean, log_variance, prior_mean, prior_log_variance):
    """``(σ²/σ₀² − 1, log σ²/σ₀², (μ − μ₀)/σ₀)``, each from one ``exp`` of a difference or
    of half a log-variance, so that nothing overflows before the loss itself does."""
    log_ratio = log_variance - prior_log_variance
    z = (mean - prior_mean) * jnp.exp(-0.5 * prior_log_variance)
    return jnp.expm1(log_ratio), log_ratio, z


def _kl_tangent(p, t, out, res):
    ratio_m1, _, z = _kl_parts(p.mean, p.log_variance, p.prior_mean, p.prior_log_variance)
    dmean = z * jnp.exp(-0.5 * p.prior_log_variance)  # (μ − μ₀)/σ₀²
    dlog_variance = 0.5 * ratio_m1
    dterms = tangent_sum((dmean, t.mean), (-dmean, t.prior_mean), (dlog_variance, t.log_variance),
                         (-(dlog_variance + 0.5 * jnp.square(z)), t.prior_log_variance))
    return None if dterms is None else jnp.sum(jnp.broadcast_to(dterms, jnp.shape(z)), axis=-1)


@hand_derivative(_kl_tangent, check=_check_kl,
                 per_example=("mean", "log_variance", "prior_mean", "prior_log_variance"),
                 class_axis=("mean", "log_variance", "prior_mean", "prior_log_variance"), axis_tuples=True)
def gaussian_kl_divergence(mean: Array, log_variance: Array, *, axis: Axis = -1, prior_mean: ArrayLike = 0.0,
                           prior_log_variance: ArrayLike = 0.0, where: Array | None = None) -> jax.Array:
    r"""KL divergence of a diagonal Gaussian from a diagonal Gaussian prior, per example.

    .. math::
       \ell = \mathrm{KL}\big(\mathcal N(\mu, \sigma^2) \,\|\, \mathcal N(\mu_0, \sigma_0^2)\big)
            = \tfrac12 \sum_d \Big[\frac{\sigma_d^2 + (\mu_d - \mu_{0d})^2}{\sigma_{0d}^2}
              - 1 + \log\sigma_{0d}^2 - \log\sigma_d^2\Big],

    summed over the latent axis (``axis``, the last by default; a tuple such as ``(1, 2, 3)``
    sums the ``[C, H, W]`` latents of a convolutional VAE), with ``log_variance`` =
    :math:`\log\sigma^2` and ``prior_log_variance`` = :math:`\log\sigma_0^2`.  With the
    default standard-normal prior this is the VAE regulariser ``−½ Σ (1 + log σ² − μ² − σ²)``.

    Derivatives (hand rule), with :math:`\delta = \log\sigma^2 - \log\sigma_0^2` and
    :math:`z = (\mu - \mu_0)/\sigma_0`:
    ``∂ℓ/∂μ = (μ − μ₀)/σ₀² = −∂ℓ/∂μ₀``, ``∂ℓ/∂log σ² = ½(e^δ − 1)`` and
    ``∂ℓ/∂log σ₀² = −½(e^δ − 1 + z²)``.

    The loss is computed as ``½ Σ [expm1(δ) − δ + z²]`` with ``z = (μ − μ₀)·e^{−log σ₀²/2}``:
    no ``exp`` of a log-variance on its own, no ``inf·0``, and no cancellation in
    ``σ²/σ₀² − 1``.  Values and derivatives are finite for log-variances of ±50 on either
    side (and any finite means up to 1e4); they overflow to +inf only where the divergence
    itself exceeds the float range (``δ`` above ≈ 88 in float32), and never give NaN for
    finite inputs.  A log-variance of −inf (σ² = 0) gives +inf, as the true KL.  Gradients
    come back in the inputs' dtype: for float16 inputs, ``½e^δ`` overflows to inf beyond
    ``δ ≈ 11.8``.

    Args:
      mean: float array ``[..., D]``, the posterior means :math:`\mu`, D on ``axis``.
      log_variance: float ``[..., D]`` broadcasting to ``mean``'s shape, :math:`\log\sigma^2`.
      axis: static; the latent axis of ``mean`` (the last by default): an int, a tuple of
        ints (summed together) or None (every axis).  The other arguments broadcast
        against ``mean`` as given (``[D]`` for ``axis=-1``, ``[D, 1, 1]`` for ``axis=1``
        of ``[N, D, H, W]``).
      prior_mean: the prior means :math:`\mu_0`: a float or an array broadcasting to
        ``mean``'s shape (differentiated when traced).
      prior_log_variance: :math:`\log\sigma_0^2`, a float or an array broadcasting to
        ``mean``'s shape (differentiated when traced).
      where: optional boolean mask broadcasting to the batch shape: ``mean``'s shape
        without ``axis``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``mean.shape[:-1]`` for ``axis=-1``), float32 for
      lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.gaussian_kl_divergence(jnp.array([[0.0, 0.0], [1.0, 0.0]]),
      ...                                jnp.array([[0.0, 0.0], [0.0, jnp.log(2.0)]]))
      Array([0.       , 0.6534264], dtype=float32)

    References:
      Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014, appendix B.
      ``torch.distributions.kl_divergence(Normal(μ, σ), Normal(μ₀, σ₀)).sum(-1)``.
    """
    ratio_m1, log_ratio, z = _kl_parts(mean, log_variance, prior_mean, prior_log_variance)
    # An opaque ½: the rule's ½ would otherwise share its broadcast, computed into a [batch] temporary.
    half, = opaque(z.dtype, 0.5)
    return half * jnp.sum(ratio_m1 - log_ratio + jnp.square(z), axis=-1)  # z has mean's shape


# ------------------------------------------------------------------ gaussian_nll_loss


def _variance_shape(variance_shape, shape):
    """torch's rule: a variance of ``mean``'s batch shape ``shape[:-1]`` (one fewer axis)
    is one variance per example and gets a trailing axis; any other broadcasts as it is."""
    variance_shape = tuple(variance_shape)
    if variance_shape and variance_shape != tuple(shape) and variance_shape == tuple(shape[:-1]):
        return variance_shape + (1,)
    return variance_shape


def _check_gaussian_nll(mean, target, variance, full, eps, where):
    _checks.float_array("mean", mean)
    _checks.numeric("target", target)
    shape = tuple(jnp.shape(mean))
    _checks.broadcasts_to("target", target, shape, "mean")
    if not isinstance(variance, numbers.Real) or isinstance(variance, bool):
        _checks.float_array("variance", variance)
    try:
        fits = jnp.broadcast_shapes(_variance_shape(np.shape(variance), shape), shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"variance with shape {np.shape(variance)} does not broadcast to mean with shape "
                         f"{shape}, nor has its batch shape {shape[:-1]}.")
    if not isinstance(full, bool):
        raise TypeError(f"full must be a Python bool, got {type(full).__name__}.")
    _checks.float_option("eps", eps, shape, "mean")
    _checks.positive("eps", eps)
    _checks.broadcasts_to("where", where, shape, "mean")


def _variance(variance, where, shape):
    """``σ²`` on ``mean``'s shape, masked entries set to 1."""
    return _masked(jnp.broadcast_to(jnp.reshape(variance, _variance_shape(jnp.shape(variance), shape)), shape),
                   where, 1.0)


def _clamped(variance, eps, zero=0.0):
    """``max(σ², eps)`` as torch clamps it: the derivative with respect to ``σ²`` is 1
    everywhere (the clamped value passes the gradient straight through), and with respect
    to ``eps`` 1 where it clamps.  Written ``σ² + max(eps − sg(σ²), 0)``, no compare or
    select, so that XLA:CPU fuses it into what follows (``zero``: an opaque 0 in a forward)."""
    return variance + jnp.maximum(eps - jax.lax.stop_gradient(variance), zero)


def _gaussian_nll_tangent(p, t, out, res):
    shape = jnp.shape(p.mean)
    unclamped = _variance(p.variance, p.where, shape)
    variance = _clamped(unclamped, p.eps)
    dmean = (p.mean - p.target) / variance  # r/σ²
    dvariance = 0.5 * (1 - (p.mean - p.target) * dmean) / variance  # ½(1/σ² − r²/σ⁴)
    tv = None if t.variance is None else _masked(
        jnp.reshape(t.variance, _variance_shape(jnp.shape(t.variance), shape)), p.where, 0.0)
    return tangent_sum((dmean, t.mean), (-dmean, t.target), (dvariance, tv),
                       (jnp.where(unclamped < p.eps, dvariance, 0.0), t.eps))


@hand_derivative(_gaussian_nll_tangent, static=("full",), check=_check_gaussian_nll)
def gaussian_nll_loss(mean: Array, target: Array, variance: ArrayLike, *, full: bool = False, eps: ArrayLike = 1e-6,
                      where: Array | None = None) -> jax.Array:
    r"""Gaussian negative log-likelihood, elementwise (PyTorch's ``GaussianNLLLoss``).

    .. math::
       \ell = \tfrac12\Big(\log \max(\sigma^2, \epsilon)
              + \frac{(\mu - y)^2}{\max(\sigma^2, \epsilon)}\Big)
              \;\big[+\, \tfrac12 \log 2\pi \text{ if } \texttt{full}\big].

    ``variance`` (:math:`\sigma^2`) may have ``mean``'s shape (heteroscedastic), ``mean``'s
    batch shape ``mean.shape[:-1]`` (one variance per example: it gets a trailing axis, as
    in torch), or any shape broadcasting to ``mean``'s (a last axis of 1, a float).  The
    result is elementwise, ``mean``'s shape, as ``torch.nn.functional.gaussian_nll_loss``
    with ``reduction="none"`` returns it (no sum over the last axis).

    Derivatives (hand rule), with :math:`r = \mu - y` and :math:`v = \max(\sigma^2, \epsilon)`:
    ``∂ℓ/∂μ = r/v = −∂ℓ/∂y`` and ``∂ℓ/∂σ² = ½(1/v − r²/v²)``.  Below the clamp
    (:math:`\sigma^2 < \epsilon`) the variance derivative is that same expression at
    :math:`v = \epsilon`, passed straight through as PyTorch does (it clamps a copy under
    ``no_grad``), not the 0 of the flat clamped function: a variance that fell below
    ``eps`` can still be pushed back up.  Finite differences see 0 there.  ``∂ℓ/∂ε`` is
    ``½(1/ε − r²/ε²)`` where the clamp is active and 0 elsewhere.

    A variance of 0 (or below ``eps``, negative included: PyTorch raises on a negative
    variance, which cannot be done under ``jit``) is clamped to ``eps``; values and
    derivatives stay finite, of order ``r²/eps`` and ``r²/eps²`` (in float32: with the
    default ``eps``, residuals up to 1e4 give derivatives up to 1e20).  Gradients come back
    in the inputs' dtype, so for float16 inputs those above 65504 (``r/eps`` at the clamp,
    for any ``|r| > 0.066``) overflow to ±inf: use bfloat16 or a larger ``eps`` there.

    Args:
      mean: float ``[...]``, any shape: the predicted means :math:`\mu`.
      target: ``[...]`` broadcasting to ``mean``'s shape: the observations :math:`y`.
      variance: positive variances :math:`\sigma^2`, float ``[...]`` (shapes above) or float.
      full: static; add the constant ``½ log 2π``.
      eps: the clamp, > 0; a float or an array broadcasting to ``mean`` (differentiated
        when traced).
      where: optional boolean mask broadcasting to ``mean``'s shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``mean.shape`` losses, float32 for inputs of lower precision.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.gaussian_nll_loss(jnp.array([[1.0, 2.0]]), jnp.array([[0.0, 2.0]]),
      ...                           jnp.array([1.0]))
      Array([[0.5, 0. ]], dtype=float32)

    References:
      Nix & Weigend, "Estimating the mean and variance of the target probability
      distribution", 1994.  ``torch.nn.GaussianNLLLoss`` /
      ``torch.nn.functional.gaussian_nll_loss(reduction="none")``.
    """
    # ½ and 0 opaque: XLA:CPU fuses this into the mean (see _math.opaque).
    zero, half = opaque(mean.dtype, 0.0, 0.5)
    variance = _clamped(_variance(variance, where, jnp.shape(mean)), eps, zero)
    loss = half * (jnp.log(variance) + jnp.square(mean - target) / variance)
    return loss + 0.5 * math.log(2 * math.pi) if full else loss


# ------------------------------------------------------------------ poisson_nll_loss


def _check_poisson(log_rate_or_rate, target, log_input, full, eps, where):
    _checks.float_array("log_rate_or_rate", log_rate_or_rate)
    _checks.numeric("target", target)
    shape = jnp.shape(log_rate_or_rate)
    _checks.broadcasts_to("target", target, shape, "log_rate_or_rate")
    for name, flag in (("log_input", log_input), ("full", full)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a Python bool, got {type(flag).__name__}.")
    _checks.float_option("eps", eps, shape, "log_rate_or_rate")
    _checks.positive("eps", eps, allow_zero=True)
    _checks.broadcasts_to("where", where, shape, "log_rate_or_rate")


def _stirling(target):
    """``(t log t − t + ½ log 2πt, its derivative log t + 1/(2t))`` for ``t > 1``, ``(0, 0)``
    elsewhere (torch's ``full`` term); a select keeps ``log 0`` out of every derivative."""
    above = target > 1
    t = jnp.where(above, target, 2.0)
    term = t * jnp.log(t) - t + 0.5 * jnp.log(2 * math.pi * t)
    return jnp.where(above, term, 0.0), jnp.where(above, jnp.log(t) + 0.5 / t, 0.0)


def _zero_rate(rate, target):
    """``(r, z)``: ``z`` marks a rate ``x + ε`` of 0 with a count of 0, and ``r`` is the rate
    with 1 there, so that ``t log r`` reads ``0·log 0 = 0`` and ``t/r`` reads ``0/0 = 0``;
    a select, so autodiff sees a constant there and nothing of ``log 0``."""
    zero = (rate == 0) & (target == 0)
    return jnp.where(zero, 1.0, rate), zero


def _poisson_tangent(p, t, out, res):
    x, target = p.log_rate_or_rate, p.target
    if p.log_input:
        dx, dtarget, deps = jnp.exp(x) - target, -x, None
    else:
        rate, zero = _zero_rate(x + p.eps, target)
        ratio = jnp.where(zero, 0.0, target / rate)  # t/(x + ε), and 0 for 0/0
        dx, dtarget, deps = 1 - ratio, -jnp.log(rate), -ratio
    if p.full and t.target is not None:
        dtarget = dtarget + _stirling(target)[1]
    return tangent_sum((dx, t.log_rate_or_rate), (dtarget, t.target), (deps, None if deps is None else t.eps))


@hand_derivative(_poisson_tangent, static=("log_input", "full"), check=_check_poisson)
def poisson_nll_loss(log_rate_or_rate: Array, target: Array, *, log_input: bool = True, full: bool = False,
                     eps: ArrayLike = 1e-8, where: Array | None = None) -> jax.Array:
    r"""Poisson negative log-likelihood, elementwise (PyTorch's ``PoissonNLLLoss``).

    .. math::
       \ell = \begin{cases} e^{x} - t\,x & \texttt{log\_input} \\
                            x - t \log(x + \epsilon) & \text{otherwise} \end{cases}
       \;\big[+\, s(t) \text{ if } \texttt{full}\big],
       \qquad s(t) = \begin{cases} t\log t - t + \tfrac12\log 2\pi t & t > 1 \\
                                   0 & t \le 1, \end{cases}

    with ``x`` = ``log_rate_or_rate`` (the log-rate, or the rate with
    ``log_input=False``) and the target counts ``t``.  Without ``full`` the loss drops
    ``log t!``; ``s`` is Stirling's approximation to it, left out for ``t ≤ 1`` as in
    torch (so ``full`` jumps by ``s(1) ≈ −0.081`` at ``t = 1``).

    Derivatives (hand rule): ``∂ℓ/∂x = eˣ − t`` (``log_input``) or ``1 − t/(x + ε)``;
    ``∂ℓ/∂t = −x`` or ``−log(x + ε)``, plus ``s′(t) = log t + 1/(2t)`` for ``t > 1`` with
    ``full`` (0 for ``t ≤ 1``: PyTorch gives NaN at ``t = 0`` there); ``∂ℓ/∂ε = −t/(x + ε)``
    (0 with ``log_input``).  Integer targets get no derivative.

    A rate of 0 with ``log_input=False`` gives ``−t log ε``, finite for ``eps > 0``.  With
    ``eps = 0`` and a rate of 0:

    * a count of 0 gives ``0·log 0 = 0``: loss 0, ``∂ℓ/∂x = 1`` (the limit of ``1 − t/x``
      at ``t = 0``, the derivative of ``x − t log x`` with ``t = 0``), ``∂ℓ/∂ε = 0``, and
      ``∂ℓ/∂t`` taken as 0 (its one-sided value is +inf); second derivatives are 0 there;
    * a count ``t > 0`` gives +inf, the true value, with the one-sided derivatives
      ``∂ℓ/∂x = ∂ℓ/∂ε = −inf`` and ``∂ℓ/∂t = +inf`` (``∂²ℓ/∂x² = +inf``): infinite, never
      NaN, though a tangent (or cotangent) of exactly 0 at such an entry meets them as
      ``inf·0 = NaN``.  Mask such entries with ``where`` (loss and derivatives 0) or use
      ``eps > 0``.

    A log-rate of −1e4 gives ``1e4·t``; ``eˣ`` overflows float32 to +inf for log-rates above
    ≈ 88, as the true value does (for float16 inputs the gradient ``eˣ − t``, returned in
    float16, overflows beyond ``x ≈ 11``).  Negative rates give NaN (as in torch).

    Args:
      log_rate_or_rate: float ``[...]``, any shape: log-rates (or rates, ``log_input=False``).
      target: ``[...]`` broadcasting to its shape: observed counts (>= 0); float targets
        are differentiated.
      log_input: static; whether the input is the log of the rate.
      full: static; add the Stirling term ``s(t)``.
      eps: >= 0, added to the rate inside the log when ``log_input=False``; a float or an
        array broadcasting to the input (differentiated when traced).
      where: optional boolean mask broadcasting to the input's shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``log_rate_or_rate.shape`` losses, float32 for inputs of lower precision.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.poisson_nll_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 3.0]), full=True)
      Array([1.       , 1.4823633], dtype=float32)

    References:
      ``torch.nn.PoissonNLLLoss`` / ``torch.nn.functional.poisson_nll_loss(reduction="none")``.
    """
    x = jnp.asarray(log_rate_or_rate)
    loss = jnp.exp(x) - target * x if log_input else x - target * jnp.log(_zero_rate(x + eps, target)[0])
    return loss + _stirling(target)[0] if full else loss
