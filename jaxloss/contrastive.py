"""Contrastive losses over in-batch similarities: InfoNCE, multiple-negatives ranking, CLIP.

Each compares every row embedding ``u_i`` with every column embedding ``v_j`` through the
logits ``s_ij = scale·⟨u_i, v_j⟩`` and returns one loss per row (per example).  The ``N × M``
matrix of logits is the memory limit of large-batch training, so every loss here takes

* ``block_size=None`` (dense: the whole matrix at once) or ``block_size=B``: forward and
  derivatives stream over blocks of ``B`` columns (``lax.scan`` with a checkpointed body),
  so at most ``N × B`` logits exist at any time, in the forward and in reverse mode alike;
* ``axis_name=None`` or the name of a ``shard_map`` (or ``pmap``) axis: each device holds
  its shard of both sides; the columns are all-gathered, each device computes the losses of
  its own rows, and reverse mode sends the column gradients back to the devices that own
  them (the transpose of the all-gather).  Same numbers as one device with the whole batch.

Reverse mode keeps the inputs and one log-sum-exp per row; the softmax is recomputed block
by block in the backward pass (as in Inf-CL, Wang et al. 2024, and GradCache).
Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; ``fn.reference`` is plain autodiff of the
formula (with the same blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss.gradients import hand_derivative, tangent_sum

# ------------------------------------------------------------------ streaming over column blocks


def _column_blocks(block_size, columns, *others):
    """Split ``[M, ...]`` arrays into ``[M/B, B, ...]`` blocks (padded with zeros at the end;
    the padding is masked out by the validity block, the last of the outputs)."""
    m = columns.shape[0]
    size = m if block_size is None else min(block_size, m)
    count = -(-m // size)
    pad = count * size - m
    valid = jnp.arange(count * size) < m

    def split(x):
        x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
        return x.reshape((count, size) + x.shape[1:])

    return tuple(split(x) for x in (columns, *others)) + (valid.reshape(count, size),)


def _row_logsumexp(u, v, scale, column_mask, block_size):
    """``log Σ_j exp(s_ij)`` over the unmasked columns, streamed over blocks of columns
    with a running maximum (the online softmax), so at most ``N × B`` logits exist."""
    blocks = _column_blocks(block_size, v, column_mask)

    def body(carry, block):
        top, total = carry
        v_b, mask_b, valid_b = block
        s = jnp.where(mask_b & valid_b, scale * (u @ v_b.T), -jnp.inf)
        new_top = jax.lax.stop_gradient(jnp.maximum(top, jnp.max(s, axis=-1)))
        shift = jnp.where(jnp.isfinite(new_top), new_top, 0.0)
        total = total * jnp.exp(top - shift) + jnp.sum(jnp.exp(s - shift[:, None]), axis=-1)
        return (new_top, total), None

    zeros = jnp.zeros_like(u[:, 0])  # (like the rows: varying over a shard_map axis)
    start = (zeros - jnp.inf, zeros)
    (top, total), _ = jax.lax.scan(body, start, blocks)
    return jnp.where(jnp.isfinite(top), top, 0.0) + jnp.log(total)


def _row_softmax_tangent(u, v, du, dv, scale, dscale, lse, column_mask, block_size):
    """``Σ_j p_ij · ds_ij`` with ``p_ij = exp(s_ij − lse_i)`` (0 at masked columns) and
    ``ds_ij = scale·(⟨du_i, v_j⟩ + ⟨u_i, dv_j⟩) + dscale·⟨u_i, v_j⟩``, streamed over column
    blocks.  The body is checkpointed, so reverse mode (the transpose of this scan)
    recomputes each block's softmax instead of keeping all ``N × M`` of them."""
    if du is None and dv is None and dscale is None:
        return None
    has_dv = dv is not None
    blocks = _column_blocks(block_size, v, column_mask, *((dv,) if has_dv else ()))

    @jax.checkpoint
    def body(total, block):
        v_b, mask_b, *rest = block
        dv_b, valid_b = (rest[0], rest[1]) if has_dv else (None, rest[0])
        dots = u @ v_b.T
        p = jnp.where(mask_b & valid_b, jnp.exp(scale * dots - lse[:, None]), 0.0)
        ds = tangent_sum(
            (scale, None if du is None else du @ v_b.T),
            (scale, None if dv_b is None else u @ dv_b.T),
            (dots, dscale),
        )
        return total + jnp.sum(p * ds, axis=-1), None

    total, _ = jax.lax.scan(body, jnp.zeros_like(lse), blocks)
    return total


def _pair_logit_tangent(u, v_pos, du, dv_pos, scale, dscale):
    """The tangent of ``s_i = scale·⟨u_i, v_pos_i⟩``."""
    return tangent_sum(
        (scale, None if du is None else jnp.sum(du * v_pos, axis=-1)),
        (scale, None if dv_pos is None else jnp.sum(u * dv_pos, axis=-1)),
        (jnp.sum(u * v_pos, axis=-1), dscale),
    )


def _gather(x, axis_name):
    """The whole batch of a per-device shard (all-gathered over ``axis_name``), or ``x``."""
    return x if axis_name is None or x is None else jax.lax.all_gather(x, axis_name, tiled=True)


def _own_columns(rows, axis_name):
    """The indices, among the gathered columns, of this device's examples: ``offset + i``."""
    n = rows.shape[0]
    offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n
    return offset + jnp.arange(n)


def _masked_rows(x, where):
    """``x`` with the masked examples set to 0 (their inf/NaN padding never reaches a matmul)."""
    return x if where is None or x is None else jnp.where(where[:, None], x, 0.0)


def _row_cross_entropy(u, v, targets, scale, where, block_size, axis_name):
    """``lse_j(s_ij) − s_i,targets_i`` per row, with the columns all-gathered over
    ``axis_name`` and (when ``where`` is given) the masked columns left out; also the
    per-row log-sum-exp, the rule's residual."""
    v_all, mask_all = _gather(v, axis_name), _gather(_column_mask(v, where), axis_name)
    lse = _row_logsumexp(u, v_all, scale, mask_all, block_size)
    v_pos = jnp.take(v_all, targets, axis=0, mode="fill", fill_value=0)
    return lse - scale * jnp.sum(u * v_pos, axis=-1), lse


def _row_cross_entropy_tangent(u, v, du, dv, targets, scale, dscale, where, lse, block_size, axis_name):
    """The tangent of :func:`_row_cross_entropy`: ``Σ_j p_ij ds_ij − ds_i,targets_i``."""
    v_all, dv_all = _gather(v, axis_name), _gather(dv, axis_name)
    mask_all = _gather(_column_mask(v, where), axis_name)
    stream = _row_softmax_tangent(u, v_all, du, dv_all, scale, dscale, lse, mask_all, block_size)
    take = lambda x: None if x is None else jnp.take(x, targets, axis=0, mode="fill", fill_value=0)  # noqa: E731
    positive = _pair_logit_tangent(u, take(v_all), du, take(dv_all), scale, dscale)
    return tangent_sum((1.0, stream), (-1.0, positive))


def _column_mask(v, where):
    return jnp.ones(v.shape[:1], bool) if where is None else where


def _check_sides(first, second, where, names, *, paired=True):
    for name, x in zip(names, (first, second)):
        _checks.float_array(name, x)
        if jnp.ndim(x) != 2:
            raise ValueError(f"{name} must be [examples, features], got shape {jnp.shape(x)}.")
    (n, d), (m, e) = jnp.shape(first), jnp.shape(second)
    if d != e or (paired and n != m):
        need = "the same shape" if paired else "the same feature size"
        raise ValueError(f"{names[0]} and {names[1]} must have {need}, got shapes {(n, d)} and {(m, e)}.")
    _checks.broadcasts_to("where", where, (n,), f"the examples of {names[0]}")


def _check_blocks(block_size, axis_name):
    if block_size is not None and (not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1):
        raise ValueError(f"block_size must be a positive int or None, got {block_size!r}.")
    _checks.hashable("axis_name", axis_name)


# ------------------------------------------------------------------ info_nce_loss


def _check_info_nce(queries, keys, temperature, labels, block_size, axis_name, where):
    _check_sides(queries, keys, where, ("queries", "keys"), paired=labels is None)
    _checks.float_option("temperature", temperature, (), "a scalar")
    _checks.positive("temperature", temperature)
    if labels is not None:
        if not jnp.issubdtype(jnp.result_type(labels), jnp.integer) or jnp.shape(labels) != jnp.shape(queries)[:1]:
            raise ValueError(f"labels must be integer ids of the positive keys, shape {jnp.shape(queries)[:1]}, "
                             f"got {_checks._describe(labels)}.")
    _check_blocks(block_size, axis_name)


def _info_nce_targets(queries, labels, axis_name):
    return _own_columns(queries, axis_name) if labels is None else labels


def _info_nce_tangent(p, t, out, lse):
    paired = p.labels is None
    where = p.where if paired else None
    keys, dkeys = _masked_rows(p["keys"], where), _masked_rows(t["keys"], where)  # p.keys is dict.keys
    dscale = None if t.temperature is None else -t.temperature / p.temperature**2
    return _row_cross_entropy_tangent(p.queries, keys, t.queries, dkeys, _info_nce_targets(p.queries, p.labels, p.axis_name),
                                      1 / p.temperature, dscale, where, lse, p.block_size, p.axis_name)


@hand_derivative(_info_nce_tangent, check=_check_info_nce, residuals=True, static=("block_size", "axis_name"),
                 per_example=("queries",))
def info_nce_loss(queries, keys, *, temperature=0.07, labels=None, block_size=None, axis_name=None, where=None):
    r"""InfoNCE per query: cross-entropy of the query's positive key among all keys.

    With logits :math:`s_{ij} = \langle q_i, k_j\rangle / T` and positive key
    :math:`t_i` (``labels[i]``, or ``i`` when ``labels`` is None: the pairs of the batch),

    .. math:: \ell_i = \log \sum_j e^{s_{ij}} - s_{i t_i}.

    Derivatives (hand rule), with :math:`p_{ij} = \operatorname{softmax}_j(s_{ij})` and
    :math:`g_{ij} = p_{ij} - [j = t_i]`: ``∂ℓ_i/∂q_i = Σ_j g_ij k_j / T``,
    ``∂ℓ_i/∂k_j = g_ij q_i / T``, ``∂ℓ_i/∂T = −Σ_j g_ij s_ij / T``.  Reverse mode keeps the
    inputs and ``lse_i`` and recomputes ``p`` block by block.

    The queries and keys are used as given (normalise them first for cosine similarities).

    Args:
      queries: float ``[N, D]``.
      keys: float ``[M, D]`` (``M = N`` when ``labels`` is None).
      temperature: ``T > 0``, a float or scalar array (differentiated: learnable).
      labels: optional integer ``[N]``: the index of each query's positive key (global,
        among all devices' keys, under ``axis_name``).  An index outside ``[0, M)`` has no
        positive: its loss is the log-sum-exp alone.
      block_size: None (dense) or the number of keys per block (static).
      axis_name: None, or a ``shard_map``/``pmap`` axis over which queries and keys are
        sharded (static); each device gets the losses of its own queries.
      where: optional boolean ``[N]``; masked queries give loss 0 and gradient 0, and when
        ``labels`` is None their keys are left out of the negatives too (padding).

    Returns:
      Losses ``[N]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.info_nce_loss(q, q, temperature=1.0)
      Array([0.31326166, 0.31326166], dtype=float32)

    References:
      van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
      Coding", 2018; Wang et al., "Breaking the Memory Barrier: Near Infinite Batch Size
      Scaling for Contrastive Loss" (Inf-CL), 2024.
    """
    paired = labels is None
    where = where if paired else None
    targets = _info_nce_targets(queries, labels, axis_name)
    return _row_cross_entropy(queries, _masked_rows(keys, where), targets, 1 / temperature, where, block_size, axis_name)
