"""Divergences between distributions over a class axis, and knowledge distillation."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks
from jaxloss._softmax import (
    class_sum, minus_log_softmax, per_example, shifted_logsumexp,
)
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis


def _check_distributions(first, x, second, y, where, **options):
    """Two float arrays ``[..., C]`` of the same shape; ``where`` and float options
    broadcasting to the batch shape, the options > 0 where concrete."""
    _checks.float_array(first, x)
    _checks.float_array(second, y)
    shape = jnp.shape(x)
    if len(shape) < 1:
        raise ValueError(f"{first} must have a class axis (rank >= 1), got shape {shape}.")
    if jnp.shape(y) != shape:
        raise ValueError(f"{second} with shape {jnp.shape(y)} must have the shape of {first}, {shape}.")
    _checks.broadcasts_to("where", where, shape[:-1], f"the batch shape of {first}")
    for option, value in options.items():
        _checks.float_option(option, value, shape[:-1], f"the batch shape of {first}")
        _checks.positive(option, value)


def _kl_terms(weights, log_weights, log_predictions):
    """``Σ_c w_c (log w_c − lp_c)`` over the class axis, with ``0·log 0 = 0``: a class whose
    weight is exactly 0 adds exactly 0, also where ``lp`` is −inf, and its selects keep
    inf and NaN out of every derivative of the sum."""
    present = weights != 0
    log_w, lp = jnp.where(present, log_weights, 0), jnp.where(present, log_predictions, 0)
    return jnp.sum(jnp.where(present, weights * (log_w - lp), 0), axis=-1)


def _kl_weights(targets, log_targets):
    """The target probabilities and their logarithms (log 0 read as 0, never used)."""
    if log_targets:
        return jnp.exp(targets), targets
    return targets, jnp.log(jnp.where(targets != 0, targets, 1))


def _kept(x, class_mask, value=0.0):
    """``x`` on the classes ``class_mask`` keeps, ``value`` on the others (a select)."""
    return x if class_mask is None else jnp.where(class_mask, x, value)


def _kept_classes(log_predictions, targets, log_targets, class_mask):
    """The inputs with the classes ``class_mask`` leaves out set to no target mass (and a
    prediction of 1), selects that keep whatever they held out of every derivative."""
    return _kept(log_predictions, class_mask), _kept(targets, class_mask, -jnp.inf if log_targets else 0.0)


def _kl(log_predictions, targets, log_targets, class_mask, generalized=False):
    """The KL divergence per example; ``generalized`` adds ``Σ_c (p_c − t_c)`` over the kept classes."""
    log_predictions, targets = _kept_classes(log_predictions, targets, log_targets, class_mask)
    kl = _kl_terms(*_kl_weights(targets, log_targets), log_predictions)
    if not generalized:
        return kl
    return kl + jnp.sum(_kept(jnp.exp(log_predictions) - targets, class_mask), axis=-1)


def _kl_partials(log_predictions, targets, log_targets, class_mask, generalized=False):
    """``(∂ℓ/∂lp, ∂ℓ/∂targets)`` per class of :func:`_kl`; 0 on a class without target mass
    (see :func:`kl_divergence` for that convention) and on a class left out."""
    log_predictions, targets = _kept_classes(log_predictions, targets, log_targets, class_mask)
    w, log_w = _kl_weights(targets, log_targets)
    present = w != 0
    dw = jnp.where(present, log_w - jnp.where(present, log_predictions, 0) + 1, 0)  # ∂ℓ/∂t, 0 at t = 0
    dlp, dt = -w, w * dw if log_targets else dw
    if generalized:
        dlp, dt = dlp + _kept(jnp.exp(log_predictions), class_mask), dt - _kept(1.0, class_mask)
    return dlp, dt


def _check_kl(log_predictions, targets, class_mask, where, log_targets=False, name="targets"):
    _check_distributions("log_predictions", log_predictions, name, targets, where)
    if not isinstance(log_targets, bool):
        raise TypeError(f"log_targets must be a Python bool, got {type(log_targets).__name__}.")
    _checks.mask("class_mask", class_mask)
    _checks.broadcasts_to("class_mask", class_mask, jnp.shape(log_predictions), "log_predictions")


def _kl_tangent(p, t, out, res):
    dlp, dt = _kl_partials(p.log_predictions, p.targets, p.log_targets, p.class_mask)
    return class_sum((dlp, t.log_predictions), (dt, t.targets))


@hand_derivative(_kl_tangent, static=("log_targets",), check=_check_kl,
                 class_axis=("log_predictions", "targets", "class_mask"), axis_tuples=True)
def kl_divergence(log_predictions: Array, targets: Array, *, axis: Axis = -1, log_targets: bool = False,
                  class_mask: Array | None = None, where: Array | None = None) -> jax.Array:
    r"""Kullback-Leibler divergence of predictions from targets, per example over the class axis.

    .. math:: \ell = \sum_c t_c (\log t_c - \log p_c), \qquad 0 \log 0 = 0,

    with ``log_predictions`` = :math:`\log p` and ``targets`` = :math:`t` (or, with
    ``log_targets=True``, ``targets`` = :math:`\log t`, and
    :math:`\ell = \sum_c e^{\log t_c}(\log t_c - \log p_c)`).  Neither side has to be
    normalised; the loss is ``torch.nn.functional.kl_div(reduction="none")`` summed over
    the class axis.

    Derivatives (hand rule): ``∂ℓ/∂log p_c = −t_c``; ``∂ℓ/∂t_c = log t_c − log p_c + 1``
    (with ``log_targets``: ``∂ℓ/∂log t_c = t_c (log t_c − log p_c + 1)``).  A class with
    ``t_c = 0`` exactly contributes 0 and is treated as absent: both its derivatives are
    0, also where ``log p_c = −inf`` (a class masked out of the predictions).  For the
    targets that is a convention: the true derivative ``log t_c + 1 − log p_c`` tends to
    −inf as ``t_c → 0⁺`` and no finite subgradient exists; 0 is finite, does not push
    the target away from the class, and is the exact limit of the log-target derivative
    (``t_c (…) → 0``).  ``optax.losses.kl_divergence`` and PyTorch give NaN there.  A
    class with ``t_c > 0`` and ``log p_c = −inf`` gives a loss of +inf.

    Args:
      log_predictions: float array ``[..., C]`` (C on ``axis``), log-probabilities of the
        predicted distribution (e.g. ``jax.nn.log_softmax(logits)``); −inf where a class
        is impossible.
      targets: float ``[..., C]`` of the same shape: target probabilities (>= 0; negative ones
        give NaN), or log-probabilities with ``log_targets=True``.
      axis: static; the class axis of ``log_predictions`` (default −1, the last): an int, a
        tuple of ints (flattened into one class axis, as optax does) or None (every axis).
      log_targets: static; ``targets`` are given as log-probabilities (−inf for 0).
      class_mask: optional boolean mask broadcasting to ``log_predictions``: the classes
        it leaves out (False) add nothing to the sum, and their derivatives are exactly 0
        (optax's ``where``).
      where: optional boolean mask broadcasting to the batch shape ``[...]`` (the examples).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``log_predictions``' shape without ``axis``), float32 for
      lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> log_p = jax.nn.log_softmax(jnp.array([[1.0, 2.0, 3.0], [0.0, 0.0, -jnp.inf]]))
      >>> jaxloss.kl_divergence(log_p, jnp.array([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]]))
      Array([0.07795289, 0.        ], dtype=float32)

    References:
      Kullback & Leibler, "On information and sufficiency", 1951.
      ``torch.nn.functional.kl_div(reduction="none").sum(-1)`` (``log_target`` as here);
      ``optax.losses.kl_divergence`` and ``optax.losses.kl_divergence_with_log_targets``
      (their ``where`` is ``class_mask`` here; here ``where`` masks examples).
    """
    return _kl(log_predictions, targets, log_targets, class_mask)


def _kl_log_targets_tangent(p, t, out, res):
    dlp, dt = _kl_partials(p.log_predictions, p.log_targets, True, p.class_mask)
    return class_sum((dlp, t.log_predictions), (dt, t.log_targets))


def _check_kl_log_targets(log_predictions, log_targets, class_mask, where):
    _check_kl(log_predictions, log_targets, class_mask, where, name="log_targets")


@hand_derivative(_kl_log_targets_tangent, check=_check_kl_log_targets,
                 class_axis=("log_predictions", "log_targets", "class_mask"), axis_tuples=True)
def kl_divergence_with_log_targets(log_predictions: Array, log_targets: Array, *, axis: Axis = -1,
                                   class_mask: Array | None = None, where: Array | None = None) -> jax.Array:
    r"""Kullback-Leibler divergence with the targets given as log-probabilities, per example.

    .. math:: \ell = \sum_c e^{\log t_c} (\log t_c - \log p_c),

    :func:`kl_divergence` with ``log_targets=True``, under optax's name.  Derivatives (hand
    rule): ``∂ℓ/∂log p_c = −t_c``; ``∂ℓ/∂log t_c = t_c (log t_c − log p_c + 1)``.  A class
    with ``log t_c = −inf`` adds 0 and both its derivatives are 0 (the limit of both as
    ``log t_c → −inf``), also where ``log p_c = −inf``.

    Differs from ``optax.losses.kl_divergence_with_log_targets``: per example, ``where``
    masks examples (optax's ``where``, which masks classes, is ``class_mask`` here), and a
    class with ``log t_c = −inf`` gives 0 where optax gives NaN (``0·(−inf)``).

    Args:
      log_predictions: float array ``[..., C]`` (C on ``axis``) of log-probabilities.
      log_targets: float ``[..., C]`` of the same shape, the targets' log-probabilities.
      axis: static; the class axis of ``log_predictions`` (default −1, the last): an int, a
        tuple of ints (flattened into one class axis, as optax does) or None (every axis).
      class_mask: optional boolean mask broadcasting to ``log_predictions``; False leaves
        the class out of the sum (derivatives exactly 0).
      where: optional boolean mask broadcasting to the batch shape ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``log_predictions``' shape without ``axis``).

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> log_p = jax.nn.log_softmax(jnp.array([1.0, 2.0, 3.0]))
      >>> jaxloss.kl_divergence_with_log_targets(log_p, jnp.log(jnp.array([0.2, 0.3, 0.5])))
      Array(0.07795288, dtype=float32)

    References:
      ``optax.losses.kl_divergence_with_log_targets``;
      ``torch.nn.functional.kl_div(log_target=True, reduction="none").sum(-1)``.
    """
    return _kl(log_predictions, log_targets, True, class_mask)


def _generalized_kl_tangent(p, t, out, res):
    dlp, dt = _kl_partials(p.log_predictions, p.targets, False, p.class_mask, generalized=True)
    return class_sum((dlp, t.log_predictions), (dt, t.targets))


@hand_derivative(_generalized_kl_tangent, check=_check_kl,
                 class_axis=("log_predictions", "targets", "class_mask"), axis_tuples=True)
def generalized_kl_divergence(log_predictions: Array, targets: Array, *, axis: Axis = -1,
                              class_mask: Array | None = None, where: Array | None = None) -> jax.Array:
    r"""Generalized Kullback-Leibler divergence, for unnormalised distributions, per example.

    .. math:: \ell = \sum_c \bigl[t_c (\log t_c - \log p_c) + p_c - t_c\bigr], \qquad 0 \log 0 = 0,

    the Bregman divergence of :math:`f(x) = x \log x - x`; it equals the KL divergence
    when both sides sum to 1.

    Derivatives (hand rule): ``∂ℓ/∂log p_c = p_c − t_c``; ``∂ℓ/∂t_c = log t_c − log p_c``.
    At ``t_c = 0`` the class's KL term is absent, as in :func:`kl_divergence`: it adds 0
    (also where ``log p_c = −inf``), and ``∂ℓ/∂t_c`` is that of the linear term alone, −1
    (the KL term's derivative tends to −inf there; it is read as 0).

    Differs from ``optax.losses.generalized_kl_divergence``: per example, ``where`` masks
    examples (optax's ``where``, which masks classes, is ``class_mask`` here), and a class
    with ``t_c = 0`` and ``log p_c = −inf`` adds 0 where optax gives NaN.
    ``convex_kl_divergence`` (optax's deprecated name) is this function.

    Args:
      log_predictions: float array ``[..., C]`` (C on ``axis``), the predictions' logarithms.
      targets: float ``[..., C]`` of the same shape, >= 0.
      axis: static; the class axis of ``log_predictions`` (default −1, the last): an int, a
        tuple of ints (flattened into one class axis, as optax does) or None (every axis).
      class_mask: optional boolean mask broadcasting to ``log_predictions``; False leaves
        the class out of both sums (derivatives exactly 0).
      where: optional boolean mask broadcasting to the batch shape ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``log_predictions``' shape without ``axis``).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.generalized_kl_divergence(jnp.log(jnp.array([0.5, 1.0])), jnp.array([1.0, 1.0]))
      Array(0.19314718, dtype=float32)

    References:
      Bregman, "The relaxation method of finding the common point of convex sets...", 1967.
      ``optax.losses.generalized_kl_divergence`` (and ``convex_kl_divergence``).
    """
    return _kl(log_predictions, targets, False, class_mask, generalized=True)


convex_kl_divergence = generalized_kl_divergence


def _soften_logits(logits, temperature):
    """``logits / T`` along the class axis; −inf (masked) classes stay −inf with no
    ``inf·0`` in any derivative with respect to ``T``."""
    masked = logits == -jnp.inf
    return jnp.where(masked, -jnp.inf, jnp.where(masked, 0, logits) / temperature)


def _check_distillation(student_logits, teacher_logits, temperature, where):
    _check_distributions("student_logits", student_logits, "teacher_logits", teacher_logits, where,
                         temperature=temperature)


def _distillation_tangent(p, t, out, res):
    # Both log-softmaxes from the stored (max, log-sum-exp) pairs, exact at logits of ±1e4.
    temperature = jnp.asarray(p.temperature)
    per_class = per_example(temperature)
    log_p = -minus_log_softmax(_soften_logits(p.student_logits, per_class), *res[0])
    log_q = -minus_log_softmax(_soften_logits(p.teacher_logits, per_class), *res[1])
    probs, teacher = jnp.exp(log_p), jnp.exp(log_q)
    kl = out / temperature**2  # K per example (0 where masked by where=)
    present = teacher != 0
    log_q = jnp.where(present, log_q, 0)
    gap = jnp.where(present, log_q - jnp.where(present, log_p, 0), 0)  # log q − log p where q > 0
    centred = teacher * (gap - kl[..., None])  # ∂KL/∂(teacher / T)
    log_p = jnp.where(log_p > -jnp.inf, log_p, 0)  # −inf only at a student-masked class, where p_c = 0
    dtemperature = temperature * (2 * kl - jnp.sum((probs - teacher) * log_p + centred * log_q, axis=-1))
    dlogits = class_sum((per_class * (probs - teacher), t.student_logits), (per_class * centred, t.teacher_logits))
    return tangent_sum((1.0, dlogits), (dtemperature, t.temperature))


@hand_derivative(_distillation_tangent, check=_check_distillation, residuals=True,
                 class_axis=("student_logits", "teacher_logits"))
def distillation_loss(student_logits: Array, teacher_logits: Array, *, axis: int = -1, temperature: ArrayLike = 1.0,
                      where: Array | None = None) -> tuple[jax.Array, tuple[tuple[jax.Array, jax.Array], ...]]:
    r"""Knowledge-distillation loss: KL(teacher ‖ student) on temperature-softened logits.

    With :math:`p = \operatorname{softmax}(s/T)` (student) and
    :math:`q = \operatorname{softmax}(u/T)` (teacher),

    .. math:: \ell = T^2 \sum_c q_c (\log q_c - \log p_c) = T^2\,\mathrm{KL}(q \,\|\, p).

    The factor :math:`T^2` keeps the gradient's scale independent of ``T``.

    Derivatives (hand rule), with :math:`K = \mathrm{KL}(q\|p)` and
    :math:`d_c = \log q_c - \log p_c`: ``∂ℓ/∂s = T(p − q)``;
    ``∂ℓ/∂u = T·q ⊙ (d − K)`` (the teacher is differentiated too: its gradient sums to 0
    over the classes but is not 0); ``∂ℓ/∂T = T(2K − ⟨p − q, log p⟩ − ⟨q ⊙ (d − K), log q⟩)``
    (``= (2ℓ − ⟨∂ℓ/∂s, s⟩ − ⟨∂ℓ/∂u, u⟩)/T``, written with log-probabilities so that it
    does not depend on the logits' offset).  Reverse mode keeps only the logits and the
    per-example maximum and log-sum-exp of each side, and recomputes both softmaxes; no
    ``[..., C]`` array is stored.

    Logits of ±1e4 give finite values and derivatives.  Classes masked with −inf in both
    logits at the same positions contribute 0, and all derivatives there are 0; a row
    with every class −inf must be masked with ``where``.  A class that is −inf for the
    student only, where the teacher has mass, gives a loss of +inf (the student rules
    out what the teacher predicts); the student's gradient stays finite, the teacher's
    and the temperature's are not.  Where only the teacher has −inf, the class simply
    has ``q_c = 0``.

    Args:
      student_logits: float array ``[..., C]`` (C on ``axis``).
      teacher_logits: float ``[..., C]`` of the same shape (differentiated; wrap it in
        ``jax.lax.stop_gradient`` for a frozen teacher).
      axis: static; the class axis of the logits (default −1, the last), an int.
      temperature: float > 0, or a float array broadcasting to the batch shape ``[...]``
        (differentiated when traced).
      where: optional boolean mask broadcasting to the batch shape.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape (``student_logits``' shape without ``axis``), float32 for
      lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.distillation_loss(jnp.array([[1.0, 2.0, 3.0], [1.0, 1.0, -jnp.inf]]),
      ...                           jnp.array([[3.0, 2.0, 1.0], [2.0, 0.0, -jnp.inf]]), temperature=2.0)
      Array([1.2806268 , 0.44377655], dtype=float32)

    References:
      Hinton, Vinyals & Dean, "Distilling the knowledge in a neural network", 2015.
      ``T**2 * optax.losses.kl_divergence(jax.nn.log_softmax(s / T), jax.nn.softmax(u / T))``;
      ``T**2 * torch.nn.functional.kl_div(log_softmax(s / T), softmax(u / T), reduction="none").sum(-1)``.
    """
    per_class = per_example(temperature)
    student, teacher = _soften_logits(student_logits, per_class), _soften_logits(teacher_logits, per_class)
    statistics = shifted_logsumexp(student), shifted_logsumexp(teacher)
    log_q = -minus_log_softmax(teacher, *statistics[1])
    kl = _kl_terms(jnp.exp(log_q), log_q, -minus_log_softmax(student, *statistics[0]))
    return jnp.asarray(temperature) ** 2 * kl, statistics
