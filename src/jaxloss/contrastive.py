"""Contrastive losses over in-batch similarities: InfoNCE, NT-Xent, SigLIP (multiple-negatives
ranking and CLIP are in :mod:`jaxloss.paired_contrastive`).

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

Reverse mode keeps the inputs and two numbers per row, the row maximum and the log-sum-exp
below it; the softmax is recomputed block by block in the backward pass (as in Inf-CL, Wang
et al. 2024, and GradCache).

Precision: a loss ``lse_i − s_it`` is computed as ``(max_i − s_it) + log Σ_j e^{s_ij − max_i}``
with the positive's logit picked out of the same block of the same matmul as the maximum,
so it is never negative and keeps the digits of an easy positive (``p_it`` near 1), and in
the rule the positive's weight ``p_it − 1`` is ``−Σ_{j≠t} p_ij`` over the recomputed softmax.
In float32 the worst per-row error of values and gradients is at most that of plain
autodiff of ``−log_softmax``.
Every function supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; ``fn.reference`` is plain autodiff of the
formula (with the same blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, loud
from jaxloss._streaming import (
    check_blocks, check_embeddings, check_ids, check_negatives, check_sides, check_temperature, column_mask, gather,
    negative_columns, own_columns, row_cross_entropy, row_cross_entropy_tangent, row_logsumexp, row_sums,
    stream_tangent,
)
from jaxloss.gradients import hand_derivative
from jaxloss.types import Array, ArrayLike, AxisName, Precision

# ------------------------------------------------------------------ info_nce_loss


def _check_info_nce(queries, keys, temperature, labels, ignore_index, negatives, negatives_where, block_size, axis_name,
                    precision, where):
    check_sides(queries, keys, where, ("queries", "keys"), paired=labels is None)
    check_negatives(queries, negatives, negatives_where)
    check_temperature(temperature)
    if labels is not None:
        check_ids(labels, jnp.shape(queries)[0], "ids of the positive keys")
    check_ignore_index(ignore_index)
    check_blocks(block_size, axis_name, precision)


def _info_nce_targets(queries, labels, axis_name):
    return own_columns(queries, axis_name) if labels is None else labels


def _counted_positives(keys, labels, ignore_index, axis_name):
    """``(counted, invalid)`` of :func:`jaxloss._softmax.class_ids` for the ids of the positive
    keys among all ``M`` keys (every device's, under ``axis_name``)."""
    return class_ids(labels, _math.psum(keys.shape[0], axis_name), ignore_index)[1:]


def _info_nce_tangent(p, t, out, res):
    paired = p.labels is None
    where = p.where if paired else None
    keys, dkeys = _math.masked_rows(p["keys"], where), _math.masked_rows(t["keys"], where)  # p.keys is dict.keys
    dscale = None if t.temperature is None else -t.temperature / p.temperature**2
    targets = _info_nce_targets(p.queries, p.labels, p.axis_name)
    negatives = negative_columns(p.negatives, p.negatives_where, p.where, None, dnegatives=t.negatives)
    d = row_cross_entropy_tangent(p.queries, keys, t.queries, dkeys, targets, 1 / p.temperature, dscale, where, res,
                                  p.block_size, p.axis_name, p.precision, *negatives)
    if paired or d is None:
        return d
    counted, _ = _counted_positives(p["keys"], p.labels, p.ignore_index, p.axis_name)
    return jnp.where(counted, d, 0.0)


@hand_derivative(_info_nce_tangent, check=_check_info_nce, residuals=True,
                 static=("ignore_index", "block_size", "axis_name", "precision"), per_example=("queries",),
                 class_axis=("queries", "keys", "negatives"))
def info_nce_loss(queries: Array, keys: Array, *, axis: int = -1, temperature: ArrayLike = 0.07,
                  labels: Array | None = None, ignore_index: int | None = IGNORE_INDEX, negatives: Array | None = None,
                  negatives_where: Array | None = None, block_size: int | None = None,
                  axis_name: AxisName | None = None, precision: Precision = None,
                  where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""InfoNCE per query: cross-entropy of the query's positive key among all keys.

    With logits :math:`s_{ij} = \langle q_i, k_j\rangle / T` and positive key
    :math:`t_i` (``labels[i]``, or ``i`` when ``labels`` is None: the pairs of the batch),

    .. math:: \ell_i = \log \sum_j e^{s_{ij}} - s_{i t_i},

    where ``j`` runs over the keys and the extra ``negatives`` (a queue or memory bank:
    columns that are no query's positive).

    Derivatives (hand rule), with :math:`p_{ij} = \operatorname{softmax}_j(s_{ij})` and
    :math:`g_{ij} = p_{ij} - [j = t_i]`: ``∂ℓ_i/∂q_i = Σ_j g_ij k_j / T``,
    ``∂ℓ_i/∂k_j = g_ij q_i / T`` (the same for a negative ``n_j``, with ``g = p``),
    ``∂ℓ_i/∂T = −Σ_j g_ij s_ij / T``, with ``g_{i t_i} = −Σ_{j≠t_i} p_ij``.  Reverse mode
    keeps the inputs and ``lse_i`` (as its maximum and the log-sum-exp below it) and
    recomputes ``p`` block by block.

    The queries and keys are used as given (normalise them first for cosine similarities).
    The ``negatives`` get their true derivative, like every float input; a queue from
    :func:`jaxloss.queue.queue_push` holds its keys under ``stop_gradient`` (MoCo's keys
    come from the momentum encoder), so nothing flows into it.  With a queue this is the
    loss of cross-batch memory (Wang et al. 2020: in-batch keys and the queue).  Differs
    from MoCo v1/v2: they score each query against its own key and the queue only, without
    the other in-batch keys.

    Args:
      queries: float ``[N, D]``.
      keys: float ``[M, D]`` (``M = N`` when ``labels`` is None).
      axis: static; the feature axis D of the embeddings, an int: -1 (the last, default) or 0
        for ``[D, N]`` embeddings (every form: dense, blockwise, sharded).
      temperature: ``T > 0``, a float or scalar array (differentiated: learnable).
      labels: optional integer ``[N]``: the index of each query's positive key (global,
        among all devices' keys, under ``axis_name``), compared in int32.  An index equal
        to ``ignore_index`` gives loss 0 and derivative exactly 0 (its keys still serve the
        other queries); any other index outside ``[0, M)`` gives a NaN loss with derivative
        0 (:func:`jaxloss.checks.checked` names it), as :func:`jaxloss.softmax_cross_entropy`
        of the logits ``q kᵀ/T`` would.
      ignore_index: static; the positive-key index that marks a query to ignore, an int
        (−100 by default, PyTorch's ``cross_entropy(q @ k.T / T, labels)`` convention) or
        ``None`` (every index outside ``[0, M)`` is invalid).  Unused without ``labels``.
      negatives: optional float extra keys that are nobody's positive (differentiated):
        ``[Q, D]`` seen by every query (with ``axis=0``: ``[D, Q]``), or ``[N, K, D]``,
        each query's own (features last whatever ``axis``).  Under ``axis_name`` a
        ``[Q, D]`` queue is the same on every device (:func:`jaxloss.queue.queue_push` with
        ``axis_name`` keeps it so) and is not gathered; its gradient is each device's part.
      negatives_where: optional boolean mask of the negatives' leading shape (``[Q]`` or
        ``[N, K]``): masked ones are left out (a queue's empty slots,
        :func:`jaxloss.queue.queue_read`).
      block_size: None (dense) or the number of keys per block (static); a ``[Q, D]``
        queue streams in the same blocks as the keys.
      axis_name: None, or a ``shard_map``/``pmap`` axis over which queries and keys are
        sharded (static); each device gets the losses of its own queries.
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean ``[N]``; masked queries give loss 0 and gradient 0, and when
        ``labels`` is None their keys are left out of the negatives too (padding).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> q = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.info_nce_loss(q, q, temperature=1.0)
      Array([0.31326163, 0.31326163], dtype=float32)

    References:
      van den Oord, Li, Vinyals, "Representation Learning with Contrastive Predictive
      Coding", 2018; Wang et al., "Breaking the Memory Barrier: Near Infinite Batch Size
      Scaling for Contrastive Loss" (Inf-CL), 2024.
    """
    paired = labels is None
    negatives, negatives_where, _ = negative_columns(negatives, negatives_where, where, None)
    where = where if paired else None
    targets = _info_nce_targets(queries, labels, axis_name)
    # The queries divided by T (not times 1/T, which rounds): the logits of ⟨q, k⟩/T.
    losses, res = row_cross_entropy(queries / temperature, _math.masked_rows(keys, where), targets, 1.0, where,
                                    block_size, axis_name, precision, negatives, negatives_where)
    if paired:
        return losses, res
    counted, invalid = _counted_positives(keys, labels, ignore_index, axis_name)
    return loud(jnp.where(counted, losses, 0.0), invalid), res


# ------------------------------------------------------------------ ntxent_loss


def _check_ntxent(embeddings, labels, temperature, block_size, axis_name, precision, where):
    check_embeddings("embeddings", embeddings)
    check_ids(labels, jnp.shape(embeddings)[0], "group ids")
    _checks.broadcasts_to("where", where, jnp.shape(embeddings)[:1], "the examples of embeddings")
    check_temperature(temperature)
    check_blocks(block_size, axis_name, precision)


def _ntxent_columns(x_hat, labels, where, axis_name):
    """The gathered normalised embeddings, labels and mask, and each row's own column."""
    mask = column_mask(x_hat, where)
    return gather(x_hat, axis_name), gather(labels, axis_name), gather(mask, axis_name), \
        own_columns(x_hat, axis_name)


def _ntxent_sets(labels, own):
    """``(negative, positive)``: the pair masks of a block of columns for rows with
    ``labels`` and own column indices ``own``."""

    def negative(j, valid, column_labels, mask):
        return valid & mask & (column_labels != labels[:, None])

    def positive(j, valid, column_labels, mask):
        return valid & mask & (column_labels == labels[:, None]) & (j != own[:, None])

    return negative, positive


def _ntxent_tangent(p, t, out, res):
    """``dℓ_i = Σ_p σ(L_i − s_ip)(dL_i − ds_ip)/|P_i|`` with ``dL_i = Σ_n e^{s_in − L_i} ds_in
    / Σ_n e^{s_in − L_i}``: the denominator (1 up to rounding) is summed over the same
    recomputed similarities as the numerator, so the weights of the row sum to 0 even where
    the recomputation rounds differently from the forward.  0 without negatives."""
    shift, log_sum, count = res
    x_hat, norm = _math.normalize(p.embeddings)
    dx = None if t.embeddings is None else _math.normalize_tangent(x_hat, norm, t.embeddings)
    x_all, labels_all, mask_all, own = _ntxent_columns(x_hat, p.labels, p.where, p.axis_name)
    negative, positive = _ntxent_sets(p.labels, own)
    scale = 1 / p.temperature

    def terms(dots, ds, j, valid, column_labels, mask):
        z = (scale * dots - shift[:, None]) - log_sum[:, None]  # s_ij − L_i (+inf without negatives)
        e = jnp.where(negative(j, valid, column_labels, mask), _math.softmax_weight(z), 0.0)
        q = jnp.where(positive(j, valid, column_labels, mask), jax.nn.sigmoid(-z), 0.0)
        return e * ds, e, q * ds, q

    dscale = None if t.temperature is None else -t.temperature / p.temperature**2
    sums = stream_tangent(x_hat, x_all, dx, gather(dx, p.axis_name), scale, dscale, None, terms,
                           (labels_all, mask_all), p.block_size, p.precision)
    if sums is None:
        return None
    e_ds, e_sum, q_ds, q_sum = sums
    has_negatives = e_sum > 0
    dlse = jnp.where(has_negatives, e_ds / jnp.where(has_negatives, e_sum, 1.0), 0.0)  # dL_i
    return (q_sum * dlse - q_ds) / jnp.maximum(count, 1)


@hand_derivative(_ntxent_tangent, check=_check_ntxent, residuals=True, static=("block_size", "axis_name", "precision"),
                 class_axis=("embeddings",))
def ntxent_loss(embeddings: Array, labels: Array, *, axis: int = -1, temperature: ArrayLike = 0.07,
                block_size: int | None = None, axis_name: AxisName | None = None, precision: Precision = None,
                where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array]]:
    r"""NT-Xent (SimCLR) per anchor, with positives defined by labels (also exported as ``ntxent``).

    With :math:`s_{ij} = \cos(x_i, x_j)/T`, positives :math:`P_i = \{j \ne i : y_j = y_i\}`,
    negatives :math:`N_i = \{j : y_j \ne y_i\}` and :math:`L_i = \log\sum_{n \in N_i} e^{s_{in}}`,

    .. math:: \ell_i = \frac{1}{|P_i|} \sum_{p \in P_i}
              -\log\frac{e^{s_{ip}}}{e^{s_{ip}} + \sum_{n \in N_i} e^{s_{in}}}
              = \frac{1}{|P_i|} \sum_{p \in P_i} \operatorname{softplus}(L_i - s_{ip}),

    0 for an anchor with no positive, and for one with no negative (every valid example
    shares its label: then ``L_i = −inf``; value, derivatives and Hessian-vector products
    are all 0 there, in the rule and in ``.reference``).  Each positive pair is scored against the negatives
    only (not the other positives), as in ``optax.losses.ntxent``.  Differs from optax: one
    loss per anchor, where optax returns a scalar, the mean over all positive pairs, i.e.
    ``jaxloss.reduce.mean(losses, weights=positives_per_anchor)`` (the count of each label
    in the batch minus one).

    Derivatives (hand rule): with :math:`A_i = \frac{1}{|P_i|}\sum_p \sigma(L_i - s_{ip})`,
    ``∂ℓ_i/∂s_in = A_i e^{s_in − L_i}`` for negatives and
    ``∂ℓ_i/∂s_ip = −σ(L_i − s_ip)/|P_i|`` for positives; then
    ``∂s_ij/∂x̂_i = x̂_j/T``, ``∂s_ij/∂T = −s_ij/T`` and, through the normalisation,
    ``∂x̂/∂x = (I − x̂ x̂ᵀ)/‖x‖``.  The rule sums ``dL_i = Σ_n e^{s_in − L_i} ds_in / Σ_n
    e^{s_in − L_i}`` over the recomputed similarities, so the weights of an anchor's
    negatives and positives cancel exactly (they sum to 0).  Reverse mode keeps the inputs
    and three numbers per anchor (``L_i`` as its maximum and the log-sum-exp below it, and
    ``|P_i|``) and recomputes the similarities block by block.

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside).
      axis: static; the feature axis D of the embeddings, an int: -1 (the last, default) or 0
        for ``[D, N]`` embeddings (every form: dense, blockwise, sharded).
      labels: integer ``[N]``; examples with equal labels are positives of each other.
      temperature: ``T > 0`` (float or scalar array; differentiated).
      block_size: None (dense) or the number of columns per block (static).
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static).
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean ``[N]``; masked examples give loss 0 and gradient 0 and are
        nobody's positive or negative.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
      >>> jaxloss.ntxent_loss(x, jnp.array([0, 0, 1, 1]), temperature=1.0)
      Array([0.57554495, 0.6200714 , 0.57554495, 0.6200714 ], dtype=float32)

    References:
      Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
      (SimCLR), 2020; ``optax.losses.ntxent``; pytorch-metric-learning ``NTXentLoss``.
    """
    x_hat, _ = _math.normalize(embeddings)
    x_all, labels_all, mask_all, own = _ntxent_columns(x_hat, labels, where, axis_name)
    negative, positive = _ntxent_sets(labels, own)
    scale = 1 / temperature
    shift, log_sum, _ = row_logsumexp(x_hat, x_all, scale, negative, (labels_all, mask_all), block_size, precision)

    def positive_terms(dots, v_b, j, valid, column_labels, mask):
        keep = positive(j, valid, column_labels, mask)
        z = (shift[:, None] - scale * dots) + log_sum[:, None]  # L_i − s_ip, −inf without negatives
        return jnp.where(keep, jax.nn.softplus(z), 0.0), keep.astype(z.dtype)

    total, count = row_sums(x_hat, x_all, positive_terms, (labels_all, mask_all), block_size, precision)
    return total / jnp.maximum(count, 1), (shift, log_sum, count)


ntxent = ntxent_loss  # optax's name


# ------------------------------------------------------------------ sigmoid_contrastive_loss


def _check_siglip(image_embeddings, text_embeddings, temperature, bias, block_size, axis_name, precision, where):
    check_sides(image_embeddings, text_embeddings, where, ("image_embeddings", "text_embeddings"))
    _checks.float_option("temperature", temperature, (), "a scalar")
    _checks.positive("temperature", temperature)
    _checks.warn_if_implausible(
        "temperature", temperature, lambda v: v >= 1.0,
        "sigmoid_contrastive_loss's temperature MULTIPLIES the similarities (SigLIP's t = exp(t'), initialised to "
        "10); a value below 1 looks like a dividing temperature tau: pass temperature=1/tau.")
    _checks.float_option("bias", bias, (), "a scalar")
    check_blocks(block_size, axis_name, precision)


def _siglip_signs(own):
    """``z_ij``: +1 for the example's own pair, −1 for every other."""
    return lambda j: jnp.where(j == own[:, None], 1.0, -1.0)


def _siglip_tangent(p, t, out, res):
    x, y = p.image_embeddings, p.text_embeddings
    y_all, mask_all = gather(y, p.axis_name), gather(column_mask(y, p.where), p.axis_name)
    sign = _siglip_signs(own_columns(x, p.axis_name))

    def terms(dots, dl, j, valid, mask):  # ∂ℓ_i/∂l_ij = −z σ(−z l), times dl_ij
        z = sign(j)
        return jnp.where(valid & mask, -z * jax.nn.sigmoid(-z * (p.temperature * dots + p.bias)), 0.0) * dl

    return stream_tangent(x, y_all, t.image_embeddings, gather(t.text_embeddings, p.axis_name),
                           p.temperature, t.temperature, t.bias, terms, (mask_all,), p.block_size, p.precision)


@hand_derivative(_siglip_tangent, check=_check_siglip, static=("block_size", "axis_name", "precision"),
                 class_axis=("image_embeddings", "text_embeddings"))
def sigmoid_contrastive_loss(image_embeddings: Array, text_embeddings: Array, *, axis: int = -1, temperature: ArrayLike,
                             bias: ArrayLike, block_size: int | None = None, axis_name: AxisName | None = None,
                             precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""SigLIP's pairwise sigmoid loss per image: every image–text pair is a binary
    classification, positive for the image's own text and negative for all others.

    With logits :math:`l_{ij} = t\,\langle x_i, y_j\rangle + b` and :math:`z_{ij} = +1` for
    :math:`j = i`, :math:`-1` otherwise,

    .. math:: \ell_i = \sum_j \log\big(1 + e^{-z_{ij} l_{ij}}\big).

    The mean of these losses is the paper's loss.  Derivatives (hand rule): with
    :math:`g_{ij} = -z_{ij}\,\sigma(-z_{ij} l_{ij})`, ``∂ℓ_i/∂x_i = t Σ_j g_ij y_j``,
    ``∂ℓ_i/∂y_j = t g_ij x_i``, ``∂ℓ_i/∂t = Σ_j g_ij ⟨x_i, y_j⟩``, ``∂ℓ_i/∂b = Σ_j g_ij``.
    Nothing but the inputs is kept for reverse mode: each block of logits is recomputed.

    As in the paper, ``temperature`` is the multiplier ``t`` (which the paper learns as
    ``t = exp(t′)``, initialised to 10, with ``b`` initialised to −10), and the embeddings
    are used as given (the model L2-normalises them).

    Args:
      image_embeddings: float ``[N, D]``.
      text_embeddings: float ``[N, D]``; pair ``i`` is ``(image_embeddings[i], text_embeddings[i])``.
      axis: static; the feature axis D of the embeddings, an int: -1 (the last, default) or 0
        for ``[D, N]`` embeddings (every form: dense, blockwise, sharded).
      temperature: ``t`` (float or scalar array; differentiated): it MULTIPLIES the
        similarities (the paper's name).  A concrete value below 1 warns at trace time (it
        is likely a dividing temperature τ: pass ``1/τ``).
      bias: ``b`` (float or scalar array; differentiated).
      block_size: None (dense) or the number of texts per block (static).
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static);
        the texts are all-gathered (the paper streams them around a ring instead).
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean ``[N]``; masked pairs give loss 0 and gradient 0 and are no
        one's negatives.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.sigmoid_contrastive_loss(x, x, temperature=10.0, bias=-5.0)
      Array([0.0134307, 0.0134307], dtype=float32)

    References:
      Zhai, Mustafa, Kolesnikov, Beyer, "Sigmoid Loss for Language Image Pre-Training"
      (SigLIP), 2023.
    """
    y_all, mask_all = gather(text_embeddings, axis_name), gather(column_mask(text_embeddings, where), axis_name)
    sign = _siglip_signs(own_columns(image_embeddings, axis_name))

    def terms(dots, y_b, j, valid, mask):
        return jnp.where(valid & mask, jax.nn.softplus(-sign(j) * (temperature * dots + bias)), 0.0)

    return row_sums(image_embeddings, y_all, terms, (mask_all,), block_size, precision)
