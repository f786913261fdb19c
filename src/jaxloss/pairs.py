"""Pair-based metric-learning losses on a batch of embeddings ``[N, D]`` and class labels ``[N]``.

Every loss here reads the ``N × N`` matrix between the examples of one batch: the cosine
similarities :math:`s_{ij} = \\langle \\hat x_i, \\hat x_j\\rangle` of the L2-normalised embeddings
(``x / max(‖x‖, 1e-12)``, as ``F.normalize``), or with ``distance="euclidean"`` the distances
between the normalised embeddings, :math:`d_{ij} = \\lVert \\hat x_i - \\hat x_j\\rVert =
\\sqrt{2 - 2 s_{ij}}` (pytorch-metric-learning's default ``LpDistance`` normalises too).  The
positives :math:`P_a` of an anchor ``a`` are the other examples with its label, its negatives
:math:`N_a` those with another label.  Each loss returns one value per anchor; an anchor with
no positive has loss 0 and derivative 0.  ``where`` ``[N]`` takes masked examples out of the
batch: they are nobody's anchor, positive or negative, so the other losses are those of the
batch without them (and inf/NaN padding reaches neither a value nor a derivative).

Derivatives: each rule forms :math:`W_{aj} = \\partial\\ell_a/\\partial s_{aj}` and returns
``Σ_j W_aj ds_aj`` with ``ds_aj = ⟨dx̂_a, x̂_j⟩ + ⟨x̂_a, dx̂_j⟩`` (two matmuls) and
``dx̂ = (dx − x̂⟨x̂, dx⟩)/‖x‖``; for distances ``∂d/∂s = −1/d``, and 0 at ``d = 0`` (duplicate
embeddings: the minimum-norm subgradient, where autodiff of the square root gives NaN).
Selections (mining, the pairs of the N-pair loss) are piecewise constant and held fixed.
Reverse mode keeps the inputs and recomputes the matrix.  Every function supports ``jit``,
``vmap``, forward and reverse mode, ``jax.hessian`` and forward-over-reverse Hessian-vector
products; ``fn.reference`` is plain autodiff of the formula.

The supervised contrastive loss, which also comes in blockwise and sharded forms, is in
:mod:`jaxloss.supcon`.

Reductions: pytorch-metric-learning (PML) reduces these per-anchor losses with a reducer;
``jaxloss.reduce.mean(losses)`` is its ``MeanReducer`` and
``jaxloss.reduce.mean(losses, where=losses > 0)`` its ``AvgNonZeroReducer``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss._pairwise import Distance, check_labelled_batch, measure, through_measure
from jaxloss._streaming import matmul_precision, pairwise_dots
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Precision

_STATIC = ("distance", "precision")

# ------------------------------------------------------------------ shared


class _Batch(NamedTuple):
    """The normalised embeddings and their norms, the loss's matrix ``m`` (similarities ``s`` or
    distances ``d``), ``sign`` (+1 for similarities, −1 for distances: ``sign·m`` grows with
    similarity), and the ``[N, N]`` masks of the positive and negative pairs."""

    x_hat: jax.Array
    norm: jax.Array
    m: jax.Array
    sign: float
    pos: jax.Array
    neg: jax.Array

    @property
    def has_pos(self):
        return jnp.any(self.pos, axis=-1)

    @property
    def has_neg(self):
        return jnp.any(self.neg, axis=-1)


def _batch(embeddings, labels, where, distance, precision) -> _Batch:
    x_hat, norm = _math.normalize(embeddings)
    m, sign = measure(pairwise_dots(x_hat, x_hat, precision), distance)
    n = labels.shape[0]
    keep = jnp.ones(n, bool) if where is None else where
    same = labels[:, None] == labels[None, :]
    both = keep[:, None] & keep[None, :]
    return _Batch(x_hat, norm, m, sign, same & ~jnp.eye(n, dtype=bool) & both, ~same & both)


def _matrix_tangent(b: _Batch, dx, w, precision):
    """``Σ_j w_aj dm_aj`` per anchor for the tangent ``dx`` ``[N, D]`` of the embeddings and the
    weights ``w = ∂ℓ_a/∂m_aj`` ``[N, N]``; None when ``dx`` is."""
    if dx is None:
        return None
    w = through_measure(w, b.m, b.sign)
    dx_hat = _math.normalize_tangent(b.x_hat, b.norm, dx)
    precision = matmul_precision(precision, b.x_hat)
    return jnp.sum(dx_hat * jnp.matmul(w, b.x_hat, precision=precision)
                   + b.x_hat * jnp.matmul(w, dx_hat, precision=precision), axis=-1)


def _logsumexp(z, keep):
    """``(shift, log Σ)`` of ``log Σ_j exp(z_aj)`` over the entries ``keep`` lets in, kept apart
    (:func:`jaxloss._math.logsumexp_parts`): ``log Σ = −inf`` (derivative 0) for an empty row."""
    empty = jnp.zeros(z.shape[:-1], z.dtype)
    return _math.logsumexp_parts(*_math.logsumexp_step((empty - jnp.inf, empty), jnp.where(keep, z, -jnp.inf)))


def _softmax(z, keep, shift, log_sum):
    """The softmax of ``z`` over ``keep`` per row from :func:`_logsumexp`'s parts (0 elsewhere)."""
    return jnp.where(keep, _math.softmax_weight((z - shift[:, None]) - log_sum[:, None]), 0.0)


# ------------------------------------------------------------------ multi_similarity_loss


def _check_ms(embeddings, labels, alpha, beta, base, mining, epsilon, distance, precision, where):
    check_labelled_batch(embeddings, labels, where, distance, precision, positive=("alpha", "beta"),
                         alpha=alpha, beta=beta, base=base, epsilon=epsilon)
    if not isinstance(mining, bool):
        raise TypeError(f"mining must be a Python bool, got {type(mining).__name__}.")


def _ms_parts(b, alpha, beta, base, mining, epsilon):
    """The pair sets (mined or not), the exponents ``u = sign·(base − m)`` of the positives and
    ``v = sign·(m − base)`` of the negatives, and ``L = log Σ e^{αu}``, ``log Σ e^{βv}``."""
    pos, neg = b.pos, b.neg
    if mining:
        h = jax.lax.stop_gradient(b.sign * b.m)  # grows with similarity
        hardest_neg = jnp.max(jnp.where(neg, h, -jnp.inf), axis=-1, keepdims=True)
        easiest_pos = jnp.min(jnp.where(pos, h, jnp.inf), axis=-1, keepdims=True)
        pos, neg = pos & (h - epsilon < hardest_neg), neg & (h + epsilon > easiest_pos)
    u, v = b.sign * (base - b.m), b.sign * (b.m - base)
    lse = lambda z, keep: _logsumexp(z, keep)  # noqa: E731
    return pos, neg, u, v, lse(alpha * u, pos), lse(beta * v, neg)


def _ms_tangent(p, t, out, res):
    b = _batch(p.embeddings, p.labels, p.where, p.distance, p.precision)
    pos, neg, u, v, (shift_u, log_u), (shift_v, log_v) = _ms_parts(b, p.alpha, p.beta, p.base, p.mining, p.epsilon)
    has_pos = b.has_pos
    lu, lv = shift_u + log_u, shift_v + log_v
    # ∂ℓ/∂u_ap = σ(L_u)·softmax_p(αu), ∂ℓ/∂v_an = σ(L_v)·softmax_n(βv).
    wu = jnp.where(has_pos[:, None], jax.nn.sigmoid(lu)[:, None] * _softmax(p.alpha * u, pos, shift_u, log_u), 0.0)
    wv = jnp.where(has_pos[:, None], jax.nn.sigmoid(lv)[:, None] * _softmax(p.beta * v, neg, shift_v, log_v), 0.0)

    def dscale(scale, w, z, total):  # ∂(softplus(L)/α)/∂α = (Σ w z − softplus(L)/α)/α
        return jnp.where(has_pos, jnp.sum(w * z, axis=-1) - jax.nn.softplus(total) / scale, 0.0) / scale

    return tangent_sum(
        (1.0, _matrix_tangent(b, t.embeddings, b.sign * (wv - wu), p.precision)),
        (b.sign * jnp.sum(wu - wv, axis=-1), t.base),
        (None if t.alpha is None else dscale(p.alpha, wu, u, lu), t.alpha),
        (None if t.beta is None else dscale(p.beta, wv, v, lv), t.beta),
    )


@hand_derivative(_ms_tangent, check=_check_ms, static=("mining",) + _STATIC, class_axis=("embeddings",))
def multi_similarity_loss(embeddings: Array, labels: Array, *, axis: int = -1, alpha: ArrayLike = 2.0,
                          beta: ArrayLike = 50.0, base: ArrayLike = 0.5, mining: bool = False,
                          epsilon: ArrayLike = 0.1, distance: Distance = "cosine", precision: Precision = None,
                          where: Array | None = None) -> jax.Array:
    r"""Multi-similarity loss per anchor (Wang et al. 2019), optionally on the paper's mined pairs.

    With similarities :math:`s` (``distance="euclidean"``: read :math:`-d` for :math:`s` and
    :math:`-\lambda` for :math:`\lambda`), :math:`\lambda` = ``base``:

    .. math:: \ell_a = \frac1\alpha \log\Bigl(1 + \sum_{p \in P_a} e^{-\alpha (s_{ap} - \lambda)}\Bigr)
              + \frac1\beta \log\Bigl(1 + \sum_{n \in N_a} e^{\beta (s_{an} - \lambda)}\Bigr),

    each term ``softplus(log Σ e^{…})`` (0 for an empty set).  0 for an anchor without a
    positive (PML keeps its negative term there).  With ``mining=True`` the sums run over the
    paper's (and PML's ``MultiSimilarityMiner``'s) informative pairs: positives with
    :math:`s_{ap} - \epsilon < \max_n s_{an}` and negatives with
    :math:`s_{an} + \epsilon > \min_p s_{ap}` (euclidean: :math:`d_{ap} + \epsilon > \min_n d_{an}`,
    :math:`d_{an} - \epsilon < \max_p d_{ap}`).

    Derivatives (hand rule): ``∂ℓ_a/∂s_ap = −σ(L⁺_a)·softmax_p(−α(s_ap − λ))``,
    ``∂ℓ_a/∂s_an = σ(L⁻_a)·softmax_n(β(s_an − λ))`` with :math:`L^\pm_a` the log-sums above;
    ``∂ℓ_a/∂λ`` is the sum of the positive weights minus that of the negative ones;
    ``∂ℓ_a/∂α = (Σ_p w_ap u_ap − ℓ⁺_a)/α`` with :math:`u_{ap} = \lambda - s_{ap}`, likewise for
    β.  The mined selection is held fixed (``∂/∂ε = 0``).

    A plain mean of the losses is PML's default ``MeanReducer``.

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside).
      labels: integer ``[N]``.
      axis: static; the feature axis D of ``embeddings``: -1 (default) or 0 for ``[D, N]``.
      alpha, beta: ``> 0``, the scales of the positive and negative terms (floats or scalar
        arrays; differentiated); PML's defaults 2 and 50.
      base: λ, the similarity (or distance) the pairs are measured against; PML's 0.5.
      mining: static; mine the informative pairs first (the paper's pair mining).
      epsilon: the mining margin ε (PML's ``MultiSimilarityMiner(epsilon=0.1)``); unused
        without ``mining``.
      distance: static; ``"cosine"`` (default) or ``"euclidean"`` (on the normalised embeddings).
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean ``[N]``; masked examples leave the batch (loss 0, gradient 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
      >>> jaxloss.multi_similarity_loss(x, jnp.array([0, 0, 0, 1]))
      Array([0.28191006, 0.2782824 , 0.28235674, 0.        ], dtype=float32)

    References:
      Wang, Han, Huang, Dong & Scott, "Multi-Similarity Loss with General Pair Weighting for
      Deep Metric Learning", CVPR 2019.  pytorch-metric-learning ``losses.MultiSimilarityLoss``
      (with ``mining=True``: after ``miners.MultiSimilarityMiner``).  Differs from PML: 0 for an
      anchor without a positive; one loss per anchor and ``where``.
    """
    b = _batch(embeddings, labels, where, distance, precision)
    *_, (shift_u, log_u), (shift_v, log_v) = _ms_parts(b, alpha, beta, base, mining, epsilon)
    total = jax.nn.softplus(shift_u + log_u) / alpha + jax.nn.softplus(shift_v + log_v) / beta
    return jnp.where(b.has_pos, total, 0.0)


# ------------------------------------------------------------------ circle_loss


def _check_circle(embeddings, labels, margin, gamma, detach_weights, precision, where):
    check_labelled_batch(embeddings, labels, where, "cosine", precision, positive=("gamma",), margin=margin,
                         gamma=gamma)
    _checks.positive("margin", margin, allow_zero=True)
    if not isinstance(detach_weights, bool):
        raise TypeError(f"detach_weights must be a Python bool, got {type(detach_weights).__name__}.")


def _circle_parts(b, margin, gamma, detach_weights):
    """The logits ``z`` of the positive and the negative pairs (one ``[N, N]`` matrix), the
    slopes of the weights ``α`` (0 where they are held fixed) and the two log-sums."""
    s = b.m
    held = jax.lax.stop_gradient(s) if detach_weights else s
    a_pos, a_neg = jax.nn.relu(1 + margin - held), jax.nn.relu(held + margin)
    z = gamma * jnp.where(b.pos, -a_pos * (s - (1 - margin)), a_neg * (s - margin))
    return z, a_pos, a_neg, _logsumexp(z, b.pos), _logsumexp(z, b.neg)


def _circle_tangent(p, t, out, res):
    b = _batch(p.embeddings, p.labels, p.where, "cosine", p.precision)
    z, a_pos, a_neg, (shift_p, log_p), (shift_n, log_n) = _circle_parts(b, p.margin, p.gamma, p.detach_weights)
    valid = b.has_pos & b.has_neg
    total = (shift_p + log_p) + (shift_n + log_n)
    w = jnp.where(valid, jax.nn.sigmoid(total), 0.0)[:, None] * (
        _softmax(z, b.pos, shift_p, log_p) + _softmax(z, b.neg, shift_n, log_n))  # ∂ℓ_a/∂z_aj
    s = b.m
    on_p = jnp.where(1 + p.margin - s > 0, 1.0, 0.0)  # the slopes of the relus (1 + m − s_p > 0 in practice)
    on_n = jnp.where(s + p.margin > 0, 1.0, 0.0)
    if p.detach_weights:
        dz_ds = p.gamma * jnp.where(b.pos, -a_pos, a_neg)
    else:  # z_p = γ((1 − s)² − m²) and z_n = γ(s² − m²) where the weights are positive
        dz_ds = 2 * p.gamma * jnp.where(b.pos, -on_p * (1 - s), on_n * s)
    dz_dm = p.gamma * jnp.where(b.pos, -(on_p * (s - (1 - p.margin)) + a_pos), on_n * (s - p.margin) - a_neg)
    return tangent_sum(
        (1.0, _matrix_tangent(b, t.embeddings, w * dz_ds, p.precision)),
        (jnp.sum(w * dz_dm, axis=-1), t.margin),
        (jnp.sum(w * z, axis=-1) / p.gamma, t.gamma),
    )


@hand_derivative(_circle_tangent, check=_check_circle, static=("detach_weights", "precision"),
                 class_axis=("embeddings",))
def circle_loss(embeddings: Array, labels: Array, *, axis: int = -1, margin: ArrayLike = 0.4,
                gamma: ArrayLike = 80.0, detach_weights: bool = False, precision: Precision = None,
                where: Array | None = None) -> jax.Array:
    r"""Circle loss per anchor (Sun et al. 2020), on the cosine similarities of its pairs.

    With the relaxation :math:`m` (``margin``), the scale :math:`\gamma`, the self-paced weights
    :math:`\alpha_p = [1 + m - s_p]_+`, :math:`\alpha_n = [s_n + m]_+` and the margins
    :math:`\Delta_p = 1 - m`, :math:`\Delta_n = m`:

    .. math:: \ell_a = \operatorname{softplus}\Bigl(
              \log\sum_{p \in P_a} e^{-\gamma\alpha_p (s_{ap} - \Delta_p)}
              + \log\sum_{n \in N_a} e^{\gamma\alpha_n (s_{an} - \Delta_n)}\Bigr),

    0 for an anchor without a positive or a negative (as PML).  The paper defines the loss on
    similarities only, so there is no ``distance`` option.

    Derivatives (hand rule): with :math:`L_a` the argument of the softplus and :math:`z_{aj}`
    the exponents, ``∂ℓ_a/∂z_aj = σ(L_a)·softmax(z)`` over the positives and over the
    negatives separately; ``∂z_ap/∂s = −γ(α_p − [1 + m > s](s − Δ_p)) = −2γ[1 + m > s](1 − s)``,
    ``∂z_an/∂s = γ(α_n + [s + m > 0](s − Δ_n)) = 2γ[s + m > 0]s`` (the relu's slope is 0 at
    its corner),
    ``∂z/∂γ = z/γ``, ``∂z_ap/∂m = −γ([1 + m > s](s − Δ_p) + α_p)``,
    ``∂z_an/∂m = γ([s + m > 0](s − Δ_n) − α_n)``.  With ``detach_weights=True`` the weights
    α are held fixed in the similarity (``∂z_ap/∂s = −γα_p``, ``∂z_an/∂s = γα_n``: the
    gradient of PML and of the authors' code, which stop it there); the value is the same.

    PML's default ``AvgNonZeroReducer`` is ``jaxloss.reduce.mean(losses, where=losses > 0)``;
    a plain mean is its ``MeanReducer``.

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside).
      labels: integer ``[N]``.
      axis: static; the feature axis D of ``embeddings``: -1 (default) or 0 for ``[D, N]``.
      margin: ``m >= 0``, the relaxation (PML's ``m``, default 0.4; differentiated).
      gamma: ``γ > 0``, the scale (default 80, PML's; differentiated).
      detach_weights: static; hold α fixed in the derivative with respect to the similarities,
        as PML does (then ``check_gradients`` against finite differences does not apply).
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean ``[N]``; masked examples leave the batch (loss 0, gradient 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
      >>> jaxloss.circle_loss(x, jnp.array([0, 0, 0, 1]), gamma=1.0)
      Array([0.8972008 , 0.9029231 , 0.92534757, 0.        ], dtype=float32)

    References:
      Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity Optimization", CVPR
      2020 (Eq. 4, 6).  pytorch-metric-learning ``losses.CircleLoss`` (the same losses; its
      gradient is ``detach_weights=True``'s).  Differs from PML: one loss per anchor and ``where``.
    """
    b = _batch(embeddings, labels, where, "cosine", precision)
    _, _, _, (shift_p, log_p), (shift_n, log_n) = _circle_parts(b, margin, gamma, detach_weights)
    total = jax.nn.softplus((shift_p + log_p) + (shift_n + log_n))
    return jnp.where(b.has_pos & b.has_neg, total, 0.0)


# ------------------------------------------------------------------ lifted_structure_loss


def _check_lifted(embeddings, labels, neg_margin, pos_margin, distance, precision, where):
    check_labelled_batch(embeddings, labels, where, distance, precision, neg_margin=neg_margin, pos_margin=pos_margin)


def _lifted_parts(b, neg_margin, pos_margin):
    """The exponents ``−sign·m`` of the positives and ``sign·m`` of the negatives (one ``[N, N]``
    matrix), the two log-sums, and the bracket: the log-sums plus the margins, taken out of the
    sums (``log Σ e^{z + c} = c + log Σ e^z``) so that it is exactly linear in them; a missing
    negative term is 0."""
    z = b.sign * jnp.where(b.pos, -b.m, b.m)
    (shift_p, log_p), (shift_n, log_n) = _logsumexp(z, b.pos), _logsumexp(z, b.neg)
    negative = jnp.where(b.has_neg, (shift_n + log_n) - b.sign * neg_margin, 0.0)
    return z, (shift_p, log_p), (shift_n, log_n), (shift_p + log_p) + b.sign * pos_margin + negative


def _lifted_tangent(p, t, out, res):
    b = _batch(p.embeddings, p.labels, p.where, p.distance, p.precision)
    z, (shift_p, log_p), (shift_n, log_n), total = _lifted_parts(b, p.neg_margin, p.pos_margin)
    active = jnp.where(b.has_pos & (total > 0), 1.0, 0.0)[:, None]
    w_pos, w_neg = active * _softmax(z, b.pos, shift_p, log_p), active * _softmax(z, b.neg, shift_n, log_n)
    return tangent_sum(
        (1.0, _matrix_tangent(b, t.embeddings, b.sign * (w_neg - w_pos), p.precision)),
        (b.sign * active[:, 0], t.pos_margin),  # the softmax weights sum to 1: exactly linear in the margins
        (-b.sign * jnp.where(b.has_neg, active[:, 0], 0.0), t.neg_margin),
    )


@hand_derivative(_lifted_tangent, check=_check_lifted, static=_STATIC, class_axis=("embeddings",))
def lifted_structure_loss(embeddings: Array, labels: Array, *, axis: int = -1, neg_margin: ArrayLike = 1.0,
                          pos_margin: ArrayLike = 0.0, distance: Distance = "euclidean", precision: Precision = None,
                          where: Array | None = None) -> jax.Array:
    r"""Generalized lifted structure loss per anchor (Hermans et al.'s form of Oh Song et al.'s).

    With the distances :math:`d` (``distance="cosine"``: read :math:`-s` for :math:`d` and
    the margins negated), the margins :math:`m_p` (``pos_margin``) and :math:`m_n`
    (``neg_margin``):

    .. math:: \ell_a = \Bigl[\log\sum_{p \in P_a} e^{d_{ap} - m_p}
              + \log\sum_{n \in N_a} e^{m_n - d_{an}}\Bigr]_+,

    each log-sum as ``shift + log Σ e^{z − shift}``; 0 for an anchor without a positive, and
    (as PML) the negative term 0 for an anchor without a negative.

    Derivatives (hand rule): where the bracket is positive, ``∂ℓ_a/∂d_ap = softmax_p(d_ap −
    m_p)`` and ``∂ℓ_a/∂d_an = −softmax_n(m_n − d_an)``, ``∂ℓ_a/∂m_p = −1``,
    ``∂ℓ_a/∂m_n = 1`` (with a negative); 0 where it is not (0 at the corner, as
    ``jax.nn.relu``).

    A plain mean of the losses is PML's default ``MeanReducer``.

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside).
      labels: integer ``[N]``.
      axis: static; the feature axis D of ``embeddings``: -1 (default) or 0 for ``[D, N]``.
      neg_margin, pos_margin: :math:`m_n`, :math:`m_p` (floats or scalar arrays; differentiated);
        PML's defaults 1 and 0.
      distance: static; ``"euclidean"`` (default: PML's default ``LpDistance()``, on the
        normalised embeddings) or ``"cosine"`` (PML's ``CosineSimilarity``).
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean ``[N]``; masked examples leave the batch (loss 0, gradient 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
      >>> jaxloss.lifted_structure_loss(x, jnp.array([0, 0, 0, 1]))
      Array([0.4396218 , 0.46046227, 0.6115064 , 0.        ], dtype=float32)

    References:
      Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person Re-Identification",
      2017 (p. 4); Oh Song, Xiang, Jegelka & Savarese, "Deep Metric Learning via Lifted
      Structured Feature Embedding", CVPR 2016.  pytorch-metric-learning
      ``losses.GeneralizedLiftedStructureLoss``.  Differs from PML: 0 for an anchor without a
      positive (PML keeps its negative term); one loss per anchor and ``where``.
    """
    b = _batch(embeddings, labels, where, distance, precision)
    *_, total = _lifted_parts(b, neg_margin, pos_margin)
    return jnp.where(b.has_pos, jax.nn.relu(total), 0.0)


# ------------------------------------------------------------------ npair_loss


def _check_npair(embeddings, labels, distance, precision, where):
    check_labelled_batch(embeddings, labels, where, distance, precision)


def _npair_parts(b):
    """The N pairs: each label's first example (with a positive) is an anchor, paired with its
    first positive; the anchors' logits ``z`` against every pair's positive (the columns), their
    log-sum and the own positive's logit."""
    n = b.m.shape[0]
    index = jnp.arange(n)
    first = ~jnp.any(b.pos & (index[None, :] < index[:, None]), axis=-1)
    selected = first & b.has_pos
    partner = jnp.argmax(b.pos, axis=-1)
    columns = jnp.any(selected[:, None] & (partner[:, None] == index[None, :]), axis=0)
    keep = selected[:, None] & columns[None, :]
    z = b.sign * b.m
    own = jnp.take_along_axis(z, partner[:, None], axis=-1)[:, 0]
    return z, keep, partner, selected, _logsumexp(z, keep), own


def _npair_tangent(p, t, out, res):
    b = _batch(p.embeddings, p.labels, p.where, p.distance, p.precision)
    z, keep, partner, selected, (shift, log_sum), _ = _npair_parts(b)
    own = partner[:, None] == jnp.arange(z.shape[0])[None, :]
    g = jnp.where(selected[:, None], _softmax(z, keep, shift, log_sum) - jnp.where(own, 1.0, 0.0), 0.0)
    return _matrix_tangent(b, t.embeddings, b.sign * g, p.precision)


@hand_derivative(_npair_tangent, check=_check_npair, static=_STATIC, class_axis=("embeddings",))
def npair_loss(embeddings: Array, labels: Array, *, axis: int = -1, distance: Distance = "cosine",
               precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""N-pair loss (Sohn 2016) on the pairs of a labelled batch, as pytorch-metric-learning
    forms them: one loss per anchor of a pair, 0 for every other example.

    For each label with at least two (unmasked) examples, its first example :math:`a_k` is an
    anchor and its second :math:`p_k` the anchor's positive; the positives of the other pairs
    are its negatives.  With similarities :math:`s` (``distance="euclidean"``: :math:`-d`):

    .. math:: \ell_{a_k} = \log\sum_{l} e^{s_{a_k p_l}} - s_{a_k p_k}
              = \log\Bigl(1 + \sum_{l \ne k} e^{s_{a_k p_l} - s_{a_k p_k}}\Bigr),

    computed as ``(max_l s_{a_k p_l} − s_{a_k p_k}) + log Σ_l e^{s_{a_k p_l} − max}``.

    Derivatives (hand rule): ``∂ℓ_{a_k}/∂s_{a_k p_l} = softmax_l − [l = k]``; the pairing is
    piecewise constant (it changes only with the labels and the mask).

    PML's ``MeanReducer`` averages over the pairs' anchors only: ``jaxloss.reduce.sum(losses)``
    divided by the number of labels with two examples or more.

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside, as PML's default
        ``DotProductSimilarity()`` does).
      labels: integer ``[N]``.
      axis: static; the feature axis D of ``embeddings``: -1 (default) or 0 for ``[D, N]``.
      distance: static; ``"cosine"`` (default) or ``"euclidean"`` (on the normalised embeddings).
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean ``[N]``; masked examples leave the batch (loss 0, gradient 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``: nonzero only at the anchors of the pairs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
      >>> jaxloss.npair_loss(x, jnp.array([0, 0, 1, 1]))
      Array([0.31459886, 0.        , 1.1546012 , 0.        ], dtype=float32)

    References:
      Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective", NeurIPS
      2016.  pytorch-metric-learning ``losses.NPairsLoss`` (the same pairs and losses).
      Differs from Sohn: the embeddings are normalised (PML's default) and there is no L2
      penalty on them; differs from PML: one loss per example and ``where``.
    """
    b = _batch(embeddings, labels, where, distance, precision)
    _, _, _, selected, (shift, log_sum), own = _npair_parts(b)
    return jnp.where(selected, (shift - own) + log_sum, 0.0)
