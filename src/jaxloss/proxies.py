"""Centre- and proxy-based metric learning: embeddings against learned class vectors.

Center loss pulls each embedding towards its class centre (:func:`center_update` is the
paper's moving-average step for the centres, state rather than a loss); ProxyNCA and
sub-centre ArcFace are softmax losses over the cosines to one (or K) proxies per class,
one loss per embedding; Proxy-Anchor is defined on the whole batch (one number).  The
class vectors are differentiated arguments, ``[C, D]`` (``[C, K, D]`` for the sub-centres),
passed after the embeddings and before the labels as in :func:`jaxloss.arcface_loss`.
Every loss supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; its derivative comes from the hand-derived
rule above it, and ``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks, _math
from jaxloss._margins import NORM_EPS, cosine_tangent, cosines, margin_target
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, label_value, loud, one_hot, shifted_logsumexp
from jaxloss._streaming import check_precision
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, AxisName, Precision

__all__ = ["center_loss", "center_update", "proxy_anchor_loss", "proxy_nca_loss", "subcenter_arcface_loss"]


# ------------------------------------------------------------------ center loss


def _check_center(embeddings, centers, labels, ignore_index, where):
    batch = _checks.class_vectors(embeddings, centers, labels, "centers")
    _checks.broadcasts_to("where", where, batch, "the batch shape of embeddings")
    check_ignore_index(ignore_index)


def _center_tangent(p, t, out, res):
    ids, counted, _ = class_ids(p.labels, p.centers.shape[0], p.ignore_index)
    safe = jnp.where(counted, ids, 0)
    diff = p.embeddings - jnp.take(p.centers, safe, axis=0)
    dx = t.embeddings
    if t.centers is not None:
        dc = jnp.take(t.centers, safe, axis=0)
        dx = -dc if dx is None else dx - dc
    return None if dx is None else jnp.where(counted, jnp.sum(diff * dx, axis=-1), 0.0)


@hand_derivative(_center_tangent, static=("ignore_index",), check=_check_center, per_example=("embeddings", "labels"),
                 class_axis=("embeddings",))
def center_loss(embeddings: Array, centers: Array, labels: Array, *, axis: int = -1,
                ignore_index: int | None = IGNORE_INDEX, where: Array | None = None) -> jax.Array:
    r"""Center loss per example: half the squared distance of an embedding to its class centre.

    .. math:: \ell_i = \tfrac12\,\lVert x_i - c_{y_i}\rVert^2, \qquad
              d\ell_i = \langle x_i - c_{y_i},\; dx_i - dc_{y_i}\rangle ,

    so :math:`\partial\ell_i/\partial x_i = x_i - c_{y_i}` and the centre :math:`c_j` gets
    :math:`-\sum_{i: y_i = j}(x_i - c_j)` from the sum of the losses (its true derivative; the
    paper instead moves the centres with :func:`center_update`, ``jax.lax.stop_gradient`` them
    here to do the same).  The paper's :math:`\mathcal L_C = \sum_i \ell_i` over the batch,
    added to a softmax loss with weight λ, is ``λ·jaxloss.reduce.sum(losses)``.

    Class ids are compared in int32: an id equal to ``ignore_index`` (−100 by default) gives
    loss 0 and derivative 0; any other id outside ``[0, C)`` a NaN loss (derivative 0;
    :func:`jaxloss.checks.checked` names it).

    Args:
      embeddings: float ``[..., D]``, any leading batch axes.
      centers: float ``[C, D]``, the class centres; differentiated.
      labels: integer class ids ``[...]``, the batch shape of ``embeddings``.
      axis: static; the feature axis D of ``embeddings`` (-1 by default); ``centers`` stay ``[C, D]``.
      ignore_index: static; the id of examples to ignore (−100 by default) or None.
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``[...]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[1.0, 2.0], [0.0, 0.0], [3.0, -1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.center_loss(x, centers, jnp.array([0, 1, -100]))
      Array([2. , 0.5, 0. ], dtype=float32)

    References:
      Y. Wen, K. Zhang, Z. Li, Y. Qiao, "A Discriminative Feature Learning Approach for Deep Face
      Recognition", ECCV 2016, Eq. 2.  pytorch-metric-learning 2.9 has no center loss.  Differs from
      the paper's Eq. 2: one loss per example (no sum) and the true derivative for the centres.
    """
    ids, counted, invalid = class_ids(labels, centers.shape[0], ignore_index)
    diff = embeddings - jnp.take(centers, jnp.where(counted, ids, 0), axis=0)
    return loud(jnp.where(counted, 0.5 * jnp.sum(diff * diff, axis=-1), 0.0), invalid)


def center_update(centers: Array, embeddings: Array, labels: Array, *, alpha: ArrayLike = 0.5,
                  where: Array | None = None, axis_name: AxisName | None = None) -> jax.Array:
    r"""The center loss paper's update of the class centres, one step.

    .. math:: \Delta c_j = \frac{\sum_{i: y_i = j}(c_j - x_i)}{1 + n_j}, \qquad
              c_j \leftarrow c_j - \alpha\,\Delta c_j ,

    with :math:`n_j` the number of (unmasked) examples of class ``j``; a class absent from the
    batch keeps its centre.  The per-class sums and counts are summed over the devices of
    ``axis_name`` (a psum), so a sharded batch gives the update of the whole batch.  Not a
    loss: plain ``jnp``, differentiable by autodiff; call it on ``jax.lax.stop_gradient``
    embeddings as the paper does.  Ids outside ``[0, C)`` (``ignore_index`` included) count for
    no class.

    Args:
      centers: float ``[C, D]``.
      embeddings: float ``[..., D]``.
      labels: integer class ids ``[...]``.
      alpha: the centres' learning rate α in [0, 1] (0.5, as in the paper's experiments).
      where: optional boolean mask broadcasting to ``[...]``: masked examples are left out.
      axis_name: None, or a ``shard_map``/``pmap``/``vmap`` axis the batch is sharded over.

    Returns:
      The new centres ``[C, D]``, in ``centers``' dtype.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[2.0, 0.0], [4.0, 0.0], [0.0, 3.0]])
      >>> jaxloss.center_update(jnp.zeros((2, 2)), x, jnp.array([0, 0, 1]), alpha=0.5)
      Array([[1.  , 0.  ],
             [0.  , 0.75]], dtype=float32)

    References:
      Y. Wen et al., ECCV 2016, Eq. 4 and Algorithm 1.
    """
    batch = _checks.class_vectors(embeddings, centers, labels, "centers")
    _checks.mask("where", where)
    _checks.broadcasts_to("where", where, batch, "the batch shape of embeddings")
    _checks.in_unit_interval("alpha", alpha)
    _checks.hashable("axis_name", axis_name)
    classes = centers.shape[0]
    x = jnp.reshape(embeddings, (-1, embeddings.shape[-1])).astype(_math.compute_dtype(embeddings.dtype))
    ids = jnp.reshape(jnp.asarray(labels).astype(jnp.int32), (-1,))
    keep = (ids >= 0) & (ids < classes)
    if where is not None:
        keep = keep & jnp.reshape(jnp.broadcast_to(where, batch), (-1,))
    ids = jnp.where(keep, ids, classes)  # out of range: dropped by the segment sums
    sums = _math.psum(jax.ops.segment_sum(jnp.where(keep[:, None], x, 0.0), ids, classes), axis_name)
    counts = _math.psum(jax.ops.segment_sum(keep.astype(x.dtype), ids, classes), axis_name)
    c = centers.astype(x.dtype)
    delta = (counts[:, None] * c - sums) / (1 + counts[:, None])
    return (c - alpha * delta).astype(centers.dtype)


# ------------------------------------------------------------------ ProxyNCA


def _check_proxy_nca(embeddings, proxies, labels, softmax_scale, ignore_index, precision, where):
    batch = _checks.class_vectors(embeddings, proxies, labels, "proxies")
    _checks.broadcasts_to("where", where, batch, "the batch shape of embeddings")
    _checks.float_option("softmax_scale", softmax_scale, batch, "the batch shape of embeddings")
    _checks.positive("softmax_scale", softmax_scale)
    check_ignore_index(ignore_index)
    check_precision(precision)


def _nca_parts(embeddings, proxies, softmax_scale, precision):
    """``(ê, ‖e‖, p̂, ‖p‖, cos [..., C], s, logits = 2s·cos)``."""
    e_hat, e_norm = _math.normalize(embeddings, NORM_EPS)
    p_hat, p_norm = _math.normalize(proxies, NORM_EPS)
    cos = cosines(e_hat, p_hat, precision)
    scale = jnp.asarray(softmax_scale, cos.dtype)
    return e_hat, e_norm, p_hat, p_norm, cos, scale, 2 * scale[..., None] * cos


def _proxy_nca_tangent(p, t, out, res):
    shift, lse = res
    e_hat, e_norm, p_hat, p_norm, cos, scale, logits = _nca_parts(p.embeddings, p.proxies, p.softmax_scale,
                                                                  p.precision)
    g = jnp.exp((logits - shift[..., None]) - lse[..., None]) - one_hot(p.labels, cos.shape[-1])  # ∂ℓ/∂z
    dcos = cosine_tangent(e_hat, e_norm, p_hat, p_norm, t.embeddings, t.proxies, p.precision)
    d = tangent_sum((2 * scale, None if dcos is None else jnp.sum(g * dcos, axis=-1)),
                    (2 * jnp.sum(g * cos, axis=-1), t.softmax_scale))
    counted = class_ids(p.labels, p.proxies.shape[0], p.ignore_index)[1]
    return None if d is None else jnp.where(counted, d, 0.0)


@hand_derivative(_proxy_nca_tangent, static=("ignore_index", "precision"), check=_check_proxy_nca, residuals=True,
                 per_example=("embeddings", "labels"), class_axis=("embeddings",))
def proxy_nca_loss(embeddings: Array, proxies: Array, labels: Array, *, axis: int = -1,
                   softmax_scale: ArrayLike = 1.0, ignore_index: int | None = IGNORE_INDEX,
                   precision: Precision = None,
                   where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""ProxyNCA per example: softmax cross-entropy over the negated squared distances of the
    L2-normalised embedding to the L2-normalised proxies.

    With :math:`\hat e = e/\lVert e\rVert`, :math:`\hat p_c = p_c/\lVert p_c\rVert` (norm floor
    1e-12) and the logits :math:`z_c = -s\lVert\hat e - \hat p_c\rVert^2 = 2s\cos\theta_c - 2s`,

    .. math:: \ell = \log\sum_c e^{z_c} - z_y, \qquad
              d\ell = \sum_c (\pi_c - [c = y])\,(2s\,d\cos\theta_c + 2\cos\theta_c\,ds),

    :math:`\pi = \operatorname{softmax}(z)`, computed from :math:`z_c = 2s\cos\theta_c` (the
    softmax ignores the constant), and :math:`d\cos\theta_c = \langle d\hat e, \hat p_c\rangle +
    \langle\hat e, d\hat p_c\rangle` through the normalisations (as in
    :func:`jaxloss.angular_margin_loss`; a zero embedding has cosines 0 and finite derivatives).
    Reverse mode keeps a shift and a log-sum-exp per example.

    Class ids, ``ignore_index`` and ``where`` as in :func:`jaxloss.softmax_cross_entropy`.

    Args:
      embeddings: float ``[..., D]``, any leading batch axes.
      proxies: float ``[C, D]``, one proxy per class; differentiated.
      labels: integer class ids ``[...]``.
      axis: static; the feature axis D of ``embeddings`` (-1 by default).
      softmax_scale: ``s > 0``, a float or an array of the batch shape; differentiated
        (pytorch-metric-learning's ``softmax_scale``, default 1).
      ignore_index: static; the id of examples to ignore (−100 by default) or None.
      precision: static; the matmuls' precision, a ``jax.lax.Precision`` or its name (None:
        ``HIGHEST`` for float32, as GPUs may otherwise use TF32).
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``[...]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0]])
      >>> proxies = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.proxy_nca_loss(e, proxies, jnp.array([0, 2]), softmax_scale=3.0)
      Array([0.00901202, 0.01430248], dtype=float32)

    References:
      Y. Movshovitz-Attias, A. Toshev, T. Leung, S. Ioffe, S. Singh, "No Fuss Distance Metric
      Learning using Proxies", ICCV 2017.  Matches pytorch-metric-learning's ``ProxyNCALoss``
      (``LpDistance(power=2)`` on normalised vectors, ``softmax_scale``) per example; its default
      ``MeanReducer`` is ``jaxloss.reduce.mean`` (it also drops examples whose probability
      underflows to 0, where this loss stays finite).  Differs from the paper, whose denominator
      leaves out the label's own proxy; a zero proxy gets :math:`z_c = 0` here and
      :math:`-s` in pytorch-metric-learning.
    """
    *_, logits = _nca_parts(embeddings, proxies, softmax_scale, precision)
    shift, lse = shifted_logsumexp(logits)
    _, counted, invalid = class_ids(labels, proxies.shape[0], ignore_index)
    loss = lse - (label_value(logits, labels) - shift)
    return loud(jnp.where(counted, loss, 0.0), invalid), (shift, lse)


# ------------------------------------------------------------------ Proxy-Anchor


def _check_proxy_anchor(embeddings, proxies, labels, margin, alpha, ignore_index, axis_name, precision, where):
    batch = _checks.class_vectors(embeddings, proxies, labels, "proxies", batch_rank=1)
    _checks.broadcasts_to("where", where, batch, "the examples of embeddings")
    _checks.float_option("margin", margin, (), "a scalar")
    _checks.positive("margin", margin, allow_zero=True)
    _checks.float_option("alpha", alpha, (), "a scalar")
    _checks.positive("alpha", alpha)
    check_ignore_index(ignore_index)
    _checks.hashable("axis_name", axis_name)
    check_precision(precision)


def _log1p_sum(a, keep, axis_name):
    r"""``log(1 + Σ_{n: keep} exp(a[n, c]))`` per column ``c`` (``−inf`` never reaches the sum),
    the sum over every device's rows under ``axis_name`` (a ``pmax`` of the shift, a ``psum`` of
    the sum), and the softmax weights ``exp(a − that)`` of the local rows (0 off ``keep``): the
    derivative in ``a``."""
    a = jnp.where(keep, a, -jnp.inf)
    top = jnp.maximum(jnp.max(jax.lax.stop_gradient(a), axis=0), 0.0)
    top = top if axis_name is None else jax.lax.pmax(top, axis_name)
    total = jnp.log(jnp.exp(-top) + _math.psum(jnp.sum(jnp.exp(a - top), axis=0), axis_name)) + top
    return total, jnp.exp(a - total)


def _anchor_parts(embeddings, proxies, labels, margin, alpha, ignore_index, axis_name, precision, where):
    """The cosines ``[N, C]``, the positive and negative arguments' masks and log-sums, and the
    divisors: the proxies with a positive in the batch (at least 1) and C; under ``axis_name``
    the log-sums, the divisor and whether an id is invalid are those of the whole batch."""
    e_hat, e_norm = _math.normalize(_math.masked_rows(embeddings, where), NORM_EPS)
    p_hat, p_norm = _math.normalize(proxies, NORM_EPS)
    cos = cosines(e_hat, p_hat, precision)
    _, counted, invalid = class_ids(labels, proxies.shape[0], ignore_index)
    if where is not None:
        counted, invalid = counted & where, invalid & where
    label = one_hot(labels, cos.shape[-1])
    pos, neg = label & counted[:, None], ~label & counted[:, None]
    pos_sum, pos_w = _log1p_sum(alpha * (margin - cos), pos, axis_name)
    neg_sum, neg_w = _log1p_sum(alpha * (cos + margin), neg, axis_name)
    n_pos = jnp.maximum(jnp.sum(_math.psum(jnp.sum(pos, axis=0), axis_name) > 0), 1).astype(cos.dtype)
    invalid = _math.psum(jnp.sum(invalid), axis_name) > 0
    return dict(e_hat=e_hat, e_norm=e_norm, p_hat=p_hat, p_norm=p_norm, cos=cos, pos_sum=pos_sum, pos_w=pos_w,
                neg_sum=neg_sum, neg_w=neg_w, n_pos=n_pos, invalid=invalid)


def _proxy_anchor_tangent(p, t, out, res):
    q = _anchor_parts(p.embeddings, p.proxies, p.labels, p.margin, p.alpha, p.ignore_index, p.axis_name, p.precision,
                      p.where)
    g_pos, g_neg = q["pos_w"] / q["n_pos"], q["neg_w"] / p.proxies.shape[0]  # ∂ℓ/∂(α(δ − cos)), ∂ℓ/∂(α(cos + δ))
    dcos = cosine_tangent(q["e_hat"], q["e_norm"], q["p_hat"], q["p_norm"],
                           _math.masked_rows(t.embeddings, p.where), t.proxies, p.precision)
    cos = q["cos"]
    return _math.psum(tangent_sum(  # this device's examples' part; under axis_name summed over the devices
        (p.alpha, None if dcos is None else jnp.sum((g_neg - g_pos) * dcos)),
        (p.alpha * jnp.sum(g_pos + g_neg), t.margin),
        (jnp.sum(g_pos * (p.margin - cos) + g_neg * (cos + p.margin)), t.alpha),
    ), p.axis_name)


@hand_derivative(_proxy_anchor_tangent, static=("ignore_index", "axis_name", "precision"), check=_check_proxy_anchor,
                 where_of="inputs", class_axis=("embeddings",))
def proxy_anchor_loss(embeddings: Array, proxies: Array, labels: Array, *, axis: int = -1,
                      margin: ArrayLike = 0.1, alpha: ArrayLike = 32.0, ignore_index: int | None = IGNORE_INDEX,
                      axis_name: AxisName | None = None, precision: Precision = None,
                      where: Array | None = None) -> jax.Array:
    r"""Proxy-Anchor loss of a batch (one number): each proxy is an anchor for the batch's
    embeddings of its class (pulled within the margin) and of the other classes (pushed out).

    With the cosines :math:`s(x, p)` of the L2-normalised vectors, :math:`X_p^+` the examples
    of class ``p``, :math:`X_p^-` the others, :math:`P^+` the proxies with an example in the batch,

    .. math:: \ell = \frac1{|P^+|}\sum_{p\in P^+}\log\Big(1 + \sum_{x\in X_p^+} e^{-\alpha(s(x,p) - \delta)}\Big)
              + \frac1{C}\sum_{p}\log\Big(1 + \sum_{x\in X_p^-} e^{\alpha(s(x,p) + \delta)}\Big).

    Derivative: with :math:`w^\pm_{xp}` the softmax weights of each log-sum (``exp`` of the
    argument minus the log-sum; the 1 counts as an argument 0),

    .. math:: d\ell = \alpha\sum_{x,p}\Big(\frac{w^-_{xp}}{C} - \frac{w^+_{xp}}{|P^+|}\Big)\,ds(x,p)
              + \alpha\sum_{x,p}\Big(\frac{w^+_{xp}}{|P^+|} + \frac{w^-_{xp}}{C}\Big)\,d\delta
              + \sum_{x,p}\Big(\frac{w^+_{xp}}{|P^+|}(\delta - s) + \frac{w^-_{xp}}{C}(s + \delta)\Big)\,d\alpha ,

    :math:`ds(x, p)` through both normalisations.  The loss is defined on the whole batch (the
    divisor :math:`|P^+|` and every log-sum couple the examples), so it returns a scalar rather
    than per-example or per-proxy terms; ``where`` and ``ignore_index`` take examples out of the
    batch (an all-masked batch gives 0).  An id outside ``[0, C)`` that is neither masked nor
    ignored makes the loss NaN (:func:`jaxloss.checks.checked` names it).

    Args:
      embeddings: float ``[N, D]``.
      proxies: float ``[C, D]``, one proxy per class; differentiated.
      labels: integer class ids ``[N]``.
      axis: static; the feature axis D of ``embeddings`` (-1 by default).
      margin: δ >= 0, a scalar (0.1 by default, the paper's); differentiated.
      alpha: α > 0, a scalar (32 by default, the paper's); differentiated.
      ignore_index: static; the id of examples to ignore (−100 by default) or None.
      axis_name: static; None, or a ``shard_map``/``pmap``/``vmap`` axis the batch (embeddings,
        labels, ``where``) is sharded over, the proxies replicated: the per-proxy sums and counts
        are summed over the devices, so every device gets the loss of the whole batch (and its
        derivatives: the proxies' gradient is that of the whole batch once JAX sums the
        replicas' contributions, as it does for a replicated input of ``shard_map``).
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean mask ``[N]``: masked examples are left out of the batch.

    Returns:
      A scalar, float32 for lower-precision inputs (under ``axis_name``, the whole batch's on
      every device).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> proxies = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.proxy_anchor_loss(e, proxies, jnp.array([0, 2, 1]), alpha=8.0)
      Array(2.2967288, dtype=float32)

    References:
      S. Kim, D. Kim, M. Cho, S. Kwak, "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020,
      Eq. 4.  Matches pytorch-metric-learning's ``ProxyAnchorLoss(margin, alpha)`` with its default
      ``DivisorReducer`` (the sum of its ``pos_loss`` and ``neg_loss``), except that it raises for
      ids outside ``[0, C)`` (−100 included).
    """
    q = _anchor_parts(embeddings, proxies, labels, margin, alpha, ignore_index, axis_name, precision, where)
    loss = jnp.sum(q["pos_sum"]) / q["n_pos"] + jnp.sum(q["neg_sum"]) / proxies.shape[0]
    return jnp.where(q["invalid"], jnp.nan, loss)


# ------------------------------------------------------------------ sub-centre ArcFace


def _check_subcenter(embeddings, class_centers, labels, scale, margin, ignore_index, precision, where):
    batch = _checks.class_vectors(embeddings, class_centers, labels, "class_centers", vector_rank=3)
    _checks.broadcasts_to("where", where, batch, "the batch shape of embeddings")
    for name, value in (("scale", scale), ("margin", margin)):
        _checks.float_option(name, value, batch, "the batch shape of embeddings")
    _checks.positive("scale", scale)
    if not isinstance(margin, jax.core.Tracer) and np.any((np.asarray(margin) < 0) | (np.asarray(margin) >= np.pi)):
        raise ValueError(f"margin (radians) must lie in [0, π), got {margin}.")
    check_ignore_index(ignore_index)
    check_precision(precision)


def _subcenter_parts(embeddings, class_centers, labels, scale, margin, precision):
    """The normalised vectors, the sub-centre cosines ``[..., C, K]``, the chosen sub-centre
    (one-hot over K), the class cosines (their max), ArcFace's label target and its partials
    (:func:`jaxloss.angular_margin_loss`'s, ``m1 = 1``), and the logits."""
    e_hat, e_norm = _math.normalize(embeddings, NORM_EPS)
    c_hat, c_norm = _math.normalize(class_centers, NORM_EPS)
    cos_k = cosines(e_hat, c_hat, precision)
    cos = jnp.max(cos_k, axis=-1)
    chosen = jax.nn.one_hot(jnp.argmax(cos_k, axis=-1), cos_k.shape[-1], dtype=cos_k.dtype)
    c_y = label_value(cos, labels)
    target, d_cos, d_margin = margin_target(c_y, 1, jnp.broadcast_to(jnp.asarray(margin, c_y.dtype), c_y.shape))
    onehot = one_hot(labels, cos.shape[-1])
    modified = jnp.where(onehot, target[..., None], cos)
    scale = jnp.asarray(scale, cos.dtype)
    return dict(e_hat=e_hat, e_norm=e_norm, c_hat=c_hat, c_norm=c_norm, chosen=chosen, onehot=onehot,
                target=target, d_cos=d_cos, d_margin=d_margin, scale=scale, modified=modified,
                logits=scale[..., None] * modified)


def _subcenter_tangent(p, t, out, res):
    shift, lse = res
    q = _subcenter_parts(p.embeddings, p.class_centers, p.labels, p.scale, p.margin, p.precision)
    prob = jnp.exp((q["logits"] - shift[..., None]) - lse[..., None])
    miss = label_value(prob, p.labels) - 1  # ∂ℓ/∂(s·target)
    weight = jnp.where(q["onehot"], (miss * q["d_cos"])[..., None], prob)  # ∂ℓ/∂(s·cos_c)
    dcos_k = cosine_tangent(q["e_hat"], q["e_norm"], q["c_hat"], q["c_norm"], t.embeddings, t.class_centers,
                             p.precision)
    dcos = None if dcos_k is None else jnp.sum(q["chosen"] * dcos_k, axis=-1)  # the max's: its sub-centre's
    d = tangent_sum(
        (q["scale"], None if dcos is None else jnp.sum(weight * dcos, axis=-1)),
        (jnp.sum(prob * q["modified"], axis=-1) - q["target"], t.scale),
        (q["scale"] * miss * q["d_margin"], t.margin),
    )
    counted = class_ids(p.labels, p.class_centers.shape[0], p.ignore_index)[1]
    return None if d is None else jnp.where(counted, d, 0.0)


@hand_derivative(_subcenter_tangent, static=("ignore_index", "precision"), check=_check_subcenter, residuals=True,
                 per_example=("embeddings", "labels"), class_axis=("embeddings",))
def subcenter_arcface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1,
                           scale: ArrayLike = 64.0, margin: ArrayLike = 0.5, ignore_index: int | None = IGNORE_INDEX,
                           precision: Precision = None,
                           where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    r"""Sub-centre ArcFace per example: ArcFace on the cosine to each class's nearest of K sub-centres.

    With the L2-normalised embedding :math:`\hat e` and sub-centres :math:`\hat w_{c,k}`,
    :math:`\cos\theta_c = \max_k \langle\hat e, \hat w_{c,k}\rangle`, and then ArcFace on those
    class cosines (:func:`jaxloss.arcface_loss`, including its fallback
    :math:`\cos\theta_y - m\sin m` past :math:`\theta_y + m = \pi`):

    .. math:: \ell = \log\Big(e^{s\psi(\theta_y)} + \sum_{c\ne y} e^{s\cos\theta_c}\Big) - s\psi(\theta_y),
              \qquad \psi(\theta) = \cos(\theta + m).

    Derivative: ArcFace's (see :func:`jaxloss.angular_margin_loss`, ``m1 = 1``, ``m2 = margin``)
    with :math:`d\cos\theta_c = d\langle\hat e, \hat w_{c,k^*}\rangle` for the maximising
    sub-centre :math:`k^*` (the first one on a tie: a subgradient of the max); the other
    sub-centres get derivative 0.  Finite at cos θ = ±1 and for a zero embedding as ArcFace is.

    Class ids, ``ignore_index`` and ``where`` as in :func:`jaxloss.arcface_loss`.

    Args:
      embeddings: float ``[..., D]``, any leading batch axes.
      class_centers: float ``[C, K, D]``: K sub-centres per class (pytorch-metric-learning's
        ``W.T.reshape(C, K, D)``); differentiated.
      labels: integer class ids ``[...]``.
      axis: static; the feature axis D of ``embeddings`` (-1 by default).
      scale: ``s > 0``, a float or an array of the batch shape; differentiated (64 by default).
      margin: ``m`` in radians, in ``[0, π)`` (0.5 by default); differentiated.
      ignore_index: static; the id of examples to ignore (−100 by default) or None.
      precision: static; the precision of the matmuls, a ``jax.lax.Precision`` or its name.  None
        (default): ``HIGHEST`` for float32 inputs, ``DEFAULT`` for 16-bit ones; GPUs run a default
        float32 matmul in TF32 (~1e-3 relative error), outside float32 tolerances.
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Losses of the batch shape ``[...]``, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0]])
      >>> centers = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[-1.0, -1.0], [0.0, -1.0]]])  # C = 2, K = 2
      >>> jaxloss.subcenter_arcface_loss(e, centers, jnp.array([0, 1]), scale=8.0, margin=0.3)
      Array([0.00018416, 0.00047946], dtype=float32)

    References:
      J. Deng, J. Guo, T. Liu, M. Gong, S. Zafeiriou, "Sub-center ArcFace: Boosting Face
      Recognition by Large-scale Noisy Web Faces", ECCV 2020.  Matches pytorch-metric-learning's
      ``SubCenterArcFaceLoss(num_classes=C, embedding_size=D, margin=degrees, scale=s,
      sub_centers=K)`` per example (``margin`` in degrees there, 28.6 ≈ 0.5 rad), which raises for
      ids outside ``[0, C)``, −100 included.
    """
    q = _subcenter_parts(embeddings, class_centers, labels, scale, margin, precision)
    shift, lse = shifted_logsumexp(q["logits"])
    _, counted, invalid = class_ids(labels, class_centers.shape[0], ignore_index)
    return loud(jnp.where(counted, lse - (q["scale"] * q["target"] - shift), 0.0), invalid), (shift, lse)
