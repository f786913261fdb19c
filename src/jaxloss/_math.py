"""Numerically careful building blocks shared by several losses."""

import jax
import jax.numpy as jnp


def compute_dtype(dtype):
    """The dtype a loss computes in for inputs of ``dtype``: at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def wide_tangent(dx, like):
    """A tangent ``dx`` in the compute dtype of ``like`` (at least float32), or None for None.

    The mechanism hands a rule the tangents of low-precision inputs in their own dtype; a
    formula that reads such a tangent several times (``dx − x̂⟨x̂, dx⟩``) upcasts it at each
    read, and reverse mode then adds the cotangents of those reads in the input's dtype.
    Where each part overflows float16 (the ``1/ε²`` curvature at a zero row) they add up to
    ``inf − inf = NaN``; upcast once, they add in float32 and overflow to ±inf only once."""
    return None if dx is None else dx.astype(jnp.promote_types(compute_dtype(dx.dtype), like.dtype))


def log_2cosh_half(x):
    r"""``log(2·cosh(x/2)) = softplus(x) − x/2``, an even function, for any ``|x|``.

    Computed as ``|x|/2 + log1p(exp(−|x|))``: one ``exp`` and one ``log1p``, no overflow,
    and plain autodiff of this form is exact to second order, also at ``x = 0``
    (``abs``'s derivative 1 there is multiplied by ``½ − σ(0) = 0``).  ``log_cosh`` is
    ``log_2cosh_half(2r) − log 2``.
    """
    abs_x = jnp.abs(x)
    return 0.5 * abs_x + jnp.log1p(jnp.exp(-abs_x))


def softplus_pair(x, zero=0.0):
    r"""``(softplus(x), softplus(−x))`` from one ``exp`` and one ``log1p``, each to full
    relative precision, ±inf included: ``max(±x, 0) + log1p(exp(−|x|))``.
    (``log_2cosh_half(x) ± x/2`` would lose the small one's digits: at x = 17 in float32
    ``softplus(−x)`` rounds to 0.)  Written with ``maximum``/``minimum`` only, no compare or
    select: XLA:CPU fuses such a formula into the reduction that follows it (a mean), where a
    select is computed into a full-size temporary first.  ``−|x|`` is ``min(x, −x)``, whose
    autodiff derivative at 0 is 0 (JAX splits a tie evenly), so plain autodiff gives
    ``softplus′(0) = ½`` exactly; the second derivative of this form at exactly ``x = 0`` is 0
    (the hand rules use ``σ(x)`` and are exact there).  ``zero``: the 0 to use, an
    :func:`opaque` one in a forward whose rule also uses 0.
    """
    tail = jnp.log1p(jnp.exp(jnp.minimum(x, -x)))
    return jnp.maximum(x, zero) + tail, jnp.maximum(-x, zero) + tail


def opaque(dtype, *values):
    """Scalar constants of ``dtype`` that XLA can neither fold nor share between computations.

    XLA merges equal constants, and a broadcast constant that a loss's forward and its rule
    both use becomes one value with two users; XLA:CPU then computes it into a full-size
    array instead of fusing it into the reduction of the losses (a mean).  A loss whose
    forward and rule share constants takes them from here in one of the two.
    """
    return jax.lax.optimization_barrier(tuple(jnp.asarray(v, dtype) for v in values))


def signed_labels(labels, dtype):
    """{0, 1} or {-1, 1} labels (any label ``> 0`` is positive) as ±1 of ``dtype``, for a
    forward formula: ``2·sign(max(y, 0)) − 1`` with :func:`opaque` constants, no compare or
    select, so that XLA:CPU fuses it into the reduction that follows the losses (a mean)."""
    zero, one, two = opaque(dtype, 0.0, 1.0, 2.0)
    return two * jnp.sign(jnp.maximum(labels.astype(dtype), zero)) - one


def safe_norm(v, axis=-1):
    r"""``‖v‖₂`` over ``axis`` whose plain autodiff is finite at ``v = 0``.

    The derivative is ``v/‖v‖``, and 0 at ``v = 0`` (the minimum-norm subgradient); the
    double ``where`` keeps ``sqrt``'s infinite slope at 0 out of autodiff (``.reference``).
    Hand rules use :func:`unit` for the same derivative.
    """
    sq = jnp.sum(v * v, axis=axis)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def unit(v, norm, axis=-1):
    """``v/‖v‖`` given ``norm = safe_norm(v)``, and 0 where ``v = 0``: the derivative of
    :func:`safe_norm` (and the direction of a distance)."""
    norm = jnp.expand_dims(norm, axis)
    return jnp.where(norm > 0, v / jnp.where(norm > 0, norm, 1.0), 0.0)


def normalize(x, eps=1e-12, axis=-1):
    r"""``x / max(‖x‖, eps)`` over ``axis`` (``torch.nn.functional.normalize``), with its norm.

    Returns ``(x̂, ‖x‖)``.  The tangent is :func:`normalize_tangent`.
    """
    norm = safe_norm(x, axis)
    return x / jnp.expand_dims(jnp.maximum(norm, eps), axis), norm


def normalize_tangent(x_hat, norm, dx, eps=1e-12, axis=-1):
    r"""The tangent of :func:`normalize`: ``(dx − x̂·⟨x̂, dx⟩)/‖x‖`` where ``‖x‖ > eps``
    (the projection off the unit vector), and ``dx/eps`` where the norm is clamped."""
    dx = wide_tangent(dx, x_hat)
    scale = jnp.expand_dims(jnp.maximum(norm, eps), axis)
    radial = x_hat * jnp.sum(x_hat * dx, axis=axis, keepdims=True)
    return jnp.where(jnp.expand_dims(norm, axis) > eps, dx - radial, dx) / scale


def floored_normalize(x, floor, axis=-1):
    r"""``(x / max(‖x‖, floor), ‖x‖)`` over ``axis``, for a floor that may be 0 or traced.

    :func:`normalize` with ``floor = eps``; where ``‖x‖ = floor = 0`` the unit vector is 0
    (not ``0/0``), and so is its derivative.  The tangent is :func:`floored_normalize_tangent`.
    """
    norm = safe_norm(x, axis)
    scale = jnp.expand_dims(jnp.maximum(norm, floor), axis)
    return jnp.where(scale > 0, x / jnp.where(scale > 0, scale, 1.0), 0.0), norm


def floored_normalize_tangent(x_hat, norm, floor, dx, dfloor=None, axis=-1):
    r"""The tangent of :func:`floored_normalize`: ``(dx − x̂⟨x̂, dx⟩)/‖x‖`` where ``‖x‖ > floor``;
    ``(dx − x̂·dfloor)/floor`` where the floor is active (``x̂ = x/floor``); 0 where
    ``‖x‖ = floor = 0``.  ``dx`` or ``dfloor`` may be None (zero); returns None if both are."""
    if dx is None and dfloor is None:
        return None
    dx, dfloor = wide_tangent(dx, x_hat), wide_tangent(dfloor, x_hat)
    above, scale = (jnp.expand_dims(x, axis) for x in (norm > floor, jnp.maximum(norm, floor)))
    radial = 0.0 if dx is None else x_hat * jnp.sum(x_hat * dx, axis=axis, keepdims=True)
    floor_term = 0.0 if dfloor is None else x_hat * jnp.expand_dims(dfloor, axis)
    dx = 0.0 if dx is None else dx
    tangent = jnp.where(above, dx - radial, dx - floor_term)
    return jnp.where(scale > 0, tangent / jnp.where(scale > 0, scale, 1.0), 0.0)


def cosine_similarity(a, b, floor, axis=-1):
    r"""``⟨a/max(‖a‖, floor), b/max(‖b‖, floor)⟩`` over ``axis`` (0 where a vector and the
    floor are both 0): the cosine with each norm floored, as ``F.normalize`` (floor ε) and
    ``optax.losses.cosine_similarity`` (floor √ε) compute it.  Its tangent is
    :func:`cosine_similarity_tangent`."""
    (a_hat, _), (b_hat, _) = floored_normalize(a, floor, axis), floored_normalize(b, floor, axis)
    return jnp.sum(a_hat * b_hat, axis=axis)


def cosine_similarity_tangent(a, b, floor, da, db, dfloor=None, axis=-1):
    r"""The tangent of :func:`cosine_similarity`: ``⟨dâ, b̂⟩ + ⟨â, db̂⟩`` with each ``dx̂`` from
    :func:`floored_normalize_tangent` (the projection off ``x̂`` over ``‖x‖``, or
    ``(dx − x̂·dfloor)/floor`` where the floor is active).  None when every tangent is."""
    (a_hat, a_norm), (b_hat, b_norm) = floored_normalize(a, floor, axis), floored_normalize(b, floor, axis)
    da_hat = floored_normalize_tangent(a_hat, a_norm, floor, da, dfloor, axis)
    db_hat = floored_normalize_tangent(b_hat, b_norm, floor, db, dfloor, axis)
    terms = [u * dv for u, dv in ((b_hat, da_hat), (a_hat, db_hat)) if dv is not None]
    return jnp.sum(sum(terms[1:], terms[0]), axis=axis) if terms else None


def _floored_cosine_parts(a, b, floor):
    """Per-row pieces of :func:`floored_cosine`: the cosine, ``1/(s_a s_b)`` (0 where a
    scale is 0), and for each vector its norm, scale ``s = max(‖x‖, floor)`` and
    whether the norm is above the floor."""
    a_norm, b_norm = safe_norm(a), safe_norm(b)
    a_scale, b_scale = jnp.maximum(a_norm, floor), jnp.maximum(b_norm, floor)
    scales = a_scale * b_scale
    inverse = jnp.where(scales > 0, 1 / jnp.where(scales > 0, scales, 1.0), 0.0)
    return jnp.sum(a * b, axis=-1) * inverse, inverse, (a_norm, a_scale), (b_norm, b_scale)


def floored_cosine(a, b, floor):
    r""":func:`cosine_similarity` over the last axis, as ``⟨a, b⟩/(s_a s_b)`` with
    ``s = max(‖x‖, floor)``: three sums of products of the inputs and per-row scalars, no
    unit vector, so that XLA fuses the products into the sums (the unit vectors would be
    computed into full-size arrays).  0 where a scale is 0.  The tangent is
    :func:`floored_cosine_tangent`."""
    return _floored_cosine_parts(a, b, floor)[0]


def floored_cosine_tangent(a, b, floor, da, db, dfloor=None):
    r"""The tangent of :func:`floored_cosine`, ``c = ⟨a, b⟩/(s_a s_b)``:
    ``dc = ⟨da, b/(s_a s_b) − a·c/‖a‖²⟩ + ⟨db, a/(s_a s_b) − b·c/‖b‖²⟩`` where the norms are
    above the floor (``ds = ⟨x, dx⟩/‖x‖``), and ``−c·dfloor/s`` in place of a vector's
    radial term where its floor is active (``ds = dfloor``).  Each term is a per-row
    scalar times an input, so the transpose is one elementwise pass.  0 where a scale is
    0.  ``da``, ``db`` or ``dfloor`` may be None (zero); returns None if all are."""
    if da is None and db is None and dfloor is None:
        return None
    cos, inverse, *vectors = _floored_cosine_parts(a, b, floor)
    radial, floored = [], 0.0
    for norm, scale in vectors:
        above = norm > floor
        radial.append(jnp.where(above, cos / jnp.where(above, scale * norm, 1.0), 0.0))
        active = ~above & (scale > 0)
        floored = floored + jnp.where(active, cos / jnp.where(active, scale, 1.0), 0.0)
    terms = [jnp.sum(dx * (inverse[..., None] * other - k[..., None] * x), axis=-1)
             for x, other, dx, k in ((a, b, da, radial[0]), (b, a, db, radial[1])) if dx is not None]
    if dfloor is not None:
        terms.append(-floored * dfloor)
    return sum(terms[1:], terms[0])


def logsumexp_step(carry, s):
    r"""One step of a streamed log-sum-exp over the last axis (the online softmax):
    ``carry = (top, total)`` holds the running maximum and ``Σ exp(s − top)`` of the
    blocks seen so far; start from ``(−inf, 0)`` and finish with :func:`logsumexp_finish`
    (or :func:`logsumexp_parts`).
    The maximum gets no derivative (it cancels); −inf entries count for nothing."""
    top, total = carry
    new_top = jax.lax.stop_gradient(jnp.maximum(top, jnp.max(s, axis=-1)))
    shift = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
    return new_top, total * jnp.exp(top - shift) + jnp.sum(jnp.exp(s - shift[..., None]), axis=-1)


def logsumexp_parts(top, total):
    r"""A streamed ``(top, total)`` as ``(shift, log Σ exp(s − shift))``, kept apart.

    ``shift`` is the running maximum (0 where every entry was −inf) and the second part is
    ``log(total) ≥ 0``.  A loss ``lse − s_k`` is then computed as ``(shift − s_k) + log Σ``,
    two terms ≥ 0 when ``s_k`` is one of the entries (the same rounded number), while
    ``lse`` itself would round at the maximum's ulp.  Where every entry was −inf the sum
    is −inf, with derivative 0 there (a double ``where`` keeps ``log``'s ``1/0`` out of
    autodiff, to every order).
    """
    empty = total == 0
    return jnp.where(jnp.isfinite(top), top, 0.0), jnp.where(empty, -jnp.inf, jnp.log(jnp.where(empty, 1.0, total)))


def logsumexp_finish(top, total):
    """``log Σ exp`` from a streamed ``(top, total)``: −inf where every entry was −inf."""
    shift, log_sum = logsumexp_parts(top, total)
    return shift + log_sum


def softmax_weight(z):
    """``exp(z)`` for ``z = s − lse ≤ 0``, capped at ``exp(0) = 1``: a blockwise backward
    recomputes ``s`` with a separate matmul, which can round above the forward's
    log-sum-exp (by an ulp of ~1e3 for logits near 1e10, enough to overflow ``exp``)."""
    return jnp.exp(jnp.where(z > 0, 0.0, z))


def psum(x, axis_name):
    """``x`` summed over the devices of ``axis_name`` (a ``shard_map``, ``pmap`` or named
    ``vmap`` axis); ``x`` itself when there is no axis, and None for None."""
    return x if axis_name is None or x is None else jax.lax.psum(x, axis_name)


def masked_rows(x, where):
    """``x [N, ...]`` with the examples ``where`` masks set to 0 (a select: their inf/NaN
    padding reaches neither a value nor a derivative); ``x`` itself without a mask."""
    return x if where is None or x is None else jnp.where(where[:, None], x, 0.0)
