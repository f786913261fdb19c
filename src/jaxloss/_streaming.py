"""The streaming machinery of the in-batch contrastive losses (:mod:`jaxloss.contrastive`).

Logits ``s_ij = scale·⟨u_i, v_j⟩`` between rows ``u [N, D]`` and columns ``v [M, D]``, folded
over blocks of columns (``lax.scan``, the body checkpointed for reverse mode), so that at
most ``N × B`` logits exist at once: row log-sum-exps with a running maximum (the online
softmax), row sums of per-pair terms, and the tangents of both.  Under an ``axis_name`` the
columns are all-gathered (:func:`gather`) and each device keeps its own rows
(:func:`own_columns`); the transpose of the gather sends column gradients back to their
owners.  The shared trace-time checks of the contrastive losses are here too, and the
``precision=`` option of every matmul-based loss (:func:`matmul_precision`), which the
contrastive, angular, GE2E and batch-triplet losses share.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss.gradients import tangent_sum

# ------------------------------------------------------------------ matmul precision


def matmul_precision(precision, *operands) -> jax.lax.Precision:
    """The :class:`jax.lax.Precision` of a matmul of ``operands`` under a loss's ``precision=``
    option: the one given (a ``Precision`` or its name: ``"default"``, ``"high"``,
    ``"highest"``), and for None ``HIGHEST`` on float32 (or wider) operands and ``DEFAULT`` on
    lower-precision ones.  GPUs may run a DEFAULT float32 matmul in TF32 (a 10-bit mantissa,
    relative errors near 1e-3: beyond float32 tolerances); the products of bfloat16 or float16
    operands lose nothing in any mode and are accumulated in float32 anyway."""
    if precision is not None:
        return jax.lax.Precision(precision)
    low = jnp.finfo(jnp.result_type(*operands)).bits < 32
    return jax.lax.Precision.DEFAULT if low else jax.lax.Precision.HIGHEST


def check_precision(precision):
    """``precision`` is None, a :class:`jax.lax.Precision` or the name of one."""
    valid = precision is None or isinstance(precision, jax.lax.Precision)
    if isinstance(precision, str):
        try:
            valid = jax.lax.Precision(precision) is not None
        except ValueError:
            pass
    if not valid:
        raise ValueError("precision must be None, a jax.lax.Precision or its name ('default', 'high', 'highest'), "
                         f"got {precision!r}.")


def pairwise_dots(a, b, precision):
    """``⟨a_i, b_j⟩``, ``[N, M]`` for ``a [N, D]`` and ``b [M, D]``, at :func:`matmul_precision`."""
    return jnp.matmul(a, b.T, precision=matmul_precision(precision, a, b))


# ------------------------------------------------------------------ streaming over column blocks


def scan_columns(body, init, v, extras, block_size, *, checkpoint=False):
    """Fold ``body(carry, v_b, j_b, valid_b, *extras_b)`` over blocks of ``block_size``
    columns (all at once for None): ``v_b`` the block of ``v [M, D]``, ``j_b`` the column
    indices, ``valid_b`` false on the zero padding of the last block, ``extras_b`` the
    blocks of per-column arrays.  With ``checkpoint`` the body is rematerialised in reverse
    mode, so the transpose of the scan keeps no per-block ``[N, B]`` arrays."""
    m = v.shape[0]
    size = m if block_size is None else min(block_size, m)
    count = -(-m // size)

    def split(x):
        x = jnp.pad(x, [(0, count * size - m)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((count, size) + x.shape[1:])

    def step(carry, block):
        j, v_b, *extras_b = block
        return body(carry, v_b, j, j < m, *extras_b), None

    index = jnp.arange(count * size).reshape(count, size)
    step = jax.checkpoint(step) if checkpoint else step
    blocks = (index, split(v), *map(split, extras))
    return jax.lax.scan(step, _carry_dtypes(step, init, blocks), blocks)[0]


def _carry_dtypes(step, init, blocks):
    """``init`` with each leaf promoted to the dtype ``step`` returns for it, so that the carry's
    dtype is what the body computes in: the rows' (the inputs' compute dtype), or wider where
    an operand is (a float64 scale on float32 rows under x64: ``scan`` rejects a float32 carry
    that the body returns as float64).  Promotion only widens, so two passes reach the fixed
    point; each is a trace of one block, nothing is computed."""
    for _ in range(2):
        out = jax.eval_shape(lambda carry, xs: step(carry, jax.tree.map(lambda x: x[0], xs))[0], init, blocks)
        dtypes = jax.tree.map(lambda c, o: jnp.promote_types(c.dtype, o.dtype), init, out)
        if all(c.dtype == d for c, d in zip(jax.tree.leaves(init), jax.tree.leaves(dtypes))):
            break
        init = jax.tree.map(lambda c, d: c.astype(d), init, dtypes)
    return init


def row_logsumexp(u, v, scale, allowed, extras, block_size, precision, targets=None, own=None):
    """``log Σ_j exp(s_ij)`` over the columns ``allowed(j_b, valid_b, *extras_b)`` lets in,
    ``s = scale·u vᵀ``, with a running maximum (the online softmax): at most ``N × B``
    logits exist at once.  Returns ``(shift, log Σ, picked)``: the log-sum-exp in the two
    parts of :func:`_math.logsumexp_parts` (log Σ = −inf for a row with no allowed column)
    and ``s_{i,targets_i}``, picked out of the same blocks of the same matmul as the rest
    of the row (0 for a target outside ``[0, M)``, and without ``targets``).  ``own``: optional
    ``[N, K]`` logits of columns that belong to one row each (−inf for none), which start the
    running statistics.  The matmuls run at :func:`matmul_precision` of ``precision``, as in
    every function below."""

    # The scale goes into the rows before the matmul, so that the logits are the matmul's own
    # output: a product taken after it could be contracted into a fused multiply-add in one
    # consumer (the sum) and not in another (the maximum, the positive), which rounds them
    # apart (by ~1e3 at logits of 1e10, and negative losses at near-duplicates).
    scaled = scale * u

    def body(carry, v_b, j, valid, *extras_b):
        stats, picked = carry
        s = pairwise_dots(scaled, v_b, precision)
        stats = _math.logsumexp_step(stats, jnp.where(allowed(j, valid, *extras_b), s, -jnp.inf))
        if targets is not None:
            picked = picked + jnp.sum(jnp.where(_is_target(j, valid, targets), s, 0.0), axis=-1)
        return stats, picked

    zeros = jnp.zeros_like(u[:, 0])  # (like the rows: varying over a shard_map axis)
    stats = (zeros - jnp.inf, zeros)
    stats = stats if own is None else _math.logsumexp_step(stats, own)
    (top, total), picked = scan_columns(body, (stats, zeros), v, extras, block_size)
    return *_math.logsumexp_parts(top, total), picked


def _is_target(j, valid, targets):
    """``[N, B]``: whether column ``j`` of a block is row ``i``'s target."""
    return valid & (j == targets[:, None])


def row_sums(u, v, values, extras, block_size, precision, *, checkpoint=False):
    """``Σ_j values(dots_b, v_b, j_b, valid_b, *extras_b)`` per row (a pytree of ``[N, B]``
    arrays, summed over the columns), with ``dots = u vᵀ`` streamed over column blocks
    (``checkpoint``: see :func:`scan_columns`)."""

    def body(totals, v_b, j, valid, *extras_b):
        terms = values(pairwise_dots(u, v_b, precision), v_b, j, valid, *extras_b)
        return jax.tree.map(lambda total, term: total + jnp.sum(term, axis=-1), totals, terms)

    shapes = jax.eval_shape(lambda: values(pairwise_dots(u, v[:1], precision), v[:1], jnp.zeros(1, int),
                                           jnp.ones(1, bool), *(x[:1] for x in extras)))
    zeros = jnp.zeros_like(u[:, 0])
    return scan_columns(body, jax.tree.map(lambda _: zeros, shapes), v, extras, block_size, checkpoint=checkpoint)


def stream_tangent(u, v, du, dv, scale, dscale, dbias, terms, extras, block_size, precision):
    """``Σ_j terms(dots_b, ds_b, j_b, valid_b, *extras_b)`` per row (a pytree of ``[N, B]``
    arrays, each linear in ``ds``, or free of it), where ``ds`` is the tangent of the logits
    ``s = scale·u vᵀ + bias``: ``ds_ij = scale·(⟨du_i, v_j⟩ + ⟨u_i, dv_j⟩) + dscale·⟨u_i, v_j⟩
    + dbias``.  Streamed over column blocks with a checkpointed body: reverse mode (the
    transpose of this scan) recomputes each block's weights and never holds ``N × M``.
    None when every tangent is zero."""
    if du is None and dv is None and dscale is None and dbias is None:
        return None
    du, dv, dscale, dbias = (_math.wide_tangent(x, u) for x in (du, dv, dscale, dbias))
    has_dv = dv is not None

    def values(dots, v_b, j, valid, *extras_b):
        dv_b, extras_b = (extras_b[-1], extras_b[:-1]) if has_dv else (None, extras_b)
        ds = tangent_sum(
            (scale, None if du is None else pairwise_dots(du, v_b, precision)),
            (scale, None if dv_b is None else pairwise_dots(u, dv_b, precision)),
            (dots, dscale),
            (1.0, dbias),
        )
        return terms(dots, ds, j, valid, *extras_b)

    return row_sums(u, v, values, tuple(extras) + ((dv,) if has_dv else ()), block_size, precision, checkpoint=True)


def gather(x, axis_name):
    """The whole batch of a per-device shard (all-gathered over ``axis_name``), or ``x``."""
    return x if axis_name is None or x is None else jax.lax.all_gather(x, axis_name, tiled=True)


def own_columns(rows, axis_name):
    """The indices, among the gathered columns, of this device's examples: ``offset + i``."""
    n = rows.shape[0]
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n
    return offset + jnp.arange(n)


def _in_mask(j, valid, mask):
    return valid & mask


def row_cross_entropy(u, v, targets, scale, where, block_size, axis_name, precision, negatives=None,
                      negatives_mask=None):
    """``lse_j(s_ij) − s_i,targets_i`` per row, with the columns all-gathered over
    ``axis_name`` and (when ``where`` is given) the masked columns left out, computed as
    ``(shift_i − s_i,targets_i) + log Σ_j exp(s_ij − shift_i)``: the target's logit comes
    from the same matmul as the maximum, so both terms are ≥ 0 and nothing cancels at the
    maximum's ulp.  The residuals are the two parts, ``(shift, log Σ)``.

    ``negatives``: optional columns that are no row's target, taken as given (gather them
    first if they are sharded): ``[Q, D]`` shared by every row (after the ``M`` gathered
    columns, in the same blocks) or ``[N, K, D]``, row ``i``'s own ``K``; ``negatives_mask``
    (boolean, their leading shape, or None) leaves some out."""
    v_all, mask_all, _ = columns_with_negatives(v, where, axis_name, negatives, negatives_mask)
    own = _own_logits(u, negatives, negatives_mask, scale, precision)
    shift, log_sum, positive = row_logsumexp(u, v_all, scale, _in_mask, (mask_all,), block_size, precision, targets,
                                             own)
    return (shift - positive) + log_sum, (shift, log_sum)


def _shared(negatives):
    return negatives is not None and negatives.ndim == 2


def columns_with_negatives(v, where, axis_name, negatives, negatives_mask, dv=None, dnegatives=None):
    """The columns every row sees (``v`` gathered, then the shared ``negatives``), their
    mask and (when either tangent is given) their tangents."""
    v_all, mask_all, dv_all = gather(v, axis_name), gather(column_mask(v, where), axis_name), gather(dv, axis_name)
    if not _shared(negatives):
        return v_all, mask_all, dv_all
    mask = column_mask(negatives, negatives_mask)
    if dv_all is not None or dnegatives is not None:
        dv_all = jnp.concatenate([jnp.zeros_like(v_all) if dv_all is None else dv_all,
                                  jnp.zeros_like(negatives) if dnegatives is None else dnegatives])
    return jnp.concatenate([v_all, negatives]), jnp.concatenate([mask_all, mask]), dv_all


def _own_logits(u, negatives, negatives_mask, scale, precision):
    """``scale·⟨u_i, w_ik⟩ [N, K]`` of each row's own negatives ``w [N, K, D]`` (−inf where
    masked), or None."""
    if negatives is None or _shared(negatives):
        return None
    dots = jnp.einsum("nd,nkd->nk", scale * u, negatives, precision=matmul_precision(precision, u, negatives))
    return dots if negatives_mask is None else jnp.where(negatives_mask, dots, -jnp.inf)


def row_cross_entropy_tangent(u, v, du, dv, targets, scale, dscale, where, res, block_size, axis_name, precision,
                              negatives=None, negatives_mask=None, dnegatives=None):
    """The tangent of :func:`row_cross_entropy`: ``Σ_j (p_ij − [j = t_i]) ds_ij`` with
    ``p_ij = exp((s_ij − shift_i) − log Σ_i)``, summed as ``Σ_{j≠t_i} p_ij (ds_ij − ds_it)``
    (``Σ_j p_ij = 1``): the target's weight ``p_it − 1 = −Σ_{j≠t_i} p_ij`` comes out of the
    same recomputed ``p`` as the others, so it neither cancels (``p_it`` near 1) nor
    disagrees with them where the recomputed logits round differently from the forward's,
    and one pass over the blocks serves forward and reverse mode alike.  ``ds_it`` is formed
    once per row from the target's column (0 for a target outside ``[0, M)``).  The
    ``negatives`` (and their tangent ``dnegatives``) as in :func:`row_cross_entropy`."""
    shift, log_sum = res
    # Each tangent in the compute dtype once (:func:`_math.wide_tangent`): it is read by the
    # target's column, the streamed blocks and the own negatives alike.
    du, dv, dscale, dnegatives = (_math.wide_tangent(x, u) for x in (du, dv, dscale, dnegatives))
    v_all, mask_all, dv_all = columns_with_negatives(v, where, axis_name, negatives, negatives_mask, dv, dnegatives)
    take = lambda x: None if x is None else _take_rows(x, targets)  # noqa: E731
    ds_target = tangent_sum(
        (scale, None if du is None else jnp.sum(du * take(v_all), axis=-1)),
        (scale, None if dv_all is None else jnp.sum(u * take(dv_all), axis=-1)),
        (jnp.sum(u * take(v_all), axis=-1), dscale),
    )
    own = None if _shared(negatives) else _own_tangent(u, du, scale, dscale, shift, log_sum, ds_target, negatives,
                                                       negatives_mask, dnegatives, precision)
    if ds_target is None:
        return own

    def terms(dots, ds, j, valid, mask):
        z = (scale * dots - shift[:, None]) - log_sum[:, None]
        p = jnp.where(valid & mask & ~_is_target(j, valid, targets), _math.softmax_weight(z), 0.0)
        return p * (ds - ds_target[:, None])

    rows = stream_tangent(u, v_all, du, dv_all, scale, dscale, None, terms, (mask_all,), block_size, precision)
    return tangent_sum((1.0, rows), (1.0, own))


def _own_tangent(u, du, scale, dscale, shift, log_sum, ds_target, w, w_mask, dw, precision):
    """``Σ_k p_ik (ds_ik − ds_it)`` over row ``i``'s own negatives ``w [N, K, D]``: the part of
    :func:`row_cross_entropy_tangent` the streamed columns leave out (None without them)."""
    dots = lambda a, b: jnp.einsum("nd,nkd->nk", a, b, precision=matmul_precision(precision, a, b))  # noqa: E731
    uw = None if w is None else dots(u, w)
    ds = None if w is None else tangent_sum((scale, None if du is None else dots(du, w)),
                                            (scale, None if dw is None else dots(u, dw)), (uw, dscale),
                                            (-1.0, None if ds_target is None else ds_target[:, None]))
    if ds is None:
        return None
    z = (scale * uw - shift[:, None]) - log_sum[:, None]
    p = _math.softmax_weight(z) if w_mask is None else jnp.where(w_mask, _math.softmax_weight(z), 0.0)
    return jnp.sum(p * ds, axis=-1)


def _take_rows(x, targets):
    """``x[targets]``, with rows of 0 for targets outside ``[0, M)`` (negative ones too)."""
    m = x.shape[0]
    return jnp.take(x, jnp.where((targets >= 0) & (targets < m), targets, m), axis=0, mode="fill", fill_value=0)


def column_mask(v, where):
    return jnp.ones(v.shape[:1], bool) if where is None else where


def check_embeddings(name, x):
    _checks.float_array(name, x)
    if jnp.ndim(x) != 2:
        raise ValueError(f"{name} must be [examples, features], got shape {jnp.shape(x)}.")


def check_ids(labels, n, what):
    """Integer ``labels`` of shape ``(n,)``."""
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer) or jnp.shape(labels) != (n,):
        raise ValueError(f"labels must be integer {what}, shape {(n,)}, got {_checks._describe(labels)}.")


def check_temperature(temperature):
    _checks.float_option("temperature", temperature, (), "a scalar")
    _checks.positive("temperature", temperature)


def check_sides(first, second, where, names, *, paired=True):
    for name, x in zip(names, (first, second)):
        check_embeddings(name, x)
    (n, d), (m, e) = jnp.shape(first), jnp.shape(second)
    if d != e or (paired and n != m):
        need = "the same shape" if paired else "the same feature size"
        raise ValueError(f"{names[0]} and {names[1]} must have {need}, got shapes {(n, d)} and {(m, e)}.")
    _checks.broadcasts_to("where", where, (n,), f"the examples of {names[0]}")


def check_blocks(block_size, axis_name, precision):
    """The static options of the contrastive losses: ``block_size``, ``axis_name``, ``precision``."""
    check_precision(precision)
    if block_size is not None and (not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}.")
    _checks.hashable("axis_name", axis_name)


def check_negatives(rows, negatives, negatives_mask, names=("negatives", "negatives_where"), *, own=True):
    """Extra negatives of ``rows [N, D]``: None, float ``[Q, D]`` or (with ``own``) ``[N, K, D]``,
    and their optional boolean mask of their leading shape (``[Q]`` or ``[N, K]``)."""
    if negatives is None:
        if negatives_mask is not None:
            raise ValueError(f"{names[1]} is given without {names[0]}.")
        return
    _checks.float_array(names[0], negatives)
    (n, d), shape = jnp.shape(rows), jnp.shape(negatives)
    if not ((len(shape) == 2 and shape[1] == d) or (own and len(shape) == 3 and shape[::2] == (n, d))):
        forms = f"[Q, {d}]" + (f" or [{n}, K, {d}]" if own else "")
        raise ValueError(f"{names[0]} must be {forms} (the features of the rows, shape {(n, d)}), got shape {shape}.")
    _checks.mask(names[1], negatives_mask)
    if negatives_mask is not None and jnp.shape(negatives_mask) != shape[:-1]:
        raise ValueError(f"{names[1]} must have the shape {shape[:-1]} of the {names[0]} it masks, got "
                         f"{jnp.shape(negatives_mask)}.")


def negative_columns(negatives, mask, where, axis_name, *, dnegatives=None, unit=False):
    """``(w, mask, dw)``: extra negatives as :func:`row_cross_entropy` takes them: with
    ``unit`` L2-normalised (``dw`` the tangent of that), shared ``[Q, D]`` ones gathered with
    their mask over ``axis_name`` (None: taken as they are), own ``[N, K, D]`` ones of the
    rows ``where`` masks set to 0 (their inf/NaN padding reaches nothing).  All None without
    negatives."""
    if negatives is None:
        return None, None, None
    if negatives.ndim == 3 and where is not None:
        keep = where[:, None, None]
        negatives = jnp.where(keep, negatives, 0.0)
        dnegatives = None if dnegatives is None else jnp.where(keep, dnegatives, 0.0)
    if unit:
        negatives, norm = _math.normalize(negatives)
        dnegatives = None if dnegatives is None else _math.normalize_tangent(negatives, norm, dnegatives)
    if negatives.ndim == 3:
        return negatives, mask, dnegatives
    return gather(negatives, axis_name), gather(mask, axis_name), gather(dnegatives, axis_name)
