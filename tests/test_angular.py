"""angular_margin_loss and its ArcFace / CosFace / SphereFace wrappers: a float64 reference
written with arccos, pytorch-metric-learning parity, the points cos θ = ±1 and zero vectors,
the θ + m > π fallback, reverse-mode residuals and errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.angular import (
    angular_margin_loss,
    arcface_loss,
    cosface_loss,
    sphereface_loss,
)

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C, D = 6, 5, 4


def _inputs(seed=0, batch=(N,), classes=C, features=D):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=batch)
    centers = rng.standard_normal((classes, features)) * rng.uniform(0.5, 2.0, (classes, 1))
    embeddings = rng.standard_normal(batch + (features,)) * rng.uniform(0.5, 2.0, batch + (1,))
    return embeddings, centers, labels


def _reference(xp, e, w, labels, scale=64.0, m1=1, m2=0.5, m3=0.0):
    """The combined margin with arccos (a test oracle; ``xp`` is numpy or jax.numpy)."""
    e_hat = e / xp.maximum(xp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    w_hat = w / xp.maximum(xp.linalg.norm(w, axis=-1, keepdims=True), 1e-12)
    cos = e_hat @ w_hat.T
    onehot = np.eye(w.shape[0], dtype=bool)[labels]
    c_y = xp.sum(xp.where(onehot, cos, 0.0), axis=-1)
    theta = xp.arccos(xp.clip(c_y, -1.0, 1.0))
    if m1 == 1:  # InsightFace: cos(θ + m2) where cos θ > cos(π − m2), else cos θ − m2·sin m2
        target = xp.where(c_y > xp.cos(np.pi - m2), xp.cos(theta + m2), c_y - m2 * xp.sin(m2))
    else:  # SphereFace: (−1)^k cos θ' − 2k, θ' = m1θ + m2 ∈ [kπ, (k+1)π]
        angle = m1 * theta + m2
        k = xp.floor(angle / np.pi)
        target = (-1.0) ** k * xp.cos(angle) - 2 * k
    scale = xp.asarray(scale)[..., None]
    logits = scale * xp.where(onehot, (target - m3)[..., None], cos)
    m = xp.max(logits, axis=-1, keepdims=True)
    lse = m[..., 0] + xp.log(xp.sum(xp.exp(logits - m), axis=-1))
    return lse - xp.sum(xp.where(onehot, logits, 0.0), axis=-1)


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0.0), (1, 0.0, 0.35), (1, 0.3, 0.2), (2, 0.0, 0.0),
                                      (3, 0.0, 0.1), (4, 0.0, 0.0), (2, 0.4, 0.1)])
@pytest.mark.parametrize("batch", [(N,), (2, 3)], ids=["2d", "3d"])
def test_matches_float64_arccos_reference(m1, m2, m3, batch, x64):
    e, w, labels = _inputs(1, batch)
    got = angular_margin_loss(e, w, labels, scale=16.0, m1=m1, m2=m2, m3=m3)
    assert got.shape == batch
    np.testing.assert_allclose(got, _reference(np, e, w, labels, 16.0, m1, m2, m3), rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0.0), (1, 0.3, 0.2), (4, 0.0, 0.0), (2, 0.4, 0.1)])
def test_gradients_match_autodiff_of_the_arccos_reference(m1, m2, m3, x64):
    e, w, labels = _inputs(2)
    scale = np.linspace(4.0, 12.0, N)  # per-example, as an array
    wrt = (0, 1, 2, 3, 4)
    f = lambda e, w, s, a, b: angular_margin_loss(e, w, labels, scale=s, m1=m1, m2=a, m3=b)
    g = lambda e, w, s, a, b: _reference(jnp, e, w, labels, s, m1, a, b)
    args = (e, w, scale, jnp.float64(m2), jnp.float64(m3))
    cot = np.random.default_rng(3).standard_normal(N)
    ours = jax.vjp(f, *args)[1](cot)
    theirs = jax.vjp(g, *args)[1](cot)
    for i, a, b in zip(wrt, ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11, err_msg=f"argument {i}")


@pytest.mark.parametrize("m1", [1, 2, 3, 4])
def test_derivatives_of_every_float_argument_check_out(m1):
    e, w, labels = _inputs(3, (N,))
    result = jaxloss.check_gradients(angular_margin_loss, e, w, labels, scale=np.linspace(2.0, 6.0, N), m1=m1,
                                     m2=np.full(N, 0.3), m3=0.1)
    assert result.ok, result
    assert {r.argument for r in result.rows} == {"embeddings", "class_centers", "scale", "m2", "m3"}


@pytest.mark.parametrize("fn,margins,margin", [
    (arcface_loss, lambda m: {"m2": m}, 0.4),
    (cosface_loss, lambda m: {"m2": 0.0, "m3": m}, 0.25),
    (sphereface_loss, lambda m: {"m1": m, "m2": 0.0}, 3),
], ids=["arcface", "cosface", "sphereface"])
def test_wrappers_are_the_combined_margin(fn, margins, margin, x64):
    e, w, labels = _inputs(4)
    combined = lambda e, w: angular_margin_loss(e, w, labels, scale=10.0, **margins(margin))
    wrapped = lambda e, w: fn(e, w, labels, scale=10.0, margin=margin)
    np.testing.assert_array_equal(wrapped(e, w), combined(e, w))
    for ours, theirs in zip(jax.grad(lambda *x: wrapped(*x).sum(), (0, 1))(e, w),
                            jax.grad(lambda *x: combined(*x).sum(), (0, 1))(e, w)):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(fn.reference(e, w, labels, scale=10.0, margin=margin), combined(e, w))


def test_wrapper_defaults_and_signatures():
    import inspect

    e, w, labels = (jnp.float32(a) if a.dtype.kind == "f" else a for a in _inputs(5))
    np.testing.assert_allclose(arcface_loss(e, w, labels), angular_margin_loss(e, w, labels, scale=64.0, m2=0.5),
                               rtol=1e-6)
    np.testing.assert_allclose(cosface_loss(e, w, labels),
                               angular_margin_loss(e, w, labels, scale=64.0, m2=0.0, m3=0.35), rtol=1e-6)
    np.testing.assert_allclose(sphereface_loss(e, w, labels),
                               angular_margin_loss(e, w, labels, scale=1.0, m1=4, m2=0.0), rtol=1e-6)
    for fn, scale, margin in ((arcface_loss, 64.0, 0.5), (cosface_loss, 64.0, 0.35), (sphereface_loss, 1.0, 4)):
        params = inspect.signature(fn).parameters
        options = ["straight_through"] if fn is arcface_loss else []
        assert list(params) == ["embeddings", "class_centers", "labels", "axis", "scale", "margin", *options,
                                "ignore_index", "block_size", "class_axis_name", "sample_rate", "key", "precision",
                                "where"]
        defaults = (params["scale"].default, params["margin"].default, params["ignore_index"].default,
                    params["precision"].default)
        assert defaults == (scale, margin, -100, None)
        assert fn.__name__ == fn.reference.__name__ and "Example" in fn.__doc__


def test_margin_derivative_of_arcface_and_cosface_checks_out():
    e, w, labels = _inputs(6)
    for fn in (arcface_loss, cosface_loss):
        result = jaxloss.check_gradients(fn, e, w, labels, scale=5.0, margin=0.3)
        assert result.ok, result
        assert "margin" in {r.argument for r in result.rows}


# ---------------------------------------------------------------- pytorch-metric-learning parity


def _pml(name, e, w, labels, **kwargs):
    """pytorch-metric-learning's loss ``name`` per example, with ``W = w.T``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, reducers

    loss = getattr(losses, name)(num_classes=w.shape[0], embedding_size=w.shape[1], reducer=reducers.DoNothingReducer(), **kwargs)
    loss = loss.double()
    with torch.no_grad():
        loss.W.copy_(torch.tensor(w.T))  # PML stores the centres as [D, C]
    out = loss(torch.tensor(e), torch.tensor(labels))
    # DoNothingReducer hands back the loss dict: per-example losses under "losses".
    assert out["loss"]["reduction_type"] == "element"
    return out["loss"]["losses"].detach().numpy()


@pytest.mark.parametrize("degrees,scale", [(28.6, 64.0), (10.0, 16.0), (57.0, 8.0)])
def test_arcface_matches_pytorch_metric_learning_per_example(degrees, scale, x64):
    e, w, labels = _inputs(7, (32,))
    e[:6] = -w[labels[:6]] + 0.1 * np.random.default_rng(0).standard_normal((6, D))  # near cos θ = −1
    want = _pml("ArcFaceLoss", e, w, labels, margin=degrees, scale=scale)
    got = arcface_loss(e, w, labels, scale=scale, margin=math.radians(degrees))
    assert np.any(np.cos(math.pi - math.radians(degrees)) >= _label_cosines(e, w, labels))  # fallback hit
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _label_cosines(e, w, labels):
    e_hat = e / np.linalg.norm(e, axis=-1, keepdims=True)
    w_hat = w / np.linalg.norm(w, axis=-1, keepdims=True)
    return np.sum(e_hat * w_hat[labels], axis=-1)


@pytest.mark.parametrize("margin,scale", [(0.35, 64.0), (0.1, 8.0)])
def test_cosface_matches_pytorch_metric_learning_per_example(margin, scale, x64):
    e, w, labels = _inputs(8, (32,))
    want = _pml("CosFaceLoss", e, w, labels, margin=margin, scale=scale)
    np.testing.assert_allclose(cosface_loss(e, w, labels, scale=scale, margin=margin), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("margin,scale", [(4, 1.0), (3, 2.0), (2, 1.5)])
def test_sphereface_matches_pytorch_metric_learning_with_the_embedding_norm_in_the_scale(margin, scale, x64):
    """PML's SphereFaceLoss keeps ‖e‖ in the logits (the paper's A-Softmax); ours normalises
    the embeddings, so the same losses come from the per-example scale s·‖e‖, and from the
    plain scale for unit-norm embeddings."""
    e, w, labels = _inputs(9, (32,))
    want = _pml("SphereFaceLoss", e, w, labels, margin=margin, scale=scale)
    norms = np.linalg.norm(e, axis=-1)
    np.testing.assert_allclose(sphereface_loss(e, w, labels, scale=scale * norms, margin=margin), want,
                               rtol=1e-9, atol=1e-10)
    assert not np.allclose(sphereface_loss(e, w, labels, scale=scale, margin=margin), want)
    unit = e / norms[:, None]
    np.testing.assert_allclose(sphereface_loss(unit, w, labels, scale=scale, margin=margin),
                               _pml("SphereFaceLoss", unit, w, labels, margin=margin, scale=scale),
                               rtol=1e-9, atol=1e-10)


def _torch_gradients(loss_fn, e, w, labels):
    """Per-example losses of ``loss_fn(torch, e, W, labels)``, a torch loss of the centres
    stored as the parameter ``W = w.T`` ``[D, C]``, and the gradients of their sum in ``e``
    and ``w``."""
    torch = pytest.importorskip("torch")
    et, wt = torch.tensor(e, requires_grad=True), torch.nn.Parameter(torch.tensor(w.T))
    losses = loss_fn(torch, et, wt, torch.tensor(labels))
    losses.sum().backward()
    return losses.detach().numpy(), et.grad.numpy(), wt.grad.numpy().T


def _jax_gradients(fn, e, w, labels, **options):
    losses = fn(e, w, labels, **options)
    return (losses, *jax.grad(lambda e, w: jnp.sum(fn(e, w, labels, **options)), (0, 1))(e, w))


@pytest.mark.parametrize("degrees,scale", [(28.6, 64.0), (57.0, 8.0)])
def test_arcface_gradients_match_pytorch_metric_learning(degrees, scale, x64):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses, reducers

    e, w, labels = _inputs(12, (16,))
    e[:3] = -w[labels[:3]] + 0.1 * np.random.default_rng(1).standard_normal((3, D))  # the fallback region

    def pml(torch, e, w_t, labels):
        loss = losses.ArcFaceLoss(num_classes=C, embedding_size=D, margin=degrees, scale=scale,
                                  reducer=reducers.DoNothingReducer()).double()
        loss.W = w_t
        return loss(e, labels)["loss"]["losses"]

    want = _torch_gradients(pml, e, w, labels)
    for fn in (arcface_loss, arcface_loss.reference):
        got = _jax_gradients(fn, e, w, labels, scale=scale, margin=math.radians(degrees))
        for name, a, b in zip(("losses", "embeddings", "class_centers"), got, want):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, err_msg=name)


def _insightface(m, scale):
    """A transcription of InsightFace's arcface_torch CombinedMarginLoss (m1 = 1, m3 = 0) and
    the cross-entropy after it: the label cosine is replaced by cos(acos(cos θ_y) + m) in place
    under no_grad, so autograd sees the unmodified cosine."""

    def loss(torch, e, w_t, labels):
        cos = torch.nn.functional.normalize(e, dim=-1) @ torch.nn.functional.normalize(w_t, dim=0)
        rows = torch.arange(len(labels))
        with torch.no_grad():
            cos[rows, labels] = torch.cos(torch.acos(cos[rows, labels]) + m)
        return torch.nn.functional.cross_entropy(scale * cos, labels, reduction="none")

    return loss


def test_straight_through_matches_insightface_value_and_gradient(x64):
    e, w, labels = _inputs(13, (16,))
    e[:3] = -w[labels[:3]] + 0.1 * np.random.default_rng(2).standard_normal((3, D))  # past θ + m = π
    assert np.any(_label_cosines(e, w, labels) < np.cos(np.pi - 0.5))
    want = _torch_gradients(_insightface(0.5, 16.0), e, w, labels)
    for fn in (arcface_loss, arcface_loss.reference):
        got = _jax_gradients(fn, e, w, labels, scale=16.0, margin=0.5, straight_through=True)
        for name, a, b in zip(("losses", "embeddings", "class_centers"), got, want):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, err_msg=name)
    # The margin changes the value, and the full derivative differs from the straight-through one.
    full = _jax_gradients(arcface_loss, e, w, labels, scale=16.0, margin=0.5)
    assert not np.allclose(full[1], want[1], rtol=1e-3)


def test_straight_through_gradient_is_that_of_the_plain_cosine_logit(x64):
    # ∂ℓ/∂cos θ_c = s (p_c − [c = y]) with p the softmax of the margin logits, in NumPy.
    e, w, labels = _inputs(14)
    cos = (e / np.linalg.norm(e, axis=-1, keepdims=True)) @ (w / np.linalg.norm(w, axis=-1, keepdims=True)).T
    onehot = np.eye(C)[labels]
    logits = 8.0 * np.where(onehot, np.cos(np.arccos(cos) + 0.3) - 0.1, cos)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    want = 8.0 * (p - onehot)
    # d cos_c / d e = (ŵ_c − ê cos_c)/‖e‖: the gradient in e is Σ_c ∂ℓ/∂cos_c (ŵ_c − ê cos_c)/‖e‖.
    e_hat, norm = e / np.linalg.norm(e, axis=-1, keepdims=True), np.linalg.norm(e, axis=-1, keepdims=True)
    w_hat = w / np.linalg.norm(w, axis=-1, keepdims=True)
    want_e = (want @ w_hat - e_hat * np.sum(want * cos, -1, keepdims=True)) / norm
    for fn in (angular_margin_loss, angular_margin_loss.reference):
        got = jax.grad(lambda e: jnp.sum(fn(e, w, labels, scale=8.0, m2=0.3, m3=0.1, straight_through=True)))(e)
        np.testing.assert_allclose(got, want_e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0.0), (1, 0.3, 0.2), (2, 0.3, 0.1)])
def test_straight_through_rule_agrees_with_autodiff_of_its_reference_to_second_order(m1, m2, m3, x64):
    e, w, labels = _inputs(15)
    args = (e, w, np.linspace(4.0, 12.0, N), np.float64(m2), np.float64(m3))

    def total(fn):
        return lambda e, w, s, a, b: jnp.sum(fn(e, w, labels, scale=s, m1=m1, m2=a, m3=b, straight_through=True))

    hand, reference = total(angular_margin_loss), total(angular_margin_loss.reference)
    tangents = tuple(np.random.default_rng(i).standard_normal(np.shape(a)) for i, a in enumerate(args))
    argnums = tuple(range(5))
    for a, b in zip(jax.grad(hand, argnums)(*args), jax.grad(reference, argnums)(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, equal_nan=False)
    np.testing.assert_allclose(jax.jvp(hand, args, tangents)[1], jax.jvp(reference, args, tangents)[1], rtol=1e-10)
    for a, b in zip(jax.jvp(jax.grad(hand, argnums), args, tangents)[1],
                    jax.jvp(jax.grad(reference, argnums), args, tangents)[1]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10, equal_nan=False)


def test_straight_through_keeps_the_margin_and_scale_derivatives(x64):
    # Away from the fallback the values agree, and so do the derivatives in s, m2 and m3.
    e, w, labels = _inputs(16)
    assert np.all(_label_cosines(e, w, labels) > np.cos(np.pi - 0.4))

    def total(straight_through):
        return lambda s, a, b: jnp.sum(angular_margin_loss(e, w, labels, scale=s, m2=a, m3=b,
                                                           straight_through=straight_through))

    args = (np.float64(6.0), np.float64(0.4), np.float64(0.1))
    np.testing.assert_allclose(total(True)(*args), total(False)(*args), rtol=1e-14)
    for a, b in zip(jax.grad(total(True), (0, 1, 2))(*args), jax.grad(total(False), (0, 1, 2))(*args)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_straight_through_must_be_a_bool(x64):
    e, w, labels = _inputs(17)
    with pytest.raises(TypeError, match="straight_through"):
        arcface_loss(e, w, labels, straight_through=1)


# ---------------------------------------------------------------- cos θ = ±1, zero vectors, the fallback


def _aligned(sign):
    w = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    e = sign * np.array([[2.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 1e4]])
    return e, w, np.array([0, 1, 2])


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["cos=+1", "cos=-1"])
@pytest.mark.parametrize("m1,m2,m3", [(1, 0.5, 0.0), (1, 0.0, 0.35), (4, 0.0, 0.0), (2, 0.3, 0.1)])
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_finite_values_and_gradients_at_cos_plus_minus_one(sign, m1, m2, m3, dtype, x64):
    e, w, labels = _aligned(sign)
    e, w = jnp.asarray(e, dtype), jnp.asarray(w, dtype)
    f = lambda e, w, s, a, b: angular_margin_loss(e, w, labels, scale=s, m1=m1, m2=a, m3=b).sum()
    args = (e, w, jnp.asarray(30.0, dtype), jnp.asarray(m2, dtype), jnp.asarray(m3, dtype))
    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))(*args)
    assert jnp.isfinite(value)
    for g in grads:
        assert jnp.all(jnp.isfinite(g)), grads
    # The subgradient taken (∂ sin θ/∂ cos θ = 0 at sin θ = 0) is what autodiff of the
    # double-where formula gives.
    ref = jax.grad(lambda *a: angular_margin_loss.reference(a[0], a[1], labels, scale=a[2], m1=m1, m2=a[3],
                                                            m3=a[4]).sum(), argnums=(0, 1, 2, 3, 4))(*args)
    for a, b in zip(grads, ref):
        np.testing.assert_allclose(a, b, rtol=1e-5 if dtype == jnp.float32 else 1e-12, atol=1e-6)


def test_target_derivative_at_cos_one_is_the_chosen_subgradient(x64):
    """At cos θ = 1 the ArcFace target's slope in cos θ is taken as cos m2 (the sin θ term's
    derivative set to 0): the derivative with respect to a scale of the label cosine."""
    from jaxloss._margins import margin_target

    m2 = jnp.full(3, 0.5)
    c = jnp.array([1.0, -1.0, 0.3])
    _, d_cos, d_m2 = margin_target(c, 1, m2)
    np.testing.assert_allclose(d_cos[0], np.cos(0.5))
    np.testing.assert_allclose(d_cos[1], 1.0)  # cos θ = −1 lies in the fallback region
    np.testing.assert_allclose(d_cos[2], np.sin(np.arccos(0.3) + 0.5) / np.sin(np.arccos(0.3)))
    np.testing.assert_allclose(d_m2[0], -np.sin(0.5))
    np.testing.assert_allclose(d_m2[2], -np.sin(np.arccos(0.3) + 0.5))
    _, d_cos4, _ = margin_target(jnp.array([1.0, -1.0]), 4, jnp.zeros(2))
    np.testing.assert_allclose(d_cos4, [16.0, -16.0])  # T_4'(±1) = ±16, smooth polynomial


def test_zero_embedding_has_cosines_zero_and_finite_gradients():
    e, w, labels = _inputs(10)
    e = jnp.float32(e).at[2].set(0.0)
    w = jnp.float32(w).at[labels[4]].set(0.0)  # a zero centre too
    for fn in (arcface_loss, cosface_loss, sphereface_loss):
        losses = fn(e, w, labels, scale=16.0)
        assert jnp.all(jnp.isfinite(losses))
        for g in jax.grad(lambda e, w, fn=fn: fn(e, w, labels, scale=16.0).sum(), (0, 1))(e, w):
            assert jnp.all(jnp.isfinite(g))
    # All cosines 0: the loss of the zero embedding is lse(s·0 with the margin on the label) − its logit.
    target = np.cos(np.pi / 2 + 0.5)  # θ = π/2
    want = np.log((C - 1) + np.exp(16.0 * target)) - 16.0 * target
    np.testing.assert_allclose(arcface_loss(e, w, labels, scale=16.0)[2], want, rtol=1e-5)


@pytest.mark.parametrize("m1,m2", [(1, 0.5), (1, 1.2), (1, 0.0), (2, 0.0), (4, 0.0), (3, 0.3)])
def test_label_logit_decreases_in_theta_over_zero_to_pi(m1, m2, x64):
    """With one other class orthogonal to the sweep, ℓ = log(1 + exp(−s·ψ(θ))) must not decrease
    as θ goes from 0 to π: the ArcFace fallback past θ + m2 = π and SphereFace's extension."""
    theta = np.linspace(0.0, np.pi, 2001)
    e = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], axis=-1)
    w = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    losses = np.asarray(angular_margin_loss(e, w, np.zeros(len(theta), int), scale=1.0, m1=m1, m2=m2))
    assert np.all(np.diff(losses) >= -1e-12)
    want = _reference(np, e, w, np.zeros(len(theta), int), 1.0, m1, m2, 0.0)
    np.testing.assert_allclose(losses, want, rtol=1e-9, atol=1e-9)


def test_arcface_fallback_past_pi_minus_margin(x64):
    m = 0.5
    threshold = np.cos(np.pi - m)
    for cos in (threshold - 0.05, -0.99, -1.0):
        sin = np.sqrt(1 - cos**2)
        e = np.array([[cos, sin]])
        w = np.array([[1.0, 0.0], [0.0, -1.0]])
        got = arcface_loss(e, w, np.array([0]), scale=2.0, margin=m)
        target = cos - m * np.sin(m)  # InsightFace's cos θ − mm, mm = sin(π − m)·m
        want = np.log(np.exp(2.0 * target) + np.exp(-2.0 * sin)) - 2.0 * target
        np.testing.assert_allclose(got, [want], rtol=1e-12)
        # and its margin derivative, −s·(p_y − 1)·(sin m + m cos m)
        dm = jax.grad(lambda m, e=e, w=w: arcface_loss(e, w, np.array([0]), scale=2.0, margin=m).sum())(m)
        p_y = np.exp(2.0 * target - np.logaddexp(2.0 * target, -2.0 * sin))
        np.testing.assert_allclose(dm, 2.0 * (p_y - 1) * -(np.sin(m) + m * np.cos(m)), rtol=1e-10)
    # just inside the threshold the angular margin applies
    cos = threshold + 0.05
    e = np.array([[cos, np.sqrt(1 - cos**2)]])
    got = arcface_loss(e, np.array([[1.0, 0.0], [0.0, -1.0]]), np.array([0]), scale=2.0, margin=m)
    target = np.cos(np.arccos(cos) + m)
    want = np.log(np.exp(2.0 * target) + np.exp(-2.0 * np.sqrt(1 - cos**2))) - 2.0 * target
    np.testing.assert_allclose(got, [want], rtol=1e-12)


def test_gradients_check_out_in_the_fallback_region():
    e = np.array([[-0.95, 0.3, 0.1], [-0.99, 0.05, 0.1], [0.2, 0.9, -0.3]])
    w = np.array([[1.0, 0.1, 0.0], [0.0, 1.0, 0.3], [0.2, -0.3, 1.0]])
    labels = np.array([0, 0, 1])
    assert np.all(_label_cosines(e, w, labels)[:2] < np.cos(np.pi - 0.5))
    result = jaxloss.check_gradients(angular_margin_loss, e, w, labels, scale=6.0, m2=0.5, m3=0.05)
    assert result.ok, result


def test_where_masks_inf_padding_to_zero_loss_and_gradient():
    e, w, labels = _inputs(12)
    e = jnp.float32(e).at[3].set(jnp.inf)
    where = jnp.arange(N) != 3
    losses, grads = jax.value_and_grad(lambda e, w: arcface_loss(e, w, labels, scale=8.0, where=where).sum(),
                                       (0, 1))(e, jnp.float32(w))
    assert jnp.isfinite(losses)
    assert jnp.all(grads[0][3] == 0) and jnp.all(jnp.isfinite(grads[1]))


def test_reverse_mode_keeps_the_inputs_and_per_example_statistics_only():
    e, w, labels = _inputs(13, (64,), classes=100, features=8)
    e, w = jnp.float32(e), jnp.float32(w)
    _, vjp = jax.vjp(lambda e, w: arcface_loss(e, w, labels), e, w)
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(vjp) if hasattr(leaf, "shape")]
    big = [leaf.shape for leaf in leaves if leaf.size >= 64 * 100]
    assert not big, big  # no [N, C] cosines, softmax or one-hot


def test_low_precision_inputs_give_float32_loss_and_own_dtype_gradients():
    e, w, labels = _inputs(14)
    e16, w16 = jnp.bfloat16(e), jnp.bfloat16(w)
    losses = arcface_loss(e16, w16, labels, scale=8.0)
    assert losses.dtype == jnp.float32
    ge, gw = jax.grad(lambda e, w: arcface_loss(e, w, labels, scale=8.0).sum(), (0, 1))(e16, w16)
    assert ge.dtype == jnp.bfloat16 and gw.dtype == jnp.bfloat16


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("change,error,match", [
    (lambda e, w, y: (e, w[:, :3], y), ValueError, r"class_centers .*\(5, 3\).*embeddings: shape \(6, 4\)"),
    (lambda e, w, y: (e, w[0], y), ValueError, r"class_centers .*\(4,\)"),
    (lambda e, w, y: (e, w, y.astype(np.float32)), TypeError, "labels must be integer"),
    (lambda e, w, y: (e, w, y[:4]), ValueError, r"labels .*\(6,\).*\(4,\)"),
    (lambda e, w, y: (e.astype(np.int32), w, y), TypeError, "embeddings"),
    (lambda e, w, y: (e, w.astype(np.int32), y), TypeError, "class_centers"),
], ids=["features", "centres-rank", "float-labels", "labels-shape", "int-embeddings", "int-centres"])
def test_bad_inputs_raise_naming_the_argument_and_shapes(change, error, match):
    e, w, y = change(*_inputs(15))
    with pytest.raises(error, match=match):
        angular_margin_loss(e, w, y)


@pytest.mark.parametrize("kwargs,match", [
    ({"m1": 2.5}, "m1"), ({"m1": 0}, "m1"), ({"m1": True}, "m1"),
    ({"m2": -0.1}, "m2"), ({"m2": 3.5}, "m2"), ({"scale": 0.0}, "scale"),
    ({"scale": np.ones(4)}, r"scale with shape \(4,\)"), ({"where": np.ones(3, bool)}, "where"),
    ({"block_size": 0}, "block_size"), ({"class_axis_name": ["x"]}, "class_axis_name"),
])
def test_bad_options_raise_naming_the_option(kwargs, match):
    e, w, y = _inputs(16)
    with pytest.raises((ValueError, TypeError), match=match):
        angular_margin_loss(e, w, y, **kwargs)


def test_sphereface_margin_must_be_an_integer():
    e, w, y = _inputs(17)
    with pytest.raises(ValueError, match="sphereface_loss's margin"):
        sphereface_loss(e, w, y, margin=1.5)
