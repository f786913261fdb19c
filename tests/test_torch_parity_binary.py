"""Parity of the elementwise and pairwise losses with torch.nn.functional and optax.losses.

Values, gradients, forward-mode derivatives (JVPs) and forward-over-reverse Hessian-vector
products, in float64, against PyTorch (``reduction="none"``; its double backward gives the HVP)
and optax (whose functions JAX differentiates), with float ±1 labels where PyTorch takes a
float tensor.  Where jaxloss differs on purpose (PyTorch's label-gradient at p = 0 or 1, optax's
NaN at zero vectors) the tests pin jaxloss's documented value.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue
F = torch.nn.functional
SHAPE = (5, 7)


def _close(ours, theirs, what="", rtol=1e-11, atol=1e-13):
    """Per element within ``rtol``, with an absolute floor of ``atol`` times the largest magnitude
    (an HVP element that cancels carries the rounding of its terms)."""
    theirs = np.asarray(theirs, np.float64)
    scale = max(1.0, float(np.max(np.abs(theirs), initial=0.0)))
    np.testing.assert_allclose(np.asarray(ours), theirs, rtol=rtol, atol=atol * scale, err_msg=what, equal_nan=False)


def _jax_derivatives(fn, arrays, fixed, directions):
    """Values; gradients of the sum; the JVP along ``directions``; the HVP of the sum along them."""
    loss = lambda x: fn(**x, **fixed)  # noqa: E731
    total = lambda x: jnp.sum(loss(x))  # noqa: E731
    values, jvp = jax.jvp(loss, (arrays,), (directions,))
    hvp = jax.jvp(jax.grad(total), (arrays,), (directions,))[1]
    return values, jax.grad(total)(arrays), jvp, hvp


def _torch_derivatives(name, arrays, fixed, directions, reduce=None, **options):
    """The same four from ``torch.nn.functional.<name>`` in float64 (double backward for the HVP);
    the JVP of per-element (or, with ``reduce``, per-example) losses contracts the gradient of the
    sum with the directions."""
    t = {k: torch.tensor(np.asarray(v), dtype=torch.float64, requires_grad=True) for k, v in arrays.items()}
    fixed = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in fixed.items()}
    values = getattr(F, name)(*t.values(), *fixed.values(), reduction="none", **options)
    grads = torch.autograd.grad(values.sum(), list(t.values()), create_graph=True)
    v = [torch.tensor(np.asarray(directions[k]), dtype=torch.float64) for k in t]
    along = sum((g * d).sum() for g, d in zip(grads, v))
    # Piecewise-linear losses have constant gradients: no graph, an HVP of 0.
    hvp = torch.autograd.grad(along, list(t.values()), allow_unused=True) if along.requires_grad else [None] * len(t)
    jvp = sum(g * d for g, d in zip(grads, v))
    jvp = jvp if reduce is None else jvp.sum(reduce)
    as_dict = lambda xs: {k: None if x is None else x.detach().numpy(force=True) for k, x in zip(t, xs)}  # noqa: E731
    return values.detach().numpy(), as_dict(grads), jvp.detach().numpy(), as_dict(hvp)


def _assert_same(ours, theirs, rtol=1e-11, atol=1e-13):
    (values, grads, jvp, hvp), (t_values, t_grads, t_jvp, t_hvp) = ours, theirs
    _close(values, t_values, "values", rtol, atol)
    _close(jvp, t_jvp, "jvp", rtol, atol)
    for name in t_grads:
        _close(grads[name], t_grads[name], f"gradient {name}", rtol, atol)
        _close(hvp[name], np.zeros(np.shape(grads[name])) if t_hvp[name] is None else t_hvp[name], f"hvp {name}",
               rtol, atol)


def _directions(rng, arrays):
    return {k: rng.normal(size=np.shape(v)) for k, v in arrays.items()}


def _signs(rng, shape=SHAPE):
    return rng.choice([-1.0, 1.0], size=shape)


# ----------------------------------------------------------------------------- PyTorch


@pytest.mark.parametrize("labels", ["soft", "hard"])
def test_binary_cross_entropy_matches_torch(labels, x64):
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.98, SHAPE)
    y = rng.uniform(size=SHAPE) if labels == "soft" else rng.integers(0, 2, SHAPE).astype(np.float64)
    arrays = {"probabilities": p, "labels": y}
    v = _directions(rng, arrays)
    # rtol 1e-9: PyTorch's double backward loses ~3e-10 on an HVP element that cancels (−2.55
    # from −19.7 + 17.1), where ours equals the exact rational value to the last digit.
    _assert_same(_jax_derivatives(jaxloss.binary_cross_entropy, arrays, {}, v),
                 _torch_derivatives("binary_cross_entropy", arrays, {}, v), rtol=1e-9)


def test_binary_cross_entropy_at_zero_and_one_matches_torch_values_and_probability_gradient():
    """float32, as PyTorch's clamp and ε = 1e-12 are meant: loss 100 per wrong-side unit of label,
    gradient (p − y)/1e-12.  PyTorch's label-gradient −logit(p) is ±inf there; ours is finite."""
    p = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5], np.float32)
    y = np.array([1.0, 0.0, 0.0, 1.0, 0.5, 0.25, 1.0], np.float32)
    tp, ty = (torch.tensor(x, requires_grad=True) for x in (p, y))
    values = F.binary_cross_entropy(tp, ty, reduction="none")
    values.sum().backward()
    ours = jaxloss.binary_cross_entropy(p, y)
    _close(ours, values.detach().numpy(), "values", rtol=1e-6, atol=0)
    grads = jax.grad(lambda p, y: jaxloss.binary_cross_entropy(p, y).sum(), (0, 1))(p, y)
    _close(grads[0], tp.grad.numpy(), "probabilities", rtol=1e-6, atol=0)
    assert np.all(np.isinf(ty.grad.numpy()[:6]))
    _close(grads[1], [100.0, 100.0, -100.0, -100.0, 100.0, -100.0, np.log(0.5) - np.log(0.5)], "labels", atol=1e-5)


def test_soft_margin_loss_matches_torch_with_float_labels(x64):
    rng = np.random.default_rng(1)
    arrays = {"scores": rng.normal(scale=2.0, size=SHAPE)}
    y = _signs(rng)
    v = _directions(rng, arrays)
    for fn in (jaxloss.soft_margin_loss, jaxloss.logistic_loss):
        _assert_same(_jax_derivatives(fn, arrays, {"labels": y}, v),
                     _torch_derivatives("soft_margin_loss", arrays, {"labels": y}, v))


@pytest.mark.parametrize("margin", [1.0, 0.5, -0.5])
def test_hinge_embedding_loss_matches_torch(margin, x64):
    rng = np.random.default_rng(2)
    u = rng.choice([-1.0, 1.0], SHAPE) * rng.uniform(0.1, 2.0, SHAPE)  # m − x, away from the corner
    arrays = {"inputs": margin - u}
    y = _signs(rng)
    v = _directions(rng, arrays)
    ours = _jax_derivatives(jaxloss.hinge_embedding_loss, arrays, {"labels": y, "margin": margin}, v)
    _assert_same(ours, _torch_derivatives("hinge_embedding_loss", arrays, {"labels": y}, v, margin=margin))
    default = jaxloss.hinge_embedding_loss(arrays["inputs"], y.astype(np.int32))
    if margin == 1.0:  # torch's default margin is 1.0 too
        _close(default, F.hinge_embedding_loss(torch.tensor(arrays["inputs"]), torch.tensor(y),
                                               reduction="none").numpy())


@pytest.mark.parametrize("ours, name", [(jaxloss.l1_loss, "l1_loss"), (jaxloss.mse_loss, "mse_loss"),
                                        (jaxloss.absolute_error, "l1_loss"), (jaxloss.squared_error, "mse_loss")],
                         ids=["l1_loss", "mse_loss", "absolute_error", "squared_error"])
def test_regression_aliases_match_torch(ours, name, x64):
    rng = np.random.default_rng(3)
    t = rng.normal(size=SHAPE)
    arrays = {"predictions": t + rng.choice([-1, 1], SHAPE) * rng.uniform(0.1, 2.0, SHAPE), "targets": t}
    v = _directions(rng, arrays)
    _assert_same(_jax_derivatives(ours, arrays, {}, v), _torch_derivatives(name, arrays, {}, v))


def test_l1_loss_zero_residual_subgradient_matches_torch(x64):
    t = np.array([0.0, 1.5, -2.0])
    grads = jax.grad(lambda p: jaxloss.l1_loss(p, t).sum())(t.copy())
    tp = torch.tensor(t, requires_grad=True)
    F.l1_loss(tp, torch.tensor(t), reduction="none").sum().backward()
    np.testing.assert_array_equal(grads, tp.grad.numpy())


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_cosine_embedding_loss_matches_torch_with_float_labels(margin, x64):
    rng = np.random.default_rng(4)
    arrays = {"x1": rng.normal(size=(6, 4)), "x2": rng.normal(size=(6, 4))}
    y = _signs(rng, (6,))
    v = _directions(rng, arrays)
    ours = _jax_derivatives(jaxloss.cosine_embedding_loss, arrays, {"y": y, "margin": margin}, v)
    _assert_same(ours, _torch_derivatives("cosine_embedding_loss", arrays, {"y": y}, v, reduce=-1, margin=margin),
                 rtol=1e-10)
    np.testing.assert_array_equal(ours[0], jaxloss.cosine_embedding_loss(**arrays, y=(y > 0).astype(np.int32),
                                                                         margin=margin))


# ----------------------------------------------------------------------------- optax


def _assert_same_as_optax(ours, theirs, arrays, fixed, rng, ours_fixed=None):
    v = _directions(rng, arrays)
    _assert_same(_jax_derivatives(ours, arrays, fixed if ours_fixed is None else ours_fixed, v),
                 _jax_derivatives(theirs, arrays, fixed, v))


@pytest.mark.parametrize("with_targets", [True, False], ids=["targets", "targets-None"])
@pytest.mark.parametrize("ours, theirs, options", [
    (jaxloss.l2_loss, optax.losses.l2_loss, {}),
    (jaxloss.squared_error, optax.losses.squared_error, {}),
    (jaxloss.huber_loss, optax.losses.huber_loss, {"delta": 0.7}),
    (jaxloss.log_cosh, optax.losses.log_cosh, {}),
], ids=["l2_loss", "squared_error", "huber_loss", "log_cosh"])
def test_regression_losses_match_optax(ours, theirs, options, with_targets, x64):
    rng = np.random.default_rng(5)
    t = rng.normal(size=SHAPE) if with_targets else np.zeros(SHAPE)
    predictions = t + rng.choice([-1, 1], SHAPE) * rng.uniform(0.1, 2.0, SHAPE)  # |r| away from δ = 0.7
    predictions = np.where(np.abs(np.abs(predictions - t) - 0.7) < 0.05, predictions + 0.2, predictions)
    arrays = {"predictions": predictions, **({"targets": t} if with_targets else {})}
    _assert_same_as_optax(ours, theirs, arrays, options, rng)
    if not with_targets:
        _close(ours(predictions, None, **options), theirs(predictions, None, **options))


@pytest.mark.parametrize("labels", [np.float64, np.int32], ids=["float", "int"])
def test_perceptron_loss_matches_optax(labels, x64):
    rng = np.random.default_rng(6)
    scores = rng.choice([-1, 1], SHAPE) * rng.uniform(0.1, 3.0, SHAPE)
    y = _signs(rng)
    _assert_same_as_optax(jaxloss.perceptron_loss, lambda scores, labels: optax.losses.perceptron_loss(scores, labels),
                          {"scores": scores}, {"labels": y}, rng, ours_fixed={"labels": y.astype(labels)})


def _cosine_inputs(rng, shape=(6, 5)):
    """Pairs with squared norms below 0.3 or above 1 (away from an ε = 0.3 floor)."""
    x = rng.normal(size=(2, *shape))
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    norms = np.where(rng.random((2, shape[0], 1)) < 0.5, rng.uniform(0.1, 0.4, (2, shape[0], 1)),
                     rng.uniform(1.1, 2.0, (2, shape[0], 1)))
    return {"predictions": x[0] * norms[0], "targets": x[1] * norms[1]}


@pytest.mark.parametrize("epsilon", [0.0, 0.3])
@pytest.mark.parametrize("ours, theirs", [(jaxloss.cosine_similarity, optax.losses.cosine_similarity),
                                          (jaxloss.cosine_distance, optax.losses.cosine_distance)],
                         ids=["cosine_similarity", "cosine_distance"])
def test_cosine_losses_match_optax(ours, theirs, epsilon, x64):
    rng = np.random.default_rng(7)
    arrays = _cosine_inputs(rng)
    _assert_same_as_optax(ours, theirs, arrays, {"epsilon": epsilon}, rng)
    # optax's where= over the features is feature_mask= here.
    mask = np.array([True, False, True, True, False])
    _assert_same_as_optax(ours, theirs, arrays, {"epsilon": epsilon, "where": mask}, rng,
                          ours_fixed={"epsilon": epsilon, "feature_mask": mask})


@pytest.mark.parametrize("axis", [0, 1, (0, 2), None], ids=str)
@pytest.mark.parametrize("ours, theirs", [(jaxloss.cosine_similarity, optax.losses.cosine_similarity),
                                          (jaxloss.cosine_distance, optax.losses.cosine_distance)],
                         ids=["cosine_similarity", "cosine_distance"])
def test_cosine_axis_matches_optax(ours, theirs, axis, x64):
    rng = np.random.default_rng(8)
    arrays = {"predictions": rng.normal(size=(3, 4, 5)), "targets": rng.normal(size=(3, 4, 5))}
    _assert_same_as_optax(ours, theirs, arrays, {"axis": axis}, rng)


def test_cosine_epsilon_derivative_matches_optax(x64):
    rng = np.random.default_rng(9)
    a, b = _cosine_inputs(rng).values()
    eps = np.full(6, 0.3)
    ours = jax.grad(lambda e: jaxloss.cosine_similarity(a, b, epsilon=e).sum())(eps)
    theirs = jax.grad(lambda e: optax.losses.cosine_similarity(a, b, epsilon=e[:, None]).sum())(eps)
    _close(ours, theirs)
    assert np.any(ours != 0)


def test_cosine_zero_vector_is_finite_where_optax_is_nan(x64):
    a, b = np.array([[0.0, 0.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [2.0, 0.0]])
    assert np.isnan(optax.losses.cosine_similarity(a, b)[0])
    _close(jaxloss.cosine_similarity(a, b), [0.0, np.sqrt(0.5)])
    _close(jaxloss.cosine_distance(a, b), [1.0, 1 - np.sqrt(0.5)])
    _close(jaxloss.cosine_similarity(a, b, epsilon=1e-4), optax.losses.cosine_similarity(a, b, epsilon=1e-4))


def test_torch_names_are_the_same_functions():
    """PyTorch's names are aliases (one function, one catalogue entry, one verified rule)."""
    assert jaxloss.l1_loss is jaxloss.absolute_error
    assert jaxloss.mse_loss is jaxloss.squared_error
    assert jaxloss.soft_margin_loss is jaxloss.logistic_loss
