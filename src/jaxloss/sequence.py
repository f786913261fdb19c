"""Sequence losses: connectionist temporal classification (CTC)."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._math import compute_dtype
from jaxloss._softmax import loud, shifted_logsumexp
from jaxloss.gradients import Args, as_float_option, as_ids, hand_derivative
from jaxloss.types import Array, ArrayLike

__all__ = ["ctc_loss", "ctc_loss_with_forward_probs"]


# ------------------------------------------------------------------ log-space helpers


def _logsumexp(terms, axis=0):
    """``log Σ exp`` along ``axis`` that is −inf, with a derivative of exactly 0 (never NaN),
    where every term is −inf: the unreachable states of the CTC lattice."""
    m = jax.lax.stop_gradient(jnp.max(terms, axis=axis))
    m = jnp.where(jnp.isfinite(m), m, 0)
    total = jnp.sum(jnp.exp(terms - jnp.expand_dims(m, axis)), axis=axis)
    positive = total > 0
    return jnp.where(positive, m + jnp.log(jnp.where(positive, total, 1)), -jnp.inf)


def _shift(x, by):
    """``x[..., s − by]`` along the last axis (``by`` > 0), −inf where ``s < by``."""
    return jnp.pad(x[..., :-by], [(0, 0)] * (x.ndim - 1) + [(by, 0)], constant_values=-jnp.inf)


def _unshift(x, by):
    """``x[..., s + by]`` along the last axis, −inf past the end."""
    return jnp.pad(x[..., by:], [(0, 0)] * (x.ndim - 1) + [(0, by)], constant_values=-jnp.inf)


# ------------------------------------------------------------------ the lattice


def _lattice(labels, label_paddings, blank_id, classes, floor=-jnp.inf):
    """The extended label sequence and its transitions, for labels ``[B, N]``.

    Returns ``ext`` ``[B, S]`` (S = 2N + 1: blank, l1, blank, l2, ..., blank), ``skip``
    ``[B, S]`` (0 where state s may be entered from s − 2, a label differing from the one
    before it; ``floor`` at the other label states and −inf at the blanks) and ``final``
    ``[B, S]`` (0 at the two accepting states 2L − 1 and 2L, L the number of unpadded
    labels, else −inf).
    """
    batch, n = labels.shape
    ids = jnp.clip(labels, 0, classes - 1).astype(jnp.int32)
    blanks = jnp.full((batch, n + 1), blank_id, jnp.int32)
    ext = jnp.stack([blanks[:, :-1], ids], axis=-1).reshape(batch, 2 * n)
    ext = jnp.concatenate([ext, blanks[:, -1:]], axis=-1)
    differs = jnp.concatenate([jnp.zeros((batch, 1), bool), labels[:, 1:] != labels[:, :-1]], axis=-1)
    skip_ok = jnp.stack([jnp.zeros((batch, n), bool), differs], axis=-1).reshape(batch, 2 * n)
    skip_ok = jnp.concatenate([skip_ok, jnp.zeros((batch, 1), bool)], axis=-1)
    s = jnp.arange(2 * n + 1)
    skip = jnp.where(skip_ok, 0.0, jnp.where(s % 2 == 1, floor, -jnp.inf))
    length = jnp.sum(label_paddings < 0.5, axis=-1)  # L (labels are right-padded)
    accept = (s == 2 * length[:, None]) | (s == 2 * length[:, None] - 1)
    return ext, skip, jnp.where(accept, 0.0, -jnp.inf)


def _invalid(labels, label_paddings, blank_id, classes):
    """``[B]``: whether a sequence has an unpadded label outside ``[0, K)`` or equal to the blank."""
    wrong = (labels < 0) | (labels >= classes) | (labels == blank_id)
    return jnp.any(wrong & (label_paddings < 0.5), axis=-1)


def _emissions(x, shift, lse, ext):
    """``log softmax(x)[b, t, ext[b, s]]``, ``[B, T, S]``, without forming the log-softmax."""
    picked = jnp.take_along_axis(x, ext[:, None, :], axis=-1)
    return picked - (shift + lse)[..., None]


def _alphas(emit, valid, skip, floor=-jnp.inf, into=0.0):
    """Forward variables ``log α_t(s)`` (emission at t included), ``[T, B, S]``.

    ``α_t = E_t ⊙ (α_{t-1}(s) + [into] α_{t-1}(s-1) + [skip] α_{t-1}(s-2))`` on an unpadded
    frame, ``α_t = α_{t-1}`` on a padded one, from ``α_{-1} = [1, e^floor, ..., e^floor]``
    (``[1, 0, ..., 0]`` by default); ``into`` and ``skip`` are log-weights.
    """
    init = jnp.where(jnp.arange(emit.shape[-1]) == 0, 0.0, floor).astype(emit.dtype)
    init = jnp.broadcast_to(init, emit.shape[::2])

    def step(alpha, xs):
        e, v = xs
        moved = _logsumexp(jnp.stack([alpha, _shift(alpha, 1) + into, _shift(alpha, 2) + skip])) + e
        alpha = jnp.where(v[:, None], moved, alpha)
        return alpha, alpha

    _, alphas = jax.lax.scan(step, init, (jnp.moveaxis(emit, 1, 0), valid.T))
    return alphas


def _betas(emit, valid, skip, final):
    """Backward variables ``log β_t(s)`` (emission at t excluded), ``[T, B, S]``:
    the log-probability of finishing from state s after frame t."""
    skip_from = _unshift(skip, 2)  # s → s + 2 allowed

    def step(beta, xs):
        e, v = xs
        g = beta + e
        moved = _logsumexp(jnp.stack([g, _unshift(g, 1), _unshift(g, 2) + skip_from]))
        return jnp.where(v[:, None], moved, beta), beta

    _, betas = jax.lax.scan(step, final.astype(emit.dtype), (jnp.moveaxis(emit, 1, 0), valid.T), reverse=True)
    return betas


def _flatten(p):
    """Arguments reshaped to one batch axis: logits [B, T, K], the others [B, ·]."""
    x = p.logits
    batch = x.shape[:-2]
    flat = lambda a: a.reshape((-1,) + a.shape[len(batch):])  # noqa: E731
    return batch, flat(x), flat(p.logit_paddings) < 0.5, flat(p.labels), flat(p.label_paddings)


# ------------------------------------------------------------------ ctc_loss


def _check_ctc(logits, logit_paddings, labels, label_paddings, blank_id, zero_infinity, normalize_by_length, where):
    _checks.float_array("logits", logits)
    if np.ndim(logits) < 2:
        raise ValueError(f"logits must have shape [..., T, K], got shape {np.shape(logits)}.")
    _checks.numeric("logit_paddings", logit_paddings)
    if np.shape(logit_paddings) != np.shape(logits)[:-1]:
        raise ValueError(f"logit_paddings with shape {np.shape(logit_paddings)} must have the shape "
                         f"{np.shape(logits)[:-1]} of logits {np.shape(logits)} without its class axis.")
    _checks.integer_array("labels", labels)
    if np.ndim(labels) != np.ndim(logits) - 1 or np.shape(labels)[:-1] != np.shape(logits)[:-2]:
        raise ValueError(f"labels with shape {np.shape(labels)} must have shape [..., N] with the batch shape "
                         f"{np.shape(logits)[:-2]} of logits {np.shape(logits)}.")
    _checks.paddings_like("label_paddings", label_paddings, labels, "labels")
    classes = np.shape(logits)[-1]
    if not isinstance(blank_id, numbers.Integral) or isinstance(blank_id, bool) or not 0 <= blank_id < classes:
        raise ValueError(f"blank_id must be an integer in [0, {classes}) for logits {np.shape(logits)}, "
                         f"got {blank_id!r}.")
    for name, value in (("zero_infinity", zero_infinity), ("normalize_by_length", normalize_by_length)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}.")
    _checks.broadcasts_to("where", where, np.shape(logits)[:-2], "the batch shape of logits")


def _ctc_tangent(p, t, out, res):
    # dℓ = Σ_{t,k} valid_t (softmax_tk − γ_tk) dx_tk with γ the posterior occupancy of the
    # lattice (forward-backward in log space): the forward's α and a β scan here, not
    # autodiff of the forward's scan.  The paddings are masks (compared with 0.5): no derivative.
    if t.logits is None:
        return None
    shift, lse, log_z, alphas = res
    batch, x, valid, labels, label_paddings = _flatten(p)
    dx = t.logits.reshape(x.shape)
    ext, skip, final = _lattice(labels, label_paddings, p.blank_id, x.shape[-1])
    emit = _emissions(x, shift, lse, ext)
    betas = _betas(emit, valid, skip, final)
    feasible = jnp.isfinite(log_z)
    keep = valid & feasible[:, None]  # [B, T]
    # Σ_s α_t(s) β_t(s) = p(l|x) on every kept frame: dividing each frame by its own sum
    # rather than by the forward's p(l|x) cancels the rounding α and β carry (γ sums to 1 per
    # frame to float precision; 4× closer to float64 at a one-to-one alignment).
    log_joint = jnp.where(keep.T[..., None], alphas + betas, 0.0)  # [T, B, S]
    log_occ = log_joint - jax.nn.logsumexp(log_joint, axis=-1, keepdims=True)
    occ = jnp.where(keep.T[..., None], jnp.exp(log_occ), 0.0)
    # The softmax as exp(x − m)/Σ exp(x − m), recomputing the sum: exp(x − (m + lse)) carries
    # the rounding of m + lse and of lse itself (2–3× optax's error at a one-to-one alignment).
    e = jnp.exp(x - shift[..., None])
    softmax = jnp.where(keep[..., None], e / jnp.sum(e, axis=-1, keepdims=True), 0.0)
    d_softmax = jnp.sum(softmax * dx, axis=(-2, -1))
    d_occ = jnp.einsum("tbs,bts->b", occ, jnp.take_along_axis(dx, ext[:, None, :], axis=-1))
    invalid = _invalid(labels, label_paddings, p.blank_id, x.shape[-1])
    dloss = (d_softmax - d_occ) / _per_label(label_paddings, p.normalize_by_length)
    return jnp.where(invalid, 0.0, dloss).reshape(batch)


def _per_label(label_paddings, normalize_by_length):
    """What each sequence's loss is divided by: its number of labels (at least 1) with
    ``normalize_by_length``, else 1."""
    return jnp.maximum(jnp.sum(label_paddings < 0.5, axis=-1), 1) if normalize_by_length else 1


@hand_derivative(_ctc_tangent, static=("blank_id", "zero_infinity", "normalize_by_length"), check=_check_ctc,
                 residuals=True)
def ctc_loss(logits: Array, logit_paddings: Array, labels: Array, label_paddings: Array, *, blank_id: int = 0,
             zero_infinity: bool = False, normalize_by_length: bool = False,
             where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
    r"""Connectionist temporal classification loss per sequence.

    With :math:`y = \operatorname{softmax}(x_t)` per frame and :math:`\mathcal{B}^{-1}(l)`
    the alignments of the labels :math:`l` (a label or blank per unpadded frame that
    collapse to :math:`l` after merging repeats and dropping blanks):

    .. math:: \ell = -\log \sum_{\pi \in \mathcal{B}^{-1}(l)} \prod_t y_{t, \pi_t},

    computed by the log-space forward (α) recursion over the extended label sequence
    (blank, l1, blank, ..., blank), a ``lax.scan`` over time.

    Derivative (hand rule): ``∂ℓ/∂x_tk = softmax(x_t)_k − γ_tk`` on unpadded frames
    (0 on padded ones), with ``γ_tk = Σ_{s: l'_s = k} α_t(s) β_t(s) / p(l|x)`` the posterior
    occupancy from the forward-backward recursion in log space (each frame divided by its own
    ``Σ_s α_t(s) β_t(s)``, which equals ``p(l|x)``, for float32 precision), computed by the rule (not
    autodiff of the scan): it runs the β recursion and reuses the forward's α.  Reverse
    mode keeps the logits, per-frame statistics (the row maximum and log-sum-exp,
    ``[B, T]``), the per-sequence ``log p(l|x)`` and the forward variables ``log α``
    (``[T, B, 2N+1]``, small next to the logits for a vocabulary larger than 2N+1):
    keeping them saves the rule a second α scan, 10–15% of the forward+backward time on
    CPU at ``T = 200, N = 32``, with the same compiled footprint.  Higher derivatives go
    through autodiff of the rule.  ``logit_paddings`` and ``label_paddings`` are masks (a value >= 0.5 is padding):
    they get a zero derivative, and so does autodiff of ``.reference``.

    Impossible alignments (more labels, counting a blank between repeats, than unpadded
    frames) give ``+inf`` and gradient exactly 0 (never NaN); with ``zero_infinity=True``
    they give loss 0 and gradient 0, as PyTorch's ``zero_infinity``.  PyTorch returns
    ``inf`` there by default; optax returns a large finite value instead (about
    ``1e5`` times the shortfall, from its ``log_epsilon = -1e5`` stand-in for log 0) with
    gradients that are not zero.

    Label ids follow the rule of every jaxloss loss on class ids: a sequence with an unpadded
    label outside ``[0, K)`` or equal to ``blank_id`` gets a NaN loss (loud, even with
    ``zero_infinity``), with derivative 0 (:func:`jaxloss.checks.checked` names the label).
    Padded positions (``label_paddings``) hold no id and are never read, so there is no
    ``ignore_index``: PyTorch's ``ctc_loss`` has none either, and marks the end of each
    target with ``target_lengths``.  Differs from both there: for an id outside ``[0, K)``
    PyTorch (CPU) and optax return a finite number that is no labelling's loss (optax's can
    be negative), silently.

    Args:
      logits: float array ``[..., T, K]`` (unnormalised; the log-softmax is taken here).
      logit_paddings: ``[..., T]``, 1.0 on padded frames (any frames; they are skipped).
      labels: integer array ``[..., N]``; ids in ``[0, K)`` other than ``blank_id``, compared
        in int32 (see above for the others).
      label_paddings: ``[..., N]``, 1.0 on padded labels, which must be right-padded.
      blank_id: the class id of the blank (static).
      zero_infinity: give impossible alignments loss 0 and gradient 0 (static).
      normalize_by_length: static; divide each sequence's loss (and its derivative) by its
        number of unpadded labels (at least 1), so that ``jaxloss.reduce.mean`` of the losses
        is ``torch.nn.functional.ctc_loss(reduction="mean")`` (the default there, whose
        ``target_lengths`` are clamped to 1 the same way).
      where: optional boolean mask broadcasting to the batch shape ``[...]`` of logits.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Negative log-likelihoods (per label with ``normalize_by_length``) of the batch shape
      ``logits.shape[:-2]``, float32 for lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.zeros((1, 3, 3))
      >>> labels, pads = jnp.array([[1, 2]]), jnp.zeros((1, 2))
      >>> jaxloss.ctc_loss(logits, jnp.zeros((1, 3)), labels, pads)  # 5 of 27 alignments
      Array([1.686399], dtype=float32)

    References:
      Graves et al., "Connectionist Temporal Classification: Labelling Unsegmented Sequence
      Data with Recurrent Neural Networks", ICML 2006.  ``optax.ctc_loss``;
      ``torch.nn.functional.ctc_loss(reduction="none")`` on log-softmax inputs ``[T, B, K]``
      with ``input_lengths`` and ``target_lengths``.
    """
    batch, x, valid, labels, label_paddings = _flatten(
        Args(logits=logits, logit_paddings=logit_paddings, labels=labels, label_paddings=label_paddings))
    shift, lse = shifted_logsumexp(x)
    ext, skip, final = _lattice(labels, label_paddings, blank_id, x.shape[-1])
    alphas = _alphas(_emissions(x, shift, lse, ext), valid, skip)
    log_z = _logsumexp(alphas[-1] + final, axis=-1)
    loss = -log_z
    if zero_infinity:
        loss = jnp.where(jnp.isfinite(log_z), loss, 0.0)
    loss = loud(loss / _per_label(label_paddings, normalize_by_length),
                _invalid(labels, label_paddings, blank_id, x.shape[-1]))
    return loss.reshape(batch), (shift, lse, log_z, alphas)


# ------------------------------------------------------------------ ctc_loss_with_forward_probs


def ctc_loss_with_forward_probs(logits: Array, logit_paddings: Array, labels: Array, label_paddings: Array, *,
                                blank_id: int = 0, log_epsilon: ArrayLike = -1e5, zero_infinity: bool = False,
                                where: Array | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""CTC loss per sequence, with the forward probabilities of its lattice (optax's layout).

    With :math:`y_t = \operatorname{softmax}(x_t)`, the extended labels
    :math:`l' = (\varnothing, l_1, \varnothing, l_2, \dots, l_N, \varnothing)` (states
    :math:`s = 0 \dots 2N`) and :math:`\varepsilon = e^{\text{log\_epsilon}}`, the forward
    recursion over frames is

    .. math::

       \alpha_{-1}(0) = 1, \quad \alpha_{-1}(s) = \varepsilon \ (s > 0), \qquad
       \alpha_t(s) = y_{t, l'_s}\bigl(\alpha_{t-1}(s) + c_s\,\alpha_{t-1}(s-1)
                      + d_s\,\alpha_{t-1}(s-2)\bigr)

    on an unpadded frame (:math:`\alpha_t = \alpha_{t-1}` on a padded one), where
    :math:`c_s = 1 + \varepsilon` at a blank and 1 at a label, and :math:`d_s` is 1 at a label
    that differs from the label before it, :math:`\varepsilon` at a label repeating it, 0 at a
    blank.  ``log_epsilon`` stands in for log 0 as optax's does, so the tables are optax's
    numbers; with ``log_epsilon=-inf`` (:math:`\varepsilon = 0`) they are the exact CTC
    forward variables (−inf at unreachable states), the recursion :func:`ctc_loss` runs.
    With the default −1e5, :math:`\varepsilon` underflows to 0 in float32 and float64:
    reachable states hold the exact values and unreachable ones a number near a multiple of
    −1e5 instead of −inf.

    The outputs: ``per_seq_loss`` is :func:`ctc_loss` (same options, same hand-derived
    derivative ``softmax(x_t) − γ_t``); ``logalpha_blank[t, ..., n] = log α_t(2n)`` (the
    prefix ``l_1..l_n`` emitted, frame t a blank) and ``logalpha_emit[t, ..., n] =
    log α_t(2n+1)`` (frame t emits ``l_{n+1}``), except the last row,
    ``logalpha_blank[T-1, ..., n] = log(α_{T-1}(2n) + α_{T-1}(2n-1))`` for n ≥ 1: the
    probability of having emitted exactly ``l_1..l_n`` after the last frame, so
    ``-logalpha_blank[T-1, b, L_b]`` is the loss of a possible labelling of length
    ``L_b``.  States past the unpadded labels follow the padded ids, as optax's do (an id
    outside ``[0, K)`` there counts log-probability 0, as optax's one-hot reads it).

    Derivatives: the loss through :func:`ctc_loss`'s hand rule; the tables by plain
    autodiff of their ``lax.scan`` (every mode: ``grad``, ``jvp``, higher orders; reverse
    mode keeps the scan's per-frame values, ``O(T·B·N)``), ``log_epsilon`` included.  The
    tables cost a second forward scan next to the loss's own; under ``jit`` an unused table
    is not computed.  Paddings are masks (a value >= 0.5 is padding) with derivative 0.

    Differs from optax: an impossible alignment gives ``per_seq_loss = +inf`` with
    derivative 0 (0 with ``zero_infinity=True``) where optax's loss is
    ``-logalpha_blank[-1, b, L_b]``, about 1e5 times the shortfall (the tables agree);
    a sequence with an unpadded label outside ``[0, K)`` or equal to ``blank_id`` gets NaN
    in all three outputs (optax: finite numbers); fractional paddings are thresholded at
    0.5 (optax interpolates between frames); any leading batch shape is accepted; and
    ``where`` masks examples: 0 in all three outputs, with derivative exactly 0.

    Args:
      logits: float array ``[..., T, K]`` (unnormalised).
      logit_paddings: ``[..., T]``, 1.0 on padded frames.
      labels: integer array ``[..., N]``, right-padded; unpadded ids in ``[0, K)`` other
        than ``blank_id``.
      label_paddings: ``[..., N]``, 1.0 on padded labels.
      blank_id: the class id of the blank (static).
      log_epsilon: the stand-in for log 0 in the tables (a float, traced is fine;
        ``-jnp.inf`` for exact zeros).
      zero_infinity: give impossible alignments loss 0 and derivative 0 (static).
      where: optional boolean mask broadcasting to the batch shape ``[...]`` of logits.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``(per_seq_loss, logalpha_blank, logalpha_emit)`` with shapes ``[...]``,
      ``[T, ..., N+1]`` and ``[T, ..., N]`` (time first, as optax's), float32 for
      lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> logits = jnp.zeros((1, 3, 3))
      >>> labels, pads = jnp.array([[1, 2]]), jnp.zeros((1, 2))
      >>> loss, blank, emit = jaxloss.ctc_loss_with_forward_probs(logits, jnp.zeros((1, 3)), labels, pads)
      >>> loss, -blank[-1, 0, 2]  # 5 of 27 alignments
      (Array([1.686399], dtype=float32), Array(1.686399, dtype=float32))
      >>> blank.shape, emit.shape
      ((3, 1, 3), (3, 1, 2))

    References:
      Graves et al., "Connectionist Temporal Classification: Labelling Unsegmented Sequence
      Data with Recurrent Neural Networks", ICML 2006.  ``optax.ctc_loss_with_forward_probs``.
    """
    loss = ctc_loss(logits, logit_paddings, labels, label_paddings, blank_id=blank_id,
                    zero_infinity=zero_infinity, where=where)  # checks every other argument
    x = jnp.asarray(logits)
    x = x.astype(compute_dtype(x.dtype))
    log_epsilon = as_float_option(log_epsilon, x.dtype)
    _checks.float_array("log_epsilon", log_epsilon)
    _checks.broadcasts_to("log_epsilon", log_epsilon, (), "a scalar")
    keep = None if where is None else jnp.broadcast_to(where, x.shape[:-2])
    if keep is not None:
        x = jnp.where(keep[..., None, None], x, 0)  # no inf or NaN of a masked example reaches a derivative
    batch, x, valid, labels, label_paddings = _flatten(
        Args(logits=x, logit_paddings=logit_paddings, labels=as_ids(labels), label_paddings=label_paddings))
    classes = x.shape[-1]
    shift, lse = shifted_logsumexp(x)
    ext, skip, _ = _lattice(labels, label_paddings, blank_id, classes, floor=log_epsilon)
    outside = (labels < 0) | (labels >= classes)
    outside = jnp.stack([jnp.zeros_like(outside), outside], -1).reshape(ext.shape[0], -1)
    emit = jnp.where(jnp.pad(outside, [(0, 0), (0, 1)])[:, None, :], 0.0, _emissions(x, shift, lse, ext))
    states = jnp.arange(ext.shape[-1])
    into = jnp.where(states % 2 == 0, jax.nn.softplus(log_epsilon), 0.0)
    alphas = _alphas(emit, valid, skip, floor=log_epsilon, into=into)
    last = alphas[-1]
    ended = _logsumexp(jnp.stack([last[..., 2::2], last[..., 1::2]]))
    blank = alphas[..., ::2].at[-1, :, 1:].set(ended)
    invalid = _invalid(labels, label_paddings, blank_id, classes)[:, None]

    def table(a):
        a = loud(a, invalid).reshape(a.shape[:1] + batch + a.shape[-1:])
        return a if keep is None else jnp.where(keep[..., None], a, 0.0)

    return loss, table(blank), table(alphas[..., 1::2])
