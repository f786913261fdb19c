"""Embedding and metric-learning losses on vectors ``[..., D]``: pairs, triplets and in-batch
triplet mining.

Each returns one loss per example (per pair, triplet or anchor), the feature axis (the last)
reduced.  Distances are Euclidean unless an option says otherwise; at a distance of exactly 0
the hand rules return the minimum-norm subgradient (0 for ``d``'s direction), so gradients are
finite where the classic formulas give NaN.  Every function supports ``jit``, ``vmap``,
forward and reverse mode, ``jax.hessian`` and forward-over-reverse Hessian-vector products;
``fn.reference`` is plain autodiff of the formula.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss import _checks
from jaxloss import _math
from jaxloss._streaming import check_precision, matmul_precision
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis, Precision

# ------------------------------------------------------------------ pair and triplet losses


def _distance(u, v, *, p=2.0, eps=0.0, direction=False):
    r"""The p-norm distance ``d = ‖u − v + eps‖_p`` over the last axis, and optionally its direction.

    Shared by :func:`contrastive_loss`, :func:`triplet_margin_loss` and the batch losses below.
    ``u`` and ``v`` broadcast against each other (``[N, 1, D]`` against ``[1, N, D]`` gives all
    pairs); ``eps`` is added to every coordinate of the difference, as
    ``torch.nn.functional.pairwise_distance`` does: a scalar, or ``[..., 1]`` for one per pair.
    ``p`` is a static Python number >= 1.

    Returns ``d`` (the broadcast shape without its last axis) or, with ``direction=True``,
    ``(d, g)`` where ``g = ∂d/∂(u − v) = sign(x)·(|x|/d)^(p−1)`` for ``x = u − v + eps``
    (``x/d`` for p = 2, ``sign(x)`` for p = 1), so that a tangent is ``dd = Σ g·(du − dv + deps)``
    (:func:`_distance_jvp`).  Where ``x = 0`` the direction is 0, the minimum-norm
    subgradient, so derivatives are finite at zero distance for every p >= 1; coordinates
    equal to 0 get 0 as well.  The forward (what ``.reference`` differentiates) has the same
    derivative: the double ``where`` keeps the infinite slope of the root at 0 out of
    autodiff, and for p ∉ {1, 2} the norm is taken of ``x / max|x|`` so that ``|x|^p`` cannot
    overflow.
    """
    x = u - v + eps
    if p == 2:
        d = _math.safe_norm(x)
        return (d, _math.unit(x, d)) if direction else d
    a = jnp.abs(x)
    if p == 1:
        d = jnp.sum(a, axis=-1)
        return (d, jnp.sign(x)) if direction else d
    top = jnp.max(a, axis=-1)
    positive = top > 0
    top = jnp.where(positive, top, 1.0)
    total = jnp.sum((a / top[..., None]) ** p, axis=-1)  # >= 1 where positive
    d = jnp.where(positive, top * jnp.where(positive, total, 1.0) ** (1 / p), 0.0)
    if not direction:
        return d
    r = a / jnp.where(positive, d, 1.0)[..., None]
    nonzero = r > 0
    return d, jnp.sign(x) * jnp.where(nonzero, jnp.where(nonzero, r, 1.0) ** (p - 1), 0.0)


def _distance_jvp(g, du, dv, deps=None):
    """Tangent of :func:`_distance` given its direction ``g``: ``Σ g·(du − dv + deps)`` over the
    last axis, or None when every tangent is None.  ``deps`` has the shape of ``eps`` there."""
    dx = tangent_sum((1.0, du), (-1.0, dv), (1.0, deps))
    return None if dx is None else jnp.sum(g * dx, axis=-1)


def _check_embeddings(inputs, where, **options):
    """Float embeddings of one shape ``[..., D]``; ``where`` and float options broadcast to the
    batch shape ``[...]``.  Returns the batch shape."""
    (first, x), *others = inputs
    for name, value in inputs:
        _checks.float_array(name, value)
    shape = tuple(jnp.shape(x))
    if not shape:
        raise ValueError(f"{first} must have a feature axis (the last), got shape {shape}.")
    for name, value in others:
        if tuple(jnp.shape(value)) != shape:
            raise ValueError(f"{name} with shape {tuple(jnp.shape(value))} must have the shape of {first}, {shape}.")
    batch, to = shape[:-1], f"the batch shape of {first}"
    _checks.broadcasts_to("where", where, batch, to)
    for name, value in options.items():
        _checks.float_option(name, value, batch, to)
    return batch


# ------------------------------------------------------------------ contrastive_loss


def _check_contrastive(x1, x2, is_similar, margin, where):
    batch = _check_embeddings((("x1", x1), ("x2", x2)), where, margin=margin)
    _checks.positive("margin", margin, allow_zero=True)
    _checks.numeric("is_similar", is_similar)
    _checks.broadcasts_to("is_similar", is_similar, batch, "the batch shape of x1")


def _similar_weight(is_similar):
    """Soft (float) labels as they are; hard (integer/boolean) ones as 1.0 where > 0, else 0.0."""
    if jnp.issubdtype(jnp.result_type(is_similar), jnp.floating):
        return is_similar
    return jnp.where(is_similar > 0, 1.0, 0.0)


def _contrastive_tangent(p, t, out, res):
    y = _similar_weight(p.is_similar)
    diff = p.x1 - p.x2
    d, g = _distance(p.x1, p.x2, direction=True)
    gap = jax.nn.relu(p.margin - d)
    pull = (1 - y) * gap  # the dissimilar term's slope −(1 − y)(m − d)⁺ in d, negated
    dx = tangent_sum((1.0, t.x1), (-1.0, t.x2))
    # The similar term ½y‖x1 − x2‖² is differentiated as such (not through d), which keeps its
    # second derivative y·I right at d = 0 as well.
    dd = None if dx is None else jnp.sum((y[..., None] * diff - pull[..., None] * g) * dx, axis=-1)
    return tangent_sum((1.0, dd), (pull, t.margin), (0.5 * (d * d - gap * gap), t.is_similar))


@hand_derivative(_contrastive_tangent, check=_check_contrastive, class_axis=("x1", "x2"), axis_tuples=True)
def contrastive_loss(x1: Array, x2: Array, is_similar: Array, *, axis: Axis = -1, margin: ArrayLike = 1.0,
                     where: Array | None = None) -> jax.Array:
    r"""Contrastive loss of a pair of embeddings (Hadsell, Chopra & LeCun), per pair.

    With the Euclidean distance :math:`d = \lVert x_1 - x_2 \rVert_2` over the feature axis and
    the label :math:`y` (1 similar, 0 dissimilar, or a soft weight in between):

    .. math:: \ell = \tfrac12\,y\,d^2 + \tfrac12\,(1 - y)\max(0, m - d)^2.

    Derivatives (hand rule), with :math:`g = (x_1 - x_2)/d` the direction:
    ``∂ℓ/∂x1 = y·(x1 − x2) − (1 − y)·max(0, m − d)·g = −∂ℓ/∂x2``;
    ``∂ℓ/∂m = (1 − y)·max(0, m − d)``; for float (soft) labels
    ``∂ℓ/∂y = ½d² − ½max(0, m − d)²``.  At ``d = 0`` (identical embeddings) a dissimilar pair
    costs ``½m²`` and its derivative is the minimum-norm subgradient, 0 (``g = 0`` there;
    any direction would do, none is preferred); plain autodiff of ``‖x1 − x2‖`` gives NaN.

    Args:
      x1, x2: float arrays ``[..., D]`` of the same shape, the two embeddings of each pair.
      is_similar: labels of the batch shape ``[...]`` (or broadcasting to it): boolean or
        integer (``> 0`` means similar; no derivative), or float weights in [0, 1] (soft
        labels, differentiated).
      axis: static; the feature axis D of ``x1`` and ``x2`` (the last by default): an int, a
        tuple of ints (flattened into one) or None (every axis); ``[...]`` is the rest.
      margin: m, a float or an array broadcasting to ``[...]`` (differentiated when traced).
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` losses, one per pair (float32 for inputs of lower precision).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x1 = jnp.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
      >>> x2 = jnp.array([[3.0, 4.0], [0.6, 0.8], [1.0, 1.0]])
      >>> jaxloss.contrastive_loss(x1, x2, jnp.array([True, False, False]), margin=2.0)
      Array([12.5,  0.5,  2. ], dtype=float32)

    References:
      Hadsell, Chopra & LeCun, "Dimensionality reduction by learning an invariant mapping",
      CVPR 2006 (there ``Y = 0`` marks similar pairs; here ``is_similar = 1`` does).  We follow
      the paper; ``pytorch_metric_learning.losses.ContrastiveLoss`` differs: separate
      positive and negative margins, no factor ½, and by default unsquared distances
      (``max(0, d − pos_margin)`` and ``max(0, neg_margin − d)``), averaged over mined pairs.
    """
    y = _similar_weight(is_similar)
    d = _distance(x1, x2)
    return 0.5 * (y * d * d + (1 - y) * jnp.square(jax.nn.relu(margin - d)))


# ------------------------------------------------------------------ triplet_margin_loss


def _check_triplet(anchor, positive, negative, margin, p, eps, swap, where):
    _check_embeddings((("anchor", anchor), ("positive", positive), ("negative", negative)), where,
                      margin=margin, eps=eps)
    if isinstance(p, bool) or not isinstance(p, int | float) or not 1 <= p < float("inf"):
        raise ValueError(f"p must be a Python number with 1 <= p < inf, got {p!r}.")
    _checks.positive("eps", eps, allow_zero=True)
    _checks.positive("margin", margin, allow_zero=True)
    if not isinstance(swap, bool):
        raise TypeError(f"swap must be a Python bool, got {type(swap).__name__}.")


def _triplet_distances(anchor, positive, negative, p, eps, swap, direction):
    """``(d(a, p), d(a, n), d(p, n) or None)``, each ``d`` or ``(d, g)``."""
    e = jnp.expand_dims(eps, -1)  # one eps per triplet, added to every coordinate
    pair = lambda u, v: _distance(u, v, p=p, eps=e, direction=direction)  # noqa: E731
    return pair(anchor, positive), pair(anchor, negative), pair(positive, negative) if swap else None


def _triplet_tangent(p, t, out, res):
    (d_ap, g_ap), (d_an, g_an), pn = _triplet_distances(
        p.anchor, p.positive, p.negative, p.p, p.eps, p.swap, direction=True)
    deps = None if t.eps is None else jnp.expand_dims(t.eps, -1)
    dd_ap = _distance_jvp(g_ap, t.anchor, t.positive, deps)
    dd_an = _distance_jvp(g_an, t.anchor, t.negative, deps)
    if pn is not None:
        # min(d(a, n), d(p, n)): the smaller one's tangent, half each at a tie (as jnp.minimum).
        d_pn, g_pn = pn
        w = jnp.where(d_an < d_pn, 1.0, jnp.where(d_an == d_pn, 0.5, 0.0))
        d_an = jnp.minimum(d_an, d_pn)
        dd_an = tangent_sum((w, dd_an), (1 - w, _distance_jvp(g_pn, t.positive, t.negative, deps)))
    active = jnp.where(d_ap - d_an + p.margin > 0, 1.0, 0.0)
    return tangent_sum((active, dd_ap), (-active, dd_an), (active, t.margin))


@hand_derivative(_triplet_tangent, check=_check_triplet, static=("p", "swap"),
                 class_axis=("anchor", "positive", "negative"), axis_tuples=True)
def triplet_margin_loss(anchor: Array, positive: Array, negative: Array, *, axis: Axis = -1, margin: ArrayLike = 1.0,
                        p: float = 2.0, eps: ArrayLike = 1e-6, swap: bool = False,
                        where: Array | None = None) -> jax.Array:
    r"""Triplet margin loss, per triplet, as ``torch.nn.functional.triplet_margin_loss``.

    With :math:`d(u, v) = \lVert u - v + \epsilon \rVert_p` over the feature axis (ε added to every
    coordinate, as PyTorch's ``pairwise_distance`` does):

    .. math:: \ell = \max\bigl(0,\ d(a, p) - d(a, n) + m\bigr),

    and with ``swap`` (Balntas et al.'s distance swap) :math:`d(a, n)` is replaced by
    :math:`\min(d(a, n), d(p, n))`.

    Derivatives (hand rule), with ``A = [d(a,p) − d(a,n) + m > 0]`` and the direction
    ``g(x) = ∂‖x‖_p/∂x = sign(x)·(|x|/‖x‖_p)^(p−1)`` of each difference x:
    ``∂ℓ/∂a = A·(g_ap − g_an)``, ``∂ℓ/∂p = −A·g_ap``, ``∂ℓ/∂n = A·g_an``, ``∂ℓ/∂m = A``,
    ``∂ℓ/∂ε = A·(Σg_ap − Σg_an)``; with ``swap`` the terms of whichever of d(a, n), d(p, n) is
    smaller (half each at a tie).  Where a difference is exactly 0 (``eps = 0`` and
    ``a = p``, say) its direction is 0, the minimum-norm subgradient, so gradients are
    finite for every p >= 1.  At the hinge corner (argument exactly 0) the rule returns the
    subgradient 0; PyTorch's ``clamp_min`` passes the full gradient there.

    Args:
      anchor, positive, negative: float arrays ``[..., D]`` of the same shape.
      axis: static; the feature axis D (the last by default): an int (as optax's), a tuple
        of ints (flattened into one) or None (every axis); ``[...]`` is the rest.
      margin: m, a float or an array broadcasting to ``[...]`` (differentiated when traced).
        PyTorch requires m > 0; any value is accepted here.
      p: static; the norm degree, a Python number with ``1 <= p < inf``.
      eps: ε >= 0, a float or an array broadcasting to ``[...]`` (differentiated when traced).
      swap: static; use the distance swap.
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` losses, one per triplet.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> a = jnp.array([[0.0, 0.0], [0.0, 0.0]])
      >>> pos = jnp.array([[0.3, 0.4], [3.0, 4.0]])
      >>> neg = jnp.array([[1.0, 0.0], [0.0, 1.0]])
      >>> jaxloss.triplet_margin_loss(a, pos, neg, margin=1.0, eps=0.0)
      Array([0.5, 5. ], dtype=float32)

    References:
      Balntas, Riba, Ponsa & Mikolajczyk, "Learning local feature descriptors with triplets
      and shallow convolutional neural networks", BMVC 2016.
      ``torch.nn.functional.triplet_margin_loss(reduction="none")``: same values (``p = inf``
      is not supported here).  ``optax.losses.triplet_margin_loss`` differs in ε: it computes
      ``(Σ (a − b)^p + ε)^(1/p)`` (ε inside the root, and no absolute value, so odd ``p``
      gives signed sums); the two agree for ``eps = 0`` and even p.
    """
    d_ap, d_an, d_pn = _triplet_distances(anchor, positive, negative, p, eps, swap, direction=False)
    if swap:
        d_an = jnp.minimum(d_an, d_pn)
    return jax.nn.relu(d_ap - d_an + margin)


# ------------------------------------------------------------------ cosine_embedding_loss

# Added to both squared magnitudes, as PyTorch does; PyTorch stores it as a C float, so this is
# 1e-12 rounded to float32 (the same in float64 as in PyTorch, and at zero vectors that shows).
_COSINE_EPSILON = float(np.float32(1e-12))


def _check_cosine_embedding(x1, x2, y, margin, where):
    batch = _check_embeddings((("x1", x1), ("x2", x2)), where, margin=margin)
    _checks.numeric("y", y)
    _checks.broadcasts_to("y", y, batch, "the batch shape of x1")


def _cosine_parts(x1, x2):
    """``(cos, 1/(|x1|·|x2|), 1/|x1|², 1/|x2|²)`` with PyTorch's ε on the squared magnitudes."""
    sq1 = jnp.sum(x1 * x1, axis=-1) + _COSINE_EPSILON
    sq2 = jnp.sum(x2 * x2, axis=-1) + _COSINE_EPSILON
    inv = 1 / jnp.sqrt(sq1 * sq2)  # PyTorch's form: exactly 1 for parallel vectors of small integers
    return jnp.sum(x1 * x2, axis=-1) * inv, inv, 1 / sq1, 1 / sq2


def _cosine_embedding_tangent(p, t, out, res):
    cos, inv, inv1, inv2 = _cosine_parts(p.x1, p.x2)
    c, inv = cos[..., None], inv[..., None]
    dcos = tangent_sum((p.x2 * inv - c * p.x1 * inv1[..., None], t.x1),
                       (p.x1 * inv - c * p.x2 * inv2[..., None], t.x2))
    dcos = None if dcos is None else jnp.sum(dcos, axis=-1)
    similar = p.y > 0
    active = jnp.where(similar, 0.0, jnp.where(cos - p.margin > 0, 1.0, 0.0))
    return tangent_sum((jnp.where(similar, -1.0, active), dcos), (-active, t.margin))


@hand_derivative(_cosine_embedding_tangent, check=_check_cosine_embedding, class_axis=("x1", "x2"),
                 axis_tuples=True)
def cosine_embedding_loss(x1: Array, x2: Array, y: Array, *, axis: Axis = -1, margin: ArrayLike = 0.0,
                          where: Array | None = None) -> jax.Array:
    r"""Cosine embedding loss, per pair, as ``torch.nn.functional.cosine_embedding_loss``.

    With PyTorch's cosine :math:`c = \langle x_1, x_2\rangle / \sqrt{(\lVert x_1\rVert^2 + \epsilon)
    (\lVert x_2\rVert^2 + \epsilon)}`, :math:`\epsilon = 10^{-12}` (rounded to float32, as in
    PyTorch), over the feature axis:

    .. math:: \ell = \begin{cases} 1 - c & y = 1 \\ \max(0, c - m) & y = -1 \end{cases}.

    Derivatives (hand rule), with ``s₁ = ‖x1‖² + ε``, ``s₂ = ‖x2‖² + ε``:
    ``∂c/∂x1 = x2/√(s₁s₂) − c·x1/s₁`` and ``∂c/∂x2 = x1/√(s₁s₂) − c·x2/s₂``;
    ``∂ℓ/∂x = −∂c/∂x`` for ``y = 1`` and ``[c > m]·∂c/∂x`` for ``y = −1``;
    ``∂ℓ/∂m = −[c > m]`` for ``y = −1``.  ε makes the cosine smooth everywhere, so values and
    gradients are finite at zero vectors (``c = 0``; the gradient ``x2/√(s₁s₂)`` is large,
    about ``10⁶·x2/‖x2‖``, as in PyTorch) and at ``c = ±1`` (no ``arccos``).  At the hinge
    corner ``c = m`` the rule returns the subgradient 0.

    Args:
      x1, x2: float arrays ``[..., D]`` of the same shape.
      y: integer, boolean or float labels broadcasting to ``[...]`` (PyTorch passes float
        ±1): ``> 0`` (1) asks for similar embeddings, anything else (−1) for dissimilar
        ones; no derivative.
      axis: static; the feature axis D (the last by default): an int, a tuple of ints
        (flattened into one) or None (every axis); ``[...]`` is the rest.
      margin: m, a float or an array broadcasting to ``[...]`` (differentiated when traced);
        PyTorch suggests values in [−1, 1].
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` losses, one per pair.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x1 = jnp.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
      >>> x2 = jnp.array([[0.0, 2.0], [2.0, 2.0], [1.0, 0.0]])
      >>> jaxloss.cosine_embedding_loss(x1, x2, jnp.array([1, -1, 1]), margin=0.5)
      Array([1. , 0.5, 1. ], dtype=float32)

    References:
      ``torch.nn.functional.cosine_embedding_loss(reduction="none")``: the same cosine, ε
      included, and the same values for ``y ∈ {1, −1}``.  PyTorch gives 0 for any other label;
      here every label that is not ``> 0`` counts as −1 (so {0, 1} labels work, as in
      :func:`jaxloss.margin_ranking_loss`).
    """
    cos = _cosine_parts(x1, x2)[0]
    return jnp.where(y > 0, 1 - cos, jax.nn.relu(cos - margin))


# ------------------------------------------------------------------ batch_triplet_loss


_MININGS = ("all", "hard", "semihard")
_DISTANCES = ("euclidean", "squared", "cosine")


def _check_batch_triplet(embeddings, labels, margin, mining, distance, precision, where):
    _checks.float_array("embeddings", embeddings)
    shape = jnp.shape(embeddings)
    if len(shape) < 2:
        raise ValueError(f"embeddings must be [..., N, D] (rank >= 2), got shape {shape}.")
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(f"labels must be integer class ids, got {_checks._describe(labels)}.")
    if jnp.shape(labels) != shape[:-1]:
        raise ValueError(f"labels must have the shape of embeddings without its feature axis, "
                         f"{shape[:-1]}, got shape {jnp.shape(labels)}.")
    _checks.float_option("margin", margin, shape[:-1], "labels")
    _checks.positive("margin", margin, allow_zero=True)
    _checks.broadcasts_to("where", where, shape[:-1], "labels")
    if not isinstance(mining, str) or mining not in _MININGS:
        raise ValueError(f"mining must be one of {_MININGS}, got {mining!r}.")
    if not isinstance(distance, str) or distance not in _DISTANCES:
        raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}.")
    check_precision(precision)


def _valid_pairs(labels, keep):
    """Boolean ``[..., N, N]`` masks of the positive pairs (same label, ``j ≠ a``) and the
    negative pairs (different label) among the kept examples."""
    same = labels[..., :, None] == labels[..., None, :]
    both = keep[..., :, None] & keep[..., None, :]
    eye = jnp.eye(labels.shape[-1], dtype=bool)
    return same & ~eye & both, ~same & both


def _pairwise_distances(x, distance, precision):
    """The ``[N, N]`` distance matrix of ``x`` ``[N, D]``; Euclidean from the differences
    (exact for close points, unlike the Gram-matrix form) with ``safe_norm``'s derivative
    0 on the diagonal and at duplicates; cosine from the Gram matrix of the unit vectors, at
    :func:`jaxloss._streaming.matmul_precision` of ``precision``."""
    if distance == "cosine":
        x_hat, _ = _math.normalize(x)
        return 1.0 - jnp.einsum("ad,jd->aj", x_hat, x_hat, precision=matmul_precision(precision, x_hat))
    diff = x[:, None, :] - x[None, :, :]
    return jnp.sum(diff * diff, axis=-1) if distance == "squared" else _math.safe_norm(diff)


def _mine_triplets(d, labels, margin, keep, mining):
    """Per-anchor losses ``[N]`` from the distances ``d`` ``[N, N]`` and the residuals of the
    rule: the losses' derivative is ``Σ_k W[a, k]·∂d[a, idx[a, k]] + dm[a]·∂m[a]``, with
    ``idx``, ``W`` and ``dm`` constants (the selection is piecewise constant)."""
    n = labels.shape[-1]
    pos, neg = _valid_pairs(labels, keep)
    ds = jax.lax.stop_gradient(d)
    has_neg = jnp.any(neg, axis=-1)
    valid = jnp.any(pos, axis=-1) & has_neg
    if mining == "hard":
        hardest = jnp.stack([jnp.argmax(jnp.where(pos, ds, -jnp.inf), axis=-1),
                             jnp.argmin(jnp.where(neg, ds, jnp.inf), axis=-1)], axis=-1)
        picked = jnp.take_along_axis(d, hardest, axis=-1)
        z = picked[:, 0] - picked[:, 1] + margin
        slope = jnp.where(valid & (z > 0), 1.0, 0.0).astype(d.dtype)
        return jnp.where(valid, jax.nn.relu(z), 0.0), (hardest, jnp.stack([slope, -slope], -1), slope)
    if mining == "semihard":
        # For each positive pair (a, p): the closest negative farther than d_ap, else the
        # farthest negative (TF-addons' fallback); sorted negatives + searchsorted, no N³.
        far = jnp.where(neg, ds, jnp.inf)
        order = jnp.argsort(far, axis=-1)
        ranked = jnp.take_along_axis(far, order, axis=-1)
        first_beyond = jax.vmap(lambda r, q: jnp.searchsorted(r, q, side="right"))(ranked, ds)
        count = jnp.sum(neg, axis=-1, keepdims=True)
        chosen = jnp.take_along_axis(order, jnp.clip(jnp.minimum(first_beyond, count - 1), 0, n - 1), axis=-1)
        z = d - jnp.take_along_axis(d, chosen, axis=-1) + margin[:, None]
        active = pos & has_neg[:, None]
        positives = jnp.maximum(jnp.sum(pos, axis=-1, keepdims=True), 1).astype(d.dtype)
        loss = jnp.sum(jnp.where(active, jax.nn.relu(z), 0.0), axis=-1) / positives[:, 0]
        coef = jnp.where(active & (z > 0), 1.0, 0.0).astype(d.dtype) / positives
        partners = jnp.concatenate([jnp.broadcast_to(jnp.arange(n), (n, n)), chosen], axis=-1)
        return loss, (partners, jnp.concatenate([coef, -coef], axis=-1), jnp.sum(coef, axis=-1))
    # all: z[a, p, n] over every valid triplet.
    triplets = pos[:, :, None] & neg[:, None, :]
    count = jnp.maximum(jnp.sum(triplets, axis=(-1, -2)), 1).astype(d.dtype)
    z = d[:, :, None] - d[:, None, :] + margin[:, None, None]
    loss = jnp.sum(jnp.where(triplets, jax.nn.relu(z), 0.0), axis=(-1, -2)) / count
    active = jnp.where(triplets & (z > 0), 1.0, 0.0).astype(d.dtype) / count[:, None, None]
    return loss, (jnp.sum(active, axis=-1) - jnp.sum(active, axis=-2), jnp.sum(active, axis=(-1, -2)))


def _distance_tangent(x, t, partners, distance):
    """``∂d[a, partners[a, k]]`` in the direction ``t`` (``[N, D]``), ``[N, K]``; every
    partner (``[N, N]``) when ``partners`` is None.  ``∂d_aj = ⟨unit(x_a − x_j), t_a − t_j⟩``
    (0 at ``x_a = x_j``), ``2⟨x_a − x_j, t_a − t_j⟩`` squared, ``−⟨∂x̂_a, x̂_j⟩ − ⟨x̂_a, ∂x̂_j⟩``
    for cosine."""
    pick = (lambda v: v[None, :, :]) if partners is None else (lambda v: v[partners])
    if distance == "cosine":
        x_hat, norm = _math.normalize(x)
        dx_hat = _math.normalize_tangent(x_hat, norm, t)
        return -jnp.sum(dx_hat[:, None, :] * pick(x_hat) + x_hat[:, None, :] * pick(dx_hat), axis=-1)
    diff, dt = x[:, None, :] - pick(x), t[:, None, :] - pick(t)
    if distance == "squared":
        return 2 * jnp.sum(diff * dt, axis=-1)
    return jnp.sum(_math.unit(diff, _math.safe_norm(diff)) * dt, axis=-1)


def _flat(v, rank):
    """``v`` with the leading batch axes (all but the last ``rank``) flattened into one."""
    return v.reshape((-1,) + v.shape[v.ndim - rank:])


def _batch_triplet_tangent(p, t, out, res):
    partners, weights, dm = res if p.mining != "all" else (None, *res)
    dx = None
    if t.embeddings is not None:
        x, tx = _flat(p.embeddings, 2), _flat(t.embeddings, 2)
        if partners is None:
            dd = jax.vmap(lambda x, t: _distance_tangent(x, t, None, p.distance))(x, tx)
        else:
            dd = jax.vmap(lambda x, t, i: _distance_tangent(x, t, i, p.distance))(x, tx, _flat(partners, 2))
        dx = jnp.sum(_flat(weights, 2) * dd, axis=-1).reshape(out.shape)
    return tangent_sum((1.0, dx), (dm, t.margin))


@hand_derivative(_batch_triplet_tangent, static=("mining", "distance", "precision"), check=_check_batch_triplet,
                 residuals=True, per_example=("embeddings", "labels"), class_axis=("embeddings",))
def batch_triplet_loss(embeddings: Array, labels: Array, *, axis: int = -1, margin: ArrayLike = 1.0,
                       mining: Literal["all", "hard", "semihard"] = "all",
                       distance: Literal["euclidean", "squared", "cosine"] = "euclidean", precision: Precision = None,
                       where: Array | None = None) -> tuple[jax.Array, tuple[jax.Array, ...]]:
    r"""Triplet loss over the triplets mined in a batch, one loss per anchor.

    Distances :math:`d_{ij}` between the embeddings of a batch: ``"euclidean"``
    :math:`\lVert x_i - x_j\rVert`, ``"squared"`` :math:`\lVert x_i - x_j\rVert^2`, or
    ``"cosine"`` :math:`1 - \langle \hat x_i, \hat x_j\rangle` (L2-normalised,
    ``x / max(‖x‖, 1e-12)``).  For an anchor :math:`a`, its positives :math:`P_a` are the
    other examples with its label and its negatives :math:`N_a` those with another label,
    both among the unmasked examples; with :math:`h(z) = \max(0, z)` and margin :math:`m`:

    * ``mining="all"`` (batch all), the mean over **every** valid triplet, zeros included:

      .. math:: \ell_a = \frac{1}{|P_a||N_a|} \sum_{p \in P_a} \sum_{n \in N_a} h(d_{ap} - d_{an} + m);

    * ``mining="hard"`` (batch hard):
      :math:`\ell_a = h(\max_{p \in P_a} d_{ap} - \min_{n \in N_a} d_{an} + m)`;

    * ``mining="semihard"`` (FaceNet, as TF-addons implements it): for each positive, the
      negative :math:`n^*(a, p)` with the smallest :math:`d_{an} > d_{ap}` (a semi-hard
      negative); if no negative is farther than the positive, the farthest negative
      (:math:`\max_n d_{an}`, TF-addons' fallback).  Then
      :math:`\ell_a = \frac{1}{|P_a|} \sum_{p \in P_a} h(d_{ap} - d_{an^*} + m)`.
      FaceNet also asks that a semi-hard negative lie within the margin
      (:math:`d_{an} < d_{ap} + m`); no cap is applied here because it changes nothing:
      when the closest farther negative lies beyond the margin its hinge is 0 either way.

    An anchor without a positive or a negative (or masked out) has loss 0; use
    :func:`valid_triplet_anchors` to average over the anchors that have triplets::

        losses = batch_triplet_loss(x, labels, mining="hard", where=mask)
        loss = jaxloss.reduce.mean(losses, where=valid_triplet_anchors(labels, where=mask))

    **Why "all" averages every triplet.**  Hermans et al.'s "batch all" and PML's
    ``TripletMarginLoss`` (default ``AvgNonZeroTripletsReducer``) divide by the number of
    *non-zero* triplets, over the whole batch.  That count jumps when a triplet crosses the
    hinge, so the loss is discontinuous in the embeddings (its gradient is still that of
    a smooth piece, but finite differences and line searches see jumps) and it cannot be
    written per anchor.  Dividing by all valid triplets keeps the loss continuous and
    per-anchor.  Their average is still at hand: multiply each anchor's loss by
    :math:`|P_a||N_a|` and divide the sum by the number of non-zero triplets.

    Derivatives (hand rule): the selection (which triplets, arg max / arg min, which
    semi-hard negative) is piecewise constant and held fixed (the derivative of the
    formula away from ties); the derivative flows through the selected distances, with
    hinge slope :math:`[z > 0]` (0 at the corner, as ``jax.nn.relu``).
    ``∂d_ij/∂x_i = unit(x_i − x_j) = −∂d_ij/∂x_j`` for ``"euclidean"`` (0 when
    ``x_i = x_j``: the minimum-norm subgradient, so duplicates give finite gradients),
    ``2(x_i − x_j)`` for ``"squared"``, and for ``"cosine"``
    ``∂d_ij/∂x_i = −(x̂_j − x̂_i⟨x̂_i, x̂_j⟩)/‖x_i‖``.  ``∂ℓ_a/∂m`` is the fraction of
    the anchor's selected triplets whose hinge is active.  Reverse mode keeps the inputs
    and the selection (``[N, 2]`` indices and weights for ``"hard"``, ``[N, 2N]`` for
    ``"semihard"``, an ``[N, N]`` weight matrix for ``"all"``) and recomputes the selected
    distances; ``"all"`` forms the ``[N, N, N]`` hinge tensor in the forward pass and the
    Euclidean distances an ``[N, N, D]`` difference tensor (there is no blockwise form).

    ``where`` masks examples: a masked example is no anchor, positive or negative; its
    loss and gradient are exactly 0, even if its embedding holds inf or NaN (padding).

    Args:
      embeddings: float array ``[..., N, D]``: ``N`` examples per batch.
      axis: static; the feature axis D of ``embeddings``, an int (-1, the last, by default);
        the examples axis N is the last of the others.
      labels: integer class ids ``[..., N]``; no derivative.
      margin: float, or a float array broadcasting to ``[..., N]`` (per anchor);
        differentiated when traced.
      mining: static; ``"all"``, ``"hard"`` or ``"semihard"``.
      distance: static; ``"euclidean"``, ``"squared"`` or ``"cosine"``.
      precision: static; the precision of the one matmul, the Gram matrix of the ``"cosine"``
        distances (the rule and the other distances take none): a ``jax.lax.Precision`` or its
        name.  None (default) is ``HIGHEST``: the matmul runs in float32 (lower-precision inputs
        are upcast first), which GPUs may otherwise run in TF32, outside float32 tolerances;
        ``"default"`` trades that accuracy for speed.
      where: optional boolean mask broadcasting to ``[..., N]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Per-anchor losses ``[..., N]`` (float32 for lower-precision embeddings).

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [3.0, 0.0]])
      >>> labels = jnp.array([0, 0, 1, 1])
      >>> jaxloss.batch_triplet_loss(x, labels, mining="hard")
      Array([1.        , 0.58578646, 2.        , 0.        ], dtype=float32)
      >>> jaxloss.batch_triplet_loss(x, labels, mining="all")
      Array([0.5       , 0.29289323, 1.7928932 , 0.        ], dtype=float32)

    References:
      Hermans, Beyer & Leibe, "In Defense of the Triplet Loss for Person
      Re-Identification", 2017 (batch hard, batch all).  Schroff, Kalenichenko & Philbin,
      "FaceNet", CVPR 2015 (semi-hard negatives).  pytorch-metric-learning:
      ``losses.TripletMarginLoss`` with ``miners.BatchHardMiner`` (``"hard"``: the same
      per-anchor losses, with ``LpDistance(normalize_embeddings=False)``) and
      ``miners.TripletMarginMiner(type_of_triplets="semihard")``, which keeps *every*
      triplet with ``0 < d_an − d_ap ≤ m`` rather than one negative per positive.
      ``tfa.losses.triplet_semihard_loss`` (``"semihard"`` with ``"euclidean"`` /
      ``"squared"``): the same selection and fallback, but it averages over all positive
      pairs of the batch, while here each anchor averages over its own positives (the
      batch means agree when all anchors have the same number of positives and a negative).
    """
    keep = jnp.ones(labels.shape, bool) if where is None else jnp.broadcast_to(where, labels.shape)
    margin = jnp.broadcast_to(jnp.asarray(margin, embeddings.dtype), labels.shape)

    def one(x, labels, margin, keep):
        return _mine_triplets(_pairwise_distances(x, distance, precision), labels, margin, keep, mining)

    loss, res = jax.vmap(one)(_flat(embeddings, 2), _flat(labels, 1), _flat(margin, 1), _flat(keep, 1))
    lead = labels.shape[:-1]
    return loss.reshape(labels.shape), jax.tree.map(lambda r: r.reshape(lead + r.shape[1:]), res)


def valid_triplet_anchors(labels: Array, *, where: Array | None = None) -> jax.Array:
    """The anchors with at least one positive and one negative among the unmasked examples.

    Args:
      labels: integer class ids ``[..., N]``.
      where: optional boolean mask broadcasting to ``[..., N]``; masked examples count as
        neither anchors, positives nor negatives.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      Boolean ``[..., N]``: where :func:`batch_triplet_loss` has at least one triplet.
      Average over them with ``jaxloss.reduce.mean(losses, where=valid_triplet_anchors(labels,
      where=mask))``.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> jaxloss.valid_triplet_anchors(jnp.array([0, 0, 1, 2]))
      Array([ True,  True, False, False], dtype=bool)
    """
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer) or jnp.ndim(labels) < 1:
        raise TypeError(f"labels must be integer class ids [..., N], got {_checks._describe(labels)}.")
    _checks.mask("where", where)
    _checks.broadcasts_to("where", where, jnp.shape(labels), "labels")
    labels = jnp.asarray(labels)
    keep = jnp.ones(labels.shape, bool) if where is None else jnp.broadcast_to(where, labels.shape)
    pos, neg = _valid_pairs(labels, keep)
    return jnp.any(pos, axis=-1) & jnp.any(neg, axis=-1)
