"""Learning-to-rank losses: one loss per list of scored items.

Every loss takes ``scores [..., L]`` (a model's score of each of a list's ``L`` items),
graded relevance ``labels [..., L]`` (float, higher is more relevant) and returns one loss per
list, ``[...]``.  Ragged lists are padded and masked: ``where`` of the scores' shape
``[..., L]`` leaves masked items out of the list (they take no part in any softmax, pair or
mean, and get derivative exactly 0 even where they hold inf or NaN); a ``where`` of the
lists' shape ``[...]`` masks whole lists.  A list with every item masked has loss 0 and
derivative 0.  ``weights [..., L]`` (optional, float, differentiated) weigh the items as
rax does.

The losses are rax's (``rax.softmax_loss``, ``rax.pairwise_logistic_loss``...), per list:
rax reduces the batch itself (``reduce_fn=jnp.mean`` by default), jaxloss leaves that to
:mod:`jaxloss.reduce`; each docstring says how to get rax's number.  Every function supports
``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and forward-over-reverse
Hessian-vector products; its derivative comes from the hand-derived rule above it, and
``fn.reference`` is plain autodiff of the formula.  Labels enter the pairwise and pointwise
comparisons and ListMLE's order only through comparisons, which are piecewise constant: their
derivative there is 0.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxloss import _lists, _math
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss.types import Array

LambdaWeights = Literal["ndcg", "dcg", "label_diff"]


def _mean(total, count):
    """``total / count``, 0 where the count is 0 (a list without valid items or pairs)."""
    return total / jnp.maximum(count, 1)


def _shifted_logsumexp(x, valid, axis=-1):
    """``(top, log S)`` with ``logsumexp(x[valid]) = top + log S`` over ``axis`` (kept): both 0
    where nothing is valid, so that the masked formula stays finite."""
    top = jnp.max(jnp.where(valid, x, -jnp.inf), axis=axis, keepdims=True)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    total = jnp.sum(jnp.where(valid, jnp.exp(jnp.where(valid, x, top) - top), 0.0), axis=axis, keepdims=True)
    return top, jnp.log(jnp.where(total > 0, total, 1.0))


# ------------------------------------------------------------------ ranking_softmax_loss


def _softmax_check(scores, labels, lambda_weights=None, topn=None, **options):
    if lambda_weights == "label_diff":
        raise ValueError('lambda_weights="label_diff" is pairwise-only (it weighs pairs of items and has no '
                         'per-item form): ranking_softmax_loss takes "ndcg", "dcg" or None.')
    if topn is not None and lambda_weights != "ndcg":
        raise ValueError('topn cuts the ideal DCG of lambda_weights="ndcg" in ranking_softmax_loss, got '
                         f'lambda_weights={lambda_weights!r}.')
    _lists.check(scores, labels, lambda_weights=lambda_weights, topn=topn, **options)


def _softmax_gains(p, m, s, y):
    """``(u, du)``: the labels, or their per-item lambda weights, and the tangent map ``dy ↦ du``."""
    if p.lambda_weights is None:
        return y, lambda dy: dy
    return _lists.item_weights(p.lambda_weights, p.topn, m, s, y)


def _softmax_tangent(p, t, out, res):
    m, s, y, w = _lists.inputs(p)
    top, log_s = res
    u, du = _softmax_gains(p, m, s, y)
    gain = _lists.weighted(u, w)
    minus_log_p = jnp.where(m, (top - s) + log_s, 0.0)
    prob = jnp.where(m, jnp.exp(s - top - log_s), 0.0)
    ds, dy, dw = (_lists.masked(m, t[n]) for n in ("scores", "labels", "weights"))
    dscore = prob * jnp.sum(gain, axis=-1, keepdims=True) - gain
    terms = tangent_sum((dscore, ds), (_lists.weighted(minus_log_p, w), du(dy)), (u * minus_log_p, dw))
    return None if terms is None else jnp.sum(terms, axis=-1)


@hand_derivative(_softmax_tangent, check=_softmax_check, residuals=True, where_of="inputs",
                 static=("lambda_weights", "topn"))
def ranking_softmax_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                         lambda_weights: Literal["ndcg", "dcg"] | None = None, topn: int | None = None,
                         where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""Softmax (ListNet) ranking loss: the cross-entropy of the labels against the softmax of the scores.

    With ``p = softmax(s)`` over the list's valid items and gains ``g_i = w_i y_i``:

    .. math:: \ell = -\sum_i g_i \log p_i = \sum_i g_i \,(\operatorname{logsumexp}(s) - s_i)

    The labels are not normalised (rax's default ``label_fn``).  Derivatives (hand rule):
    ``∂ℓ/∂s_i = p_i Σ_j g_j − g_i``, ``∂ℓ/∂y_i = −w_i log p_i``, ``∂ℓ/∂w_i = −y_i log p_i``.
    A list without relevant items has loss 0 and gradient 0.

    With ``lambda_weights`` (TF-Ranking's ``SoftmaxLoss(lambda_weight=...)``) each label is
    replaced by its per-item lambda weight, ``g_i = w_i λ_i`` with ``λ_i = (2^{y_i} − 1) D(r_i)``
    (``"dcg"``) or ``λ_i = (2^{y_i} − 1) D(r_i) / Z`` (``"ndcg"``), ``D(r) = 1/log2(1 + r)`` the
    discount of the rank ``r_i`` of ``s_i`` in the list (ties in list order) and ``Z`` the ideal
    DCG of the labels, ``Σ_k (2^{y_(k)} − 1) D(k)`` over the labels sorted in decreasing order
    (``k ≤ topn``; 1 where it is 0).  The ranks are piecewise constant in the scores, so ``λ`` is
    a constant of the score derivative (``∂ℓ/∂s_i = p_i Σ_j g_j − g_i`` still); the labels and
    weights get their true derivative through it: ``∂ℓ/∂y_i = ln 2 · 2^{y_i} (−w_i D(r_i) log p_i
    − ℓ D(ρ_i)) / Z`` with ``ρ_i`` the ideal rank of item ``i`` (``D(ρ_i) = 0`` past ``topn``,
    ``Z = 1`` and no ``ℓ`` term for ``"dcg"``), ``∂ℓ/∂w_i = −λ_i log p_i``.

    Args:
      scores: float ``[..., L]``.
      labels: float ``[..., L]`` graded relevance (broadcasting to ``scores``), differentiated;
        non-negative with ``lambda_weights``.
      weights: optional float ``[..., L]`` item weights (broadcasting to ``scores``), multiplying the
        labels (or their lambda weights; the ideal DCG is the labels' alone, as in TF-Ranking).
      lambda_weights: static, None (default), ``"ndcg"`` (TF-Ranking's ``NDCGLambdaWeight``) or
        ``"dcg"`` (its ``DCGLambdaWeight`` with the gains ``2^y − 1`` and discounts
        ``1/log2(1 + r)`` of ``"ndcg"``).  ``"label_diff"`` weighs pairs and has no per-item
        form: it is pairwise-only and raises a ValueError here.
      topn: static int or None, with ``"ndcg"`` only: the ideal DCG is cut at ``topn`` (NDCG@topn's
        normaliser); the items' own discounts are not cut (an item ranked past ``topn`` keeps
        its weight, so a relevant item there is still pulled up), as in TF-Ranking.
      where: optional boolean mask: ``[..., L]`` masks items, ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``), float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.ranking_softmax_loss(jnp.array([0.0, 3.0, 1.0, 2.0]), jnp.array([0.0, 0.0, 1.0, 1.0]))
      Array(3.8803797, dtype=float32)
      >>> jaxloss.ranking_softmax_loss(jnp.array([0.0, 3.0, 1.0, 2.0]), jnp.array([0.0, 0.0, 1.0, 1.0]),
      ...                              lambda_weights="ndcg")
      Array(1.3052392, dtype=float32)

    References:
      Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach" (ListNet),
      ICML 2007; Bruch et al., "An Analysis of the Softmax Cross Entropy Loss for
      Learning-to-Rank", SIGIR 2019; Wang et al., "The LambdaLoss Framework for Ranking Metric
      Optimization", CIKM 2018 (the lambda weights).  ``optax.losses.ranking_softmax_loss`` and
      ``rax.softmax_loss`` with ``reduce_fn=None``; with ``lambda_weights``, TF-Ranking's
      ``SoftmaxLoss`` (rax's has none).  Differs from them: one loss per list; optax's and rax's
      default mean is ``jaxloss.reduce.mean(losses, where=jnp.any(where, -1))``; TF-Ranking
      returns ``ℓ / Σ_i g_i`` with list weight ``Σ_i g_i`` (the product is ``ℓ``) and stops
      every gradient but the scores'.
    """
    p = Args(locals())
    m, s, y, w = _lists.inputs(p)
    u, _ = _softmax_gains(p, m, s, y)
    top, log_s = _shifted_logsumexp(s, m)
    minus_log_p = jnp.where(m, (top - s) + log_s, 0.0)
    return jnp.sum(_lists.weighted(u, w) * minus_log_p, axis=-1), (top, log_s)


# ------------------------------------------------------------------ pairwise losses


def _pairs(p):
    """``(m, w, d, valid, count, lam)``: the item mask and weights, the score differences
    ``d_ij = s_i − s_j`` ``[..., L, L]``, the valid pairs (``y_i > y_j``, both items valid),
    their number per list, and the lambda weights with their tangent (None without them)."""
    m, s, y, w = _lists.inputs(p)
    valid = (_lists.pairs(y) > 0) & m[..., :, None] & m[..., None, :]
    lam = None if p.lambda_weights is None else _lists.lambda_weights(p.lambda_weights, p.topn, m, s, y, w)
    return m, w, _lists.pairs(s), valid, jnp.sum(valid, axis=(-2, -1)), lam


def _by_row(x, w):
    """``x_ij · w_i``: a pair's term weighted by its more relevant item's weight."""
    return x if w is None else x * w[..., :, None]


def _pairwise_forward(p, pair_loss):
    m, w, d, valid, count, lam = _pairs(p)
    losses = _by_row(pair_loss(d), w) * (1.0 if lam is None else lam[0])
    return _mean(jnp.sum(jnp.where(valid, losses, 0.0), axis=(-2, -1)), count)


def _pairwise_tangent(pair_loss, slope):
    """The rule of a pairwise loss ``(1/n) Σ_{valid ij} w_i λ_ij f(s_i − s_j)``:
    ``∂ℓ/∂s_k = (1/n)(Σ_j w_k λ_kj f'(d_kj) − Σ_i w_i λ_ik f'(d_ik))`` over valid pairs,
    ``∂ℓ/∂w_i = (1/n) Σ_j λ_ij f(d_ij)`` and the lambda weights' own tangent ``dλ``."""

    def tangent(p, t, out, res):
        m, w, d, valid, count, lam = _pairs(p)
        n = jnp.maximum(count, 1)[..., None]
        weight = 1.0 if lam is None else lam[0]
        g = jnp.where(valid, _by_row(slope(d), w) * weight, 0.0) / n[..., None]
        dscore = jnp.sum(g, axis=-1) - jnp.sum(g, axis=-2)
        dweight = jnp.sum(jnp.where(valid, pair_loss(d) * weight, 0.0), axis=-1) / n
        terms = tangent_sum((dscore, _lists.masked(m, t.scores)), (dweight, _lists.masked(m, t.weights)))
        dlam = None if lam is None else lam[1](_lists.masked(m, t.labels), _lists.masked(m, t.weights))
        if dlam is not None:
            pair_terms = jnp.where(valid, _by_row(pair_loss(d), w) * dlam, 0.0) / n[..., None]
            terms = jnp.sum(pair_terms, axis=-1) if terms is None else terms + jnp.sum(pair_terms, axis=-1)
        return None if terms is None else jnp.sum(terms, axis=-1)

    return tangent


def _logistic(d):
    return _math.softplus_pair(d)[1]


def _logistic_slope(d):
    return -jax.nn.sigmoid(-d)


def _hinge(d):
    return jnp.maximum(1.0 - d, 0.0)


def _hinge_slope(d):
    return -(d < 1.0).astype(d.dtype)


def _soft_zero_one(d):
    return jax.nn.sigmoid(-d)


def _soft_zero_one_slope(d):
    return -jax.nn.sigmoid(d) * jax.nn.sigmoid(-d)


_PAIRWISE_ARGS = """Args:
      scores: float ``[..., L]``.
      labels: float ``[..., L]`` graded relevance (broadcasting to ``scores``); a pair ``(i, j)``
        counts where ``y_i > y_j`` (a comparison: derivative only through the lambda weights).
      weights: optional float ``[..., L]`` item weights (broadcasting to ``scores``): a pair's
        loss is multiplied by the weight of its more relevant item ``i``.
      lambda_weights: static, None (default), ``"ndcg"``, ``"dcg"`` or ``"label_diff"``: each
        pair's loss is multiplied by ``λ_ij`` (LambdaRank).  ``"dcg"``: ``λ_ij = L |G_i − G_j|
        |D(r_i) − D(r_j)|`` with gains ``G = (2^y − 1) w``, discounts ``D(r) = 1/log2(1 + r)``
        of the ranks ``r`` of the scores (``D = 0`` past ``topn``) and ``L`` the (padded) list
        length; ``"ndcg"``: that over the list's ideal DCG (LambdaRank's ``|ΔNDCG|``, 1 where
        the ideal DCG is 0); ``"label_diff"``: ``|y_i − y_j|``.  The ranks are piecewise
        constant in the scores, so ``λ`` is a constant of the score derivative (as in
        LambdaRank and rax); labels and weights get their true derivative through it (as
        rax's autodiff does).  The mean over the pairs keeps its count ``n``.
      topn: static int or None: with ``"ndcg"`` and ``"dcg"``, only ranks ``≤ topn`` are
        discounted (the ideal DCG is cut there too).
      where: optional boolean mask: ``[..., L]`` masks items (and their pairs), ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``): the mean over each list's valid pairs (0 for a
      list without any), float32 for lower-precision inputs."""


def _pairwise_doc(forward):
    """The forward with the pairwise losses' shared Args and Returns in its docstring."""
    forward.__doc__ = forward.__doc__.replace("{args}", _PAIRWISE_ARGS)
    return forward


@hand_derivative(_pairwise_tangent(_logistic, _logistic_slope), check=_lists.check, where_of="inputs",
                 static=("lambda_weights", "topn"))
@_pairwise_doc
def pairwise_logistic_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                           lambda_weights: LambdaWeights | None = None, topn: int | None = None,
                           where: Array | None = None) -> jax.Array:
    r"""Pairwise logistic (RankNet) loss: the mean over the list's pairs ``y_i > y_j`` of ``log(1 + e^{-(s_i - s_j)})``.

    .. math:: \ell = \frac1n \sum_{y_i > y_j} w_i \log\bigl(1 + e^{-(s_i - s_j)}\bigr),
       \qquad n = |\{(i, j): y_i > y_j\}|

    Derivatives (hand rule): with ``f'(d) = −σ(−d)``, ``∂ℓ/∂s_k = (1/n)(Σ_j w_k f'(s_k − s_j)
    − Σ_i w_i f'(s_i − s_k))`` over the valid pairs, ``∂ℓ/∂w_i = (1/n) Σ_j log(1 + e^{−(s_i − s_j)})``.

    {args}

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.pairwise_logistic_loss(jnp.array([0.0, 3.0, 1.0]), jnp.array([2.0, 0.0, 1.0]))
      Array(2.1629257, dtype=float32)

    References:
      Burges et al., "Learning to Rank using Gradient Descent" (RankNet), ICML 2005.
      ``rax.pairwise_logistic_loss``.  Differs from it: one loss per list, the mean over its
      pairs; rax's default mean over every valid pair of the batch is
      ``jaxloss.reduce.mean(losses, weights=n)`` with ``n`` each list's number of valid pairs,
      its ``reduce_fn=jnp.sum`` is ``jaxloss.reduce.sum(losses * n)``.
    """
    return _pairwise_forward(Args(locals()), _logistic)


@hand_derivative(_pairwise_tangent(_hinge, _hinge_slope), check=_lists.check, where_of="inputs",
                 static=("lambda_weights", "topn"))
@_pairwise_doc
def pairwise_hinge_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                        lambda_weights: LambdaWeights | None = None, topn: int | None = None,
                        where: Array | None = None) -> jax.Array:
    r"""Pairwise hinge loss: the mean over the list's pairs ``y_i > y_j`` of ``max(0, 1 − (s_i − s_j))``.

    .. math:: \ell = \frac1n \sum_{y_i > y_j} w_i \max\bigl(0,\ 1 - (s_i - s_j)\bigr)

    Derivatives (hand rule): ``f'(d) = −1[d < 1]`` in the pairwise rule of
    :func:`pairwise_logistic_loss`; at the kink ``d = 1`` the rule returns the subgradient 0
    (as autodiff of ``relu`` does).  ``∂ℓ/∂w_i = (1/n) Σ_j max(0, 1 − d_ij)``.

    {args}

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.pairwise_hinge_loss(jnp.array([0.0, 3.0, 1.0]), jnp.array([2.0, 0.0, 1.0]))
      Array(3., dtype=float32)

    References:
      Herbrich et al., "Large Margin Rank Boundaries for Ordinal Regression", 2000 (RankSVM).
      ``rax.pairwise_hinge_loss``.  Differs from it as :func:`pairwise_logistic_loss` says.
    """
    return _pairwise_forward(Args(locals()), _hinge)


@hand_derivative(_pairwise_tangent(_soft_zero_one, _soft_zero_one_slope), check=_lists.check, where_of="inputs",
                 static=("lambda_weights", "topn"))
@_pairwise_doc
def pairwise_soft_zero_one_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                                lambda_weights: LambdaWeights | None = None, topn: int | None = None,
                                where: Array | None = None) -> jax.Array:
    r"""Pairwise soft 0-1 loss: the mean over the list's pairs ``y_i > y_j`` of ``σ(−(s_i − s_j))``.

    .. math:: \ell = \frac1n \sum_{y_i > y_j} w_i\, \sigma\bigl(-(s_i - s_j)\bigr)

    A smooth count of the misordered pairs.  Derivatives (hand rule): ``f'(d) = −σ(d)σ(−d)``
    in the pairwise rule of :func:`pairwise_logistic_loss`; ``∂ℓ/∂w_i = (1/n) Σ_j σ(−d_ij)``.

    {args}

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.pairwise_soft_zero_one_loss(jnp.array([0.0, 3.0, 1.0]), jnp.array([2.0, 0.0, 1.0]))
      Array(0.85480994, dtype=float32)

    References:
      Yuan et al., "Large-Scale Ranking with Soft 0-1 Loss", 2012 (as in TF-Ranking).
      ``rax.pairwise_soft_zero_one_loss``.  Differs from it as :func:`pairwise_logistic_loss` says.
    """
    return _pairwise_forward(Args(locals()), _soft_zero_one)




# ------------------------------------------------------------------ pointwise losses


def _pointwise_forward(p, item_loss):
    m, s, y, w = _lists.inputs(p)
    losses = jnp.where(m, _lists.weighted(item_loss(s, y), w), 0.0)
    return _mean(jnp.sum(losses, axis=-1), jnp.sum(m, axis=-1))


def _pointwise_tangent(item_loss, partials):
    """The rule of ``(1/n) Σ_{valid i} w_i g(s_i, y_i)`` given ``partials(s, y) = (∂g/∂s, ∂g/∂y)``."""

    def tangent(p, t, out, res):
        m, s, y, w = _lists.inputs(p)
        n = jnp.maximum(jnp.sum(m, axis=-1, keepdims=True), 1)
        dg_ds, dg_dy = partials(s, y)
        terms = tangent_sum((_lists.weighted(dg_ds, w), _lists.masked(m, t.scores)),
                            (_lists.weighted(dg_dy, w), _lists.masked(m, t.labels)),
                            (item_loss(s, y), _lists.masked(m, t.weights)))
        return None if terms is None else jnp.sum(jnp.where(m, terms, 0.0) / n, axis=-1)

    return tangent


def _sigmoid_item(s, y):
    positive, negative = _math.softplus_pair(s)
    y = jnp.clip(y, 0.0, 1.0)
    return y * negative + (1.0 - y) * positive


def _sigmoid_partials(s, y):
    inside = (y >= 0.0) & (y <= 1.0)
    return jax.nn.sigmoid(s) - jnp.clip(y, 0.0, 1.0), jnp.where(inside, -s, 0.0)


@hand_derivative(_pointwise_tangent(_sigmoid_item, _sigmoid_partials), check=_lists.check, where_of="inputs")
def pointwise_sigmoid_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                           where: Array | None = None) -> jax.Array:
    r"""Pointwise sigmoid cross-entropy: each item's score against its label clipped to [0, 1], averaged over the list.

    With ``ŷ = clip(y, 0, 1)``:

    .. math:: \ell = \frac1n \sum_i w_i \bigl(ŷ_i \operatorname{softplus}(-s_i)
       + (1 - ŷ_i) \operatorname{softplus}(s_i)\bigr)

    over the ``n`` valid items.  Derivatives (hand rule): ``∂ℓ/∂s_i = w_i (σ(s_i) − ŷ_i)/n``,
    ``∂ℓ/∂y_i = −w_i s_i/n`` for ``0 ≤ y_i ≤ 1`` (the derivative from inside at the ends,
    where autodiff of ``clip`` gives half of it) and 0 outside, ``∂ℓ/∂w_i`` the item's loss ``/n``.

    Args:
      scores: float ``[..., L]`` logits.
      labels: float ``[..., L]`` relevance (broadcasting to ``scores``), clipped to [0, 1].
      weights: optional float ``[..., L]`` item weights (broadcasting to ``scores``).
      where: optional boolean mask: ``[..., L]`` masks items, ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``): the mean over each list's valid items (0 for
      a list without any), float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.pointwise_sigmoid_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]))
      Array(0.22009484, dtype=float32)

    References:
      ``rax.pointwise_sigmoid_loss``.  Differs from it: one loss per list, the mean over its
      items; rax's default mean over every valid item of the batch is
      ``jaxloss.reduce.mean(losses, weights=n)`` with ``n`` each list's number of valid items.
    """
    return _pointwise_forward(Args(locals()), _sigmoid_item)


def _squared_item(s, y):
    return jnp.square(s - y)


def _squared_partials(s, y):
    return 2.0 * (s - y), -2.0 * (s - y)


@hand_derivative(_pointwise_tangent(_squared_item, _squared_partials), check=_lists.check, where_of="inputs")
def pointwise_mse_loss(scores: Array, labels: Array, *, weights: Array | None = None,
                       where: Array | None = None) -> jax.Array:
    r"""Pointwise squared error between each item's score and its label, averaged over the list.

    .. math:: \ell = \frac1n \sum_i w_i (s_i - y_i)^2

    over the ``n`` valid items.  Derivatives (hand rule): ``∂ℓ/∂s_i = 2 w_i (s_i − y_i)/n =
    −∂ℓ/∂y_i``, ``∂ℓ/∂w_i = (s_i − y_i)²/n``.

    Args:
      scores: float ``[..., L]``.
      labels: float ``[..., L]`` relevance (broadcasting to ``scores``).
      weights: optional float ``[..., L]`` item weights (broadcasting to ``scores``).
      where: optional boolean mask: ``[..., L]`` masks items, ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``): the mean over each list's valid items (0 for
      a list without any), float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.pointwise_mse_loss(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]))
      Array(1., dtype=float32)

    References:
      ``rax.pointwise_mse_loss``.  Differs from it as :func:`pointwise_sigmoid_loss` says.
    """
    return _pointwise_forward(Args(locals()), _squared_item)


# ------------------------------------------------------------------ listmle_loss


def _plackett_luce(p):
    """``(m, order, valid, x, sorted_mask)``: the items in decreasing label order (valid items
    first, ties in list order), the pairs ``valid[k, j]`` of a position and the valid ones
    from it on, and the sorted scores ``x`` and mask."""
    m, s, y, _ = _lists.inputs(p)
    order = jnp.lexsort((-y, ~m), axis=-1)
    x, sorted_mask = jnp.take_along_axis(s, order, axis=-1), jnp.take_along_axis(m, order, axis=-1)
    later = jnp.triu(jnp.ones(s.shape[-1:] * 2, bool))
    return m, order, later & sorted_mask[..., None, :], x, sorted_mask


def _listmle_tangent(p, t, out, res):
    m, order, valid, x, sorted_mask = _plackett_luce(p)
    if t.scores is None:
        return None
    top, log_s = res
    dx = jnp.take_along_axis(_lists.masked(m, jnp.broadcast_to(t.scores, m.shape)), order, axis=-1)
    prob = jnp.where(valid, jnp.exp(x[..., None, :] - top - log_s), 0.0)
    return jnp.sum(jnp.where(sorted_mask, jnp.sum(prob * dx[..., None, :], axis=-1) - dx, 0.0), axis=-1)


@hand_derivative(_listmle_tangent, check=_lists.check, residuals=True, where_of="inputs")
def listmle_loss(scores: Array, labels: Array, *,
                 where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""ListMLE: the negative log-likelihood of the labels' order under the Plackett-Luce model of the scores.

    With the items sorted by decreasing label (``π(1)`` the most relevant; ties keep their
    order in the list):

    .. math:: \ell = \sum_k \bigl(\operatorname{logsumexp}_{j \ge k} s_{π(j)} - s_{π(k)}\bigr)

    Derivatives (hand rule): with ``p_{kj} = softmax_{j ≥ k}(s_π)_j``, the probability of
    ``π(j)`` among the items from position ``k`` on, ``∂ℓ/∂s_{π(j)} = Σ_{k ≤ j} p_{kj} − 1``.
    The labels only order the items: no derivative.

    Args:
      scores: float ``[..., L]``.
      labels: float ``[..., L]`` relevance (broadcasting to ``scores``), which orders the items.
      where: optional boolean mask: ``[..., L]`` masks items (left out of the order), ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``), float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.listmle_loss(jnp.array([0.0, 3.0, 1.0]), jnp.array([2.0, 0.0, 1.0]))
      Array(5.296774, dtype=float32)

    References:
      Xia et al., "Listwise Approach to Learning to Rank: Theory and Algorithm", ICML 2008.
      ``rax.listmle_loss`` with ``reduce_fn=None`` and ``key=None`` (rax breaks ties by the
      sort, or randomly with a key).  Differs from it: one loss per list; rax's default mean
      is ``jaxloss.reduce.mean(losses, where=jnp.any(where, -1))``.
    """
    m, order, valid, x, sorted_mask = _plackett_luce(Args(locals()))
    top, log_s = _shifted_logsumexp(x[..., None, :], valid)
    return jnp.sum(jnp.where(sorted_mask, (top[..., 0] - x) + log_s[..., 0], 0.0), axis=-1), (top, log_s)
