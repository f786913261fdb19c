"""Angular-margin losses: softmax over scaled cosines to class centres.

ArcFace, CosFace and SphereFace (the ArcFace paper's combined margin) classify L2-normalised
embeddings against L2-normalised class centres (:func:`jaxloss.ge2e_loss` does the same against
per-speaker centroids of the batch).  Each returns one loss per embedding.  No ``acos``
is taken: margins on the angle go through cos/sin identities, so values and gradients stay
finite at cos θ = ±1.  Every function supports ``jit``, ``vmap``, forward and reverse mode,
``jax.hessian`` and forward-over-reverse Hessian-vector products; ``fn.reference`` is plain
autodiff of the formula.  Over many classes they stream over blocks of class centres
(``block_size=``), shard the centres over devices (``class_axis_name=``) and keep a random
share of them per step (``sample_rate=``, InsightFace's Partial FC).
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from typing import Any, ParamSpec

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks, _math
from jaxloss._margins import (NORM_EPS, cosines, fold_classes, margin_target, merge_logsumexp, owned_rows,
                              row_zeros, shard_offset)
from jaxloss._sampling import check_sampling, partial_fc_classes
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, loud
from jaxloss._streaming import check_blocks
from jaxloss.gradients import Args, Loss, derived_loss, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, AxisName, Precision

# ------------------------------------------------------------------ angular margins (ArcFace family)


def _check_angular(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, ignore_index, block_size,
                   class_axis_name, sample_rate, key, precision, where):
    examples = _checks.class_vectors(embeddings, class_centers, labels, "class_centers")
    batch = "the batch shape of embeddings"
    _checks.broadcasts_to("where", where, examples, batch)
    for name, value in (("scale", scale), ("m2", m2), ("m3", m3)):
        _checks.float_option(name, value, examples, batch)
    _checks.positive("scale", scale)
    if isinstance(m1, bool) or not isinstance(m1, numbers.Integral) or m1 < 1:
        raise ValueError("m1 (the multiplicative margin, sphereface_loss's margin) must be a positive "
                         f"Python integer, got {m1!r}.")
    if not isinstance(m2, jax.core.Tracer) and np.any((np.asarray(m2) < 0) | (np.asarray(m2) >= np.pi)):
        raise ValueError(f"m2 (the additive angular margin, arcface_loss's margin) must lie in [0, π), got {m2}.")
    if not isinstance(m3, jax.core.Tracer) and np.any(np.asarray(m3) < 0):
        raise ValueError(f"m3 (the additive cosine margin, cosface_loss's margin) must be >= 0, got {m3}.")
    if not isinstance(straight_through, bool):
        raise TypeError(f"straight_through must be a Python bool, got {type(straight_through).__name__}.")
    check_ignore_index(ignore_index)
    check_blocks(block_size, None, precision)
    _checks.hashable("class_axis_name", class_axis_name)
    check_sampling(sample_rate, key)


def _label_parts(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, axis_name):
    """What the forward and the rule share per example: the normalised embedding, the label
    class's normalised centre (0 on the shards that do not own it) and cosine (from the shard
    that owns it), the margin target ``ψ − m3``, its partials ``∂ψ/∂cos θ_y`` and ``∂ψ/∂m2``,
    the scale and the label logit ``s·(ψ − m3)``.

    ``straight_through``: ``ψ`` is computed from a stopped ``cos θ_y`` and ``cos θ_y − stop(cos θ_y)``
    (0) is added, so its value and its ``m2`` derivative are the margin's and its ``cos θ_y``
    derivative is 1, for the rule (``∂ψ/∂cos θ = 1``) and for autodiff of the formula alike."""
    e_hat, e_norm = _math.normalize(embeddings, NORM_EPS)
    offset = shard_offset(class_centers.shape[0], axis_name)
    y_hat, y_norm = _math.normalize(owned_rows(class_centers, labels, offset), NORM_EPS)
    c_y = _math.psum(jnp.sum(e_hat * y_hat, axis=-1), axis_name)  # 0 for an id outside [0, C)
    m2 = jnp.broadcast_to(jnp.asarray(m2, c_y.dtype), c_y.shape)
    if straight_through:
        stopped = jax.lax.stop_gradient(c_y)
        psi, _, d_m2 = margin_target(stopped, m1, m2, monotone=False)
        psi, d_cos = psi + (c_y - stopped), jnp.ones_like(c_y)
    else:
        psi, d_cos, d_m2 = margin_target(c_y, m1, m2)
    target = psi - m3
    scale = jnp.broadcast_to(jnp.asarray(scale, c_y.dtype), c_y.shape)
    return Args(e_hat=e_hat, e_norm=e_norm, y_hat=y_hat, y_norm=y_norm, offset=offset, target=target, d_cos=d_cos,
                d_m2=d_m2, scale=scale, z_y=scale * target)


def _block_size(classes, block_size):
    return classes if block_size is None else min(block_size, classes)


def _rows(x, kept, start, size):
    """Rows ``[start, start + size)`` of ``x`` (``[C, D]``), or of ``x[kept]`` when sampling: a
    gather of the kept rows, whose transpose gives the other rows a cotangent of exactly 0."""
    if kept is None:
        return jax.lax.dynamic_slice_in_dim(x, start, size)
    return jnp.take(x, jax.lax.dynamic_slice_in_dim(kept, start, size), axis=0)


def _others(labels, offset, kept, start, size, new):
    """``[..., B]``: the columns of a block that count among the other classes (new, not the label)."""
    local = start + jnp.arange(size) if kept is None else jax.lax.dynamic_slice_in_dim(kept, start, size)
    return new & (offset + local != labels[..., None])


def _angular_margin_tangent(p, t, out, res):
    shift, log_sum, others, kept = res
    axis_name, centers = p.class_axis_name, p.class_centers
    q = _label_parts(p.embeddings, centers, p.labels, p.scale, p.m1, p.m2, p.m3, p.straight_through, axis_name)
    # The centres' tangent in the compute dtype, read by the blocks and by the label's centre: their
    # cotangents then add in float32, not in a low-precision input's dtype (where ±inf parts make a NaN).
    de, dc = t.embeddings, None if t.class_centers is None else t.class_centers.astype(centers.dtype)
    classes = centers.shape[0]
    count = classes if kept is None else kept.shape[0]
    size = _block_size(count, p.block_size)
    spread, expect = de is not None or dc is not None, t.scale is not None
    # dê once, for the other classes and the label alike: a low-precision tangent then gets one cotangent.
    de_hat = None if de is None else _math.normalize_tangent(q.e_hat, q.e_norm, de, NORM_EPS)

    def body(totals, start, new):
        c_hat, c_norm = _math.normalize(_rows(centers, kept, start, size), NORM_EPS)
        cos = cosines(q.e_hat, c_hat, p.precision)
        z = q.scale[..., None] * cos
        prob = jnp.where(_others(p.labels, q.offset, kept, start, size, new),
                         _math.softmax_weight((z - shift[..., None]) - log_sum[..., None]), 0.0)
        dcos = tangent_sum(
            (1.0, None if de_hat is None else cosines(de_hat, c_hat, p.precision)),
            (1.0, None if dc is None else cosines(q.e_hat, _math.normalize_tangent(
                c_hat, c_norm, _rows(dc, kept, start, size), NORM_EPS), p.precision)))
        return (totals[0] + jnp.sum(prob * dcos, axis=-1) if spread else None,
                totals[1] + jnp.sum(prob * cos, axis=-1) if expect else None)

    if not (spread or expect or t.m2 is not None or t.m3 is not None):
        return None
    zeros = row_zeros(p.embeddings, centers, de, dc)
    init = (zeros if spread else None, zeros if expect else None)
    stream_dcos, stream_cos = (_math.psum(x, axis_name)
                               for x in fold_classes(body, init, count, size, checkpoint=True))
    miss = -jnp.exp(others - log_sum)  # p_y − 1 = −Σ_{c≠y} p_c: ∂ℓ/∂z_y
    dcos_y = None
    if spread:
        dy = owned_rows(dc, p.labels, q.offset)
        dcos_y = _math.psum(tangent_sum(
            (1.0, None if de_hat is None else jnp.sum(de_hat * q.y_hat, axis=-1)),
            (1.0, None if dy is None else jnp.sum(q.e_hat * _math.normalize_tangent(q.y_hat, q.y_norm, dy, NORM_EPS),
                                                  axis=-1))), axis_name)
    d = tangent_sum(
        (q.scale, stream_dcos),
        (q.scale * miss * q.d_cos, dcos_y),
        (None if stream_cos is None else stream_cos + miss * q.target, t.scale),
        (q.scale * miss * q.d_m2, t.m2),
        (-q.scale * miss, t.m3),
    )
    counted = class_ids(p.labels, _math.psum(classes, axis_name), p.ignore_index)[1]
    return None if d is None else jnp.where(counted, d, 0.0)


@hand_derivative(_angular_margin_tangent, static=("m1", "straight_through", "ignore_index", "block_size",
                                                 "class_axis_name", "sample_rate", "precision"),
                 check=_check_angular, residuals=True, per_example=("embeddings", "labels"), class_axis=("embeddings",),
                 integer_options=("labels", "key"))
def angular_margin_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1,
                        scale: ArrayLike = 64.0, m1: int = 1, m2: ArrayLike = 0.5, m3: ArrayLike = 0.0,
                        straight_through: bool = False, ignore_index: int | None = IGNORE_INDEX,
                        block_size: int | None = None, class_axis_name: AxisName | None = None,
                        sample_rate: float = 1.0, key: Array | None = None, precision: Precision = None,
                        where: Array | None = None) -> tuple[jax.Array, tuple[Any, ...]]:
    r"""Softmax cross-entropy over scaled cosines to class centres with the combined angular margin.

    The embeddings and the class centres are L2-normalised inside (``jaxloss._math.normalize``,
    ``torch.nn.functional.normalize``'s norm floor of 1e-12); :math:`\cos\theta_c = \langle\hat
    e, \hat w_c\rangle`.  The label class ``y`` gets the combined margin of the ArcFace paper,

    .. math:: z_c = s\cos\theta_c \;(c \ne y), \qquad z_y = s\,(\psi(\theta_y) - m_3), \qquad
              \ell = \log\sum_c e^{z_c} - z_y ,

    with :math:`\psi(\theta) = \cos(m_1\theta + m_2)` computed without an ``acos``:
    :math:`\cos(m_1\theta) = T_{m_1}(\cos\theta)` and :math:`\sin(m_1\theta) = \sin\theta\,
    U_{m_1-1}(\cos\theta)` (Chebyshev polynomials), :math:`\sin\theta = \sqrt{1-\cos^2\theta}`,
    and the angle-addition formula.  So that the label logit keeps decreasing in θ:

    * ``m1 == 1`` (ArcFace, CosFace): where :math:`\theta + m_2 \ge \pi`, i.e.
      :math:`\cos\theta \le \cos(\pi - m_2)`, :math:`\psi = \cos\theta - m_2\sin m_2` (the
      ``th``/``mm`` fallback of InsightFace's earlier ``ArcFace`` head, ``mm = sin(π − m2)·m2``,
      and of pytorch-metric-learning's ``ArcFaceLoss``);
    * ``m1 >= 2`` (SphereFace): SphereFace's monotone extension on :math:`\theta' = m_1\theta +
      m_2`: :math:`\psi = (-1)^k\cos\theta' - 2k` for :math:`\theta' \in [k\pi, (k+1)\pi]`, ``k``
      found by comparing :math:`\cos\theta` with :math:`\cos((j\pi - m_2)/m_1)`.  With
      ``m2 = 0`` this is the paper's :math:`(-1)^k\cos(m_1\theta) - 2k`.

    Derivatives (hand rule, a JVP linear in the tangents): with :math:`p = \operatorname{softmax}(z)`
    and :math:`a_c = p_c` for :math:`c \ne y`, :math:`a_y = (p_y - 1)\,\psi'(\cos\theta_y)`,

    .. math:: d\ell = s\sum_c a_c\, d\cos\theta_c
              + \Big(\sum_c p_c \tfrac{z_c}{s} - (\psi - m_3)\Big) ds
              + s\,(p_y - 1)\Big(\frac{\partial\psi}{\partial m_2} dm_2 - dm_3\Big),

    :math:`\psi'(\cos\theta) = m_1\sin(m_1\theta + m_2)/\sin\theta = m_1 (U_{m_1-1}\cos m_2 +
    T_{m_1}\sin m_2/\sin\theta)` and :math:`\partial\psi/\partial m_2 = -\sin(m_1\theta + m_2)`
    (times :math:`(-1)^k` in SphereFace's extension; 1 and :math:`-(\sin m_2 + m_2\cos m_2)` in
    ArcFace's fallback), and :math:`d\cos\theta_c = \langle d\hat e, \hat w_c\rangle + \langle\hat
    e, d\hat w_c\rangle` through the normalisations :math:`d\hat x = (dx - \hat x\langle\hat x,
    dx\rangle)/\|x\|` (``dx/1e-12`` where the norm is floored).  Reverse mode keeps the inputs and
    three numbers per example (the shift, the log-sum-exp and the other classes' share of
    it), and recomputes the cosines and the softmax; no ``[..., C]`` array is stored.  The
    label's cosine comes from its own centre (a dot product), and the label's weight
    :math:`p_y - 1 = -\sum_{c \ne y} p_c` from the other classes' share, which neither
    cancels nor disagrees with the recomputed softmax.

    **Many classes.**  With ``block_size=B`` the forward folds over blocks of ``B`` class
    centres (``lax.scan``), normalising each block and keeping a running maximum and
    log-sum-exp of the other classes' logits per example (the online softmax); the label
    logit joins at the end.  The rule recomputes each block (a checkpointed scan), so
    neither pass holds more than ``[..., B]`` logits, nor a normalised copy of the
    centres: at C = 1,000,000 and D = 512 the compiled temporaries of value and gradient
    stay far below the 4 GiB of an ``[N, C]`` logits array for N = 1024
    (``benchmarks/angular_classes.py``).  ``None`` (default) takes every class in one block.

    **Class-parallel form (Partial FC).**  Inside ``shard_map`` with ``class_axis_name=``,
    each device holds a slice of the classes: device ``k`` of ``n`` has centres
    ``[k·C/n, (k+1)·C/n)`` (``class_centers`` sharded ``P(axis)``), while ``embeddings``,
    ``labels`` (global ids) and the options are the same on every device.  The global
    log-sum-exp comes from a ``pmax`` and a ``psum`` of the per-device statistics and the
    label's cosine from the device that owns it, so every device returns the same losses,
    and the gradients (the embeddings', each device's centres', the options') equal those
    of one device holding every class.  The loss does not gather the embeddings: in data
    parallelism, all-gather them (and the labels) yourself, take your own examples'
    losses and reduce them with ``jaxloss.reduce.mean(..., axis_name=)``; the gather's
    transpose returns each device its rows' gradient (``tests/test_angular_classes.py``).

    **Partial FC sampling.**  With ``sample_rate=r < 1`` and ``key=``, each call keeps
    ``k = max(1, ⌈r·C⌉)`` of the ``C`` classes (of each shard's ``C`` under
    ``class_axis_name``, each shard drawing with ``key`` folded with its index): the classes
    of the batch's labels first (those that count: not ignored, not masked), then random
    others, uniformly; :func:`jaxloss.angular.partial_fc_classes` returns the same set.  Only
    the ``k`` kept centres are gathered (``[k, D]``, per block with ``block_size``) and only
    their logits computed.  With :math:`S` the kept set (over every shard), each example's loss is

    .. math:: \ell = \log\Big(e^{z_y} + \sum_{c \in S,\, c \ne y} e^{z_c}\Big) - z_y ,

    the softmax cross-entropy over :math:`S \cup \{y\}`: the label logit :math:`z_y` (with its
    margins) always comes from the label's own centre, so an example's class counts even when
    the batch has more distinct labels than ``k`` (then a random ``k`` of them are kept as
    negatives for the others).  The derivatives are the true ones of this ℓ with :math:`S`
    fixed (the indices are integers, constants of every derivative, forward mode and HVPs
    included): a centre neither kept nor a label gets derivative exactly 0.  Fewer negatives
    make the value lower than the full softmax's (a biased estimate of it, the bias shrinking as
    ``r → 1``; ``r = 1``, the default, is the full loss, exactly); InsightFace trains millions
    of classes with ``r`` = 0.1–0.3 at an accuracy close to the full softmax's (An et al.,
    below).  Pass a new key each step.
    Differs from InsightFace's ``PartialFC_V2``: it all-gathers the embeddings and labels
    itself (here the caller does, as above, and the positives are the labels passed in); its
    ``k`` is ``int(r·C)``, and when the batch has more positives than that it keeps all of them
    (a shape that changes per step, impossible under ``jit``); it clamps the cosines to [−1, 1].

    At :math:`\cos\theta = \pm 1` (an embedding along or against its class centre)
    :math:`\sin\theta = 0` and :math:`\psi'` is infinite when :math:`\sin m_2 \ne 0`; the rule
    takes the subgradient with :math:`\partial\sin\theta/\partial\cos\theta = 0` there, i.e.
    :math:`\psi' = m_1 U_{m_1-1}(\pm1)\cos m_2`.  The gradient with respect to the embedding
    (and the centre) is then finite: at exactly ±1 the direction towards the centre is
    undefined, and :math:`d\cos\theta` vanishes anyway.  A zero embedding has cosines 0 and the
    finite gradient ``dx/1e-12`` of the floored normalisation.

    Class ids are compared in int32, as in :func:`jaxloss.softmax_cross_entropy`: an id equal
    to ``ignore_index`` (PyTorch's −100 by default) gives loss 0 and derivative exactly 0 with
    respect to every argument (the embedding, and that example's share of the class centres'
    and the options' derivatives); any other id outside ``[0, C)`` gives a NaN loss, with
    derivative 0 (:func:`jaxloss.checks.checked` names it).  Differs from
    pytorch-metric-learning, whose losses raise an ``IndexError`` for every id outside
    ``[0, C)``, −100 included (they index a margin mask with the labels before their
    cross-entropy).

    What is matched.  By default the value and every derivative are those of the formula
    above, as pytorch-metric-learning's ``ArcFaceLoss`` (values and gradients) and
    ``CosFaceLoss`` (values) compute them; see the wrappers.  InsightFace's ``arcface_torch`` ``CombinedMarginLoss``
    differs: for ``m1 = 1`` it takes ``acos``, adds ``m2`` and takes ``cos`` under
    ``torch.no_grad`` (no fallback past :math:`\theta_y + m_2 = \pi`), so its gradient is that
    of the plain logit :math:`s\cos\theta_y`, as if there were no angular margin, evaluated at
    the softmax of the margin logits (and with ``m3 > 0`` it subtracts ``m3`` and ignores
    ``m2``).  ``straight_through=True`` gives that: :math:`\psi = \cos(m_1\theta_y + m_2)` in
    value, without the fallback or the extension above, and :math:`\psi'(\cos\theta) = 1` in
    the rule, so that :math:`a_y = p_y - 1`; the ``m2`` and ``m3`` derivatives stay the
    formula's.  ``.reference`` differentiates the same thing: ψ is computed from a stopped
    :math:`\cos\theta_y` and :math:`\cos\theta_y - \operatorname{stop}(\cos\theta_y)` is added.

    Args:
      embeddings: float array ``[..., D]``, any leading batch axes.
      axis: static; the feature axis D of ``embeddings``, an int (-1, the last, by default);
        ``class_centers`` stay ``[C, D]``.
      class_centers: float array ``[C, D]`` (pytorch-metric-learning's ``W.T``), differentiated.
      labels: integer class ids ``[...]``, the batch shape of ``embeddings``.
      scale: ``s > 0``, a float or an array of the batch shape; differentiated.
      m1: SphereFace's multiplicative angular margin, a positive Python integer (static).
      m2: ArcFace's additive angular margin in radians, in ``[0, π)``; differentiated.
      m3: CosFace's additive cosine margin; differentiated.
      straight_through: static; InsightFace's ``arcface_torch`` margin (see above): the
        margin's value with the derivative of the margin-free label logit in :math:`\cos\theta_y`.
      ignore_index: static; the class id that marks an example to ignore, an int (−100 by
        default, as in PyTorch's cross-entropy) or ``None`` (every id outside ``[0, C)`` is invalid).
      block_size: static; classes per block (see above), a positive int, or None (every
        class at once).  When it does not divide ``C`` the last block overlaps the one before.
      class_axis_name: static; the ``shard_map`` axis the classes are sharded over (see
        above), or None.
      sample_rate: static; the share of the classes (of each shard's) a call keeps (see
        Partial FC sampling above), a Python float in ``(0, 1]``; 1 (default) keeps every class.
      key: a PRNG key (``jax.random.key``, or a raw ``jax.random.PRNGKey``), required when
        ``sample_rate < 1``; a new one each step.
      precision: static; the precision of every matmul, in the value and the derivatives: a
        ``jax.lax.Precision`` or its name.  None (default) is ``HIGHEST``: the matmuls run in
        float32 (lower-precision inputs are upcast first), which GPUs may otherwise run in TF32,
        outside float32 tolerances; ``"default"`` trades that accuracy for speed.
      where: optional boolean mask broadcasting to the batch shape ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``embeddings.shape[:-1]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.angular_margin_loss(e, centers, jnp.array([0, 2, 0]), scale=8.0, m2=0.3, m3=0.1)
      Array([0.00940854, 0.0519114 , 6.653363  ], dtype=float32)

    References:
      J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
      Face Recognition", CVPR 2019 (arXiv:1801.07698), and InsightFace's ``CombinedMarginLoss``
      (``recognition/arcface_torch/losses.py``, with ``straight_through=True``); H. Wang et al.,
      "CosFace", CVPR 2018; W. Liu et al., "SphereFace", CVPR 2017; X. An et al., "Partial FC:
      Training 10 Million Identities on a Single Machine", ICCVW 2021 (arXiv:2010.05222) and
      InsightFace's ``PartialFC_V2`` (``recognition/arcface_torch/partial_fc_v2.py``).  pytorch-metric-learning's
      ``ArcFaceLoss``, ``CosFaceLoss`` and ``SphereFaceLoss`` (see the wrappers).
    """
    q = _label_parts(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, class_axis_name)
    classes = class_centers.shape[0]
    _, counted, invalid = class_ids(labels, _math.psum(classes, class_axis_name), ignore_index)
    # The kept classes: integers drawn once in the forward, handed to the rule as a residual.
    kept = partial_fc_classes(labels, classes, sample_rate, key, axis_name=class_axis_name,
                              counted=counted if where is None else counted & where)
    count = classes if kept is None else kept.shape[0]
    size = _block_size(count, block_size)

    def body(carry, start, new):
        c_hat, _ = _math.normalize(_rows(class_centers, kept, start, size), NORM_EPS)
        z = q.scale[..., None] * cosines(q.e_hat, c_hat, precision)
        return _math.logsumexp_step(carry, jnp.where(_others(labels, q.offset, kept, start, size, new), z, -jnp.inf))

    zeros = row_zeros(embeddings, class_centers)
    top, total = fold_classes(body, (zeros - jnp.inf, zeros), count, size)
    top, total = merge_logsumexp(top, total, class_axis_name)
    # The label logit joins the other classes' log-sum-exp: the shift (the largest logit), the
    # others' share log Σ_{c≠y} exp(z_c − shift) (−inf when there is no other class) and
    # log Σ_c exp(z_c − shift) = logaddexp(others, z_y − shift): a log1p of the smaller part, so a
    # small loss keeps its digits.
    shift = jax.lax.stop_gradient(jnp.maximum(top, q.z_y))
    empty = total == 0
    others = jnp.where(empty, -jnp.inf, jnp.log(jnp.where(empty, 1.0, total)) + (top - shift))
    log_sum = jnp.logaddexp(others, q.z_y - shift)
    loss = loud(jnp.where(counted, (shift - q.z_y) + log_sum, 0.0), invalid)
    return loss, (shift, log_sum, others, kept)


_P = ParamSpec("_P")


def _special_case(margins: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[[Callable[_P, jax.Array]], Loss[_P]]:
    """Make a public loss of a signature stub: :func:`angular_margin_loss` with the margins
    ``margins(arguments)`` (the stub's bound arguments), under the stub's name, signature and
    docstring, with its ``.reference``.  The stub's body never runs (it raises)."""

    def decorate(stub: Callable[_P, jax.Array]) -> Loss[_P]:
        signature = inspect.signature(stub)

        def build(loss):
            @functools.wraps(stub)
            def fn(*args, **kwargs):
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                a = bound.arguments
                return loss(a["embeddings"], a["class_centers"], a["labels"], axis=a["axis"], scale=a["scale"],
                            ignore_index=a["ignore_index"], block_size=a["block_size"],
                            class_axis_name=a["class_axis_name"], sample_rate=a["sample_rate"], key=a["key"],
                            precision=a["precision"], where=a["where"],
                            **margins(a))

            return fn

        reference = build(angular_margin_loss.reference)
        reference.__doc__ = f"``{stub.__name__}`` differentiated by plain autodiff of its formula."
        return derived_loss(build(angular_margin_loss), reference, like=angular_margin_loss)

    return decorate


@_special_case(lambda a: {"m2": a["margin"], "straight_through": a["straight_through"]})
def arcface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 64.0,
                 margin: ArrayLike = 0.5, straight_through: bool = False, ignore_index: int | None = IGNORE_INDEX,
                 block_size: int | None = None, class_axis_name: AxisName | None = None, sample_rate: float = 1.0,
                 key: Array | None = None, precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""ArcFace (additive angular margin) per example: :func:`angular_margin_loss` with ``m2 = margin``.

    :math:`\ell = -\log\frac{e^{s\cos(\theta_y + m)}}{e^{s\cos(\theta_y + m)} + \sum_{c\ne y}
    e^{s\cos\theta_c}}`, with the fallback :math:`\cos\theta_y - m\sin m` where
    :math:`\theta_y + m \ge \pi`; derivatives, finiteness at cos θ = ±1 and Args as in
    :func:`angular_margin_loss` (``margin``: radians, in ``[0, π)``, differentiated), blockwise
    (``block_size``), class-sharded (``class_axis_name``) and sampled (``sample_rate``, ``key``) forms included.
    The defaults ``s = 64``, ``m = 0.5`` are the paper's and InsightFace's.

    What is matched: pytorch-metric-learning's ``ArcFaceLoss(num_classes, D, margin=degrees,
    scale=s, reducer=DoNothingReducer())`` gives the same per-example losses and gradients, with
    ``margin`` in DEGREES (its default 28.6° ≈ 0.5 rad) and ``W = class_centers.T`` stored
    ``[D, C]``.  ``straight_through=True`` (static) gives InsightFace's ``arcface_torch``
    ``CombinedMarginLoss`` instead: the value :math:`s\cos(\theta_y + m)` (no fallback) with
    the derivative of the margin-free logit :math:`s\cos\theta_y` (the margin is added under
    ``torch.no_grad`` there); see :func:`angular_margin_loss`.

    Returns:
      Losses of the batch shape ``embeddings.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.arcface_loss(e, centers, jnp.array([0, 2, 0]), scale=8.0, margin=0.3)
      Array([4.2384858e-03, 2.3659235e-02, 5.8549423e+00], dtype=float32)

    References:
      J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
      Face Recognition", CVPR 2019 (arXiv:1801.07698); pytorch-metric-learning ``ArcFaceLoss``;
      InsightFace ``CombinedMarginLoss`` (``recognition/arcface_torch/losses.py``).
    """
    raise NotImplementedError


@_special_case(lambda a: {"m2": 0.0, "m3": a["margin"]})
def cosface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 64.0,
                 margin: ArrayLike = 0.35, ignore_index: int | None = IGNORE_INDEX, block_size: int | None = None,
                 class_axis_name: AxisName | None = None, sample_rate: float = 1.0, key: Array | None = None,
                 precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""CosFace (large margin cosine loss) per example: :func:`angular_margin_loss` with ``m3 = margin``.

    :math:`\ell = -\log\frac{e^{s(\cos\theta_y - m)}}{e^{s(\cos\theta_y - m)} + \sum_{c\ne y}
    e^{s\cos\theta_c}}`; derivatives and Args as in :func:`angular_margin_loss` (``margin``
    differentiated), ``block_size``, ``class_axis_name``, ``sample_rate`` and ``key`` included.  The
    defaults ``s = 64``, ``m = 0.35`` are the paper's.
    pytorch-metric-learning's ``CosFaceLoss(num_classes, D, margin=m, scale=s,
    reducer=DoNothingReducer())`` gives the same per-example losses with ``W = class_centers.T``.

    Returns:
      Losses of the batch shape ``embeddings.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.cosface_loss(e, centers, jnp.array([0, 2, 0]), scale=8.0, margin=0.2)
      Array([0.00927816, 0.01716107, 5.183334  ], dtype=float32)

    References:
      H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu, "CosFace: Large Margin
      Cosine Loss for Deep Face Recognition", CVPR 2018 (arXiv:1801.09414);
      pytorch-metric-learning ``CosFaceLoss``.
    """
    raise NotImplementedError


@_special_case(lambda a: {"m1": a["margin"], "m2": 0.0})
def sphereface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 1.0,
                    margin: int = 4, ignore_index: int | None = IGNORE_INDEX, block_size: int | None = None,
                    class_axis_name: AxisName | None = None, sample_rate: float = 1.0, key: Array | None = None,
                    precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""SphereFace (A-Softmax, multiplicative angular margin) per example:
    :func:`angular_margin_loss` with ``m1 = margin``.

    The label logit is :math:`s\,\psi(\theta_y)` with :math:`\psi(\theta) = (-1)^k\cos(m\theta) -
    2k` for :math:`\theta \in [k\pi/m, (k+1)\pi/m]` (the paper's monotone extension), computed
    from Chebyshev polynomials of :math:`\cos\theta`: a polynomial in it, smooth at ±1.
    ``margin`` is the integer ``m`` (static, no derivative); the default 4 is the paper's and
    pytorch-metric-learning's, and so is ``scale = 1``.  Class ids, ``ignore_index``,
    ``block_size``, ``class_axis_name``, ``sample_rate``, ``key``, ``precision`` and ``where`` as in
    :func:`angular_margin_loss`.

    Unlike this function, the paper and pytorch-metric-learning's ``SphereFaceLoss`` keep the
    embedding's norm: their logits are :math:`\|e\|\cdot s\cdot(\ldots)`.  The same per-example
    losses come from passing the per-example ``scale = s·‖e‖`` (a float array of the batch shape),
    and for unit-norm embeddings they agree as they are.  The paper's annealing
    :math:`(\lambda\cos\theta + \psi)/(1 + \lambda)` is not included.

    Returns:
      Losses of the batch shape ``embeddings.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.sphereface_loss(e, centers, jnp.array([0, 2, 0]), scale=8.0)
      Array([1.7035231e-02, 8.0006704e+00, 2.0915417e+01], dtype=float32)

    References:
      W. Liu, Y. Wen, Z. Yu, M. Li, B. Raj, L. Song, "SphereFace: Deep Hypersphere Embedding for
      Face Recognition", CVPR 2017 (arXiv:1704.08063); pytorch-metric-learning ``SphereFaceLoss``.
    """
    raise NotImplementedError
