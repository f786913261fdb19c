"""Sequence transduction: the RNN-T loss (Graves 2012), on the joiner's logits and on the
joiner's inputs without the logits.

The transducer scores every alignment of the labels ``l_1..l_U`` with the frames as a path
through the lattice of nodes ``(t, u)`` (``t`` frames consumed, ``u`` labels emitted): from
node ``(t, u)`` a blank moves to ``(t + 1, u)`` and the label ``l_{u+1}`` to ``(t, u + 1)``,
each with its probability under the joiner's softmax at that node, from ``(0, 0)`` to the
final blank out of ``(T − 1, U)``.  Every path crosses each anti-diagonal ``n = t + u`` of the
lattice once, so the forward (α) and backward (β) recursions run over the ``T + U``
diagonals, a ``lax.scan`` whose steps update a whole diagonal at once (not over the ``T·U``
nodes one by one).

The logits ``[B, T, U+1, V]`` are the memory of RNN-T training (8 × 200 × 51 × 1024 floats
is 334 MB, and their gradient as much).  :func:`rnnt_loss_from_joiner` takes the joiner's
inputs instead and folds over blocks of frames, keeping only the three numbers per node the
lattice needs (the log-softmax normaliser, the blank and the label log-probability); its
derivative rule recomputes each block's logits.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss._softmax import loud, shifted_logsumexp
from jaxloss._streaming import check_precision, matmul_precision
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss.types import Array, Precision

__all__ = ["rnnt_loss", "rnnt_loss_from_joiner"]

# Logits per block of frames when block_size is None: 4M (16 MiB in float32).
_AUTO_BLOCK_ELEMENTS = 1 << 22


# ------------------------------------------------------------------ log space and the diagonals


def _log_add(a, b):
    """``log(e^a + e^b)``: −inf, with a derivative of exactly 0 (never NaN), where both are −inf."""
    m = jax.lax.stop_gradient(jnp.maximum(a, b))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    total = jnp.exp(a - m) + jnp.exp(b - m)
    positive = total > 0
    return jnp.where(positive, m + jnp.log(jnp.where(positive, total, 1.0)), -jnp.inf)


def _up(x):
    """``x[..., u − 1]`` along the last axis, −inf at ``u = 0``."""
    return jnp.pad(x[..., :-1], [(0, 0)] * (x.ndim - 1) + [(1, 0)], constant_values=-jnp.inf)


def _down(x):
    """``x[..., u + 1]`` along the last axis, −inf past the end."""
    return jnp.pad(x[..., 1:], [(0, 0)] * (x.ndim - 1) + [(0, 1)], constant_values=-jnp.inf)


def _diagonals(node):
    """Node values ``[B, T, U+1]`` as diagonals ``[T+U+1, B, U+1]``: row ``n`` holds the nodes
    ``(n − u, u)``, −inf where ``n − u`` is not a frame; a last frame of −inf (``t = T``) is
    added, the node the final blank leads to.

    Padding each ``u``-row of ``[U+1, T+1]`` with ``U+1`` entries and reading the flat array in
    rows of ``T+U+1`` shifts row ``u`` right by ``u`` (a skew with no gather)."""
    batch, frames, rows = node.shape
    x = jnp.pad(jnp.swapaxes(node, 1, 2), [(0, 0), (0, 0), (0, rows + 1)], constant_values=-jnp.inf)
    n = frames + rows  # T + U + 1 diagonals
    x = x.reshape(batch, -1)[:, : rows * n].reshape(batch, rows, n)
    return jnp.moveaxis(x, 2, 0)


def _nodes(diagonals, frames):
    """The inverse of :func:`_diagonals`: ``[N, B, U+1]`` → ``[B, T, U+1]`` (frame ``T`` dropped)."""
    n, batch, rows = diagonals.shape
    x = jnp.moveaxis(diagonals, 0, 2).reshape(batch, -1)
    x = jnp.pad(x, [(0, 0), (0, rows)]).reshape(batch, rows, n + 1)[:, :, :frames]
    return jnp.swapaxes(x, 1, 2)


def _alphas(blank, label):
    """Forward variables ``log α`` on the diagonals ``[N, B, U+1]``:
    ``α(t, u) = α(t − 1, u)·y_∅(t − 1, u) + α(t, u − 1)·y_l(t, u − 1)``, ``α(0, 0) = 1``."""
    rows = blank.shape[-1]
    init = jnp.broadcast_to(jnp.where(jnp.arange(rows) == 0, 0.0, -jnp.inf).astype(blank.dtype), blank.shape[1:])

    def step(alpha, xs):
        b, y = xs
        alpha = _log_add(alpha + b, _up(alpha + y))
        return alpha, alpha

    _, rest = jax.lax.scan(step, init, (blank[:-1], label[:-1]))
    return jnp.concatenate([init[None], rest])


def _betas(blank, label, ends, lengths):
    """Backward variables ``log β`` on the diagonals ``[N, B, U+1]``: ``β = 1`` at the final node
    ``(T_b, U_b)`` (diagonal ``ends``), ``β(t, u) = y_∅(t, u)·β(t + 1, u) + y_l(t, u)·β(t, u + 1)``."""
    rows = blank.shape[-1]
    final = jnp.arange(rows)[None, :] == lengths[:, None]

    def step(beta, xs):
        b, y, n = xs
        beta = jnp.where(final & (n == ends)[:, None], 0.0, _log_add(b + beta, y + _down(beta)))
        return beta, beta

    init = jnp.full(blank.shape[1:], -jnp.inf, blank.dtype)
    _, betas = jax.lax.scan(step, init, (blank, label, jnp.arange(blank.shape[0])), reverse=True)
    return betas


def _lattice(lp_blank, lp_label, frames, lengths):
    """``(log P, log α)``: the log-likelihood ``[B]`` (−inf without frames) and the forward
    variables on the diagonals, from the masked log-probabilities ``[B, T, U+1]``."""
    alphas = _alphas(_diagonals(lp_blank), _diagonals(lp_label))
    log_z = alphas[frames + lengths, jnp.arange(frames.shape[0]), lengths]
    return jnp.where(frames > 0, log_z, -jnp.inf), alphas


def _occupancy(lp_blank, lp_label, alphas, log_z, frames, lengths):
    """Posterior occupancies of the blank and the label emission out of each node,
    ``γ_∅(t, u) = α(t, u)·y_∅(t, u)·β(t + 1, u) / P`` and
    ``γ_l(t, u) = α(t, u)·y_l(t, u)·β(t, u + 1) / P``, ``[B, T, U+1]`` each (0 for a sequence
    without frames).  Each diagonal is divided by its own ``Σ_u α β``, which equals ``P`` (every
    path crosses it once): it cancels the rounding α and β carry."""
    blank, label = _diagonals(lp_blank), _diagonals(lp_label)
    betas = _betas(blank, label, frames + lengths, lengths)
    after = jnp.concatenate([betas[1:], jnp.full_like(betas[:1], -jnp.inf)])  # β on diagonal n + 1
    n = jnp.arange(blank.shape[0])[:, None]
    keep = ((n < (frames + lengths)[None]) & jnp.isfinite(log_z)[None])[..., None]  # [N, B, 1]
    norm = jax.nn.logsumexp(jnp.where(keep, alphas + betas, 0.0), axis=-1, keepdims=True)

    def occupancy(log_path):
        return _nodes(jnp.exp(jnp.where(keep, log_path - norm, -jnp.inf)), lp_blank.shape[1])

    return occupancy(alphas + blank + after), occupancy(alphas + label + _down(after))


def _lengths(logit_paddings, label_paddings):
    """``T_b`` and ``U_b``, the unpadded frames and labels (both right-padded), int32 ``[B]``."""
    return (jnp.sum(logit_paddings < 0.5, axis=-1, dtype=jnp.int32),
            jnp.sum(label_paddings < 0.5, axis=-1, dtype=jnp.int32))


def _node_masks(frames, lengths, shape):
    """``[B, T, U+1]``: the nodes with a blank out of them (``t < T_b, u ≤ U_b``), and with a label
    (``t < T_b, u < U_b``)."""
    t = jnp.arange(shape[1])[None, :, None] < frames[:, None, None]
    u = jnp.arange(shape[2])[None, None, :]
    return t & (u <= lengths[:, None, None]), t & (u < lengths[:, None, None])


def _label_ids(labels, blank_id, classes):
    """The id each node's label emission reads, ``[B, U+1]`` (the blank at ``u = U``), clipped to
    ``[0, V)``."""
    ids = jnp.pad(labels, [(0, 0), (0, 1)], constant_values=blank_id)
    return jnp.clip(ids, 0, classes - 1).astype(jnp.int32)


def _invalid(labels, label_paddings, blank_id, classes):
    """``[B]``: whether a sequence has an unpadded label outside ``[0, V)`` or equal to the blank."""
    wrong = (labels < 0) | (labels >= classes) | (labels == blank_id)
    return jnp.any(wrong & (label_paddings < 0.5), axis=-1)


def _log_probs(shift, lse, z_blank, z_label, frames, lengths):
    """The masked log-probabilities of the blank and the label at each node, from the logits'
    maximum ``shift`` and ``log Σ exp(z − shift)``: −inf where the node has no such emission."""
    has_blank, has_label = _node_masks(frames, lengths, shift.shape)
    return (jnp.where(has_blank, (z_blank - shift) - lse, -jnp.inf),
            jnp.where(has_label, (z_label - shift) - lse, -jnp.inf))


def _softmax(z, shift):
    """The softmax as ``exp(z − m) / Σ exp(z − m)`` with ``m`` the maximum, its sum recomputed
    (not ``exp(z − m − lse)``, which carries the rounding of ``lse``): closer to float64."""
    e = jnp.exp(z - shift[..., None])
    return e / jnp.sum(e, axis=-1, keepdims=True)


def _emission_weights(soft, occ_blank, occ_label, blank_id, ids):
    """``∂ℓ/∂z``: ``(γ_∅ + γ_l)·softmax − γ_∅·[k = ∅] − γ_l·[k = l_{u+1}]``, ``[..., V]``."""
    k = jax.lax.broadcasted_iota(jnp.int32, soft.shape, soft.ndim - 1)
    return ((occ_blank + occ_label)[..., None] * soft - jnp.where(k == blank_id, occ_blank[..., None], 0.0)
            - jnp.where(k == ids[..., None], occ_label[..., None], 0.0))


def _flatten(x, batch):
    """``x [..., rest]`` with its batch axes ``batch`` flattened into one (``rest`` may be empty)."""
    return x.reshape((math.prod(batch),) + x.shape[len(batch):])


def _check_blank(blank_id, classes, shape):
    if not isinstance(blank_id, numbers.Integral) or isinstance(blank_id, bool) or not 0 <= blank_id < classes:
        raise ValueError(f"blank_id must be an integer in [0, {classes}) for {shape}, got {blank_id!r}.")


def _check_targets(logit_paddings, labels, label_paddings, batch, frames, rows, what):
    """The paddings and labels against the batch shape, frames ``T`` and lattice rows ``U+1`` of ``what``."""
    _checks.numeric("logit_paddings", logit_paddings)
    if np.shape(logit_paddings) != batch + (frames,):
        raise ValueError(f"logit_paddings with shape {np.shape(logit_paddings)} must have shape "
                         f"{batch + (frames,)} (the batch shape and frames T of {what}).")
    _checks.integer_array("labels", labels)
    if np.shape(labels) != batch + (rows - 1,):
        raise ValueError(f"labels with shape {np.shape(labels)} must have shape {batch + (rows - 1,)}: "
                         f"the batch shape of {what} and U = {rows - 1} labels (U + 1 lattice rows).")
    _checks.paddings_like("label_paddings", label_paddings, labels, "labels")


# ------------------------------------------------------------------ rnnt_loss


def _check_rnnt(logits, logit_paddings, labels, label_paddings, blank_id, where):
    _checks.float_array("logits", logits)
    shape = np.shape(logits)
    if len(shape) < 3:
        raise ValueError(f"logits must have shape [..., T, U+1, V], got shape {shape}.")
    _check_targets(logit_paddings, labels, label_paddings, shape[:-3], shape[-3], shape[-2], f"logits {shape}")
    _check_blank(blank_id, shape[-1], f"logits {shape}")
    _checks.broadcasts_to("where", where, shape[:-3], "the batch shape of logits")


def _rnnt_tangent(p, t, out, res):
    # dℓ = Σ_{t,u} Σ_k g_tuk dz_tuk with g = (γ_∅ + γ_l)·softmax − γ_∅·[k = ∅] − γ_l·[k = l_{u+1}]:
    # the posterior occupancies from the α of the forward and a β scan here (not autodiff of
    # the forward's scan).  Paddings are masks (compared with 0.5): no derivative.
    if t.logits is None:
        return None
    shift, lse, lp_blank, lp_label, log_z, alphas = res
    batch = p.logits.shape[:-3]
    x, labels, label_paddings = (_flatten(a, batch) for a in (p.logits, p.labels, p.label_paddings))
    frames, lengths = _lengths(_flatten(p.logit_paddings, batch), label_paddings)
    occ_blank, occ_label = _occupancy(lp_blank, lp_label, alphas, log_z, frames, lengths)
    # 0 at the nodes out of the lattice, whose logits may be anything.
    soft = jnp.where(_node_masks(frames, lengths, shift.shape)[0][..., None], _softmax(x, shift), 0.0)
    g = _emission_weights(soft, occ_blank, occ_label, p.blank_id, _label_ids(labels, p.blank_id, x.shape[-1])[:, None])
    dloss = jnp.sum(g * _flatten(t.logits, batch), axis=(1, 2, 3))
    return jnp.where(_invalid(labels, label_paddings, p.blank_id, x.shape[-1]), 0.0, dloss).reshape(batch)


@hand_derivative(_rnnt_tangent, static=("blank_id",), check=_check_rnnt, residuals=True)
def rnnt_loss(logits: Array, logit_paddings: Array, labels: Array, label_paddings: Array, *, blank_id: int = 0,
              where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r"""RNN transducer (RNN-T) loss per sequence, from the joiner's logits.

    With :math:`y(t, u) = \operatorname{softmax}(z_{t,u})` the joiner's distribution at node
    ``(t, u)`` (frame ``t``, ``u`` labels emitted), :math:`y_\varnothing` its blank and
    :math:`y_l(t, u) = y(t, u)_{l_{u+1}}` its next label, the forward variables

    .. math::

       \alpha(0, 0) = 1, \qquad
       \alpha(t, u) = \alpha(t-1, u)\, y_\varnothing(t-1, u) + \alpha(t, u-1)\, y_l(t, u-1)

    sum the alignments, and :math:`\ell = -\log P`, :math:`P = \alpha(T-1, U)\,
    y_\varnothing(T-1, U)`, over the unpadded frames ``T`` and labels ``U`` of each sequence.
    The recursion runs in log space over the lattice's anti-diagonals (``T + U`` scan steps).

    Derivative (hand rule).  With the backward variables ``β(T, U) = 1`` (after the final blank),
    ``β(t, u) = y_∅(t, u)·β(t + 1, u) + y_l(t, u)·β(t, u + 1)``, the posterior occupancy of each
    emission is ``γ_∅(t, u) = α(t, u)·y_∅(t, u)·β(t + 1, u) / P`` and ``γ_l(t, u) =
    α(t, u)·y_l(t, u)·β(t, u + 1) / P``; since ``ℓ`` depends on ``log y`` linearly along each
    path, ``∂ℓ/∂log y_∅(t, u) = −γ_∅(t, u)`` and ``∂ℓ/∂log y_l(t, u) = −γ_l(t, u)``, and through
    the log-softmax

    .. math:: \frac{\partial \ell}{\partial z_{t,u,k}} = \bigl(\gamma_\varnothing(t,u) + \gamma_l(t,u)\bigr)\,
              y(t,u)_k - \gamma_\varnothing(t,u)\,[k = \varnothing] - \gamma_l(t,u)\,[k = l_{u+1}],

    which sums to 0 over ``k`` at every node, and is 0 at the nodes no alignment visits (padded
    frames, rows past ``U``).  The rule runs the β recursion and reuses the forward's α (each
    diagonal's occupancies divided by that diagonal's ``Σ_u α β``, equal to ``P``, for float32
    precision).  Reverse mode keeps the logits and ``[B, T, U+1]`` statistics: per node the
    maximum, log-sum-exp and the two log-probabilities, and ``log α`` on the diagonals.  Forward
    mode and higher orders work (a ``custom_jvp``; higher orders through autodiff of the rule).
    ``logit_paddings`` and ``label_paddings`` are masks (a value >= 0.5 is padding) with
    derivative 0.

    A sequence without frames has no alignment: ``+inf`` and derivative 0 (any labels fit
    one frame).  Label ids follow :func:`ctc_loss`: an unpadded label outside ``[0, V)`` or
    equal to ``blank_id`` gives a NaN loss with derivative 0 (:func:`jaxloss.checks.checked`
    names it); padded positions are never read.

    Args:
      logits: float array ``[..., T, U+1, V]``, the joiner's output at every node
        (unnormalised; the log-softmax is taken here).
      logit_paddings: ``[..., T]``, 1.0 on padded frames, which must be right-padded (the
        first ``T_b`` frames count, ``T_b`` the number of unpadded ones).
      labels: integer array ``[..., U]``; ids in ``[0, V)`` other than ``blank_id``.
      label_paddings: ``[..., U]``, 1.0 on padded labels, right-padded.
      blank_id: the class id of the blank (static).
      where: optional boolean mask broadcasting to the batch shape ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Negative log-likelihoods of the batch shape ``logits.shape[:-3]``, float32 for
      lower-precision logits.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> # Uniform over 3 classes, 2 frames, 1 label: 2 alignments of 3 emissions each.
      >>> logits = jnp.zeros((1, 2, 2, 3))
      >>> loss = jaxloss.rnnt_loss(logits, jnp.zeros((1, 2)), jnp.array([[1]]), jnp.zeros((1, 1)))
      >>> loss, jnp.log(27 / 2)
      (Array([2.6026897], dtype=float32), Array(2.6026897, dtype=float32, weak_type=True))

    References:
      Graves, "Sequence Transduction with Recurrent Neural Networks", ICML 2012 workshop
      (arXiv:1211.3711).  ``torchaudio.functional.rnnt_loss(reduction="none")`` with
      ``logit_lengths`` and ``target_lengths`` (logits ``[B, T, U+1, V]``, blank 0 there by
      default too).  Differs from torchaudio: ``fused_log_softmax=False`` and ``clamp`` have
      no counterpart, lengths come as paddings (optax's convention, as :func:`ctc_loss`), any
      leading batch shape is accepted and bad ids give NaN instead of an error.
    """
    batch = logits.shape[:-3]
    x, labels, label_paddings = (_flatten(a, batch) for a in (logits, labels, label_paddings))
    frames, lengths = _lengths(_flatten(logit_paddings, batch), label_paddings)
    shift, lse = shifted_logsumexp(x)
    ids = _label_ids(labels, blank_id, x.shape[-1])
    z_label = jnp.take_along_axis(x, ids[:, None, :, None], axis=-1)[..., 0]
    lp_blank, lp_label = _log_probs(shift, lse, x[..., blank_id], z_label, frames, lengths)
    log_z, alphas = _lattice(lp_blank, lp_label, frames, lengths)
    loss = loud(-log_z, _invalid(labels, label_paddings, blank_id, x.shape[-1]))
    return loss.reshape(batch), (shift, lse, lp_blank, lp_label, log_z, alphas)


# ------------------------------------------------------------------ rnnt_loss_from_joiner


def _check_joiner(encoder, predictor, joiner_weight, logit_paddings, labels, label_paddings, joiner_bias, blank_id,
                  block_size, precision, where):
    for name, x in (("encoder", encoder), ("predictor", predictor), ("joiner_weight", joiner_weight)):
        _checks.float_array(name, x)
    enc, pred, w = np.shape(encoder), np.shape(predictor), np.shape(joiner_weight)
    if len(enc) < 2 or len(pred) != len(enc) or pred[:-2] != enc[:-2] or pred[-1] != enc[-1]:
        raise ValueError(f"encoder [..., T, H] and predictor [..., U+1, H] must share the batch shape and H, "
                         f"got encoder {enc}, predictor {pred}.")
    if len(w) != 2 or w[0] != enc[-1]:
        raise ValueError(f"joiner_weight must be [H, V] with H = {enc[-1]} (encoder {enc}), got {w}.")
    if joiner_bias is not None:
        _checks.float_array("joiner_bias", joiner_bias)
        if np.shape(joiner_bias) != (w[1],):
            raise ValueError(f"joiner_bias must have shape {(w[1],)} (joiner_weight {w}), got {np.shape(joiner_bias)}.")
    _check_targets(logit_paddings, labels, label_paddings, enc[:-2], enc[-2], pred[-2],
                   f"encoder {enc} and predictor {pred}")
    _check_blank(blank_id, w[1], f"joiner_weight {w}")
    if block_size is not None and (not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}.")
    check_precision(precision)
    _checks.broadcasts_to("where", where, enc[:-2], "the batch shape of encoder")


def _joiner_inputs(p):
    """Encoder ``[B, T, H]`` and predictor ``[B, U+1, H]`` (zero at padded frames and past each
    sequence's labels, so padding reaches no value or derivative), labels, lengths, block size."""
    batch = p.encoder.shape[:-2]
    labels, label_paddings = _flatten(p.labels, batch), _flatten(p.label_paddings, batch)
    frames, lengths = _lengths(_flatten(p.logit_paddings, batch), label_paddings)
    enc_ok = jnp.arange(p.encoder.shape[-2])[None, :, None] < frames[:, None, None]
    pred_ok = jnp.arange(p.predictor.shape[-2])[None, :, None] <= lengths[:, None, None]
    b, t, u1 = frames.shape[0], p.encoder.shape[-2], p.predictor.shape[-2]
    size = p.block_size or max(1, _AUTO_BLOCK_ELEMENTS // max(b * u1 * p.joiner_weight.shape[1], 1))
    return batch, enc_ok, pred_ok, labels, label_paddings, frames, lengths, min(size, t)


def _blocks(x, size):
    """``[B, T, ...]`` as ``[T/size, B, size, ...]`` blocks of frames (zero-padded at the end)."""
    count = -(-x.shape[1] // size)
    x = jnp.pad(x, [(0, 0), (0, count * size - x.shape[1])] + [(0, 0)] * (x.ndim - 2))
    return jnp.moveaxis(x.reshape((x.shape[0], count, size) + x.shape[2:]), 1, 0)


def _unblock(x, frames):
    """The inverse of :func:`_blocks`: ``[count, B, size, ...]`` → ``[B, T, ...]``."""
    x = jnp.moveaxis(x, 0, 1)
    return x.reshape((x.shape[0], -1) + x.shape[3:])[:, :frames]


def _joiner(enc, pred, weight, bias, precision):
    """``h = tanh(enc_t + pred_u)`` ``[B, S, U+1, H]`` and ``z = h W + c`` ``[B, S, U+1, V]``."""
    h = jnp.tanh(enc[:, :, None, :] + pred[:, None, :, :])
    z = jnp.matmul(h, weight, precision=matmul_precision(precision, h, weight))
    return h, z if bias is None else z + bias


def _joiner_tangent(p, t, out, res):
    # dℓ = Σ_{t,u,k} g_tuk dz_tuk, g as rnnt_loss's, with dz = ((1 − h²)(d enc_t + d pred_u)) W
    # + h dW + dc: each block of frames recomputes h, z and g (scan, body checkpointed, so reverse
    # mode holds one block), and reverse mode gets g Wᵀ, hᵀ g and Σ g by transposing it.
    if t.encoder is None and t.predictor is None and t.joiner_weight is None and t.joiner_bias is None:
        return None
    lp_blank, lp_label, log_z, alphas = res
    batch, enc_ok, pred_ok, labels, label_paddings, frames, lengths, size = _joiner_inputs(p)
    classes = p.joiner_weight.shape[1]
    occ_blank, occ_label = _occupancy(lp_blank, lp_label, alphas, log_z, frames, lengths)
    pred = jnp.where(pred_ok, _flatten(p.predictor, batch), 0.0)
    d_pred = None if t.predictor is None else jnp.where(pred_ok, _flatten(t.predictor, batch), 0.0)
    d_enc = None if t.encoder is None else _blocks(jnp.where(enc_ok, _flatten(t.encoder, batch), 0.0), size)
    ids = _label_ids(labels, p.blank_id, classes)[:, None]
    w, dw, bias, db = p.joiner_weight, t.joiner_weight, p.joiner_bias, t.joiner_bias
    precision = p.precision

    @jax.checkpoint
    def step(total, xs):
        enc, de, g_blank, g_label = xs
        h, z = _joiner(enc, pred, w, bias, precision)
        soft = _softmax(z, jax.lax.stop_gradient(jnp.max(z, axis=-1)))
        g = _emission_weights(soft, g_blank, g_label, p.blank_id, ids)
        d_pre = tangent_sum((1.0, None if de is None else de[:, :, None, :]),
                            (1.0, None if d_pred is None else d_pred[:, None, :, :]))
        dz = tangent_sum(
            (1.0, None if d_pre is None else
             jnp.matmul((1.0 - h * h) * d_pre, w, precision=matmul_precision(precision, h, w))),
            (1.0, None if dw is None else jnp.matmul(h, dw, precision=matmul_precision(precision, h, dw))),
            (1.0, db))
        return total + jnp.sum(g * dz, axis=(1, 2, 3)), None

    enc = _blocks(jnp.where(enc_ok, _flatten(p.encoder, batch), 0.0), size)
    xs = (enc, d_enc, _blocks(occ_blank, size), _blocks(occ_label, size))
    dloss, _ = jax.lax.scan(step, jnp.zeros(frames.shape, out.dtype), xs)
    return jnp.where(_invalid(labels, label_paddings, p.blank_id, classes), 0.0, dloss).reshape(batch)


@hand_derivative(_joiner_tangent, static=("blank_id", "block_size", "precision"), check=_check_joiner,
                 residuals=True, per_example=("encoder", "predictor", "logit_paddings", "labels", "label_paddings"))
def rnnt_loss_from_joiner(encoder: Array, predictor: Array, joiner_weight: Array, logit_paddings: Array,
                          labels: Array, label_paddings: Array, *, joiner_bias: Array | None = None,
                          blank_id: int = 0, block_size: int | None = None, precision: Precision = None,
                          where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r"""RNN-T loss per sequence from the joiner's inputs, without the ``[B, T, U+1, V]`` logits.

    The joiner is the usual additive one: at node ``(t, u)``

    .. math:: z_{t,u} = \tanh(\mathrm{enc}_t + \mathrm{pred}_u)\, W + c,

    with ``W = joiner_weight`` ``[H, V]`` and the optional bias ``c = joiner_bias`` ``[V]``
    (project the encoder and predictor outputs to ``H`` beforehand if the model does).  The
    loss is :func:`rnnt_loss` of these logits, equal in value and derivative, computed in
    blocks of ``block_size`` frames (a ``lax.scan``): each block forms its ``[B, S, U+1, V]``
    logits and keeps only three numbers per node, the log-softmax normaliser and the blank and
    label log-probabilities, which the lattice recursion needs.  No pass holds more than one
    block of logits (and of ``h``): the forward, reverse mode (which keeps the inputs and the
    ``[B, T, U+1]`` statistics and ``log α``) and forward mode.

    Derivative (hand rule), with ``g = ∂ℓ/∂z`` of :func:`rnnt_loss`
    (``(γ_∅ + γ_l)·softmax − γ_∅·[k = ∅] − γ_l·[k = l_{u+1}]``) and ``h = tanh(enc_t + pred_u)``:
    ``∂ℓ/∂W = Σ_{t,u} h_{t,u}ᵀ g_{t,u}``, ``∂ℓ/∂c = Σ_{t,u} g_{t,u}``,
    ``∂ℓ/∂enc_t = Σ_u (g_{t,u} Wᵀ) ⊙ (1 − h_{t,u}²)`` and ``∂ℓ/∂pred_u = Σ_t (g_{t,u} Wᵀ) ⊙
    (1 − h_{t,u}²)``.  The rule recomputes each block's logits: value and gradient cost four
    ``B·T·(U+1)·H·V`` matmuls against three with materialised logits.  Forward mode and higher
    orders work.  Padded frames and the predictor rows past each sequence's labels get
    derivative exactly 0 (their values, even inf or NaN, reach nothing).

    Args:
      encoder: float array ``[..., T, H]``.
      predictor: float array ``[..., U+1, H]`` (row 0 after the start symbol, row ``u`` after
        ``l_u``).
      joiner_weight: float array ``[H, V]``.
      logit_paddings: ``[..., T]``, 1.0 on padded frames (right-padded).
      labels: integer array ``[..., U]``; ids in ``[0, V)`` other than ``blank_id``.
      label_paddings: ``[..., U]``, 1.0 on padded labels (right-padded).
      joiner_bias: optional float array ``[V]``.
      blank_id: the class id of the blank (static).
      block_size: frames per block (static); None picks about 4M logits per block.
      precision: the joiner matmuls' precision (static); None: ``HIGHEST`` for float32 inputs
        (GPUs would otherwise multiply in TF32), ``DEFAULT`` for 16-bit ones.
      where: optional boolean mask broadcasting to the batch shape ``[...]``.

    Returns:
      Negative log-likelihoods of the batch shape ``encoder.shape[:-2]``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> enc, pred = jax.random.normal(k1, (2, 5, 8)), jax.random.normal(k2, (2, 3, 8))
      >>> w = jax.random.normal(k3, (8, 6))
      >>> pads, labels, label_pads = jnp.zeros((2, 5)), jnp.array([[1, 2], [3, 3]]), jnp.zeros((2, 2))
      >>> lean = jaxloss.rnnt_loss_from_joiner(enc, pred, w, pads, labels, label_pads, block_size=2)
      >>> logits = jnp.tanh(enc[:, :, None] + pred[:, None]) @ w
      >>> bool(jnp.allclose(lean, jaxloss.rnnt_loss(logits, pads, labels, label_pads)))
      True

    References:
      Graves, "Sequence Transduction with Recurrent Neural Networks", 2012.  The blockwise
      log-softmax statistics follow the fused linear cross-entropy
      (:func:`linear_softmax_cross_entropy`).  Differs from torchaudio's ``rnnt_loss``, which
      takes materialised logits: see :func:`rnnt_loss`.
    """
    p = Args(encoder=encoder, predictor=predictor, joiner_weight=joiner_weight, logit_paddings=logit_paddings,
             labels=labels, label_paddings=label_paddings, block_size=block_size)
    batch, enc_ok, pred_ok, labels, label_paddings, frames, lengths, size = _joiner_inputs(p)
    classes = joiner_weight.shape[1]
    pred = jnp.where(pred_ok, _flatten(predictor, batch), 0.0)
    ids = _label_ids(labels, blank_id, classes)[:, None]

    @jax.checkpoint
    def block(enc):
        _, z = _joiner(enc, pred, joiner_weight, joiner_bias, precision)
        shift, lse = shifted_logsumexp(z)
        z_label = jnp.take_along_axis(z, ids[..., None], axis=-1)[..., 0]
        return shift, lse, z[..., blank_id], z_label

    stats = jax.lax.map(block, _blocks(jnp.where(enc_ok, _flatten(encoder, batch), 0.0), size))
    shift, lse, z_blank, z_label = (_unblock(s, encoder.shape[-2]) for s in stats)
    lp_blank, lp_label = _log_probs(shift, lse, z_blank, z_label, frames, lengths)
    log_z, alphas = _lattice(lp_blank, lp_label, frames, lengths)
    loss = loud(-log_z, _invalid(labels, label_paddings, blank_id, classes))
    return loss.reshape(batch), (lp_blank, lp_label, log_z, alphas)
