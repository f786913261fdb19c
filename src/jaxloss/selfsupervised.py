"""Self-supervised losses: Barlow Twins, VICReg, the BYOL/SimSiam cosine, DINO.

Barlow Twins and VICReg are defined on the whole batch (their terms are batch
statistics: means, variances, a cross-correlation or covariance matrix), so they return
one number per batch.  Their ``where=`` removes masked examples from those statistics
(the loss is that of the batch without them) and ``axis_name=`` makes the statistics
global over a ``shard_map``/``pmap`` axis (psum of sums and counts), so a batch sharded
over devices gives every device the loss of the whole batch.  ``negative_cosine_similarity``
and ``dino_loss`` return one loss per example; :func:`dino_center_update` is the EMA of
DINO's teacher centre (state, not a loss).

Every loss supports ``jit``, ``vmap``, forward and reverse mode, ``jax.hessian`` and
forward-over-reverse Hessian-vector products; its derivative comes from the hand-derived
rule under it, and ``fn.reference`` is plain autodiff of the formula.  Stop-gradients on
a target or teacher branch are the caller's (``jax.lax.stop_gradient``): every float
argument gets its true derivative here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxloss import _checks, _math
from jaxloss.gradients import hand_derivative, tangent_sum
from jaxloss.types import Array, ArrayLike, Axis, AxisName

__all__ = ["barlow_twins_loss", "dino_center_update", "dino_loss", "negative_cosine_similarity", "vicreg_loss"]

# ------------------------------------------------------------------ batch statistics


def _examples(z, where, axis_name):
    """``(keep [N, 1], n)``: the float mask of the examples and their global count."""
    keep = jnp.ones(z.shape[:1], z.dtype) if where is None else where.astype(z.dtype)
    return keep[:, None], _math.psum(jnp.sum(keep), axis_name)


def _moments(z, keep, n, ddof, axis_name):
    """``(x, var)``: the examples centred on the (global) batch mean, 0 where masked, and the
    per-feature variance ``Σ x²/(n − ddof)`` (denominator at least 1)."""
    mean = _math.psum(jnp.sum(z, axis=0), axis_name) / jnp.maximum(n, 1)
    x = keep * (z - mean)
    return x, _math.psum(jnp.sum(x * x, axis=0), axis_name) / jnp.maximum(n - ddof, 1)


def _moments_tangent(x, keep, n, dz, ddof, axis_name):
    """The tangent ``(dx, dvar)`` of :func:`_moments`, or ``(None, None)``:
    ``dx = keep·(dz − mean(dz))``, ``dvar = 2 Σ x·dx/(n − ddof)``."""
    if dz is None:
        return None, None
    dx = keep * (dz - _math.psum(jnp.sum(dz, axis=0), axis_name) / jnp.maximum(n, 1))
    return dx, 2 * _math.psum(jnp.sum(x * dx, axis=0), axis_name) / jnp.maximum(n - ddof, 1)


def _off_diagonal(m):
    return m * (1 - jnp.eye(m.shape[-1], dtype=m.dtype))


def _check_pair(z1, z2, where, axis_name):
    for name, z in (("z1", z1), ("z2", z2)):
        _checks.float_array(name, z)
        if jnp.ndim(z) != 2:
            raise ValueError(f"{name} must be [examples, features], got shape {jnp.shape(z)}.")
    if jnp.shape(z1) != jnp.shape(z2):
        raise ValueError(f"z1 and z2 must have the same shape, got {jnp.shape(z1)} and {jnp.shape(z2)}.")
    _checks.broadcasts_to("where", where, jnp.shape(z1)[:1], "the examples of z1")
    _checks.hashable("axis_name", axis_name)


def _scalar_option(name, x, *, allow_zero):
    _checks.float_option(name, x, (), "a scalar")
    _checks.positive(name, x, allow_zero=allow_zero)


# ------------------------------------------------------------------ barlow_twins_loss


def _check_barlow(z1, z2, lambda_, eps, where, axis_name):
    _check_pair(z1, z2, where, axis_name)
    _scalar_option("lambda_", lambda_, allow_zero=True)
    _scalar_option("eps", eps, allow_zero=False)


def _standardised(z, keep, n, eps, axis_name):
    """``(ẑ, x, σ)``: ``ẑ = x/σ``, ``σ = √(var + eps)`` with the biased batch variance."""
    x, var = _moments(z, keep, n, 0, axis_name)
    sigma = jnp.sqrt(var + eps)
    return x / sigma, x, sigma


def _barlow_parts(z1, z2, eps, where, axis_name):
    keep, n = _examples(z1, where, axis_name)
    (s1, *_), (s2, *_) = (_standardised(_math.masked_rows(z, where), keep, n, eps, axis_name) for z in (z1, z2))
    return _math.psum(s1.T @ s2, axis_name) / jnp.maximum(n, 1), n


def _barlow_tangent(p, t, out, res):
    keep, n = _examples(p.z1, p.where, p.axis_name)
    zs = (_math.masked_rows(p.z1, p.where), _math.masked_rows(p.z2, p.where))
    dzs = (_math.masked_rows(t.z1, p.where), _math.masked_rows(t.z2, p.where))
    parts = []
    for z, dz in zip(zs, dzs):
        z_hat, x, sigma = _standardised(z, keep, n, p.eps, p.axis_name)
        dx, dvar = _moments_tangent(x, keep, n, dz, 0, p.axis_name)
        dsigma = tangent_sum((0.5 / sigma, dvar), (0.5 / sigma, t.eps))
        parts.append((z_hat, tangent_sum((1 / sigma, dx), (-z_hat / sigma, dsigma))))
    (s1, ds1), (s2, ds2) = parts
    count = jnp.maximum(n, 1)
    c = _math.psum(s1.T @ s2, p.axis_name) / count
    eye = jnp.eye(c.shape[0], dtype=bool)
    g = jnp.where(eye, -2 * (1 - c), 2 * p.lambda_ * c)  # ∂L/∂C
    dc = tangent_sum((1.0, None if ds1 is None else ds1.T @ s2), (1.0, None if ds2 is None else s1.T @ ds2))
    dc = None if dc is None else jnp.sum(g * _math.psum(dc, p.axis_name)) / count
    dloss = tangent_sum((1.0, dc), (jnp.sum(_off_diagonal(c) ** 2), t.lambda_))
    return None if dloss is None else jnp.where(n > 0, dloss, 0.0)


@hand_derivative(_barlow_tangent, check=_check_barlow, static=("axis_name",), where_of="inputs",
                 class_axis=("z1", "z2"))
def barlow_twins_loss(z1: Array, z2: Array, *, axis: int = -1, lambda_: ArrayLike = 5e-3, eps: ArrayLike = 1e-5,
                      where: Array | None = None, axis_name: AxisName | None = None) -> jax.Array:
    r"""Barlow Twins loss of a batch: the cross-correlation of two views driven to the identity.

    Defined on the whole batch: it returns one number (a scalar), not per-example losses.
    Each feature is standardised over the batch, ``ẑ = (z − μ)/σ`` with the batch mean μ and
    :math:`\sigma = \sqrt{\operatorname{var} + \epsilon}` (biased variance, as the official
    code's ``BatchNorm1d(affine=False)``, whose ε is 1e-5), and with
    :math:`C = \hat z_1^\top \hat z_2 / N` (``[D, D]``):

    .. math:: L = \sum_i (1 - C_{ii})^2 + \lambda \sum_{i \ne j} C_{ij}^2.

    Derivatives (hand rule), with :math:`G = \partial L/\partial C`, :math:`G_{ii} = -2(1 - C_{ii})`,
    :math:`G_{ij} = 2\lambda C_{ij}`: ``∂L/∂ẑ₁ = ẑ₂Gᵀ/N``, ``∂L/∂ẑ₂ = ẑ₁G/N``; through the
    standardisation ``dẑ = (dz − mean(dz))/σ − ẑ·dσ/σ`` with
    ``dσ = (2·mean(x·dx) + dε)/(2σ)``, ``x = z − μ``; ``∂L/∂λ = Σ_{i≠j} C_ij²``.

    Collapsed embeddings: a feature with zero variance standardises to ẑ = 0 (ε keeps σ ≥ √ε),
    so its row and column of C are 0 and it adds 1 to the loss.  Value and gradient are finite:
    ``∂ẑ/∂z`` is the centring over √ε there, so a collapsed feature of z₁ gets the gradient
    ``centre(ẑ₂Gᵀ)/(N√ε)`` from z₂'s features; when both views are collapsed (ẑ₁ = ẑ₂ = 0) the
    gradient is 0: total collapse is a stationary point of this loss.

    Args:
      z1, z2: float ``[N, D]``: the embeddings of two views of the same N examples.
      axis: static; the feature axis D of ``z1`` and ``z2``, an int: -1 (the last, default)
        or 0 for ``[D, N]`` embeddings.
      lambda_: the weight of the off-diagonal (redundancy) term, ≥ 0 (differentiated).
      eps: added to the variance before the square root, > 0 (differentiated).
      where: optional boolean ``[N]``; masked examples are left out of the batch statistics
        (the loss is that of the batch without them) and get gradient 0.  An empty batch
        gives 0.
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static):
        means, variances and C are psums over it, every device gets the whole batch's loss.

    Returns:
      A scalar, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> z = jnp.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
      >>> jaxloss.barlow_twins_loss(z, z)  # C_ii ≈ 1, C_01 = C_10 ≈ −½: λ·2·¼ (and ε's share)
      Array(0.00249992, dtype=float32)

    References:
      Zbontar, Jing, Misra, LeCun, Deny, "Barlow Twins: Self-Supervised Learning via
      Redundancy Reduction", ICML 2021 (Algorithm 1 standardises with ``z.std(0)``: unbiased, no ε;
      the official ``facebookresearch/barlowtwins`` code uses ``BatchNorm1d``, as here).
      λ = 5·10⁻³ is the paper's value (the code's default is 0.0051).
    """
    c, n = _barlow_parts(z1, z2, eps, where, axis_name)
    loss = jnp.sum((1 - jnp.diagonal(c)) ** 2) + lambda_ * jnp.sum(_off_diagonal(c) ** 2)
    return jnp.where(n > 0, loss, 0.0)


# ------------------------------------------------------------------ vicreg_loss


def _check_vicreg(z1, z2, sim_coeff, std_coeff, cov_coeff, eps, where, axis_name):
    _check_pair(z1, z2, where, axis_name)
    for name, value in (("sim_coeff", sim_coeff), ("std_coeff", std_coeff), ("cov_coeff", cov_coeff)):
        _scalar_option(name, value, allow_zero=True)
    _scalar_option("eps", eps, allow_zero=False)


def _vicreg_branch(z, keep, n, eps, axis_name):
    """``(x, σ, O)``: centred examples, ``σ = √(var + eps)`` (unbiased) and the
    off-diagonal part of the covariance ``xᵀx/(n − 1)``."""
    x, var = _moments(z, keep, n, 1, axis_name)
    cov = _math.psum(x.T @ x, axis_name) / jnp.maximum(n - 1, 1)
    return x, jnp.sqrt(var + eps), _off_diagonal(cov)


def _vicreg_terms(z1, z2, eps, where, axis_name):
    """``(invariance, variance, covariance, n)``, the last two summed over both branches."""
    keep, n = _examples(z1, where, axis_name)
    z1, z2 = _math.masked_rows(z1, where), _math.masked_rows(z2, where)
    d = z1.shape[-1]
    invariance = _math.psum(jnp.sum((z1 - z2) ** 2), axis_name) / (jnp.maximum(n, 1) * d)
    variance = covariance = 0.0
    for z in (z1, z2):
        _, sigma, off = _vicreg_branch(z, keep, n, eps, axis_name)
        variance += jnp.mean(jax.nn.relu(1 - sigma))
        covariance += jnp.sum(off**2) / d
    return invariance, variance, covariance, n


def _vicreg_tangent(p, t, out, res):
    keep, n = _examples(p.z1, p.where, p.axis_name)
    z1, z2 = _math.masked_rows(p.z1, p.where), _math.masked_rows(p.z2, p.where)
    dz1, dz2 = _math.masked_rows(t.z1, p.where), _math.masked_rows(t.z2, p.where)
    d, count = z1.shape[-1], jnp.maximum(n, 1)
    r = 2 * (z1 - z2) / (count * d)
    dinv = tangent_sum((r, dz1), (-r, dz2))
    dinv = None if dinv is None else _math.psum(jnp.sum(dinv), p.axis_name)
    dvariance = dcovariance = None
    for z, dz in ((z1, dz1), (z2, dz2)):
        x, sigma, off = _vicreg_branch(z, keep, n, p.eps, p.axis_name)
        dx, dvar = _moments_tangent(x, keep, n, dz, 1, p.axis_name)
        dsigma = tangent_sum((0.5 / sigma, dvar), (0.5 / sigma, t.eps))
        if dsigma is not None:  # relu(1 − σ): subgradient 0 at σ = 1
            dv = -jnp.mean(jnp.where(sigma < 1, dsigma, 0.0))
            dvariance = dv if dvariance is None else dvariance + dv
        if dx is not None:  # Σ_{i≠j} cov_ij²/d: 4⟨dx, x·O⟩/(d(n − 1))
            dc = 4 * _math.psum(jnp.sum(dx * (x @ off)), p.axis_name) / (d * jnp.maximum(n - 1, 1))
            dcovariance = dc if dcovariance is None else dcovariance + dc
    dloss = tangent_sum((p.sim_coeff, dinv), (p.std_coeff, dvariance), (p.cov_coeff, dcovariance))
    if any(x is not None for x in (t.sim_coeff, t.std_coeff, t.cov_coeff)):  # each coefficient's term
        terms = _vicreg_terms(p.z1, p.z2, p.eps, p.where, p.axis_name)[:3]
        dloss = tangent_sum((1.0, dloss), *zip(terms, (t.sim_coeff, t.std_coeff, t.cov_coeff)))
    return None if dloss is None else jnp.where(n > 0, dloss, 0.0)


@hand_derivative(_vicreg_tangent, check=_check_vicreg, static=("axis_name",), where_of="inputs",
                 class_axis=("z1", "z2"))
def vicreg_loss(z1: Array, z2: Array, *, axis: int = -1, sim_coeff: ArrayLike = 25.0, std_coeff: ArrayLike = 25.0,
                cov_coeff: ArrayLike = 1.0, eps: ArrayLike = 1e-4, where: Array | None = None,
                axis_name: AxisName | None = None) -> jax.Array:
    r"""VICReg loss of a batch: invariance, variance and covariance terms.

    Defined on the whole batch: it returns one number (a scalar), not per-example losses.
    With the unbiased per-feature batch variance and covariance (denominator N − 1, at least
    1), :math:`\sigma_j = \sqrt{\operatorname{var}(z_{\cdot j}) + \epsilon}`, D features:

    .. math::
       L = \lambda\,\tfrac{1}{ND}\sum_n \lVert z_{1n} - z_{2n}\rVert^2
         + \mu \sum_{b=1,2} \tfrac1D\sum_j \max(0, 1 - \sigma_{bj})
         + \nu \sum_{b=1,2} \tfrac1D\sum_{i\ne j} \operatorname{Cov}(z_b)_{ij}^2

    (λ ``sim_coeff``, μ ``std_coeff``, ν ``cov_coeff``), as the paper's Algorithm 1.

    Derivatives (hand rule), per branch with ``x = z − mean(z)`` and ``O`` the off-diagonal
    covariance: invariance ``2(z₁ − z₂)/(ND)`` (and its negative for z₂); variance
    ``−[σ_j < 1]·x_nj/(D(N − 1)σ_j)`` (subgradient 0 at σ = 1) and
    ``∂/∂ε = −Σ_j [σ_j < 1]/(2Dσ_j)``; covariance ``4(x·O)/(D(N − 1))`` (centring makes the
    mean's share vanish); each coefficient's derivative is its term.

    Collapsed embeddings (a constant feature): σ = √ε, the variance term is ``1 − √ε`` for
    that feature and its covariances are 0; value and gradient are finite.  The variance
    term's gradient is proportional to ``z − μ``, so it is 0 at an exactly constant feature
    (and about ``1/√(var + ε)`` times ``z − μ`` near one): ε keeps it finite, it does not
    push an exactly collapsed feature apart; the invariance term still acts.

    Args:
      z1, z2: float ``[N, D]``: the embeddings of two views of the same N examples.
      axis: static; the feature axis D of ``z1`` and ``z2``, an int: -1 (the last, default)
        or 0 for ``[D, N]`` embeddings.
      sim_coeff, std_coeff, cov_coeff: λ, μ, ν ≥ 0 (differentiated).
      eps: added to the variance before the square root, > 0 (differentiated).
      where: optional boolean ``[N]``; masked examples are left out of every batch statistic
        (the loss is that of the batch without them) and get gradient 0.  An empty batch
        gives 0; with one example the variances and covariances are 0.
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over (static):
        every statistic is global (psums), every device gets the whole batch's loss.

    Returns:
      A scalar, float32 for lower-precision inputs.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> z = jnp.array([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
      >>> jaxloss.vicreg_loss(z, z)  # only the covariance: cov(z₀, z₁) = −½ in each view
      Array(0.5, dtype=float32)

    References:
      Bardes, Ponce, LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
      Self-Supervised Learning", ICLR 2022, Algorithm 1.  The invariance is ``F.mse_loss``
      (a mean over N·D, as the pseudocode and code; the paper's Eq. 5 omits 1/D).  The
      official ``facebookresearch/vicreg`` code halves the variance term
      (``std_coeff = 25`` there is 12.5 here); this follows the paper.
    """
    invariance, variance, covariance, n = _vicreg_terms(z1, z2, eps, where, axis_name)
    loss = sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance
    return jnp.where(n > 0, loss, 0.0)


# ------------------------------------------------------------------ negative_cosine_similarity

# torch.nn.functional.normalize's default: x / max(‖x‖, eps).
_NORMALIZE_EPS = 1e-12


def _check_cosine(predictions, targets, where):
    _checks.float_array("predictions", predictions)
    _checks.float_array("targets", targets)
    if jnp.ndim(predictions) < 1 or jnp.shape(predictions) != jnp.shape(targets):
        raise ValueError(f"predictions and targets must have the same shape [..., D], got "
                         f"{jnp.shape(predictions)} and {jnp.shape(targets)}.")
    _checks.broadcasts_to("where", where, jnp.shape(predictions)[:-1], "the batch shape of predictions")


def _cosine_tangent(p, t, out, res):
    dcos = _math.cosine_similarity_tangent(p.predictions, p.targets, _NORMALIZE_EPS, t.predictions, t.targets)
    return None if dcos is None else -dcos


@hand_derivative(_cosine_tangent, check=_check_cosine, class_axis=("predictions", "targets"), axis_tuples=True)
def negative_cosine_similarity(predictions: Array, targets: Array, *, axis: Axis = -1,
                               where: Array | None = None) -> jax.Array:
    r"""Negative cosine similarity per example: the BYOL / SimSiam objective.

    With ``â = a/max(‖a‖, ε)`` (``F.normalize``, ε = 1e-12) over the feature axis:

    .. math:: \ell = -\langle \hat p, \hat z\rangle.

    This is SimSiam's ``D(p, z)``; BYOL's ``‖p̂ − ẑ‖² = 2 − 2⟨p̂, ẑ⟩`` is ``2 + 2ℓ``.  Both
    methods stop the gradient of the target branch: pass
    ``jax.lax.stop_gradient(targets)``; here every argument gets its true derivative.

    Derivatives (hand rule): ``∂ℓ/∂p = −(ẑ − p̂⟨p̂, ẑ⟩)/‖p‖`` (the projection off p̂), and
    symmetrically for z.  At a zero vector (‖p‖ ≤ ε) the normalisation is ``p/ε``, whose
    derivative is ``1/ε``: ``∂ℓ/∂p = −ẑ/ε``, finite (large, as in PyTorch); the loss is 0.

    Args:
      predictions: float ``[..., D]`` (the predictor's output p).
      targets: float ``[..., D]`` (the other branch's projection z).
      axis: static; the feature axis D (the last by default): an int, a tuple of ints
        (flattened into one) or None (every axis); ``[...]`` is the rest.
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` losses in [−1, 1], float32 for lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> p, z = jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.array([[2.0, 0.0], [-1.0, 0.0]])
      >>> jaxloss.negative_cosine_similarity(p, jax.lax.stop_gradient(z))
      Array([-1.        ,  0.70710677], dtype=float32)

    References:
      Chen, He, "Exploring Simple Siamese Representation Learning" (SimSiam), CVPR 2021,
      Algorithm 1 ``D``; Grill et al., "Bootstrap Your Own Latent" (BYOL), NeurIPS 2020,
      Eq. 2 (2 − 2·cos).
    """
    return -_math.cosine_similarity(predictions, targets, _NORMALIZE_EPS)


# ------------------------------------------------------------------ dino_loss


def _check_dino_logits(student_logits, teacher_logits):
    for name, x in (("student_logits", student_logits), ("teacher_logits", teacher_logits)):
        _checks.float_array(name, x)
        if jnp.ndim(x) < 2:
            raise ValueError(f"{name} must be [..., views, classes], got shape {jnp.shape(x)}.")
    (*batch, s, k), (*batch_t, t, k_t) = jnp.shape(student_logits), jnp.shape(teacher_logits)
    if batch != batch_t or k != k_t:
        raise ValueError(f"student_logits and teacher_logits must share the batch shape and the classes, "
                         f"got shapes {jnp.shape(student_logits)} and {jnp.shape(teacher_logits)}.")
    return tuple(batch), s, t, k


def _check_dino(student_logits, teacher_logits, center, student_temperature, teacher_temperature, where):
    batch, s, t, k = _check_dino_logits(student_logits, teacher_logits)
    if s * t - min(s, t) == 0:
        raise ValueError(f"dino_loss needs a pair of different views: student_logits has {s} view(s) and "
                         f"teacher_logits {t}.")
    _checks.float_array("center", center)
    _checks.broadcasts_to("center", center, (k,), "the classes of teacher_logits")
    for name, value in (("student_temperature", student_temperature), ("teacher_temperature", teacher_temperature)):
        _scalar_option(name, value, allow_zero=False)
    _checks.broadcasts_to("where", where, batch, "the batch shape of student_logits")


def _pairs(t, s, dtype):
    """``P [T, S]``: 1 where teacher view t is compared with student view s (t ≠ s)."""
    return 1 - jnp.eye(t, s, dtype=dtype)


def _paired_sum(weights, x):
    """``Σ_a weights[a, b]·x[..., a, :]`` for each b: ``[..., B, K]`` from ``x [..., A, K]``,
    summed in float32 with 0/1 weights (exact; no matrix unit's reduced precision)."""
    return sum(weights[a][:, None] * x[..., a, None, :] for a in range(weights.shape[0]))


def _dino_parts(student_logits, teacher_logits, center, student_temperature, teacher_temperature):
    """``(log p_s [..., S, K], q_t [..., T, K], P)``: the student's log-softmax, the centred
    sharpened teacher softmax and the pairs."""
    log_p = jax.nn.log_softmax(student_logits / student_temperature, axis=-1)
    q = jax.nn.softmax((teacher_logits - center) / teacher_temperature, axis=-1)
    return log_p, q, _pairs(q.shape[-2], log_p.shape[-2], q.dtype)


def _dino_tangent(p, t, out, res):
    ts, tt = p.student_temperature, p.teacher_temperature
    log_p, q, pairs = _dino_parts(p.student_logits, p.teacher_logits, p.center, ts, tt)
    scale = -1 / jnp.sum(pairs)
    # ∂ℓ/∂a_s for the student logits a = s/τs: −(Σ_{t≠s} q_t − m_s p_s)/n, m_s = #teachers paired with s.
    g_a = scale * (_paired_sum(pairs, q) - jnp.sum(pairs, axis=0)[:, None] * jnp.exp(log_p))
    # ∂ℓ/∂b_t for the teacher logits b = (t − c)/τt: −q_t ⊙ (L_t − ⟨q_t, L_t⟩)/n, L_t = Σ_{s≠t} log p_s.
    paired_log_p = _paired_sum(pairs.T, log_p)
    g_b = scale * q * (paired_log_p - jnp.sum(q * paired_log_p, axis=-1, keepdims=True))

    def contract(partial, tangent):
        return None if tangent is None else jnp.sum(partial * tangent, axis=(-2, -1))

    a = p.student_logits / ts
    b = (p.teacher_logits - p.center) / tt
    return tangent_sum(
        (1.0, contract(g_a / ts, t.student_logits)),
        (1.0, contract(g_b / tt, t.teacher_logits)),
        (1.0, contract(-g_b / tt, t.center)),
        (-jnp.sum(g_a * a, axis=(-2, -1)) / ts, t.student_temperature),
        (-jnp.sum(g_b * b, axis=(-2, -1)) / tt, t.teacher_temperature),
    )


@hand_derivative(_dino_tangent, check=_check_dino, per_example=("student_logits", "teacher_logits"),
                 class_axis=("student_logits", "teacher_logits"))
def dino_loss(student_logits: Array, teacher_logits: Array, center: Array, *, axis: int = -1,
              student_temperature: ArrayLike = 0.1, teacher_temperature: ArrayLike = 0.04,
              where: Array | None = None) -> jax.Array:
    r"""DINO loss per example: cross-entropy of the centred, sharpened teacher against the student,
    averaged over the pairs of different views.

    With the student's :math:`\log p_s = \log\operatorname{softmax}(s_s/\tau_s)` for each of
    its S views, the teacher's :math:`q_t = \operatorname{softmax}((t_t - c)/\tau_t)` for each
    of its T views (the first T of the student's views are the same crops, as the 2 global
    crops in the paper) and the :math:`n = TS - \min(T, S)` pairs :math:`t \ne s`:

    .. math:: \ell = -\frac1n \sum_{t} \sum_{s \ne t} \langle q_t, \log p_s\rangle.

    The mean of ℓ over the batch is the official ``DINOLoss`` (which averages each pair's
    batch mean over ``n_loss_terms``).

    Derivatives (hand rule), with :math:`p_s = e^{\log p_s}`, :math:`Q_s = \sum_{t\ne s} q_t`,
    :math:`m_s = \#\{t \ne s\}`, :math:`L_t = \sum_{s\ne t}\log p_s`:
    ``∂ℓ/∂s_s = −(Q_s − m_s p_s)/(nτ_s)``; ``∂ℓ/∂t_t = −q_t ⊙ (L_t − ⟨q_t, L_t⟩)/(nτ_t)``
    ``= −∂ℓ/∂c`` (summed over the teacher views for c); each temperature's derivative is
    ``−Σ (∂ℓ/∂logits)·logits/τ`` over its logits (``t − c`` for the teacher).  The teacher and
    the centre get their true derivatives: stop them yourself
    (``jax.lax.stop_gradient(teacher_logits)``), as DINO does.

    Args:
      student_logits: float ``[..., S, K]``: the student's S views of each example (batch
        first: from the official code's ``[S·N, K]`` use
        ``jnp.moveaxis(x.reshape(S, N, K), 0, 1)``).
      teacher_logits: float ``[..., T, K]``: the teacher's views, the same crops as the
        student's first T.
      center: float ``[K]``: the teacher's centre (see :func:`dino_center_update`).
      axis: static; the prototype axis K of both logits, an int (-1, the last, by default);
        the views axis is the last of the others (``axis=1`` takes ``[N, K, S]``).
      student_temperature, teacher_temperature: τ_s, τ_t > 0, scalars (differentiated).
      where: optional boolean mask broadcasting to ``[...]``.
        Give the reduction the same mask (``jaxloss.reduce.mean(losses, where=...)``).

    Returns:
      ``[...]`` losses, float32 for lower-precision inputs.

    Example:
      >>> import jax, jax.numpy as jnp, jaxloss
      >>> student = jnp.array([[[2.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # 1 example, 3 views
      >>> teacher = jax.lax.stop_gradient(student[:, :2])  # the 2 global views
      >>> jaxloss.dino_loss(student, teacher, jnp.zeros(2), student_temperature=1.0,
      ...                   teacher_temperature=0.5)
      Array([1.3920515], dtype=float32)

    References:
      Caron et al., "Emerging Properties in Self-Supervised Vision Transformers" (DINO),
      ICCV 2021, Algorithm 1; ``facebookresearch/dino`` ``DINOLoss`` (the teacher
      temperature schedule and the centre update stay outside the loss).
    """
    log_p, q, pairs = _dino_parts(student_logits, teacher_logits, center, student_temperature, teacher_temperature)
    return -jnp.sum(_paired_sum(pairs, q) * log_p, axis=(-2, -1)) / jnp.sum(pairs)


def dino_center_update(center: Array, teacher_logits: Array, *, momentum: ArrayLike = 0.9, where: Array | None = None,
                       axis_name: AxisName | None = None) -> jax.Array:
    r"""DINO's teacher centre, one EMA step: ``c ← m·c + (1 − m)·mean(teacher_logits)``.

    The mean is over every teacher view of every (unmasked) example, and over the devices
    of ``axis_name`` (a psum of sums and counts), as the official code's ``update_center``
    (``all_reduce`` of the batch sum).  Not a loss: plain ``jnp``, differentiable by autodiff;
    call it on ``jax.lax.stop_gradient`` logits, as DINO does under ``torch.no_grad``.

    Args:
      center: float ``[K]``.
      teacher_logits: float ``[..., T, K]``.
      momentum: m in [0, 1] (the paper's 0.9).
      where: optional boolean mask broadcasting to ``[...]``: masked examples are left out
        of the mean.  When no example is left, the centre is returned unchanged.
      axis_name: None, or a ``shard_map``/``pmap`` axis the batch is sharded over.

    Returns:
      The new centre ``[K]``, in ``center``'s dtype.

    Example:
      >>> import jax.numpy as jnp, jaxloss
      >>> teacher = jnp.array([[[1.0, 3.0], [3.0, 1.0]]])
      >>> jaxloss.dino_center_update(jnp.zeros(2), teacher, momentum=0.5)
      Array([1., 1.], dtype=float32)

    References:
      Caron et al., DINO, ICCV 2021, Eq. 4; ``facebookresearch/dino`` ``DINOLoss.update_center``.
    """
    _checks.float_array("center", center)
    _checks.float_array("teacher_logits", teacher_logits)
    if jnp.ndim(teacher_logits) < 2 or jnp.shape(center) != jnp.shape(teacher_logits)[-1:]:
        raise ValueError(f"center must be [K] and teacher_logits [..., T, K], got shapes {jnp.shape(center)} "
                         f"and {jnp.shape(teacher_logits)}.")
    _checks.mask("where", where)
    batch = jnp.shape(teacher_logits)[:-2]
    _checks.broadcasts_to("where", where, batch, "the batch shape of teacher_logits")
    _checks.in_unit_interval("momentum", momentum)
    x = teacher_logits.astype(_math.compute_dtype(teacher_logits.dtype))
    views = jnp.ones(x.shape[:-1], bool)
    if where is not None:
        views = views & jnp.reshape(jnp.broadcast_to(where, batch), batch + (1,))
    total = _math.psum(jnp.sum(jnp.where(views[..., None], x, 0), axis=tuple(range(x.ndim - 1))), axis_name)
    count = _math.psum(jnp.sum(views), axis_name)
    updated = momentum * center + (1 - momentum) * total / jnp.maximum(count, 1)
    return jnp.where(count > 0, updated, center).astype(center.dtype)
