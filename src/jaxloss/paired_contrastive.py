"""Paired in-batch contrastive losses: multiple-negatives ranking (with hard negatives) and CLIP.

Row ``i``'s positive is column ``i`` of the other side; every other column is a negative.
:func:`multiple_negatives_ranking_loss` adds hard negatives (columns shared by every
anchor, or each anchor's own), :func:`clip_loss` extra negatives on either side (queues of
images and of texts, columns of every row of the other direction).  Dense, blockwise
(``block_size=``) and sharded (``axis_name=``) forms share the streaming machinery of
:mod:`jaxloss._streaming`, as :mod:`jaxloss.contrastive` describes: at most ``N × B``
logits exist at once, and reverse mode keeps the inputs and two numbers per row.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss._streaming import (
    check_blocks, check_negatives, check_sides, negative_columns, own_columns, row_cross_entropy,
    row_cross_entropy_tangent,
)
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, AxisName, Precision

# ------------------------------------------------------------------ paired losses: both directions


def _paired_cross_entropy(u, v, scale, symmetric, where, block_size, axis_name, precision, negatives=(None, None),
                          reverse_negatives=(None, None)):
    """Row ``i``'s positive is column ``i``; with ``symmetric`` also the columns' losses
    (``v`` against all ``u``), averaged: ``(ℓ_i(u→v) + ℓ_i(v→u))/2``.  ``negatives``: the
    ``(w, mask)`` of :func:`negative_columns`, extra ``v``-side columns of the rows' direction;
    ``reverse_negatives``: extra ``u``-side columns of the columns' direction.  Residuals:
    those of :func:`row_cross_entropy` for each direction."""
    targets = own_columns(u, axis_name)
    rows, res = row_cross_entropy(u, v, targets, scale, where, block_size, axis_name, precision, *negatives)
    if not symmetric:
        return rows, (res,)
    columns, res_t = row_cross_entropy(v, u, targets, scale, where, block_size, axis_name, precision,
                                       *reverse_negatives)
    return (rows + columns) / 2, (res, res_t)


def _paired_cross_entropy_tangent(u, v, du, dv, scale, dscale, symmetric, where, res, block_size, axis_name,
                                  precision, negatives=(None, None, None), reverse_negatives=(None, None, None)):
    """The tangent of :func:`_paired_cross_entropy`; the negatives as ``(w, mask, dw)``.  Both
    directions read the tangents: they are upcast once (float16 parts added in float32)."""
    targets = own_columns(u, axis_name)
    du, dv, dscale = (_math.wide_tangent(x, u) for x in (du, dv, dscale))
    rows = row_cross_entropy_tangent(u, v, du, dv, targets, scale, dscale, where, res[0], block_size, axis_name,
                                     precision, *negatives)
    if not symmetric:
        return rows
    columns = row_cross_entropy_tangent(v, u, dv, du, targets, scale, dscale, where, res[1], block_size, axis_name,
                                        precision, *reverse_negatives)
    return tangent_sum((0.5, rows), (0.5, columns))


def _check_paired(first, second, scale, block_size, axis_name, precision, where, *, names, scale_name):
    check_sides(first, second, where, names)
    _checks.float_option(scale_name, scale, (), "a scalar")
    check_blocks(block_size, axis_name, precision)


# ------------------------------------------------------------------ multiple_negatives_ranking_loss


def _check_mnrl(anchors, positives, scale, symmetric, negatives, negatives_where, block_size, axis_name, precision,
                where):
    _check_paired(anchors, positives, scale, block_size, axis_name, precision, where,
                  names=("anchors", "positives"), scale_name="scale")
    _checks.positive("scale", scale)
    check_negatives(anchors, negatives, negatives_where)


def _mnrl_tangent(p, t, out, res):
    (a, a_norm), (b, b_norm) = _math.normalize(p.anchors), _math.normalize(p.positives)
    da = None if t.anchors is None else _math.normalize_tangent(a, a_norm, t.anchors)
    db = None if t.positives is None else _math.normalize_tangent(b, b_norm, t.positives)
    w, mask, dw = negative_columns(p.negatives, p.negatives_where, p.where, p.axis_name, dnegatives=t.negatives,
                                   unit=True)
    return _paired_cross_entropy_tangent(a, b, da, db, p.scale, t.scale, p.symmetric, p.where, res,
                                         p.block_size, p.axis_name, p.precision, (w, mask, dw))


@hand_derivative(_mnrl_tangent, check=_check_mnrl, residuals=True,
                 static=("symmetric", "block_size", "axis_name", "precision"),
                 class_axis=("anchors", "positives", "negatives"))
def multiple_negatives_ranking_loss(anchors: Array, positives: Array, *, axis: int = -1, scale: ArrayLike = 20.0,
                                    symmetric: bool = False, negatives: Array | None = None,
                                    negatives_where: Array | None = None, block_size: int | None = None,
                                    axis_name: AxisName | None = None, precision: Precision = None,
                                    where: Array | None = None
                                    ) -> tuple[jax.Array, tuple[tuple[jax.Array, jax.Array], ...]]:
    r"""Multiple-negatives ranking loss per anchor: its positive against every other
    example's positive (in-batch negatives) and optional hard negatives, on scaled cosine
    similarities.

    With :math:`s_{ij} = \text{scale}\cdot\cos(a_i, b_j)` (the inputs L2-normalised inside,
    as ``F.normalize``) and the hard negatives' :math:`h_{ik} = \text{scale}\cdot\cos(a_i,
    n_k)` (``negatives`` ``[M, D]``: every anchor sees all M) or
    :math:`\text{scale}\cdot\cos(a_i, n_{ik})` (``[N, K, D]``: anchor i's own K),

    .. math:: \ell_i = \log\Big(\sum_j e^{s_{ij}} + \sum_k e^{h_{ik}}\Big) - s_{ii},

    and with ``symmetric=True`` the mean of that and the loss with the roles swapped
    (without hard negatives), :math:`\tfrac12(\ell_i + \log\sum_j e^{s_{ji}} - s_{ii})`.

    Derivatives (hand rule): with :math:`p` the softmax of row i over all its columns
    (positives and hard negatives) and :math:`g = p - [\text{column } i]`,
    ``∂ℓ_i/∂â_i = scale·(Σ_j g_ij b̂_j + Σ_k p_ik n̂_k)``, ``∂ℓ_i/∂b̂_j = scale·g_ij â_i``,
    ``∂ℓ_i/∂n̂_k = scale·p_ik â_i``, ``∂ℓ_i/∂scale = (Σ_j g_ij s_ij + Σ_k p_ik h_ik)/scale``,
    and through the normalisation ``∂â/∂a = (I − â âᵀ)/‖a‖`` (for ``n`` too).  Reverse mode
    keeps the inputs and the per-row log-sum-exp (as two numbers, the maximum and the
    log-sum-exp below it); the hard negatives' columns stream in the same blocks as the
    positives' (``[M, D]``) or are ``[N, K]`` logits of their own.

    sentence-transformers' ``MultipleNegativesRankingLoss`` (and, with ``symmetric``,
    ``MultipleNegativesSymmetricRankingLoss``) with the default cosine similarity gives
    the mean of these losses.  On (anchor, positive, negative) triplets it scores each
    anchor against the concatenation of all positives and all negatives: that is
    ``negatives=`` the ``[N, D]`` negatives (with K negative columns, ``[N·K, D]``: every
    anchor sees every row's negatives).  Differs from sentence-transformers: the ``[N, K, D]``
    form, where each anchor sees only its own K hard negatives, has no counterpart there.

    Args:
      anchors: float ``[N, D]``.
      positives: float ``[N, D]``; ``positives[i]`` is the positive of ``anchors[i]``.
      axis: static; the feature axis D of the embeddings, an int: -1 (the last, default) or 0
        for ``[D, N]`` embeddings (every form: dense, blockwise, sharded).
      scale: the inverse temperature (float or scalar array; differentiated).
      symmetric: also rank the anchors for each positive (static).
      negatives: optional float hard negatives (differentiated): ``[M, D]`` shared by every
        anchor (with ``axis=0``: ``[D, M]``), or ``[N, K, D]``, each anchor's own (features
        last whatever ``axis``).  Under ``axis_name`` they are sharded as the batch is: each
        device passes its own ``[M/devices, D]`` (all-gathered, like the positives; their
        gradients go back to their owner) or its own anchors' ``[N/devices, K, D]``.
      negatives_where: optional boolean mask of the negatives' leading shape (``[M]`` or
        ``[N, K]``); masked negatives are no one's (padding).  ``where`` does not mask
        ``[M, D]`` negatives: for padded triplets give both masks.
      block_size: None (dense) or the number of columns per block (static).
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static).
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
      >>> a = jnp.array([[1.0, 0.0], [0.0, 2.0]])
      >>> jaxloss.multiple_negatives_ranking_loss(a, a, scale=1.0)
      Array([0.31326163, 0.31326163], dtype=float32)
      >>> jaxloss.multiple_negatives_ranking_loss(a, a, scale=1.0, negatives=-a)
      Array([0.6265234, 0.6265234], dtype=float32)

    References:
      Henderson et al., "Efficient Natural Language Response Suggestion for Smart Reply",
      2017; sentence-transformers ``MultipleNegativesRankingLoss``.
    """
    (a, _), (b, _) = _math.normalize(anchors), _math.normalize(positives)
    w, mask, _ = negative_columns(negatives, negatives_where, where, axis_name, unit=True)
    return _paired_cross_entropy(a, b, scale, symmetric, where, block_size, axis_name, precision, (w, mask))


# ------------------------------------------------------------------ clip_loss


def _check_clip(image_embeddings, text_embeddings, logit_scale, image_negatives, image_negatives_where,
                text_negatives, text_negatives_where, block_size, axis_name, precision, where):
    _check_paired(image_embeddings, text_embeddings, logit_scale, block_size, axis_name, precision, where,
                  names=("image_embeddings", "text_embeddings"), scale_name="logit_scale")
    for side, negatives, mask in (("image", image_negatives, image_negatives_where),
                                  ("text", text_negatives, text_negatives_where)):
        check_negatives(image_embeddings, negatives, mask, (f"{side}_negatives", f"{side}_negatives_where"), own=False)
    _checks.warn_if_implausible(
        "logit_scale", logit_scale, lambda v: v <= math.log(1000.0),
        "clip_loss's logit_scale is the LOG of the scale (OpenCLIP's parameter, initialised to log(1/0.07) = 2.66 "
        "and clamped at log(100)); it multiplies the similarities by exp(logit_scale) > 1000. For a scale s, "
        "pass logit_scale=jnp.log(s).")


def _clip_negatives(texts, texts_where, images, images_where, axis_name, dtexts=None, dimages=None):
    """The extra columns of each direction, as :func:`negative_columns` gives them: the text
    negatives of the images' rows, the image negatives of the texts' rows.  Queues, the same
    on every device: never gathered over ``axis_name``."""
    return (negative_columns(texts, texts_where, None, None, dnegatives=dtexts),
            negative_columns(images, images_where, None, None, dnegatives=dimages))


def _clip_tangent(p, t, out, res):
    scale = jnp.exp(p.logit_scale)
    dscale = None if t.logit_scale is None else scale * t.logit_scale
    texts, images = _clip_negatives(p.text_negatives, p.text_negatives_where, p.image_negatives,
                                    p.image_negatives_where, p.axis_name, t.text_negatives, t.image_negatives)
    return _paired_cross_entropy_tangent(p.image_embeddings, p.text_embeddings, t.image_embeddings,
                                         t.text_embeddings, scale, dscale, True, p.where, res,
                                         p.block_size, p.axis_name, p.precision, texts, images)


@hand_derivative(_clip_tangent, check=_check_clip, residuals=True, static=("block_size", "axis_name", "precision"),
                 class_axis=("image_embeddings", "text_embeddings", "image_negatives", "text_negatives"))
def clip_loss(image_embeddings: Array, text_embeddings: Array, *, axis: int = -1, logit_scale: ArrayLike,
              image_negatives: Array | None = None, image_negatives_where: Array | None = None,
              text_negatives: Array | None = None, text_negatives_where: Array | None = None,
              block_size: int | None = None, axis_name: AxisName | None = None, precision: Precision = None,
              where: Array | None = None) -> tuple[jax.Array, tuple[tuple[jax.Array, jax.Array], ...]]:
    r"""CLIP's symmetric InfoNCE per image–text pair, with a learnable log-scale and optional
    extra negatives (queues of images and of texts).

    With :math:`s = e^{\text{logit\_scale}}`, :math:`s_{ij} = s\,\langle x_i, y_j\rangle`, the
    extra text columns :math:`a_{iq} = s\,\langle x_i, \tilde y_q\rangle` (``text_negatives``
    :math:`\tilde y`, ``[Q, D]``) and the extra image columns
    :math:`b_{jp} = s\,\langle \tilde x_p, y_j\rangle` (``image_negatives`` :math:`\tilde x`,
    ``[P, D]``),

    .. math:: \ell_i = \tfrac12\Big(\log\Big(\sum_j e^{s_{ij}} + \sum_q e^{a_{iq}}\Big) - s_{ii}
              + \log\Big(\sum_j e^{s_{ji}} + \sum_p e^{b_{ip}}\Big) - s_{ii}\Big):

    each image is scored against every text of the batch and every text negative, each text
    against every image and every image negative (without negatives, CLIP's loss).

    Derivatives (hand rule): with :math:`p` the softmax of image i's row (over the texts and
    the text negatives), :math:`q` that of text j's row (over the images and the image
    negatives), :math:`g_{ij} = \tfrac12(p_{ij} + q_{ji}) - [i = j]`, and summed over the
    examples' losses: ``∂L/∂x_i = s (Σ_j g_ij y_j + ½ Σ_q p_iq ỹ_q)``,
    ``∂L/∂y_j = s (Σ_i g_ij x_i + ½ Σ_p q_jp x̃_p)``, ``∂L/∂ỹ_q = ½ s Σ_i p_iq x_i``,
    ``∂L/∂x̃_p = ½ s Σ_j q_jp y_j`` and ``∂L/∂logit_scale = Σ_ij g_ij s_ij + ½ Σ_iq p_iq a_iq +
    ½ Σ_jp q_jp b_jp``.  Reverse mode keeps the inputs and two log-sum-exps per example (each as
    its maximum and the log-sum-exp below it); the negatives stream in the same column blocks
    as the batch.

    OpenCLIP semantics: ``logit_scale`` is the log of the scale (OpenCLIP's model
    parameter, initialised to log(1/0.07), before ``.exp()``), and the embeddings are used
    as given — OpenCLIP's model L2-normalises them before its ``ClipLoss``; do the same (the
    negatives too).  The mean of these losses is ``ClipLoss``'s value; with negatives, it is
    ``ClipLoss`` with the extra columns appended to the logits of each direction:
    ``logits_per_image = s·x·[y; ỹ]ᵀ`` and ``logits_per_text = s·y·[x; x̃]ᵀ``, labels
    ``arange(N)`` (OpenCLIP has no negatives option).  The negatives get their true
    derivative, like every float input; a queue from :func:`jaxloss.queue.queue_push` holds
    its embeddings under ``stop_gradient`` (a momentum encoder's, or past steps'), so nothing
    flows into it.  ALBEF's image–text contrastive loss keeps the same two queues (and takes
    its in-batch columns from the momentum encoder too, which this loss leaves to the caller).

    Args:
      image_embeddings: float ``[N, D]``.
      text_embeddings: float ``[N, D]``; pair ``i`` is ``(image_embeddings[i], text_embeddings[i])``.
      axis: static; the feature axis D of the embeddings, an int: -1 (the last, default) or 0
        for ``[D, N]`` embeddings, ``[D, P]`` and ``[D, Q]`` negatives (every form: dense,
        blockwise, sharded).
      logit_scale: the LOG of the logit scale (float or scalar array; differentiated): the
        similarities are multiplied by ``exp(logit_scale)``.  A concrete value above
        log(1000) warns at trace time (it is likely the scale itself: pass ``jnp.log(s)``).
      image_negatives: optional float ``[P, D]`` (differentiated): extra image columns of every
        text's row (an image queue), nobody's positive.
      image_negatives_where: optional boolean ``[P]``: the image negatives to keep (a queue's
        filled slots, :func:`jaxloss.queue.queue_read`).
      text_negatives: optional float ``[Q, D]`` (differentiated): extra text columns of every
        image's row (a text queue), nobody's positive.
      text_negatives_where: optional boolean ``[Q]``, as ``image_negatives_where``.  One mask per
        side: the two queues need not have the same size.
      block_size: None (dense) or the number of columns per block (static); the negatives
        stream in the same blocks as the other side.
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static).
        The negatives are queues that every device holds whole (as :func:`info_nce_loss`
        takes its ``negatives``, and :func:`jaxloss.queue.queue_push` with ``axis_name``
        keeps them): they are not gathered, each device scores its rows against all of them,
        and each device's part of their gradient is its rows' (``shard_map`` sums the parts
        of an input given the same on every device, ``P()``).
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean ``[N]``; masked pairs give loss 0 and gradient 0 and are no
        one's negatives (it does not mask the extra negatives: they have their own masks).
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses ``[N]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.clip_loss(x, x, logit_scale=0.0)
      Array([0.31326163, 0.31326163], dtype=float32)
      >>> jaxloss.clip_loss(x, x, logit_scale=0.0, text_negatives=-x, image_negatives=-x)
      Array([0.6265234, 0.6265234], dtype=float32)

    References:
      Radford et al., "Learning Transferable Visual Models From Natural Language
      Supervision", 2021; OpenCLIP ``open_clip.loss.ClipLoss``; He et al., "Momentum Contrast
      for Unsupervised Visual Representation Learning" (MoCo), 2020 (the queue); Li et al.,
      "Align before Fuse" (ALBEF), 2021 (image and text queues).
    """
    texts, images = _clip_negatives(text_negatives, text_negatives_where, image_negatives, image_negatives_where,
                                    axis_name)
    return _paired_cross_entropy(image_embeddings, text_embeddings, jnp.exp(logit_scale), True, where,
                                 block_size, axis_name, precision, texts[:2], images[:2])
