"""Speaker-verification losses: GE2E, a softmax over scaled cosines to per-speaker centroids.

The generalized end-to-end loss classifies each utterance's L2-normalised embedding against the
centroids of the speakers in the batch (the angular-margin losses of :mod:`jaxloss.angular` do
the same against learned class centres).  It returns one loss per utterance.  No ``acos`` is
taken, so values and gradients stay finite at cos θ = ±1.  It supports ``jit``, ``vmap``,
forward and reverse mode, ``jax.hessian`` and forward-over-reverse Hessian-vector products;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss._softmax import shifted_logsumexp as _shifted_logsumexp
from jaxloss._streaming import check_precision, matmul_precision
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Precision

# ------------------------------------------------------------------ ge2e_loss

_GE2E_EPS = 1e-12  # the norm floor of the L2 normalisations (torch.nn.functional.normalize's)
_GE2E_MIN_W = 1e-6  # w is clamped to at least this, keeping the similarity increasing in cos


def _check_ge2e(embeddings, w, b, kind, precision, where):
    _checks.float_array("embeddings", embeddings)
    shape = tuple(jnp.shape(embeddings))
    if len(shape) < 3:
        raise ValueError("embeddings must be [..., speakers, utterances, features] (rank >= 3), "
                         f"got shape {shape}.")
    if shape[-2] < 2:
        raise ValueError("embeddings need at least 2 utterances per speaker (the exclusive centroid "
                         f"averages the others), got shape {shape} with {shape[-2]}.")
    if kind not in ("softmax", "contrast"):
        raise ValueError(f"kind must be 'softmax' or 'contrast', got {kind!r}.")
    check_precision(precision)
    for name, value in (("w", w), ("b", b)):
        if value is None:
            raise TypeError(f"{name} is required: a float scalar (the paper initialises w = 10, b = -5).")
        _checks.float_option(name, value, shape[:-1], "the per-utterance shape of embeddings")
    _checks.broadcasts_to("where", where, shape[:-1], "the per-utterance shape of embeddings")


def _ge2e_normalize(x):
    """``x/max(‖x‖, 1e-12)`` and ``‖x‖`` (:func:`jaxloss._math.normalize`), with the unit vector
    held at 0 where ``x = 0``: its derivative there is 0, not the floor's ``dx/1e-12``.  The floor's
    slope would pass through a zero speaker's centroid, floored too, as ``1/1e-24`` in the gradient
    and overflow float32 in second derivatives.  The unselected branch is finite (the norm is
    :func:`jaxloss._math.safe_norm`), so one ``where`` keeps every order finite."""
    x_hat, norm = _math.normalize(x, _GE2E_EPS)
    return jnp.where(norm[..., None] > 0, x_hat, 0.0), norm


def _ge2e_normalize_tangent(x_hat, norm, dx):
    """The tangent of :func:`_ge2e_normalize`: :func:`jaxloss._math.normalize_tangent`, and 0 where
    ``x = 0``."""
    return jnp.where(norm[..., None] > 0, _math.normalize_tangent(x_hat, norm, dx, _GE2E_EPS), 0.0)


def _centroid_cosines(e_hat, c_hat, precision):
    """``⟨ê_ju, ĉ_k⟩`` ``[..., S, U, S]`` at :func:`jaxloss._streaming.matmul_precision` of ``precision``."""
    return jnp.einsum("...jud,...kd->...juk", e_hat, c_hat, precision=matmul_precision(precision, e_hat, c_hat))


def _ge2e_parts(embeddings, where, precision=None):
    """The normalised embeddings, the (exclusive) centroids and the cosines ``[..., S, U, S]``,
    with what the tangent rule needs of them (norms, counts, masks)."""
    e_hat, e_norm = _ge2e_normalize(embeddings)
    shape = embeddings.shape[:-1]  # [..., S, U]
    valid = jnp.ones(shape, bool) if where is None else jnp.broadcast_to(where, shape)
    e_hat = jnp.where(valid[..., None], e_hat, 0.0)
    count = jnp.sum(valid, axis=-1).astype(e_hat.dtype)  # [..., S]
    total = jnp.sum(e_hat, axis=-2)  # [..., S, D]
    c_scale = jnp.maximum(count, 1.0)[..., None]
    x_scale = jnp.maximum(count - 1.0, 1.0)[..., None, None]
    c_hat, c_norm = _ge2e_normalize(total / c_scale)  # every speaker's centroid
    x_hat, x_norm = _ge2e_normalize((total[..., None, :] - e_hat) / x_scale)  # eq. 8
    speakers = shape[-2]
    own = (jnp.arange(speakers)[:, None, None] == jnp.arange(speakers)[None, None, :])  # [S, 1, S]
    cos_own = jnp.sum(e_hat * x_hat, axis=-1)  # [..., S, U]
    cos = jnp.where(own, cos_own[..., None], _centroid_cosines(e_hat, c_hat, precision))
    present = (count >= 1)[..., None, None, :]  # speaker k has a centroid
    active = valid & (count >= 2)[..., None]  # the utterance has an exclusive centroid
    return Args(e_hat=e_hat, e_norm=e_norm, valid=valid, c_scale=c_scale, x_scale=x_scale,
                c_hat=c_hat, c_norm=c_norm, x_hat=x_hat, x_norm=x_norm, own=own, cos=cos,
                cos_own=cos_own, present=present, active=active)


def _ge2e_scale(w):
    """``w`` kept positive, ``max(w, 1e-6)`` (derivative 1 where ``w >= 1e-6``, else 0),
    lined up against the speaker axis of the cosines."""
    w = jnp.asarray(w)
    return jnp.where(w >= _GE2E_MIN_W, w, _GE2E_MIN_W)[..., None]


def _ge2e_rivals(q):
    """For "contrast": the most similar other speaker (lowest index among ties), whether there is
    one, and its one-hot ``[..., S, U, S]``."""
    others = q.present & ~q.own
    best = jnp.argmax(jnp.where(others, q.cos, -jnp.inf), axis=-1)
    has_other = jnp.any(others, axis=-1)
    onehot = best[..., None] == jnp.arange(q.cos.shape[-1])
    return best, has_other, onehot


def _ge2e_tangent(p, t, out, res):
    q = _ge2e_parts(p.embeddings, p.where, p.precision)
    w_eff = _ge2e_scale(p.w)
    dcos = None
    if t.embeddings is not None:
        de_hat = _ge2e_normalize_tangent(q.e_hat, q.e_norm, t.embeddings)
        de_hat = jnp.where(q.valid[..., None], de_hat, 0.0)
        dtotal = jnp.sum(de_hat, axis=-2)
        dc_hat = _ge2e_normalize_tangent(q.c_hat, q.c_norm, dtotal / q.c_scale)
        dx_hat = _ge2e_normalize_tangent(q.x_hat, q.x_norm, (dtotal[..., None, :] - de_hat) / q.x_scale)
        dcos_own = jnp.sum(de_hat * q.x_hat + q.e_hat * dx_hat, axis=-1)
        dcos_all = _centroid_cosines(de_hat, q.c_hat, p.precision) + _centroid_cosines(q.e_hat, dc_hat, p.precision)
        dcos = jnp.where(q.own, dcos_own[..., None], dcos_all)
    dw = None if t.w is None else jnp.where(jnp.asarray(p.w) >= _GE2E_MIN_W, t.w, 0.0)[..., None]
    if p.kind == "softmax":
        shift, lse = res
        logits = jnp.where(q.present | q.own, w_eff * q.cos - shift[..., None] - lse[..., None], -jnp.inf)
        weight = jnp.exp(logits) - q.own  # ∂ℓ/∂S_k = softmax_k − [k = j]
        db = None  # b cancels from the softmax loss
    else:
        _, has_other, onehot = _ge2e_rivals(q)
        s = w_eff * q.cos + jnp.asarray(p.b)[..., None]
        slope = jax.nn.sigmoid(s) * jax.nn.sigmoid(-s)  # σ'(S_k)
        weight = jnp.where(onehot & has_other[..., None], slope, 0.0) - jnp.where(q.own, slope, 0.0)
        db = None if t.b is None else jnp.sum(weight, axis=-1) * t.b
    d = tangent_sum(
        (1.0, None if dcos is None else jnp.sum(weight * w_eff * dcos, axis=-1)),
        (1.0, None if dw is None else jnp.sum(weight * q.cos * dw, axis=-1)),
        (1.0, db),
    )
    return None if d is None else jnp.where(q.active, d, 0.0)


@hand_derivative(_ge2e_tangent, static=("kind", "precision"), check=_check_ge2e, residuals=True,
                 class_axis=("embeddings",))
def ge2e_loss(embeddings: Array, *, axis: int = -1, w: ArrayLike, b: ArrayLike,
              kind: Literal["softmax", "contrast"] = "softmax", precision: Precision = None,
              where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r"""Generalized end-to-end (GE2E) loss per utterance, against the speaker centroids of the batch.

    The embeddings of ``S`` speakers with ``U`` utterances each are L2-normalised inside
    (``jaxloss._math.normalize``, a norm floor of 1e-12), :math:`e_{ji} \leftarrow
    e_{ji}/\max(\|e_{ji}\|, 10^{-12})`.  Following Wan et al. (eqs. 5–10), the centroid of
    speaker ``k`` is the mean of its utterances, and for the utterance's own speaker the
    utterance itself is left out (eq. 8):

    .. math:: c_k = \frac{1}{U}\sum_m e_{km}, \qquad
              c_j^{(-i)} = \frac{1}{U - 1}\Big(\sum_m e_{jm} - e_{ji}\Big),

    .. math:: S_{ji,k} = w \cos(e_{ji}, c_k) + b \;(k \ne j), \qquad
              S_{ji,j} = w \cos(e_{ji}, c_j^{(-i)}) + b ,

    with the cosine normalising the centroid.  ``kind="softmax"`` (eqs. 6 and 10)
    gives :math:`\ell_{ji} = -S_{ji,j} + \log\sum_k \exp S_{ji,k}`, in which ``b`` cancels
    (its derivative is exactly 0; it matters for ``"contrast"``); ``kind="contrast"``
    (eq. 7) gives :math:`\ell_{ji} = 1 - \sigma(S_{ji,j}) + \max_{k \ne j}\sigma(S_{ji,k})`.
    ``w`` is kept positive as in the paper by a clamp, :math:`w \leftarrow \max(w, 10^{-6})`,
    which leaves the paper's values unchanged; the derivative with respect to ``w`` is 0
    where it is clamped (``w < 1e-6``).

    Derivatives (hand rule, a JVP linear in the tangents): with
    :math:`g_k = \partial\ell/\partial S_{ji,k}` (``softmax_k − [k = j]`` for "softmax";
    ``−σ'(S_{ji,j})`` at ``k = j`` and ``σ'(S_{ji,k*})`` at the most similar other speaker
    ``k*`` for "contrast"), :math:`d\ell = \sum_k g_k (w\, d\cos_k + \cos_k\, dw + db)`, and
    :math:`d\cos(e, c) = \langle d\hat e, \hat c\rangle + \langle \hat e, d\hat c\rangle`, where
    each normalisation's tangent is the projection :math:`d\hat x = (dx - \hat x\langle\hat x,
    dx\rangle)/\|x\|` (``dx/1e-12`` where the norm is floored, 0 at ``x = 0``) and the centroid
    tangents are the means of the utterance tangents, the exclusive one leaving out the utterance's own
    (:math:`dc_j^{(-i)} = (\sum_m d\hat e_{jm} - d\hat e_{ji})/(U - 1)`).  Reverse mode keeps the
    embeddings and, for "softmax", the log-sum-exp per utterance, and recomputes the cosines.
    In "contrast" the max takes the derivative of the selected speaker: the lowest index among
    ties.  At cos = ±1 (an utterance along or against its centroid) the values and gradients
    are finite (no ``acos`` is taken).  A zero embedding, or a centroid that is exactly 0 (a
    speaker whose utterances are all 0, or cancel), has no direction: its normalised vector is
    0, so its cosines are 0, and the rule (and ``.reference``) gives it the subgradient 0, as
    ``safe_norm`` does at 0, rather than the floor's slope ``dx/1e-12``, which through a zero
    centroid would reach ``1e24`` in gradients and overflow second derivatives.  The value,
    gradient, JVP and forward-over-reverse HVP are finite there.  A nonzero vector with norm
    below the floor keeps the floor's true derivative ``dx/1e-12``.

    Masked utterances (``where`` False) give loss 0 and gradient exactly 0 even if they hold inf
    or NaN, and are left out of the centroids, so the counts ``U`` above become each speaker's
    number of unmasked utterances.  An unmasked utterance that is its speaker's only one has no
    exclusive centroid: its loss is 0, but it still is its speaker's centroid for the other
    speakers' utterances.  A speaker with no unmasked utterance takes no part in the others'
    softmax or max.  With no other speaker at all, the "contrast" max term is 0.

    The ``[..., S, U, S]`` similarities are formed whole, which is small for the usual speaker
    batches (e.g. 64 × 10 × 64); a blockwise form for large ``S·U`` is future work.

    Args:
      embeddings: float array ``[..., S, U, D]``: ``S`` speakers, ``U >= 2`` utterances each,
        ``D`` features; any leading batch axes.
      axis: static; the feature axis D of ``embeddings``, an int (-1, the last, by default).
      w: the similarity scale, a float scalar (or an array broadcasting to ``[..., S, U]``);
        learnable, differentiated.  The paper initialises it to 10.
      b: the similarity offset, likewise; the paper initialises it to −5.
      kind: ``"softmax"`` or ``"contrast"`` (static).
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean mask broadcasting to ``[..., S, U]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[..., S, U]``, one per utterance, float32 for lower-precision embeddings.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[[1.0, 0.1], [1.0, -0.2]], [[0.0, 1.0], [0.3, 1.0]]])
      >>> jaxloss.ge2e_loss(e, w=10.0, b=-5.0)
      Array([[7.9838344e-04, 4.1960790e-05],
             [4.2437605e-05, 7.6443539e-04]], dtype=float32)
      >>> jaxloss.ge2e_loss(e, w=10.0, b=-5.0, kind="contrast")
      Array([[0.08138894, 0.01433729],
             [0.01428552, 0.07944896]], dtype=float32)

    References:
      L. Wan, Q. Wang, A. Papir, I. Lopez Moreno, "Generalized End-to-End Loss for Speaker
      Verification", ICASSP 2018 (arXiv:1710.10467), eqs. 5–10.
    """
    q = _ge2e_parts(embeddings, where, precision)
    w_eff = _ge2e_scale(w)
    res: tuple[jax.Array, ...]
    if kind == "softmax":
        # b cancels: −(w·cos_j + b) + log Σ_k exp(w·cos_k + b) = lse_k(w·cos_k) − w·cos_j.
        # The own speaker always stays in the row, so a masked row is finite too.
        logits = jnp.where(q.present | q.own, w_eff * q.cos, -jnp.inf)
        shift, lse = _shifted_logsumexp(logits)
        loss = (shift - w_eff[..., 0] * q.cos_own) + lse
        res = (shift, lse)
    else:
        best, has_other, _ = _ge2e_rivals(q)
        bias = jnp.asarray(b)
        rival = jnp.take_along_axis(q.cos, best[..., None], axis=-1)[..., 0]
        loss = (jax.nn.sigmoid(-(w_eff[..., 0] * q.cos_own + bias))
                + jnp.where(has_other, jax.nn.sigmoid(w_eff[..., 0] * rival + bias), 0.0))
        res = ()
    return jnp.where(q.active, loss, 0.0), res
