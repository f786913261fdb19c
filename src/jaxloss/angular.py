"""Angular-margin losses: softmax over scaled cosines to class centres.

ArcFace, CosFace and SphereFace (the ArcFace paper's combined margin) classify L2-normalised
embeddings against L2-normalised class centres (:func:`jaxloss.ge2e_loss` does the same against
per-speaker centroids of the batch).  Each returns one loss per embedding.  No ``acos``
is taken: margins on the angle go through cos/sin identities, so values and gradients stay
finite at cos θ = ±1.  Every function supports ``jit``, ``vmap``, forward and reverse mode,
``jax.hessian`` and forward-over-reverse Hessian-vector products; ``fn.reference`` is plain
autodiff of the formula.
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
from jaxloss._margins import NORM_EPS, cosine_tangent, cosines, margin_target
from jaxloss._softmax import IGNORE_INDEX, check_ignore_index, class_ids, label_value, loud, one_hot, shifted_logsumexp
from jaxloss._streaming import check_precision
from jaxloss.gradients import Args, Loss, derived_loss, hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Precision

# ------------------------------------------------------------------ angular margins (ArcFace family)


def _check_angular(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, ignore_index, precision,
                   where):
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
    check_precision(precision)


def _margin_parts(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, precision):
    """The normalised vectors, the cosines ``[..., C]``, the label class's margin target and
    its partials, and the logits: what the forward and the tangent rule share.

    ``straight_through``: ``ψ`` is computed from a stopped ``cos θ_y`` and ``cos θ_y − stop(cos θ_y)``
    (0) is added, so its value and its ``m2`` derivative are the margin's and its ``cos θ_y``
    derivative is 1, for the rule (``∂ψ/∂cos θ = 1``) and for autodiff of the formula alike."""
    e_hat, e_norm = _math.normalize(embeddings, NORM_EPS)
    c_hat, c_norm = _math.normalize(class_centers, NORM_EPS)
    cos = cosines(e_hat, c_hat, precision)
    onehot = one_hot(labels, cos.shape[-1])
    c_y = label_value(cos, labels)  # 0 for an id outside [0, C)
    m2 = jnp.broadcast_to(jnp.asarray(m2, c_y.dtype), c_y.shape)
    if straight_through:
        stopped = jax.lax.stop_gradient(c_y)
        psi, _, d_m2 = margin_target(stopped, m1, m2, monotone=False)
        psi, d_cos = psi + (c_y - stopped), jnp.ones_like(c_y)
    else:
        psi, d_cos, d_m2 = margin_target(c_y, m1, m2)
    target = psi - m3
    scale = jnp.asarray(scale, cos.dtype)
    modified = jnp.where(onehot, target[..., None], cos)  # the cosines with the margin on the label
    return Args(e_hat=e_hat, e_norm=e_norm, c_hat=c_hat, c_norm=c_norm, cos=cos, onehot=onehot, target=target,
                d_cos=d_cos, d_m2=d_m2, scale=scale, modified=modified,
                logits=scale[..., None] * modified)


def _angular_margin_tangent(p, t, out, res):
    shift, lse = res
    q = _margin_parts(p.embeddings, p.class_centers, p.labels, p.scale, p.m1, p.m2, p.m3, p.straight_through,
                      p.precision)
    prob = jnp.exp((q.logits - shift[..., None]) - lse[..., None])  # softmax, recomputed
    miss = label_value(prob, p.labels) - 1  # ∂ℓ/∂(s·target)
    weight = jnp.where(q.onehot, (miss * q.d_cos)[..., None], prob)  # ∂ℓ/∂(s·cos_c)
    dcos = cosine_tangent(q.e_hat, q.e_norm, q.c_hat, q.c_norm, t.embeddings, t.class_centers, p.precision)
    expected = jnp.sum(prob * q.modified, axis=-1) - q.target
    d = tangent_sum(
        (q.scale, None if dcos is None else jnp.sum(weight * dcos, axis=-1)),
        (expected, t.scale),
        (q.scale * miss * q.d_m2, t.m2),
        (-q.scale * miss, t.m3),
    )
    counted = class_ids(p.labels, p.class_centers.shape[0], p.ignore_index)[1]
    return None if d is None else jnp.where(counted, d, 0.0)


@hand_derivative(_angular_margin_tangent, static=("m1", "straight_through", "ignore_index", "precision"),
                 check=_check_angular, residuals=True, per_example=("embeddings", "labels"), class_axis=("embeddings",))
def angular_margin_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1,
                        scale: ArrayLike = 64.0, m1: int = 1, m2: ArrayLike = 0.5, m3: ArrayLike = 0.0,
                        straight_through: bool = False, ignore_index: int | None = IGNORE_INDEX,
                        precision: Precision = None,
                        where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
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
    a shift and a log-sum-exp per example, and recomputes the cosines and the softmax; no
    ``[..., C]`` array is stored.

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
      Array([0.00940854, 0.05191137, 6.653363  ], dtype=float32)

    References:
      J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
      Face Recognition", CVPR 2019 (arXiv:1801.07698), and InsightFace's ``CombinedMarginLoss``
      (``recognition/arcface_torch/losses.py``, with ``straight_through=True``); H. Wang et al.,
      "CosFace", CVPR 2018; W. Liu et al., "SphereFace", CVPR 2017.  pytorch-metric-learning's
      ``ArcFaceLoss``, ``CosFaceLoss`` and ``SphereFaceLoss`` (see the wrappers).
    """
    q = _margin_parts(embeddings, class_centers, labels, scale, m1, m2, m3, straight_through, precision)
    shift, lse = shifted_logsumexp(q.logits)
    _, counted, invalid = class_ids(labels, class_centers.shape[0], ignore_index)
    return loud(jnp.where(counted, lse - (q.scale * q.target - shift), 0.0), invalid), (shift, lse)


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
                            ignore_index=a["ignore_index"], precision=a["precision"], where=a["where"],
                            **margins(a))

            return fn

        reference = build(angular_margin_loss.reference)
        reference.__doc__ = f"``{stub.__name__}`` differentiated by plain autodiff of its formula."
        return derived_loss(build(angular_margin_loss), reference, like=angular_margin_loss)

    return decorate


@_special_case(lambda a: {"m2": a["margin"], "straight_through": a["straight_through"]})
def arcface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 64.0,
                 margin: ArrayLike = 0.5, straight_through: bool = False, ignore_index: int | None = IGNORE_INDEX,
                 precision: Precision = None, where: Array | None = None) -> jax.Array:
    r"""ArcFace (additive angular margin) per example: :func:`angular_margin_loss` with ``m2 = margin``.

    :math:`\ell = -\log\frac{e^{s\cos(\theta_y + m)}}{e^{s\cos(\theta_y + m)} + \sum_{c\ne y}
    e^{s\cos\theta_c}}`, with the fallback :math:`\cos\theta_y - m\sin m` where
    :math:`\theta_y + m \ge \pi`; derivatives, finiteness at cos θ = ±1 and Args as in
    :func:`angular_margin_loss` (``margin``: radians, in ``[0, π)``, differentiated).
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
      Array([4.2385510e-03, 2.3659181e-02, 5.8549423e+00], dtype=float32)

    References:
      J. Deng, J. Guo, N. Xue, S. Zafeiriou, "ArcFace: Additive Angular Margin Loss for Deep
      Face Recognition", CVPR 2019 (arXiv:1801.07698); pytorch-metric-learning ``ArcFaceLoss``;
      InsightFace ``CombinedMarginLoss`` (``recognition/arcface_torch/losses.py``).
    """
    raise NotImplementedError


@_special_case(lambda a: {"m2": 0.0, "m3": a["margin"]})
def cosface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 64.0,
                 margin: ArrayLike = 0.35, ignore_index: int | None = IGNORE_INDEX, precision: Precision = None,
                 where: Array | None = None) -> jax.Array:
    r"""CosFace (large margin cosine loss) per example: :func:`angular_margin_loss` with ``m3 = margin``.

    :math:`\ell = -\log\frac{e^{s(\cos\theta_y - m)}}{e^{s(\cos\theta_y - m)} + \sum_{c\ne y}
    e^{s\cos\theta_c}}`; derivatives and Args as in :func:`angular_margin_loss` (``margin``
    differentiated).  The defaults ``s = 64``, ``m = 0.35`` are the paper's.
    pytorch-metric-learning's ``CosFaceLoss(num_classes, D, margin=m, scale=s,
    reducer=DoNothingReducer())`` gives the same per-example losses with ``W = class_centers.T``.

    Returns:
      Losses of the batch shape ``embeddings.shape[:-1]``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> e = jnp.array([[1.0, 0.2], [0.0, -2.0], [0.5, 1.0]])
      >>> centers = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
      >>> jaxloss.cosface_loss(e, centers, jnp.array([0, 2, 0]), scale=8.0, margin=0.2)
      Array([0.00927816, 0.01716109, 5.183334  ], dtype=float32)

    References:
      H. Wang, Y. Wang, Z. Zhou, X. Ji, D. Gong, J. Zhou, Z. Li, W. Liu, "CosFace: Large Margin
      Cosine Loss for Deep Face Recognition", CVPR 2018 (arXiv:1801.09414);
      pytorch-metric-learning ``CosFaceLoss``.
    """
    raise NotImplementedError


@_special_case(lambda a: {"m1": a["margin"], "m2": 0.0})
def sphereface_loss(embeddings: Array, class_centers: Array, labels: Array, *, axis: int = -1, scale: ArrayLike = 1.0,
                    margin: int = 4, ignore_index: int | None = IGNORE_INDEX, precision: Precision = None,
                    where: Array | None = None) -> jax.Array:
    r"""SphereFace (A-Softmax, multiplicative angular margin) per example:
    :func:`angular_margin_loss` with ``m1 = margin``.

    The label logit is :math:`s\,\psi(\theta_y)` with :math:`\psi(\theta) = (-1)^k\cos(m\theta) -
    2k` for :math:`\theta \in [k\pi/m, (k+1)\pi/m]` (the paper's monotone extension), computed
    from Chebyshev polynomials of :math:`\cos\theta`: a polynomial in it, smooth at ±1.
    ``margin`` is the integer ``m`` (static, no derivative); the default 4 is the paper's and
    pytorch-metric-learning's, and so is ``scale = 1``.  Class ids, ``ignore_index``,
    ``precision`` and ``where`` as in :func:`angular_margin_loss`.

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
