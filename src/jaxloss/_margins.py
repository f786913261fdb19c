"""What the angular-margin and proxy losses share: the L2 normalisation floor, cosines to
class vectors and their tangent, and the margin target ``cos(m1·θ + m2)`` from ``cos θ``
without an ``acos`` (values and derivatives finite at ``cos θ = ±1``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _math
from jaxloss._streaming import matmul_precision

NORM_EPS = 1e-12  # the norm floor of the L2 normalisations (torch.nn.functional.normalize's)


def sine(c):
    """``sin θ = √((1 − cos θ)(1 + cos θ))`` and ``1/sin θ``, both 0 where ``|cos θ| >= 1``.

    The double ``where`` keeps ``sqrt``'s infinite slope at 0 out of autodiff: there the
    derivative of ``sin θ`` in ``cos θ`` is taken as 0 (see :func:`jaxloss.angular_margin_loss`).
    """
    sq = (1 - c) * (1 + c)
    positive = sq > 0
    root = jnp.sqrt(jnp.where(positive, sq, 1.0))
    return jnp.where(positive, root, 0.0), jnp.where(positive, 1 / root, 0.0)


def chebyshev(c, m1):
    """``(T_m1(c), U_{m1−1}(c))``, so that ``cos(m1·θ) = T_m1(cos θ)`` and
    ``sin(m1·θ) = sin θ·U_{m1−1}(cos θ)``: the three-term recurrence, ``m1`` static."""
    t_prev, t = jnp.ones_like(c), c
    u_prev, u = jnp.zeros_like(c), jnp.ones_like(c)
    for _ in range(m1 - 1):
        t_prev, t = t, 2 * c * t - t_prev
        u_prev, u = u, 2 * c * u - u_prev
    return t, u


def margin_target(c, m1, m2, monotone=True):
    """``ψ``, the label class's cosine with the margins ``m1`` and ``m2`` (``m3`` is
    subtracted by the caller), and its partials ``∂ψ/∂cos θ`` and ``∂ψ/∂m2``, from ``c = cos θ``.

    ``cos(m1θ + m2) = T·cos m2 − sin θ·U·sin m2``; its derivative in ``c`` is
    ``m1·sin(m1θ + m2)/sin θ = m1·(U·cos m2 + T·sin m2/sin θ)``, with ``1/sin θ`` taken as 0
    at ``sin θ = 0``; its derivative in ``m2`` is ``−sin(m1θ + m2)``.  ``monotone``: past
    ``m1θ + m2 = π``, ArcFace's fallback or SphereFace's extension; otherwise ``cos(m1θ + m2)``
    throughout.
    """
    sin, inv_sin = sine(c)
    cheb_t, cheb_u = chebyshev(c, m1)
    cos_m2, sin_m2 = jnp.cos(m2), jnp.sin(m2)
    cos_margin = cheb_t * cos_m2 - sin * cheb_u * sin_m2  # cos(m1θ + m2)
    d_cos = m1 * (cheb_u * cos_m2 + cheb_t * sin_m2 * inv_sin)
    d_m2 = -(sin * cheb_u * cos_m2 + cheb_t * sin_m2)  # −sin(m1θ + m2)
    if not monotone:
        return cos_margin, d_cos, d_m2
    if m1 == 1:  # ArcFace: past θ + m2 = π, cos θ − m2·sin m2 (InsightFace's th / mm)
        past = c <= -cos_m2  # cos θ <= cos(π − m2)
        return (jnp.where(past, c - m2 * sin_m2, cos_margin), jnp.where(past, 1.0, d_cos),
                jnp.where(past, -(sin_m2 + m2 * cos_m2), d_m2))
    # SphereFace's extension (−1)^k cos θ' − 2k on θ' = m1θ + m2 ∈ [kπ, (k+1)π]: k counts the
    # edges θ' >= jπ, i.e. cos θ <= cos((jπ − m2)/m1), compared without an acos.
    j = jnp.arange(1, m1 + 1, dtype=c.dtype)
    edges = jnp.cos(jnp.clip((j * jnp.pi - m2[..., None]) / m1, 0.0, jnp.pi))
    k = jnp.sum(c[..., None] <= jax.lax.stop_gradient(edges), axis=-1).astype(c.dtype)
    sign = 1 - 2 * jnp.mod(k, 2)
    return sign * cos_margin - 2 * k, sign * d_cos, sign * d_m2


def cosines(e_hat, v_hat, precision):
    """``⟨ê, v̂⟩`` over the last axis for every class vector: ``[..., C(, K)]``."""
    spec = "...d,cd->...c" if v_hat.ndim == 2 else "...d,ckd->...ck"
    return jnp.einsum(spec, e_hat, v_hat, precision=matmul_precision(precision, e_hat, v_hat))


def cosine_tangent(e_hat, e_norm, v_hat, v_norm, de, dv, precision):
    """The tangent of :func:`cosines` of the normalised ``e`` and ``v`` (None if both tangents are)."""
    terms = []
    if de is not None:
        terms.append(cosines(_math.normalize_tangent(e_hat, e_norm, de, NORM_EPS), v_hat, precision))
    if dv is not None:
        terms.append(cosines(e_hat, _math.normalize_tangent(v_hat, v_norm, dv, NORM_EPS), precision))
    return sum(terms[1:], terms[0]) if terms else None


# ------------------------------------------------------------------ class blocks and class shards


def fold_classes(body, init, classes, size, *, checkpoint=False):
    """Fold ``body(carry, start, new)`` over blocks ``[start, start + size)`` of ``classes``
    class vectors (one call, no scan, when one block holds them all).  When ``size`` does not
    divide ``classes`` the last block starts at ``classes − size`` and overlaps the one before;
    ``new`` (``[size]``) is false on its columns already counted.  The body slices the class
    vectors itself (no padded copy of them); ``checkpoint`` rematerialises each block in
    reverse mode instead of storing it."""
    count = -(-classes // size)
    if count == 1:
        return body(init, 0, jnp.ones(size, bool))

    def step(carry, k):
        start = jnp.minimum(k * size, classes - size)
        return body(carry, start, start + jnp.arange(size) >= k * size), None

    step = jax.checkpoint(step) if checkpoint else step
    return jax.lax.scan(step, init, jnp.arange(count))[0]


def class_block(vectors, start, size):
    """The normalised class vectors ``[start, start + size)`` and their norms."""
    return _math.normalize(jax.lax.dynamic_slice_in_dim(vectors, start, size), NORM_EPS)


def shard_offset(classes, axis_name):
    """The global id of this device's first class: its index along ``axis_name`` times its
    ``classes`` (0 without an axis)."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name) * classes


def owned_rows(x, labels, offset):
    """``x[labels − offset]`` (``[..., D]``) where this shard owns the label, 0 elsewhere
    (another shard's class, an ignored or invalid id); None for None."""
    if x is None:
        return None
    local = labels - offset
    inside = (local >= 0) & (local < x.shape[0])
    rows = jnp.take(x, jnp.where(inside, local, 0), axis=0)
    return jnp.where(inside[..., None], rows, 0)


def row_zeros(*arrays):
    """Zeros of the batch shape of ``arrays[0]`` (``[..., D]``) in the compute dtype, varying like
    every array given over any ``shard_map`` axes (a scan's carry must)."""
    dtype = _math.compute_dtype(arrays[0].dtype)
    zeros = jnp.zeros_like(arrays[0][..., 0], dtype)
    for x in arrays[1:]:
        zeros = zeros if x is None else zeros + jnp.zeros_like(x.reshape(-1)[0], dtype)
    return zeros


def merge_logsumexp(top, total, axis_name):
    """A streamed ``(top, total)`` of every shard of ``axis_name`` combined into the global one."""
    if axis_name is None:
        return top, total
    top_all = jax.lax.pmax(top, axis_name)
    shift = jnp.where(jnp.isfinite(top_all), top_all, 0.0)
    return top_all, jax.lax.psum(total * jnp.exp(top - shift), axis_name)
