r"""Approximate ranking metrics as losses: NDCG and MRR with the ranks smoothed by a sigmoid.

Qin et al.'s approximation (as ``rax.approx_t12n``) replaces the rank of item ``i`` by

.. math:: r_i = 1 + \sum_{j \ne i} \sigma\bigl((s_j - s_i)/T\bigr)

over the list's valid items, which is differentiable in the scores and the temperature ``T``;
the loss is the negative of the metric computed with these ranks.  Inputs, masks and outputs
are those of :mod:`jaxloss.ranking`: ``scores [..., L]``, graded ``labels [..., L]``, ``where``
masking items (``[..., L]``) or whole lists (``[...]``), one loss per list ``[...]``; a list
with every item masked has loss 0 and derivative 0.  Every function supports ``jit``,
``vmap``, forward and reverse mode and their compositions; its derivative comes from the
hand-derived rule above it, and ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _lists
from jaxloss.gradients import Args, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike


def _approx_ranks(p):
    """``(m, s, y, w, r, slope, x)``: the masked inputs, the approximate ranks ``r [..., L]``,
    and over the pairs of distinct valid items ``σ'(x_ij)`` and ``x_ij = (s_j − s_i)/T``."""
    m, s, y, w = _lists.inputs(p)
    x = -_lists.pairs(s) / p.temperature
    valid = _lists.pair_mask(m)
    step = jax.nn.sigmoid(x)
    r = 1.0 + jnp.sum(jnp.where(valid, step, 0.0), axis=-1)
    return m, s, y, w, r, jnp.where(valid, step * jax.nn.sigmoid(-x), 0.0), x


def _rank_tangent(p, t, m, slope, x):
    """``dr_i = Σ_j σ'(x_ij) dx_ij`` with ``dx_ij = (ds_j − ds_i)/T − x_ij dT/T``, or None."""
    dx = None
    if t.scores is not None:
        ds = _lists.masked(m, jnp.broadcast_to(t.scores, m.shape))
        dx = -_lists.pairs(ds) / p.temperature
    if t.temperature is not None:
        dt = -x * (t.temperature / p.temperature)
        dx = dt if dx is None else dx + dt
    return None if dx is None else jnp.sum(slope * dx, axis=-1)


_ARGS = """scores: float ``[..., L]``.
      labels: float ``[..., L]`` graded relevance (broadcasting to ``scores``).{weights}
      temperature: ``T > 0`` of the sigmoid (float or scalar array; differentiated), rax's
        default 1.{topn}
      where: optional boolean mask: ``[..., L]`` masks items, ``[...]`` whole lists.

    Returns:
      Losses ``[...]`` (``scores.shape[:-1]``), in [−1, 0] for non-negative labels, float32
      for lower-precision inputs."""


def _doc(weights="", topn=""):
    def decorate(forward):
        forward.__doc__ = forward.__doc__.replace("{args}", _ARGS.replace("{weights}", weights).replace("{topn}", topn))
        return forward

    return decorate


# ------------------------------------------------------------------ approx_ndcg_loss


def _cutoff(p, m, r):
    """rax's ``approx_cutoff`` over the valid items: ``(κ, κ', u, pick)`` with ``κ_i = σ(u_i)``,
    ``u_i = (c − r_i)/T``, ``c`` the midpoint of the ``topn``-th and ``(topn+1)``-th smallest
    approximate ranks, ``pick [..., L]`` the weights ``½`` of the two items it is taken from
    (``c = Σ pick·r``), and ``κ' = σ(u)σ(−u)``; ``κ = 1``, ``κ' = 0`` in a list of at most
    ``topn`` valid items.  None without ``topn`` or where no list can be cut."""
    n, size = p.topn, r.shape[-1]
    if n is None or n >= size:
        return None
    order = jnp.argsort(jnp.where(m, r, jnp.inf), axis=-1)
    pick = 0.5 * jnp.sum(jax.nn.one_hot(order[..., n - 1:n + 1], size, dtype=r.dtype), axis=-2)
    u = (jnp.sum(pick * r, axis=-1, keepdims=True) - r) / p.temperature
    cut = jnp.sum(m, axis=-1, keepdims=True) > n
    step = jax.nn.sigmoid(u)
    return jnp.where(cut, step, 1.0), jnp.where(cut, step * jax.nn.sigmoid(-u), 0.0), u, pick


def _ndcg_parts(p):
    m, s, y, w, r, slope, x = _approx_ranks(p)
    g, dg_dy, dg_dw = _lists.gains(y, w)
    z, dz_dg = _lists.ideal_dcg(g, m, p.topn)
    discount, ddiscount = _lists.discount(r)
    return Args(m=m, g=g, dg_dy=dg_dy, dg_dw=dg_dw, z=z[..., 0], dz_dg=dz_dg, discount=discount,
                ddiscount=ddiscount, slope=slope, x=x, cutoff=_cutoff(p, m, r))


def _approx_ndcg_tangent(p, t, out, res):
    q = _ndcg_parts(p)
    m, g, z = q.m, q.g, q.z
    dr = _rank_tangent(p, t, m, q.slope, q.x)
    dg = tangent_sum((q.dg_dy, _lists.masked(m, t.labels)), (q.dg_dw, _lists.masked(m, t.weights)))
    kappa, coef, dout = 1.0, g * q.ddiscount, None
    if q.cutoff is not None:
        kappa, dkappa, u, pick = q.cutoff
        h = jnp.where(m, g * q.discount * dkappa / p.temperature, 0.0)
        coef = coef * kappa - h + pick * jnp.sum(h, axis=-1, keepdims=True)
        if t.temperature is not None:
            dout = jnp.sum(h * u, axis=-1) / z * t.temperature
    if dr is not None:
        drank = -jnp.sum(jnp.where(m, coef * dr, 0.0), axis=-1) / z
        dout = drank if dout is None else dout + drank
    if dg is not None:
        dgain = (jnp.sum(jnp.where(m, -kappa * q.discount * dg, 0.0), axis=-1)
                 - out * jnp.sum(q.dz_dg * dg, axis=-1)) / z
        dout = dgain if dout is None else dout + dgain
    return dout


def _ndcg_check(topn=None, **arguments):
    _lists.check_topn(topn)
    _lists.check(**arguments)


@hand_derivative(_approx_ndcg_tangent, check=_ndcg_check, where_of="inputs", static=("topn",))
@_doc("""
      weights: optional float ``[..., L]`` item weights (broadcasting to ``scores``),
        multiplying the gains (differentiated).""", """
      topn: static int or None: NDCG@topn, with rax's smooth cutoff ``κ_i`` (above) and the
        ideal DCG cut at ``topn``.""")
def approx_ndcg_loss(scores: Array, labels: Array, *, weights: Array | None = None, temperature: ArrayLike = 1.0,
                     topn: int | None = None, where: Array | None = None) -> jax.Array:
    r"""Approximate NDCG loss: minus the NDCG of the list with the sigmoid-smoothed ranks ``r`` (Qin et al.).

    With gains ``G_i = (2^{y_i} − 1) w_i``, discounts ``D(r) = 1/log2(1 + r)`` and ``Z`` the
    ideal DCG (the gains sorted in decreasing order, 1 where it is 0):

    .. math:: \ell = -\frac1Z \sum_i G_i\, κ_i\, D(r_i), \qquad
       r_i = 1 + \sum_{j \ne i} \sigma\bigl((s_j - s_i)/T\bigr)

    ``κ_i = 1`` without ``topn``.  With ``topn = n`` (rax's ``approx_cutoff``), ``κ_i = σ(u_i)``,
    ``u_i = (c − r_i)/T``, where ``c`` is the midpoint of the list's ``n``-th and ``(n+1)``-th
    smallest approximate ranks (``κ = 1`` in a list of at most ``n`` valid items), and the
    ideal DCG counts the top ``n`` gains.

    Derivatives (hand rule): with ``a_i = G_i κ_i D'(r_i)/Z``, ``D'(r) = −ln 2/((1 + r) ln²(1 + r))``
    and ``σ'_ij = σ(x_ij)σ(−x_ij)`` at ``x_ij = (s_j − s_i)/T``, without ``topn``:
    ``∂ℓ/∂s_k = (1/T) Σ_j σ'_kj (a_k − a_j)``, ``∂ℓ/∂T = (1/T) Σ_ij a_i σ'_ij x_ij``.  With
    ``topn``, ``∂ℓ/∂r_i = −a_i + h_i − π_i Σ_j h_j`` in place of ``−a_i`` (``h_i = G_i D(r_i)
    σ'(u_i)/(T Z)``, ``π_i = ½`` for the two items that set ``c``, else 0: the cutoff point's
    true derivative, where rax stops its gradient) and ``∂ℓ/∂T`` gains ``Σ_i h_i u_i``.
    ``∂ℓ/∂G_i = (−κ_i D(r_i) − ℓ D(ρ_i))/Z`` with ``ρ`` the ideal ranks (``D(ρ_i) = 0`` past
    ``topn``; the ideal DCG is piecewise linear in the gains), so ``∂ℓ/∂y_i = ln 2 · 2^{y_i}
    w_i ∂ℓ/∂G_i`` and ``∂ℓ/∂w_i = (2^{y_i} − 1) ∂ℓ/∂G_i``.  A list without relevant items has
    loss 0.

    Args:
      {args}

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.approx_ndcg_loss(jnp.array([-1.0, 1.0, 0.0]), jnp.array([0.0, 0.0, 1.0]))
      Array(-0.63092977, dtype=float32)

    References:
      Qin, Liu and Li, "A general approximation framework for direct optimization of
      information retrieval measures", Information Retrieval 13, 2010.
      ``rax.approx_t12n(rax.ndcg_metric, temperature)`` with ``reduce_fn=None`` (and ``topn``).
      Differs from it: one loss per list (rax's default mean is ``jaxloss.reduce.mean(losses,
      where=jnp.any(where, -1))``); a valid item scored −inf is ranked last rather than left
      out (mask it instead); with ``topn``, the cutoff point's true derivative (rax stops its
      gradient), and the cutoff placed among the valid items only (rax's approximate rank of
      a masked item is 1, which takes a place among its top ``n``; without masked items the
      values are the same).
    """
    q = _ndcg_parts(Args(locals()))
    kappa = 1.0 if q.cutoff is None else q.cutoff[0]
    return -jnp.sum(jnp.where(q.m, q.g * kappa * q.discount, 0.0), axis=-1) / q.z


# ------------------------------------------------------------------ approx_mrr_loss


def _mrr_parts(p):
    m, s, y, w, r, slope, x = _approx_ranks(p)
    relevant = m & (y >= 1.0)
    reciprocal = jnp.where(relevant, 1.0 / r, 0.0)
    return relevant, reciprocal, r, m, slope, x


def _approx_mrr_tangent(p, t, out, res):
    relevant, reciprocal, r, m, slope, x = _mrr_parts(p)
    dr = _rank_tangent(p, t, m, slope, x)
    if dr is None:
        return None
    # The best item found in the recomputed reciprocals (not by comparing them with ``out``,
    # which float32 rounding of a recomputation could miss).
    best = relevant & (reciprocal == jnp.max(reciprocal, axis=-1, keepdims=True))
    share = jnp.where(best, 1.0, 0.0) / jnp.maximum(jnp.sum(best, axis=-1, keepdims=True), 1)
    return jnp.sum(share * dr / jnp.square(r), axis=-1)


@hand_derivative(_approx_mrr_tangent, check=_lists.check, where_of="inputs")
@_doc()
def approx_mrr_loss(scores: Array, labels: Array, *, temperature: ArrayLike = 1.0,
                    where: Array | None = None) -> jax.Array:
    r"""Approximate MRR loss: minus the reciprocal of the best sigmoid-smoothed rank of a relevant item (Qin et al.).

    The relevant items are those with ``y_i ≥ 1`` (rax's convention):

    .. math:: \ell = -\max_{i:\ y_i \ge 1} \frac1{r_i}, \qquad
       r_i = 1 + \sum_{j \ne i} \sigma\bigl((s_j - s_i)/T\bigr)

    and 0 for a list without relevant items.  Derivatives (hand rule): with ``k`` the relevant
    item of smallest ``r`` (the derivative shared equally between tied items, as autodiff of
    ``max`` does), ``∂ℓ/∂s = ∇r_k / r_k²`` where ``∂r_k/∂s_j = σ'_kj/T`` (``j ≠ k``),
    ``∂r_k/∂s_k = −Σ_j σ'_kj/T`` and ``∂r_k/∂T = −Σ_j σ'_kj x_kj/T``, ``σ'_kj = σ(x_kj)σ(−x_kj)``
    at ``x_kj = (s_j − s_k)/T``.  The labels enter through a comparison: no derivative.

    Args:
      {args}

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.approx_mrr_loss(jnp.array([0.0, 1.0, 3.0, 2.0]), jnp.array([0.0, 0.0, 1.0, 2.0]))
      Array(-0.6965873, dtype=float32)

    References:
      Qin, Liu and Li, "A general approximation framework for direct optimization of
      information retrieval measures", Information Retrieval 13, 2010.
      ``rax.approx_t12n(rax.mrr_metric, temperature)`` with ``reduce_fn=None``.  Differs from
      it as :func:`approx_ndcg_loss` says.
    """
    relevant, reciprocal, r, m, slope, x = _mrr_parts(Args(locals()))
    return -jnp.max(reciprocal, axis=-1, initial=0.0)
