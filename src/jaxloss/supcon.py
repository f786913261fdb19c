"""The supervised contrastive loss (SupCon) on a batch of embeddings ``[N, D]`` and class labels ``[N]``,
dense, blockwise and sharded.

The loss of an anchor reads its row of the ``N × N`` matrix between the examples of the batch
(the cosines of the L2-normalised embeddings, or their distances, as in :mod:`jaxloss.pairs`):
a log-sum-exp over every other example (and the extra ``negatives``, a queue, appended as
columns that are nobody's positive) and the mean over its positives.  Both are sums over the
columns, so they stream:

* ``block_size=None`` (dense: the whole row at once) or ``block_size=B``: forward and
  derivatives run over blocks of ``B`` columns (``lax.scan``, the body checkpointed in reverse
  mode), the log-sum-exp with a running maximum (the online softmax), the positives' sum and
  count, and the number of negatives along with it; at most ``N × B`` of the matrix exists at
  once, forward or backward;
* ``axis_name=None`` or the name of a ``shard_map`` (or ``pmap``, named ``vmap``) axis: each
  device holds its shard of the batch (embeddings, labels, ``where``); the columns (normalised
  embeddings, labels and mask) are all-gathered, each device computes the losses of its own
  rows, and reverse mode sends the column gradients back to their owners (the transpose of the
  all-gather).  The extra negatives are the same on every device (a queue) and not gathered.
  Same numbers as one device with the whole batch.

Reverse mode keeps the inputs and four numbers per anchor (the row maximum, the log-sum-exp
below it, the counts of positives and negatives) and recomputes the matrix block by block.
Every form supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; ``fn.reference`` is plain autodiff of the formula
(with the same blocks).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _math
from jaxloss._pairwise import Distance, check_labelled_batch, measure, through_measure
from jaxloss._streaming import (
    check_blocks, check_negatives, columns_with_negatives, gather, negative_columns, own_columns, pairwise_dots,
    row_sums, scan_columns, stream_tangent,
)
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, AxisName, Precision

__all__ = ["supervised_contrastive_loss"]


def _check_supcon(embeddings, labels, temperature, distance, negatives, negatives_where, block_size, axis_name,
                  precision, where):
    check_labelled_batch(embeddings, labels, where, distance, precision, positive=("temperature",),
                         temperature=temperature)
    check_negatives(embeddings, negatives, negatives_where, own=False)
    check_blocks(block_size, axis_name, precision)


def _queue(negatives, negatives_where, dnegatives=None):
    """The extra negatives as columns: ``(ŵ, mask, dŵ)``, L2-normalised like the embeddings
    (``dŵ`` the tangent of that), masked ones set to 0 first (their inf/NaN padding reaches
    nothing), the same on every device (not gathered).  All None without negatives."""
    if negatives is not None and negatives_where is not None:
        keep = negatives_where[:, None]
        negatives = jnp.where(keep, negatives, 0.0)
        dnegatives = None if dnegatives is None else jnp.where(keep, dnegatives, 0.0)
    return negative_columns(negatives, negatives_where, None, None, dnegatives=dnegatives, unit=True)


def _columns(x_hat, labels, where, axis_name, queue, dx=None):
    """The columns: every device's normalised embeddings, then the extra negatives of
    ``queue = (ŵ, mask, dŵ)``; their ``(labels, mask)``, their tangent (None when ``dx`` and
    ``dŵ`` are), the index among them of each row's own column, and the number of labelled
    columns (those before the negatives; None without negatives)."""
    w, w_mask, dw = queue
    x_all, mask_all, dx_all = columns_with_negatives(x_hat, where, axis_name, w, w_mask, dx, dw)
    labels_all = gather(labels, axis_name)
    labelled = None if w is None else labels_all.shape[0]
    if w is not None:  # the negatives' labels are never read: j ≥ labelled
        labels_all = jnp.concatenate([labels_all, jnp.zeros(w.shape[:1], labels_all.dtype)])
    return x_all, (labels_all, mask_all), dx_all, own_columns(x_hat, axis_name), labelled


def _block(dots, temperature, distance, labels, own, labelled, j, valid, column_labels, mask):
    """For a block of columns: the logits ``z = sign·m/T`` (``m`` the cosine or distance of
    ``dots``), ``m`` and ``sign``, and the ``[N, B]`` masks of every other example (and extra
    negative) and of the positives (labelled columns only)."""
    m, sign = measure(dots, distance)
    others = valid & mask & (j != own[:, None])
    pos = others & (column_labels == labels[:, None])
    return sign * m / temperature, m, sign, others, pos if labelled is None else pos & (j < labelled)


def _supcon_tangent(p, t, out, res):
    """``dℓ_a = dL_a − Σ_p dz_ap/|P_a|`` with ``dL_a = Σ_j e_aj dz_aj / Σ_j e_aj`` over the
    other examples and the extra negatives, ``e_aj = exp(z_aj − L_a)`` recomputed block by
    block: the denominator (1 up to rounding) is summed over the same recomputed logits as the
    numerator, so the weights of a row sum to 0 exactly."""
    shift, log_sum, count, unlike = res
    x_hat, norm = _math.normalize(p.embeddings)
    dx = None if t.embeddings is None else _math.normalize_tangent(x_hat, norm, t.embeddings)
    queue = _queue(p.negatives, p.negatives_where, t.negatives)
    if dx is None and queue[2] is None and t.temperature is None:
        return None
    x_all, extras, dx_all, own, labelled = _columns(x_hat, p.labels, p.where, p.axis_name, queue, dx)

    def terms(dots, ds, j, valid, column_labels, mask):
        z, m, sign, others, pos = _block(dots, p.temperature, p.distance, p.labels, own, labelled, j, valid,
                                         column_labels, mask)
        e = jnp.where(others, _math.softmax_weight((z - shift[:, None]) - log_sum[:, None]), 0.0)
        # dz = sign·(∂m/∂s)·ds/T − z·dT/T
        dz = tangent_sum((through_measure(sign / p.temperature, m, sign), ds), (-z / p.temperature, t.temperature))
        return e * dz, e, jnp.where(pos, dz, 0.0)

    if dx_all is None:
        e_dz, e_sum, pos_dz = row_sums(x_hat, x_all, lambda dots, v_b, *rest: terms(dots, None, *rest), extras,
                                       p.block_size, p.precision, checkpoint=True)
    else:
        e_dz, e_sum, pos_dz = stream_tangent(x_hat, x_all, dx, dx_all, 1.0, None, None, terms, extras, p.block_size,
                                             p.precision)
    some = e_sum > 0
    dlse = jnp.where(some, e_dz / jnp.where(some, e_sum, 1.0), 0.0)
    return jnp.where((count > 0) & (unlike > 0), dlse - pos_dz / jnp.maximum(count, 1), 0.0)


@hand_derivative(_supcon_tangent, check=_check_supcon, residuals=True,
                 static=("distance", "block_size", "axis_name", "precision"), class_axis=("embeddings", "negatives"))
def supervised_contrastive_loss(embeddings: Array, labels: Array, *, axis: int = -1, temperature: ArrayLike = 0.1,
                                distance: Distance = "cosine", negatives: Array | None = None,
                                negatives_where: Array | None = None, block_size: int | None = None,
                                axis_name: AxisName | None = None, precision: Precision = None,
                                where: Array | None = None
                                ) -> tuple[jax.Array, tuple[jax.Array, jax.Array, jax.Array, jax.Array]]:
    r"""Supervised contrastive loss (SupCon, :math:`\mathcal L^{sup}_{out}`) per anchor, with
    several positives per anchor.

    With :math:`z_{aj} = s_{aj}/T` (``distance="euclidean"``: :math:`-d_{aj}/T`), the positives
    :math:`P_a` (the other examples with the anchor's label) and :math:`A_a` (every other
    example, and every extra negative :math:`w_k`, with :math:`z_{ak} = s(x_a, w_k)/T` on the
    normalised :math:`\hat w_k = w_k/\lVert w_k\rVert` too),

    .. math:: \ell_a = -\frac{1}{|P_a|}\sum_{p \in P_a} \log \frac{e^{z_{ap}}}{\sum_{j \in A_a} e^{z_{aj}}}
              = \log\sum_{j \in A_a} e^{z_{aj}} - \frac{1}{|P_a|}\sum_{p \in P_a} z_{ap},

    computed as ``(max_j z_aj − mean_p z_ap) + log Σ_j e^{z_aj − max}`` (two terms ≥ 0), the
    maximum, the sum and the positives' mean streamed over blocks of columns.  0 for an anchor
    without a positive, and (as PML, which returns 0 for a batch with one label) for one
    without a negative (in the batch or among the extra negatives).  With exactly two examples
    per label (and no extra negatives) this is :func:`jaxloss.ntxent_loss`.

    Derivatives (hand rule): with :math:`q_{aj}` the softmax of :math:`z_{a\cdot}` over
    :math:`A_a`, ``∂ℓ_a/∂z_aj = q_aj − [j ∈ P_a]/|P_a|`` (the weights of a row sum to 0),
    ``∂z_aj/∂T = −z_aj/T``, ``∂z/∂s = 1/T`` (euclidean: ``∂d/∂s = −1/d``, 0 at ``d = 0``:
    duplicate embeddings), and ``ds_aj = ⟨dx̂_a, x̂_j⟩ + ⟨x̂_a, dx̂_j⟩`` with
    ``dx̂ = (dx − x̂⟨x̂, dx⟩)/‖x‖``; an extra negative's column is one more ``j ∈ A_a``, never
    in ``P_a``: ``∂ℓ_a/∂z_ak = q_ak``, ``ds_ak = ⟨dx̂_a, ŵ_k⟩ + ⟨x̂_a, dŵ_k⟩``, and
    ``∂ℓ/∂w_k = Σ_a q_ak (∂z_ak/∂s) (x̂_a − ŵ_k⟨ŵ_k, x̂_a⟩)/‖w_k‖`` (the true derivative, like
    every float input).  Reverse mode keeps the inputs and four numbers per anchor and
    recomputes ``q`` block by block.

    Extra negatives (a queue, or memory bank): PML's ``SupConLoss`` has none.  Its
    ``CrossBatchMemory(SupConLoss())`` scores the batch against a *labelled* memory alone (it
    holds the current batch too, detached), so memory entries of the anchor's label are
    positives there.  Here ``negatives`` are unlabelled and always negatives, next to the live
    in-batch columns (the queue of :func:`jaxloss.info_nce_loss`; from
    :func:`jaxloss.queue.queue_read`, under ``stop_gradient``, nothing flows into them).  For
    PML's labelled memory, append it to the batch instead and keep the batch's losses:
    ``supervised_contrastive_loss(concat([x, stop_gradient(m)]), concat([y, m_labels]))[:N]``
    (which computes the memory's rows too).

    A plain mean of the losses is PML's ``MeanReducer``; PML's default ``AvgNonZeroReducer`` is
    ``jaxloss.reduce.mean(losses, where=losses > 0)`` (the anchors with a positive and a negative).
    Under ``axis_name`` give the reduction the same axis (``jaxloss.reduce.mean(..., axis_name=)``).

    Args:
      embeddings: float ``[N, D]`` (L2-normalised inside); under ``axis_name`` this device's shard.
      labels: integer ``[N]``; examples with equal labels are positives of each other (under
        ``axis_name``, of this device's examples, compared with every device's).
      axis: static; the feature axis D of ``embeddings``: -1 (default) or 0 for ``[D, N]`` (every
        form: dense, blockwise, sharded).
      temperature: ``T > 0``, a float or scalar array (differentiated); PML's default 0.1.
      distance: static; ``"cosine"`` (default, PML's ``CosineSimilarity``) or ``"euclidean"``
        (PML's ``LpDistance()``, on the normalised embeddings).
      negatives: optional float ``[Q, D]`` (with ``axis=0``: ``[D, Q]``) extra columns in every
        anchor's denominator, nobody's positive (no labels), L2-normalised inside like the
        embeddings (differentiated through it).  Under ``axis_name`` the same on every device
        (a queue: :func:`jaxloss.queue.queue_push` with ``axis_name`` keeps it so, as for
        :func:`jaxloss.info_nce_loss`) and not gathered; its gradient is each device's part
        (``shard_map`` sums them for a replicated input).
      negatives_where: optional boolean ``[Q]``: masked negatives are left out (a queue's empty
        slots, :func:`jaxloss.queue.queue_read`); they may hold inf/NaN padding and get
        gradient 0.
      block_size: static; None (dense) or the number of columns per block (the extra negatives
        stream in the same blocks, after the batch's columns).
      axis_name: static; None, or a ``shard_map``/``pmap`` axis the batch is sharded over: each
        device gets the losses of its own examples, against the whole batch.
      precision: static; the precision of the matmuls (the similarities, and the rule's two): a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST`` in float32, which GPUs
        would otherwise run in TF32, outside float32 tolerances.
      where: optional boolean ``[N]``; masked examples leave the batch (loss 0, gradient 0).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]`` (float32 for lower-precision embeddings).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [1.0, 0.1], [0.9, 0.2], [0.0, 1.0]])
      >>> jaxloss.supervised_contrastive_loss(x, jnp.array([0, 0, 0, 1]), temperature=1.0)
      Array([0.8642812, 0.8791377, 0.9018604, 0.       ], dtype=float32)
      >>> queue = jnp.array([[0.5, -1.0], [-1.0, 0.3]])
      >>> jaxloss.supervised_contrastive_loss(x, jnp.array([0, 0, 0, 1]), temperature=1.0, negatives=queue)
      Array([1.1314641, 1.1262305, 1.1302519, 0.       ], dtype=float32)

    References:
      Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (Eq. 2, L_out).
      pytorch-metric-learning ``losses.SupConLoss`` (the same per-anchor losses; its reducer as
      above).  Differs from PML: one loss per anchor, ``where``, blockwise and sharded forms,
      unlabelled extra ``negatives`` (see above); no ``ref_emb``.  Wang et al., "Cross-Batch
      Memory for Embedding Learning" (XBM), CVPR 2020.
    """
    x_hat, _ = _math.normalize(embeddings)
    x_all, extras, _, own, labelled = _columns(x_hat, labels, where, axis_name, _queue(negatives, negatives_where))

    def body(carry, v_b, j, valid, column_labels, mask):
        stats, pos_sum, count, unlike = carry
        z, _, _, others, pos = _block(pairwise_dots(x_hat, v_b, precision), temperature, distance, labels, own,
                                      labelled, j, valid, column_labels, mask)
        return (_math.logsumexp_step(stats, jnp.where(others, z, -jnp.inf)),
                pos_sum + jnp.sum(jnp.where(pos, z, 0.0), axis=-1),
                count + jnp.sum(pos, axis=-1, dtype=z.dtype),
                unlike + jnp.sum(others & ~pos, axis=-1, dtype=z.dtype))

    zeros = jnp.zeros_like(x_hat[:, 0])  # (like the rows: varying over a shard_map axis)
    (top, total), pos_sum, count, unlike = scan_columns(body, ((zeros - jnp.inf, zeros), zeros, zeros, zeros),
                                                       x_all, extras, block_size)
    shift, log_sum = _math.logsumexp_parts(top, total)
    losses = jnp.where((count > 0) & (unlike > 0), (shift - pos_sum / jnp.maximum(count, 1)) + log_sum, 0.0)
    return losses, (shift, log_sum, count, unlike)
