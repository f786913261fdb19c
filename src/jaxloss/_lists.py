"""What the learning-to-rank losses share: their checks, item masks, ranks, gains and
discounts, the ideal DCG, the lambda weights of the pairwise losses and the per-item
lambda weights of the softmax loss."""

from __future__ import annotations

import numbers

import jax.numpy as jnp

from jaxloss import _checks
from jaxloss.gradients import tangent_sum

LAMBDA_WEIGHTS = ("ndcg", "dcg", "label_diff")


def check(scores, labels, weights=None, where=None, lambda_weights=None, topn=None, temperature=None, **_):
    _checks.float_array("scores", scores)
    if jnp.ndim(scores) < 1:
        raise ValueError(f"scores must have a list axis [..., L], got shape {jnp.shape(scores)}.")
    _checks.float_array("labels", labels)
    _checks.broadcasts_to("labels", labels, jnp.shape(scores), "scores")
    _checks.float_option("weights", weights, jnp.shape(scores), "scores")
    if lambda_weights is not None and lambda_weights not in LAMBDA_WEIGHTS:
        raise ValueError(f"lambda_weights must be one of {LAMBDA_WEIGHTS} or None, got {lambda_weights!r}.")
    if topn is not None:
        check_topn(topn)
        if lambda_weights not in ("ndcg", "dcg"):
            raise ValueError(f'topn cuts the "ndcg" and "dcg" lambda weights, got lambda_weights={lambda_weights!r}.')
    if temperature is not None:
        _checks.float_option("temperature", temperature, (), "a scalar")
        _checks.positive("temperature", temperature)


def check_topn(topn):
    if topn is not None and (isinstance(topn, bool) or not isinstance(topn, numbers.Integral) or topn < 1):
        raise ValueError(f"topn must be a positive int or None, got {topn!r}.")


def items(scores, where):
    """The item mask ``[..., L]``: a ``where`` of the scores' rank masks items, a shorter one
    (the mechanism has broadcast it to the lists' shape) whole lists."""
    if where is None:
        return jnp.ones(scores.shape, bool)
    return jnp.broadcast_to(where if where.ndim == scores.ndim else where[..., None], scores.shape)


def masked(m, x):
    """``x`` (an input or its tangent, broadcast to the mask) with the masked items set to 0,
    by a select, so that inf/NaN padding cannot leak; None stays None."""
    return None if x is None else jnp.where(m, x, 0)


def inputs(p):
    """``(m, s, y, w)``: the item mask and the masked scores, labels and weights (w None when none)."""
    m = items(p.scores, p.where)
    return m, masked(m, p.scores), masked(m, p.labels), masked(m, p.get("weights"))


def weighted(x, w):
    return x if w is None else x * w


def pairs(x):
    """``x_i − x_j`` ``[..., L, L]``."""
    return x[..., :, None] - x[..., None, :]


def ranks(x, m):
    """1-based ranks by decreasing ``x``, the valid items first, ties in list order (rax's ``utils.ranks``)."""
    return jnp.argsort(jnp.lexsort((-x, ~m), axis=-1), axis=-1) + 1


def discount(r):
    """``1 / log2(1 + r)``, and its derivative."""
    log = jnp.log1p(r)
    return jnp.log(2.0) / log, -jnp.log(2.0) / ((1.0 + r) * log * log)


def gains(y, w):
    """``G = (2^y − 1) w``, ``∂G/∂y`` and ``∂G/∂w``."""
    power = jnp.exp2(y)
    return weighted(power - 1.0, w), weighted(jnp.log(2.0) * power, w), power - 1.0


def ideal_dcg(g, m, topn=None):
    """``(Z, d)``: the DCG of the list sorted by its gains ``g`` (cut at ``topn``), replaced by 1
    where it is 0 (rax's convention), and ``d`` the discounts of that order, ``∂Z/∂g`` (0 where
    Z was 0).  The order is piecewise constant in the gains: Z is linear between ties."""
    d = cut_discounts(ranks(g, m), m, topn, g.dtype)
    z = jnp.sum(g * d, axis=-1, keepdims=True)
    return jnp.where(z == 0, 1.0, z), jnp.where(z == 0, 0.0, d)


def cut_discounts(r, m, topn, dtype):
    """The discounts of the ranks ``r`` in ``dtype``: 0 for masked items and ranks past ``topn``."""
    keep = m if topn is None else m & (r <= topn)
    return jnp.where(keep, discount(r.astype(dtype))[0], 0.0)


def lambda_weights(kind, topn, m, s, y, w):
    """The lambda weights ``λ_ij`` ``[..., L, L]`` of rax's ``dcg_lambdaweight`` (``"dcg"``, with
    ``normalize=True`` for ``"ndcg"``) and ``labeldiff_lambdaweight`` (``"label_diff"``), and
    their tangent ``dλ(dy, dw)`` (None when both are None).  They depend on the scores only
    through their ranks, which are piecewise constant: no derivative in the scores."""
    if kind == "label_diff":
        diff = pairs(y)
        return jnp.abs(diff), lambda dy, dw: None if dy is None else jnp.where(diff >= 0, 1.0, -1.0) * pairs(dy)
    g, dg_dy, dg_dw = gains(y, w)
    d = cut_discounts(ranks(s, m), m, topn, g.dtype)
    both = m[..., :, None] & m[..., None, :]
    scale = jnp.where(both, jnp.abs(pairs(d)), 0.0) * s.shape[-1]
    z, dz_dg = ideal_dcg(g, m, topn) if kind == "ndcg" else (jnp.ones(g.shape[:-1] + (1,), g.dtype), None)
    diff = pairs(g)
    lam = scale * jnp.abs(diff) / z[..., None]

    def tangent(dy, dw):
        dg = tangent_sum((dg_dy, dy), (dg_dw, dw))
        if dg is None:
            return None
        dlam = jnp.where(diff >= 0, 1.0, -1.0) * pairs(dg) / z[..., None]
        if dz_dg is not None:
            dz = jnp.sum(dz_dg * dg, axis=-1, keepdims=True)
            dlam = dlam - jnp.abs(diff) * (dz / z**2)[..., None]
        return scale * dlam

    return lam, tangent


def item_weights(kind, topn, m, s, y):
    """TF-Ranking's per-item ("individual") lambda weights ``λ_i = G_i D(r_i)`` ``[..., L]`` of
    ``DCGLambdaWeight`` (``"dcg"``) and ``NDCGLambdaWeight`` (``"ndcg"``: over the ideal DCG of
    the labels, cut at ``topn``; 1 where it is 0), with gains ``G = 2^y − 1`` of the labels
    alone, discounts ``D`` of the ranks ``r`` of the scores (never cut), 0 for masked items; and
    their tangent ``dλ(dy)`` (None when ``dy`` is None).  The ranks are piecewise constant in the
    scores: no derivative there."""
    g, dg_dy, _ = gains(y, None)
    d = cut_discounts(ranks(s, m), m, None, g.dtype)
    if kind == "dcg":
        return g * d, lambda dy: None if dy is None else d * dg_dy * dy
    z, dz_dg = ideal_dcg(g, m, topn)

    def tangent(dy):
        if dy is None:
            return None
        dg = dg_dy * dy
        return d * (dg - g * jnp.sum(dz_dg * dg, axis=-1, keepdims=True) / z) / z

    return g * d / z, tangent


def pair_mask(m):
    """Pairs of distinct valid items ``[..., L, L]``."""
    eye = jnp.eye(m.shape[-1], dtype=bool)
    return m[..., :, None] & m[..., None, :] & ~eye
