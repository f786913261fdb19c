"""Focal losses: sigmoid (elementwise) and softmax (per example)."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._math import opaque, softplus_pair
from jaxloss._softmax import (
    IGNORE_INDEX, PerClass, check_classes, class_ids, class_masked, class_sum, cofactor, gather_class, label_value,
    loud, one_hot, per_example, shifted_logsumexp, smoothed, smoothed_targets, times_nonzero,
)
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike


# ------------------------------------------------------------------ focal losses


# Where a float label is exactly 0 or 1 and the logit is on its side, (1 + e^{−|x|})·(1 − p_t) is
# e^{−|x|} alone, which underflows float32 past |x| ≈ 87.  _binary_terms floors it at e^{−_CAP}
# inside the log and subtracts the rest of the exponent outside, so the value is exact for any
# logit; the floor bounds the label derivative there (~e^{|x|}) and its square in float32.
_CAP = 40.0


class _Binary(NamedTuple):
    ce: jax.Array  # y·softplus(−x) + (1 − y)·softplus(x)
    log1p_e: jax.Array  # log(1 + e), e = e^{−|x|}
    e: jax.Array
    abs_x: jax.Array  # |x| as max(x, 0) + max(−x, 0): derivative 0 at x = 0, the mean of ±1
    log_d: jax.Array  # log D, D = (1 + e)·(1 − p_t) = e + w·(1 − e)
    tie: jax.Array  # max(x, 0) − x·[x > 0]: 0, with derivative ½ at x = 0 (max splits the tie), else 0


def _binary_terms(x, y, zero=0.0, one=1.0, cap=_CAP, floor=math.exp(-_CAP)):
    """The binary terms of the focal loss for float labels, exact for any logit, written with
    maxima and signs, no compare or select, so that XLA:CPU fuses the forward into the
    reduction that follows it (a mean).  ``zero, one, cap, floor``: :func:`opaque` constants
    in the forward.

    ``w`` and ``e`` jump or kink at x = 0 where ``D`` does not; ``tie`` restores ``log D``'s
    derivative there, ``½ − y`` (the mean of its one-sided ones), so that plain autodiff of the
    forward (``.reference``) is right at x = 0 too, to first order (its second derivative in x
    there is not, as for :func:`softplus_pair`; the rule's is)."""
    e = jnp.exp(jnp.minimum(x, -x))
    log1p_e = jnp.log1p(e)
    pos, neg = jnp.maximum(x, zero), jnp.maximum(-x, zero)
    side = jnp.sign(pos)  # 1 for x > 0, else 0
    w = y + side * (one - y - y)  # the weight of the larger sigmoid in 1 − p_t: 1 − y for x > 0, else y
    alone = one - jnp.sign(w)  # 1 where w = 0: D = e alone
    floored = jnp.maximum(e, alone * floor)
    tie = pos - x * side
    # D = 1 at x = 0, so the tie's derivative there is log D's: it stands outside the log, where
    # reverse mode does not scale it by 1/D (~e^40 where D is floored) before it cancels.
    log_d = (jnp.log(floored + w * (one - floored)) - alone * jnp.maximum(pos + neg - cap, zero)
             + (one - y - y) * tie)
    return _Binary(log1p_e + y * neg + (one - y) * pos, log1p_e, e, pos + neg, log_d, tie)


def _log1p_ratio(e):
    """``log(1 + e)/e`` for e in [0, 1] (1 at e = 0), with derivatives that stay finite as e → 0:
    its series below 1e-3 (``log1p(e)/e`` differentiates to ``1/e²`` terms, which overflow)."""
    small = e < 1e-3
    safe = jnp.where(small, 1.0, e)
    return jnp.where(small, 1 - e * (1 / 2 - e * (1 / 3 - e * (1 / 4 - e / 5))), jnp.log1p(safe) / safe)


def _softplus_over_sigmoid(z):
    """``softplus(z)/σ(z)``, between 1 (z → −∞) and about ``z`` (z → +∞), for any ``z``."""
    t = jnp.exp(-jnp.abs(z))
    return (1 + t) * jnp.where(z >= 0, z + jnp.log1p(t), _log1p_ratio(t))


def _focal_slope(x, y, r, ce, weight, gamma):
    """``∂/∂x`` of ``ce·(1 − p_t)^γ`` for one binary term: ``u^γ·[σ(x) − y + γ·ce·(σ(−x) − r)]``
    with ``r = y·σ(−x)/(1 − p_t)``, each difference written so that it is exact for hard labels
    (``y = r ∈ {0, 1}``)."""
    sx, snx = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
    return weight * ((1 - y) * sx - y * snx + gamma * ce * ((1 - r) * snx - r * sx))


def _check_sigmoid_focal(logits, labels, alpha, gamma, where):
    _checks.scores(logits, labels, where, name="logits", alpha=alpha, gamma=gamma)
    _checks.in_unit_interval("alpha", alpha)
    _checks.positive("gamma", gamma, allow_zero=True)


def _float_labels(labels, dtype):
    """Float labels as they are; integer/boolean ones as 1.0 for ``> 0``, else 0.0."""
    return labels if jnp.issubdtype(labels.dtype, jnp.floating) else (labels > 0).astype(dtype)


def _focal_alpha(alpha, y, one=1.0):
    return one if alpha is None else alpha * y + (one - alpha) * (one - y)


def _sigmoid_focal_tangent(p, t, out, res):
    x, gamma = p.logits, p.gamma
    y = _float_labels(p.labels, x.dtype)
    b = _binary_terms(x, y)
    log_u = b.log_d - b.log1p_e  # log(1 − p_t)
    focal = jnp.exp(gamma * log_u)  # (1 − p_t)^γ
    q = jnp.exp(-b.abs_x - b.log_d)  # e/D in [0, 1]: 1 where w = 0, however small e
    big = 1 / (1 + b.e)  # σ(|x|)
    s, s_bar = jnp.where(x > 0, big, b.e * big), jnp.where(x > 0, b.e * big, big)  # σ(±x)
    a = _focal_alpha(p.alpha, y)
    # σ(x) − y, exact for hard labels; the tie gives it σ′(0) = ¼ at x = 0.  σ(x)σ(−x)/u = σ(|x|)·q.
    dlogits = a * focal * ((1 - y) * s - y * s_bar + 0.5 * b.tie + gamma * b.ce * (1 - 2 * y) * big * q)
    dlabels = None
    if t.labels is not None:
        # BCE·(σ(x) − σ(−x))/u = sign(x)·(1 − e)·φ(e)·q + x·(1 − q) with φ(e) = log(1 + e)/e:
        # each factor bounded, with derivatives finite wherever 1 − p_t is, to second order.
        sign_gap = (s - s_bar + b.tie) * (1 + b.e)  # sign(x)·(1 − e), with derivative 1 at x = 0
        dlabels = -a * focal * (x + gamma * (sign_gap * _log1p_ratio(b.e) * q + x * (1 - q)))
        if p.alpha is not None:
            dlabels = dlabels + (2 * p.alpha - 1) * b.ce * focal
    return tangent_sum(
        (dlogits, t.logits),
        (dlabels, t.labels),
        ((2 * y - 1) * b.ce * focal, t.alpha),
        (a * b.ce * focal * log_u, t.gamma),
    )


@hand_derivative(_sigmoid_focal_tangent, check=_check_sigmoid_focal)
def sigmoid_focal_loss(logits: Array, labels: Array, *, alpha: ArrayLike | None = None, gamma: ArrayLike = 2.0,
                       where: Array | None = None) -> jax.Array:
    r"""Sigmoid focal loss, elementwise: a binary cross-entropy scaled down where it is small.

    With :math:`p = \sigma(x)`, :math:`p_t = p y + (1 - p)(1 - y)` and
    :math:`\alpha_t = \alpha y + (1 - \alpha)(1 - y)`:

    .. math:: \ell = \alpha_t\,(1 - p_t)^\gamma\,\mathrm{BCE}(x, y),
       \qquad \mathrm{BCE}(x, y) = y\operatorname{softplus}(-x) + (1 - y)\operatorname{softplus}(x),

    and :math:`\alpha_t = 1` with ``alpha=None``.  The focal factor is computed in log
    space, :math:`(1 - p_t)^\gamma = e^{\gamma L}` with :math:`L = \log(1 - p_t) =
    \log(w + (1 - w)\,e^{-|x|}) - \log(1 + e^{-|x|})`, where :math:`w` is the label weight of
    the larger of :math:`\sigma(\pm x)` (``1 − y`` for x > 0, else ``y``); for a label of exactly 0
    or 1 on the logit's side :math:`L = -|x| - \log(1 + e^{-|x|})`, exact for any logit.  So it
    never evaluates :math:`0^{\gamma - 1}`: values and derivatives are finite for any
    ``gamma >= 0`` (0.5 included) and logits of ±1e4, also where :math:`p_t` rounds to 1.
    The forward has no compare or select, so XLA fuses it into a reduction that follows (a
    mean); reverse mode keeps only the inputs.

    Derivatives (hand rule), with :math:`u = 1 - p_t`, :math:`e = e^{-|x|}`,
    :math:`D = (1 + e)\,u = w + (1 - w)\,e` and :math:`q = e/D \in [0, 1]`:
    ``∂ℓ/∂x = α_t·u^γ·[σ(x) − y + γ·BCE·(1 − 2y)·σ(|x|)·q]`` (the last factor is
    ``σ(x)σ(−x)/u``); ``∂ℓ/∂y = −α_t·u^γ·[x + γ·(sign(x)·(1 − e)·φ(e)·q + x·(1 − q))] +
    (2α − 1)·BCE·u^γ`` for float (soft) labels, with ``φ(e) = log(1 + e)/e`` (the bracket is
    ``x + γ·(BCE/u)·(σ(x) − σ(−x))``); ``∂ℓ/∂α = (2y − 1)·BCE·u^γ``;
    ``∂ℓ/∂γ = ℓ·log(1 − p_t)``.  No factor :math:`u^{\gamma - 1}` or :math:`1/u` appears
    (``q`` is computed as ``exp(−|x| − log D)``), so for ``gamma < 1`` nothing blows up as
    :math:`p_t \to 1`, and second derivatives (HVPs) are finite for every finite logit, soft
    labels at :math:`|x| \approx 60` in float32 included.  At labels 0 and 1 ``∂ℓ/∂y`` is the
    one-sided derivative (the formula's analytic value there); its own derivative, ``~e^{|x|}``,
    is capped at ``e^{40}`` (exact for :math:`|x| < 40`).  Where :math:`u^\gamma` underflows the
    derivatives are their limits, 0.  ``gamma = 0`` gives :math:`\alpha_t`-weighted BCE.

    Args:
      logits: float ``[...]``, any shape.
      labels: ``[...]`` targets broadcasting to ``logits``: integer/boolean hard labels (``> 0`` is
        the positive class; no derivative) or float soft labels in [0, 1]
        (differentiated; not checked, values outside give NaN).
      alpha: weight of the positive class in [0, 1], a float or an array broadcasting to
        ``logits`` (differentiated when traced), or ``None`` (the default, as in optax) for
        no weighting.  torchvision's default is 0.25: pass ``alpha=0.25`` for its numbers.
      gamma: focusing exponent >= 0, a float or an array broadcasting to ``logits``
        (differentiated when traced).
      where: optional boolean mask broadcasting to ``logits``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``logits.shape`` losses (``reduction="none"``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.sigmoid_focal_loss(jnp.array([0.0, 2.0, -1e4]), jnp.array([1, 1, 1]), alpha=0.25).round(6)
      Array([4.3322e-02, 4.5100e-04, 2.5000e+03], dtype=float32)

    References:
      Lin et al., "Focal Loss for Dense Object Detection", 2017.
      ``optax.losses.sigmoid_focal_loss`` (the same defaults, ``alpha=None`` and γ = 2);
      ``torchvision.ops.sigmoid_focal_loss(reduction="none")``.  Differs from torchvision:
      its ``alpha`` defaults to 0.25 and turns the weighting off with ``alpha=-1`` (here
      ``alpha=None``, the default).
    """
    # Constants (and options, constants when given as Python floats) opaque, so that XLA:CPU fuses
    # this into the mean (see _math.opaque).
    zero, one, cap, floor = opaque(logits.dtype, 0.0, 1.0, _CAP, math.exp(-_CAP))
    alpha, gamma = jax.lax.optimization_barrier((alpha, gamma))
    if jnp.issubdtype(labels.dtype, jnp.floating):
        b = _binary_terms(logits, labels, zero, one, cap, floor)
        loss = b.ce * jnp.exp(gamma * (b.log_d - b.log1p_e))
    else:
        y = (labels > 0).astype(logits.dtype)
        ce, focal_sp = softplus_pair(logits * (one - y - y), zero)  # softplus(∓x), softplus(±x) for y = 1, 0
        loss = ce * jnp.exp(-(gamma * focal_sp))
    return loss if alpha is None else _focal_alpha(alpha, _float_labels(labels, logits.dtype), one) * loss


def _check_softmax_focal(logits, labels, class_weights, gamma, label_smoothing, ignore_index, where):
    check_classes(logits, labels, where, probabilities=True, ignore_index=ignore_index, gamma=gamma,
                  label_smoothing=label_smoothing)
    _checks.float_option("class_weights", class_weights, jnp.shape(logits)[-1:], "the class axis of logits")
    _checks.positive("class_weights", class_weights, allow_zero=True)
    _checks.positive("gamma", gamma, allow_zero=True)
    _checks.in_unit_interval("label_smoothing", label_smoothing)


def _label_margin(logits, ids, counted, others=None):
    """``(label, valid, d, (m, s))``: the one-hot label mask; whether the example counts
    and has some other class with a finite logit; the shifted log-sum-exp of the
    other classes, ``lse_{c≠y} x_c = m + s`` (computed unless given); and the label's
    margin over them, ``d = (x_y − m) − s`` (0 where not valid)."""
    label = one_hot(ids, logits.shape[-1])
    valid = counted & jnp.any(~label & (logits > -jnp.inf), axis=-1)
    if others is None:
        # Rows without a valid margin get zeros, so that no row is all −inf.
        others = shifted_logsumexp(jnp.where(valid[..., None], jnp.where(label, -jnp.inf, logits), 0.0))
    m, s = others
    d = jnp.where(valid, (label_value(logits, ids) - m) - s, 0.0)
    return label, valid, d, (m, s)


def _class_terms(x, others=None):
    """``(n, log_u, pr, others)`` per class: ``n = −log p_c``, ``log_u = log(1 − p_c)`` and
    ``pr = p_c·n_c/(1 − p_c)``, exact for any logits; ``others`` as in :func:`_label_margin`
    for the top class (the row's argmax).

    Only the top class can have ``p_c > 1/2``: its terms come from its margin ``d`` over the
    other classes, ``n = softplus(−d)``, ``log_u = −softplus(d)``; every class's ``n`` is
    ``(x_top − x_c) + n_top``, and the other classes' ``1 − p_c >= 1/2`` is computed as
    ``−expm1(−n_c)``.  A top class with no other finite class has ``p = 1``: ``n = log_u = pr = 0``.
    """
    top = jnp.argmax(x, axis=-1)
    label, valid, d, others = _label_margin(x, top, True, others)
    sp_d, sp_nd = softplus_pair(d)  # −log(1 − p_top), −log p_top
    n_top = jnp.where(valid, sp_nd, 0.0)
    x_top = label_value(x, top)
    n = (jnp.where(jnp.isfinite(x_top), x_top, 0.0)[..., None] - x) + n_top[..., None]
    safe = jnp.where(label, 1.0, n)  # the other classes' formulas, kept finite at the top
    u = -jnp.expm1(-safe)
    log_u = jnp.where(label, jnp.where(valid, -sp_d, 0.0)[..., None], jnp.log1p(-jnp.exp(-safe)))
    pr_top = jnp.where(valid, jax.nn.sigmoid(d) * _softplus_over_sigmoid(-d), 0.0)
    pr = jnp.where(label, pr_top[..., None], times_nonzero(jnp.exp(-safe), safe) / u)
    return n, log_u, pr, others


def _soft_focal_tangent(p, t, others):
    """The rule of :func:`softmax_focal_loss` for (smoothed) targets: with ``f_c = u_c^γ·n_c``
    and ``g_c = a_c·u_c^γ·(1 + γ·pr_c)``, ``∂ℓ/∂x_k = p_k·Σ_c g_c − g_k``."""
    x, gamma = p.logits, per_example(p.gamma)
    n, log_u, pr, _ = _class_terms(x, others)
    y, dy, dy_deps, _ = smoothed_targets(p.labels, p.label_smoothing, class_masked(x, None), p.ignore_index)
    weights = 1.0 if p.class_weights is None else p.class_weights
    a, w = weights * y, jnp.exp(gamma * log_u)  # w = (1 − p_c)^γ
    g = a * w * (1 + gamma * pr)
    f_a = cofactor(a, w * n)  # ∂ℓ/∂a_c, 0 at a class of no weight and logit −inf
    return class_sum(
        (jnp.exp(-n) * jnp.sum(g, axis=-1, keepdims=True) - g, t.logits),
        (weights * f_a, tangent_sum((dy, t.labels), (dy_deps, per_example(t.label_smoothing)))),
        (y * f_a, t.class_weights),
        (times_nonzero(a, w * n) * log_u, per_example(t.gamma)),
    )


def _softmax_focal_tangent(p, t, out, others):
    if isinstance(others, PerClass):
        return _soft_focal_tangent(p, t, tuple(others))
    x, gamma = p.logits, p.gamma
    ids, counted, _ = class_ids(p.labels, x.shape[-1], p.ignore_index)
    label, valid, d, (m, s) = _label_margin(x, ids, counted, others)
    focal_sp, ce = softplus_pair(d)  # −log(1 − p_y), −log p_y
    log_u = -focal_sp
    w = jnp.where(valid, jnp.exp(gamma * log_u), 0.0)  # (1 − p_y)^γ
    gather = lambda v: gather_class(v, ids, x.shape)  # noqa: E731
    a = 1.0 if p.class_weights is None else gather(p.class_weights)
    # ∂ℓ/∂d (its limit −w_y where the label's logit is −inf, ce = +inf), and
    # ∂d/∂x_c = [c = y] − q_c with q the softmax of the other classes.
    dd = a * _focal_slope(d, 1.0, 1.0, jnp.where(ce < jnp.inf, ce, 0.0), w, gamma)
    keep = valid[..., None] & ~label
    q = jnp.where(keep, jnp.exp(jnp.where(keep, (x - m[..., None]) - s[..., None], 0.0)), 0.0)
    return tangent_sum(
        (dd, gather(t.logits)),
        (-dd, class_sum((q, t.logits))),
        (cofactor(a, ce * w), gather(t.class_weights)),
        (times_nonzero(log_u, a * ce * w), t.gamma),
    )


@hand_derivative(_softmax_focal_tangent, static=("ignore_index",), check=_check_softmax_focal, residuals=True,
                 class_axis=("logits", "labels"))
def softmax_focal_loss(logits: Array, labels: Array, *, axis: int = -1, class_weights: ArrayLike | None = None,
                       gamma: ArrayLike = 2.0, label_smoothing: ArrayLike = 0.0,
                       ignore_index: int | None = IGNORE_INDEX,
                       where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""Multi-class (softmax) focal loss per example, with class ids or probability targets.

    With :math:`p = \operatorname{softmax}(x)` and the label class :math:`y`:

    .. math:: \ell = -w_y\,(1 - p_y)^\gamma \log p_y ,

    with :math:`w_y = 1` when ``class_weights`` is ``None``.  For probability targets
    :math:`y_c`, and for label smoothing (targets :math:`\tilde y = (1 - \varepsilon)\,y +
    \varepsilon / C`, ``y`` one-hot for class ids), each class is scored as the label class
    is above, weighted by its target:

    .. math:: \ell = -\sum_c w_c\,\tilde y_c\,(1 - p_c)^\gamma \log p_c ,

    the one-hot formula (kornia's ``focal_loss``, mmocr's ``FocalLoss``) with the one-hot
    replaced by the targets, as label-smoothed focal losses for PyTorch compute it; it is
    the focal loss of class ids for one-hot targets, and ``gamma = 0`` gives
    :func:`softmax_cross_entropy` with ``class_weights`` as here and the same targets.  It is computed from the margin
    of the label over the other classes, :math:`d = x_y - \operatorname{lse}_{c \ne y}(x_c)`:
    :math:`-\log p_y = \operatorname{softplus}(-d)` and :math:`\log(1 - p_y) =
    -\operatorname{softplus}(d)`, so it is the binary focal loss of :math:`d` with a
    positive label.  Both logarithms are exact for any margin (``log1p(−p_y)`` would round
    to ``log 0`` once ``p_y`` rounds to 1), so values and derivatives are finite for any
    ``gamma >= 0`` (0.5 included) when :math:`p_y \to 1`, for logits of ±1e4 and for
    classes masked with −inf (other than the label).  ``gamma = 0`` gives
    :func:`softmax_cross_entropy` with ``class_weights`` as here.

    Derivatives (hand rule), with :math:`u = 1 - p_y = \sigma(-d)` and
    :math:`q_c = p_c/(1 - p_y)` for :math:`c \ne y` (:math:`q_y = 0`):
    ``∂ℓ/∂x_c = ∂ℓ/∂d·([c = y] − q_c)`` with
    ``∂ℓ/∂d = −w_y·u^γ·[σ(−d) + γ·softplus(−d)·σ(d)]``;
    ``∂ℓ/∂w_c = [c = y]·(−log p_y)·u^γ``; ``∂ℓ/∂γ = ℓ·log(1 − p_y)``.  Reverse mode keeps
    the logits and the per-example maximum and log-sum-exp of the other classes.

    For targets, with :math:`n_c = -\log p_c`, :math:`u_c = 1 - p_c`, :math:`a_c = w_c
    \tilde y_c` and :math:`g_c = a_c u_c^\gamma (1 + \gamma\,p_c n_c / u_c)`:
    ``∂ℓ/∂x_k = p_k·Σ_c g_c − g_k``; ``∂ℓ/∂ỹ_c = w_c·u_c^γ·n_c`` (so
    ``∂ℓ/∂y_c = (1 − ε)·∂ℓ/∂ỹ_c`` and ``∂ℓ/∂ε = Σ_c (1/C − y_c)·∂ℓ/∂ỹ_c``);
    ``∂ℓ/∂w_c = ỹ_c·u_c^γ·n_c``; ``∂ℓ/∂γ = Σ_c a_c u_c^γ n_c log u_c``.  The row's top
    class (its argmax, the only one that can have :math:`p_c > 1/2`) takes its terms from
    its margin over the others, as the label does above; the others' :math:`u_c >= 1/2`.
    So :math:`n_c / u_c` stays finite as :math:`p_c \to 1` and every derivative is finite
    for ``gamma >= 0`` and logits of ±1e4.  Reverse mode keeps the logits and the top
    class's statistics of the other classes.

    A label whose logit is −inf gives loss +inf, as in cross-entropy (its logits
    derivative is finite: ``−w_y`` at the label, ``w_y·q_c`` elsewhere).  An example with
    no other class (one class, or every other logit −inf) has ``p_y = 1`` and loss 0, and
    so does an id equal to ``ignore_index``; all their derivatives are 0.  Any other id
    outside ``[0, C)`` gives NaN (ids are compared in int32).

    Args:
      logits: float ``[..., C]`` with C on ``axis``.
      labels: integer class ids ``[...]``, the batch shape (``logits`` without ``axis``; no
        derivative), or float probability targets ``[..., C]``, the shape of ``logits`` (differentiated).
      axis: static; the class axis of ``logits`` (default -1, the last), an int.
      class_weights: optional per-class weights ``[C]`` (or a scalar), >= 0, differentiated
        when traced; ``None`` weighs every class 1.  The α of Lin et al., under the name
        every jaxloss loss gives class weights (torch's ``weight``).
      gamma: focusing exponent >= 0, a float or an array of the batch shape
        (differentiated when traced).
      label_smoothing: ε in [0, 1]; a float or an array of the batch shape.
      ignore_index: static; the class id of the examples to ignore, an int (−100 by
        default, as in PyTorch) or ``None``.  Unused with probability targets.
      where: optional boolean mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``logits.shape[:-1]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.array([[2.0, 0.0, -jnp.inf], [0.0, 0.0, 0.0], [1e4, -1e4, 0.0]])
      >>> jaxloss.softmax_focal_loss(logits, jnp.array([0, 2, 0]), gamma=0.5)
      Array([0.04382288, 0.89701325, 0.        ], dtype=float32)

    The common PyTorch multi-class focal losses (e.g. mmocr's ``FocalLoss``) compute
    ``nll_loss((1 − p)^γ·log_softmax(x), y, weight=class_weights)``: the same per-example losses
    with ``reduction="none"``; their default weighted mean divides by the summed label
    weights, which is ``jaxloss.reduce.ratio(losses, class_weights[jnp.where(mask, labels, 0)], where=mask)``
    with ``mask = labels != ignore_index``.

    References:
      Lin et al., "Focal Loss for Dense Object Detection", 2017 (the α-balanced focal
      loss, applied to the softmax probability of the label class).  PyTorch
      implementations as above (open-mmlab's mmocr ``FocalLoss``, ``ignore_index``
      included); ``kornia.losses.focal_loss`` (class ids only; its scalar ``alpha`` is a
      scalar ``class_weights`` here; its one-hot sum is the targets' formula above).  optax
      and torch have no softmax focal loss.
    """
    if not jnp.issubdtype(labels.dtype, jnp.integer) or smoothed(label_smoothing):
        y, _, _, invalid = smoothed_targets(labels, label_smoothing, class_masked(logits, None), ignore_index)
        n, log_u, _, others = _class_terms(logits)
        a = y if class_weights is None else class_weights * y
        loss = jnp.sum(times_nonzero(a, n * jnp.exp(per_example(gamma) * log_u)), axis=-1)
        return (loss if invalid is None else loud(loss, invalid)), PerClass(*others)
    ids, counted, invalid = class_ids(labels, logits.shape[-1], ignore_index)
    _, valid, d, others = _label_margin(logits, ids, counted)
    focal_sp, ce = softplus_pair(d)
    focal = ce * jnp.exp(-(gamma * focal_sp))
    if class_weights is not None:
        focal = times_nonzero(label_value(jnp.broadcast_to(class_weights, logits.shape), ids), focal)
    return loud(jnp.where(valid, focal, 0.0), invalid), others
