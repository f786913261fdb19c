"""Pair and triplet embedding losses: values, hand-derived derivatives, parity, zero distances, errors.

Values and derivatives are checked in float64 against NumPy formulas written here from the
docstrings; parity against PyTorch and optax; the subgradients at zero distance and at
cos = ±1 are pinned.  The shared properties (jit, vmap, second order, dtypes, masks) run
through the catalogue in test_catalogue.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

BATCH, D = (2, 3), 4


def _grads(fn, args, wrt, **kwargs):
    """Gradients of sum(fn) with respect to the named arguments (compiled)."""
    def total(f):
        return jnp.sum(fn(**{**args, **f}, **kwargs))
    return jax.jit(jax.grad(total))({k: jnp.asarray(args[k]) for k in wrt})


def _close(a, b, rtol=1e-10, atol=1e-12, **kw):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol, **kw)


# ----------------------------------------------------------------------------- NumPy references


def _np_contrastive(x1, x2, is_similar, margin):
    y = is_similar.astype(np.float64) if is_similar.dtype.kind == "f" else (is_similar > 0).astype(np.float64)
    diff = x1 - x2
    d = np.linalg.norm(diff, axis=-1)
    h = np.maximum(margin - d, 0.0)
    loss = 0.5 * y * d**2 + 0.5 * (1 - y) * h**2
    g = diff / d[..., None]
    dx1 = y[..., None] * diff - ((1 - y) * h)[..., None] * g
    return loss, {"x1": dx1, "x2": -dx1, "margin": (1 - y) * h, "is_similar": 0.5 * d**2 - 0.5 * h**2}


def _np_distance(u, v, p, eps):
    x = u - v + eps
    d = np.sum(np.abs(x) ** p, axis=-1) ** (1 / p)
    return d, np.sign(x) * (np.abs(x) / d[..., None]) ** (p - 1)


def _np_triplet(anchor, positive, negative, margin, p, eps, swap):
    a, pos, neg = anchor, positive, negative
    d_ap, g_ap = _np_distance(a, pos, p, eps)
    d_an, g_an = _np_distance(a, neg, p, eps)
    d_pn, g_pn = _np_distance(pos, neg, p, eps)
    use_pn = swap & (d_pn < d_an)
    d_neg = np.where(use_pn, d_pn, d_an)
    active = (d_ap - d_neg + margin > 0).astype(np.float64)
    A, U = active[..., None], use_pn[..., None]
    grads = {
        "anchor": A * (g_ap - np.where(U, 0.0, g_an)),
        "positive": A * (-g_ap - np.where(U, g_pn, 0.0)),
        "negative": A * np.where(U, g_pn, g_an),
        "margin": active,
        "eps": active * (g_ap.sum(-1) - np.where(use_pn, g_pn.sum(-1), g_an.sum(-1))),
    }
    return np.maximum(d_ap - d_neg + margin, 0.0), grads


def _np_cosine(x1, x2, y, margin):
    s1, s2 = np.sum(x1 * x1, -1) + 1e-12, np.sum(x2 * x2, -1) + 1e-12
    cos = np.sum(x1 * x2, -1) / np.sqrt(s1 * s2)
    dc1 = x2 / np.sqrt(s1 * s2)[..., None] - (cos / s1)[..., None] * x1
    dc2 = x1 / np.sqrt(s1 * s2)[..., None] - (cos / s2)[..., None] * x2
    active = ((y <= 0) & (cos > margin)).astype(np.float64)
    slope = np.where(y > 0, -1.0, active)
    loss = np.where(y > 0, 1 - cos, np.maximum(cos - margin, 0.0))
    return loss, {"x1": slope[..., None] * dc1, "x2": slope[..., None] * dc2, "margin": -active}


# ----------------------------------------------------------------------------- inputs


def _contrastive_inputs(rng, labels="soft"):
    """Distances in bands at least 0.1 from the per-pair margin."""
    x1 = rng.normal(size=BATCH + (D,))
    u = rng.normal(size=BATCH + (D,))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    margin = rng.uniform(1.0, 2.0, size=BATCH)
    d = margin + rng.choice([-1.0, 1.0], size=BATCH) * rng.uniform(0.1, 0.8, size=BATCH)
    hard = rng.integers(0, 2, size=BATCH)
    y = {"soft": rng.uniform(size=BATCH), "int": hard, "bool": hard > 0, "float-hard": hard.astype(np.float64)}[labels]
    return {"x1": x1, "x2": x1 + d[..., None] * u, "is_similar": y, "margin": margin}


def _triplet_inputs(rng, p, eps, swap, margin=0.5):
    """Triplets whose hinge argument and (with swap) d(a, n) − d(p, n) keep 0.05 from 0."""
    out = []
    while len(out) < np.prod(BATCH):
        a, pos, neg = rng.normal(size=(3, D))
        d_ap, _ = _np_distance(a, pos, p, eps)
        d_an, _ = _np_distance(a, neg, p, eps)
        d_pn, _ = _np_distance(pos, neg, p, eps)
        d_neg = min(d_an, d_pn) if swap else d_an
        loss_arg = d_ap - d_neg + margin
        if abs(loss_arg) > 0.05 and (not swap or abs(d_an - d_pn) > 0.05):
            out.append((a, pos, neg))
    a, pos, neg = (np.stack(x).reshape(BATCH + (D,)) for x in zip(*out))
    return {"anchor": a, "positive": pos, "negative": neg}


def _cosine_inputs(rng, margin):
    """Labels ±1; for y = −1 the cosine keeps 0.05 from the margin."""
    x1, x2 = rng.normal(size=(2,) + BATCH + (D,))
    y = rng.choice([-1, 1], size=BATCH)
    cos = np.sum(x1 * x2, -1) / np.linalg.norm(x1, axis=-1) / np.linalg.norm(x2, axis=-1)
    x2 = np.where((np.abs(cos - margin) < 0.05)[..., None], -x2, x2)
    return {"x1": x1, "x2": x2, "y": y}


# ----------------------------------------------------------------------------- values and derivatives


@pytest.mark.parametrize("labels", ["soft", "int", "bool", "float-hard"])
def test_contrastive_values_and_gradients_match_numpy_float64(labels, x64):
    a = _contrastive_inputs(np.random.default_rng(0), labels)
    loss, expected = _np_contrastive(**a)
    _close(jaxloss.contrastive_loss(**a), loss)
    _close(jax.jit(jaxloss.contrastive_loss)(**a), loss)
    wrt = ("x1", "x2", "margin") + (("is_similar",) if labels in ("soft", "float-hard") else ())
    for name, g in _grads(jaxloss.contrastive_loss, a, wrt).items():
        _close(g, expected[name], err_msg=name)


def test_contrastive_bool_int_and_float_hard_labels_agree(x64):
    a = _contrastive_inputs(np.random.default_rng(1), "int")
    results = []
    for y in (a["is_similar"], a["is_similar"] > 0, a["is_similar"].astype(np.float64)):
        b = {**a, "is_similar": y}
        results.append((jaxloss.contrastive_loss(**b), _grads(jaxloss.contrastive_loss, b, ("x1", "x2"))))
    for loss, grads in results[1:]:
        _close(loss, results[0][0], rtol=0, atol=0)
        for k in grads:
            _close(grads[k], results[0][1][k], rtol=0, atol=0)


@pytest.mark.parametrize("p", [1, 1.5, 2, 3.0])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_values_and_gradients_match_numpy_float64(p, swap, x64):
    rng = np.random.default_rng(2)
    a = _triplet_inputs(rng, p, 0.01, swap)
    margin, eps = 0.5 + rng.uniform(-0.03, 0.03, size=BATCH), np.float64(0.01)  # the hinge keeps 0.02 from 0
    loss, expected = _np_triplet(**a, margin=margin, p=p, eps=eps, swap=swap)
    assert np.any(loss > 0) and np.any(loss == 0)  # both sides of the hinge
    args = {**a, "margin": margin, "eps": eps}
    fn = lambda **k: jaxloss.triplet_margin_loss(**k, p=p, swap=swap)
    _close(fn(**args), loss)
    _close(jax.jit(fn)(**args), loss)
    for name, g in _grads(fn, args, ("anchor", "positive", "negative", "margin", "eps")).items():
        _close(g, expected[name] if name != "eps" else expected[name].sum(), err_msg=name)


@pytest.mark.parametrize("margin", [0.0, 0.3, -0.4])
def test_cosine_embedding_values_and_gradients_match_numpy_float64(margin, x64):
    rng = np.random.default_rng(3)
    a = _cosine_inputs(rng, margin)
    m = np.full(BATCH, margin)
    loss, expected = _np_cosine(**a, margin=m)
    _close(jaxloss.cosine_embedding_loss(**a, margin=m), loss)
    for name, g in _grads(jaxloss.cosine_embedding_loss, {**a, "margin": m}, ("x1", "x2", "margin")).items():
        _close(g, expected[name], err_msg=name)


def test_cosine_embedding_zero_one_labels_mean_the_same_as_signed_labels(x64):
    a = _cosine_inputs(np.random.default_rng(4), 0.2)
    zero_one = {**a, "y": (a["y"] > 0).astype(np.int32)}
    _close(jaxloss.cosine_embedding_loss(**zero_one, margin=0.2), jaxloss.cosine_embedding_loss(**a, margin=0.2),
           rtol=0, atol=0)


# ----------------------------------------------------------------------------- parity with PyTorch and optax


def _torch(name, tensors, wrt, **options):
    torch = pytest.importorskip("torch")
    t = {k: torch.tensor(np.asarray(v)) for k, v in tensors.items()}
    for k in wrt:
        t[k].requires_grad_(True)
    loss = getattr(torch.nn.functional, name)(*t.values(), reduction="none", **options)
    loss.sum().backward()
    return loss.detach().numpy(), {k: t[k].grad.numpy() for k in wrt}


TRIPLET = ("anchor", "positive", "negative")


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("margin", [0.5, 1.0])
def test_triplet_matches_torch_per_example(p, swap, margin, x64):
    a = _triplet_inputs(np.random.default_rng(5), p, 1e-6, swap, margin)
    flat = {k: v.reshape(-1, D) for k, v in a.items()}  # torch wants [N, D]
    values, grads = _torch("triplet_margin_loss", flat, TRIPLET, margin=margin, p=p, swap=swap)
    ours = jaxloss.triplet_margin_loss(**a, margin=margin, p=p, swap=swap)
    _close(ours.reshape(-1), values, rtol=1e-12, atol=1e-14)
    fn = lambda **k: jaxloss.triplet_margin_loss(**k, margin=margin, p=p, swap=swap)
    for k, g in _grads(fn, a, TRIPLET).items():
        _close(np.reshape(g, (-1, D)), grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("p", [2, 4])
def test_triplet_matches_optax_where_their_eps_conventions_agree(p, x64):
    # optax puts eps inside the root, (Σ (a − b)^p + eps)^(1/p), and takes no absolute value:
    # with eps = 0 and an even p it is the same function as ours.
    a = _triplet_inputs(np.random.default_rng(6), p, 0.0, False, 1.0)
    ours = lambda **k: jaxloss.triplet_margin_loss(**k, margin=1.0, p=p, eps=0.0)
    theirs = lambda anchor, positive, negative: optax.losses.triplet_margin_loss(
        anchor, positive, negative, norm_degree=p, margin=1.0, eps=0.0)
    _close(ours(**a), theirs(**a), rtol=1e-12, atol=1e-14)
    mine, optax_grads = _grads(ours, a, TRIPLET), _grads(theirs, a, TRIPLET)
    for k in TRIPLET:
        _close(mine[k], optax_grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


@pytest.mark.parametrize("margin", [0.0, 0.3])
def test_cosine_embedding_matches_torch(margin, x64):
    a = _cosine_inputs(np.random.default_rng(7), margin)
    flat = {"x1": a["x1"].reshape(-1, D), "x2": a["x2"].reshape(-1, D), "y": a["y"].reshape(-1)}
    values, grads = _torch("cosine_embedding_loss", flat, ("x1", "x2"), margin=margin)
    _close(jaxloss.cosine_embedding_loss(**a, margin=margin).reshape(-1), values, rtol=1e-12, atol=1e-14)
    fn = lambda **k: jaxloss.cosine_embedding_loss(**k, margin=margin)
    for k, g in _grads(fn, a, ("x1", "x2")).items():
        _close(np.reshape(g, (-1, D)), grads[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_cosine_embedding_matches_torch_at_zero_vectors_and_cos_plus_minus_one(x64):
    v = np.array([[1.0, -2.0, 0.5, 3.0]])
    x1 = np.concatenate([v, v, np.zeros_like(v), v, np.zeros_like(v)])
    x2 = np.concatenate([2 * v, -v, v, np.zeros_like(v), np.zeros_like(v)])
    for y in (np.ones(5, np.int64), -np.ones(5, np.int64)):
        values, grads = _torch("cosine_embedding_loss", {"x1": x1, "x2": x2, "y": y}, ("x1", "x2"), margin=-0.5)
        ours = jaxloss.cosine_embedding_loss(x1, x2, y, margin=-0.5)
        _close(ours, values, rtol=1e-12, atol=1e-14)
        mine = _grads(jaxloss.cosine_embedding_loss, {"x1": x1, "x2": x2, "y": y}, ("x1", "x2"), margin=-0.5)
        for k in mine:
            assert np.all(np.isfinite(mine[k]))
            # At cos = ±1 the gradient is 0 up to rounding (~1e-14 in both libraries).
            _close(mine[k], grads[k], rtol=1e-12, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------- zero distances


def test_contrastive_gradient_at_identical_embeddings_is_the_minimum_norm_subgradient(x64):
    x = np.array([[1.0, -2.0, 3.0], [1e4, 0.0, -1e4], [0.5, 0.5, 0.5]])
    y = np.array([0.0, 0.0, 0.25])
    loss = jaxloss.contrastive_loss(x, x, y, margin=2.0)
    _close(loss, 0.5 * (1 - y) * 2.0**2)
    g = _grads(jaxloss.contrastive_loss, {"x1": x, "x2": x, "is_similar": y, "margin": 2.0},
               ("x1", "x2", "is_similar", "margin"))
    np.testing.assert_array_equal(g["x1"], 0.0)
    np.testing.assert_array_equal(g["x2"], 0.0)
    _close(g["is_similar"], -0.5 * 4.0 * np.ones(3))  # ½d² − ½m² at d = 0
    _close(g["margin"], 2.0 * (1 - y).sum())
    _, jv = jax.jvp(lambda a: jaxloss.contrastive_loss(a, x, y, margin=2.0), (jnp.asarray(x),), (jnp.ones_like(x),))
    np.testing.assert_array_equal(jv, 0.0)


def test_contrastive_hessian_of_similar_pairs_at_zero_distance_is_finite_and_exact(x64):
    x = np.array([[1.0, -2.0, 3.0]])
    hessian = jax.hessian(lambda a: jnp.sum(jaxloss.contrastive_loss(a, x, np.array([1]))))(jnp.asarray(x))
    _close(hessian.reshape(3, 3), np.eye(3))  # ½‖x1 − x2‖²


@pytest.mark.parametrize("p", [1, 1.5, 2, 3])
@pytest.mark.parametrize("swap", [False, True])
def test_triplet_gradient_is_finite_where_a_difference_is_exactly_zero(p, swap, x64):
    x = np.array([[1.0, -2.0, 3.0], [0.0, 0.0, 0.0]])
    n = np.array([[1.5, -2.0, 3.0], [0.0, 0.5, 0.0]])  # d(a, n) < margin: active
    for a, pos, neg in ((x, x, n), (x, n, x), (n, x, x), (x, x, x)):
        args = {"anchor": a, "positive": pos, "negative": neg}
        fn = lambda **k: jaxloss.triplet_margin_loss(**k, p=p, eps=0.0, swap=swap)
        assert np.all(np.isfinite(fn(**args)))
        for name, g in _grads(fn, args, TRIPLET).items():
            assert np.all(np.isfinite(g)), (name, g)
    # a = p: the positive distance is 0 and contributes nothing; the rest is d(a, n)'s direction.
    g = _grads(lambda **k: jaxloss.triplet_margin_loss(**k, p=p, eps=0.0),
               {"anchor": x, "positive": x, "negative": n}, TRIPLET)
    _, g_an = _np_distance(x, n, p, 0.0)
    np.testing.assert_array_equal(g["positive"], 0.0)
    _close(g["negative"], g_an)
    _close(g["anchor"], -g_an)


def test_triplet_eps_is_added_to_the_difference_as_torch_does(x64):
    a, pos = np.zeros((1, 2)), np.zeros((1, 2))
    neg = np.array([[3.0, 4.0]])
    loss = jaxloss.triplet_margin_loss(a, pos, neg, margin=10.0, eps=0.5)
    # d(a, p) = ‖(0.5, 0.5)‖, d(a, n) = ‖(−2.5, −3.5)‖
    _close(loss, [np.hypot(0.5, 0.5) - np.hypot(2.5, 3.5) + 10.0])


# ----------------------------------------------------------------------------- where=


def test_masked_pairs_give_zero_loss_and_gradient_even_with_nan_padding():
    x1 = np.array([[1.0, 2.0], [np.nan, np.inf], [0.0, 1.0]], np.float32)
    x2 = np.array([[0.0, 2.0], [1.0, -np.inf], [0.0, 1.0]], np.float32)
    where = np.array([True, False, True])
    for fn, third in ((jaxloss.contrastive_loss, np.array([0.5, 0.5, 0.0], np.float32)),
                      (jaxloss.cosine_embedding_loss, np.array([1, -1, 1]))):
        loss = fn(x1, x2, third, where=where)
        g1, g2 = jax.grad(lambda a, b, fn=fn, third=third: jnp.sum(fn(a, b, third, where=where)), (0, 1))(x1, x2)
        assert loss[1] == 0 and np.all(np.isfinite(loss))
        assert np.all(g1[1] == 0) and np.all(g2[1] == 0) and np.all(np.isfinite(g1)) and np.all(np.isfinite(g2))
    loss = jaxloss.triplet_margin_loss(x1, x2, x2[::-1], where=where)
    g = jax.grad(lambda a: jnp.sum(jaxloss.triplet_margin_loss(a, x2, x2[::-1], where=where)))(x1)
    assert loss[1] == 0 and np.all(np.isfinite(loss)) and np.all(g[1] == 0) and np.all(np.isfinite(g))


# ----------------------------------------------------------------------------- errors

F, F5, I = np.ones((3, 4), np.float32), np.ones((3, 5), np.float32), np.ones((3, 4), np.int32)
Y, Y2 = np.ones(3, np.int32), np.ones(2, np.int32)
ERRORS = [
    pytest.param(jaxloss.contrastive_loss, (I, F, Y), {}, TypeError,
                 r"x1 must be a floating-point array, got shape \(3, 4\), dtype int32", id="contrastive-integer-x1"),
    pytest.param(jaxloss.contrastive_loss, (F, F5, Y), {}, ValueError,
                 r"x2 with shape \(3, 5\) must have the shape of x1, \(3, 4\)", id="contrastive-x2-shape"),
    pytest.param(jaxloss.contrastive_loss, (F, F, Y2), {}, ValueError,
                 r"is_similar with shape \(2,\) does not broadcast to the batch shape of x1 with shape \(3,\)",
                 id="contrastive-labels-shape"),
    pytest.param(jaxloss.contrastive_loss, (F, F, Y), {"margin": np.ones(2, np.float32)}, ValueError,
                 r"margin with shape \(2,\) does not broadcast to the batch shape of x1", id="contrastive-margin-shape"),
    pytest.param(jaxloss.contrastive_loss, (np.float32(1), np.float32(1), 1), {}, ValueError,
                 r"x1 must have a feature axis \(the last\), got shape \(\)", id="contrastive-scalar-x1"),
    pytest.param(jaxloss.contrastive_loss, (F, F, Y), {"where": np.ones((3, 4), bool)}, ValueError,
                 r"where with shape \(3, 4\) does not broadcast to the batch shape of x1 with shape \(3,\)",
                 id="contrastive-where-shape"),
    pytest.param(jaxloss.triplet_margin_loss, (F, F, F5), {}, ValueError,
                 r"negative with shape \(3, 5\) must have the shape of anchor, \(3, 4\)", id="triplet-negative-shape"),
    pytest.param(jaxloss.triplet_margin_loss, (F, I, F), {}, TypeError,
                 r"positive must be a floating-point array", id="triplet-integer-positive"),
    pytest.param(jaxloss.triplet_margin_loss, (F, F, F), {"p": 0.5}, ValueError,
                 r"p must be a Python number with 1 <= p < inf, got 0.5", id="triplet-p-below-one"),
    pytest.param(jaxloss.triplet_margin_loss, (F, F, F), {"p": float("inf")}, ValueError,
                 r"p must be a Python number", id="triplet-p-inf"),
    pytest.param(jaxloss.triplet_margin_loss, (F, F, F), {"eps": -1.0}, ValueError,
                 r"eps must be >= 0", id="triplet-negative-eps"),
    pytest.param(jaxloss.triplet_margin_loss, (F, F, F), {"swap": 1}, TypeError,
                 r"swap must be a Python bool", id="triplet-swap-not-bool"),
    pytest.param(jaxloss.cosine_embedding_loss, (F, F, np.ones(3, np.complex64)), {}, TypeError,
                 r"y must be a real array, got shape \(3,\), dtype complex64", id="cosine-complex-y"),
    pytest.param(jaxloss.cosine_embedding_loss, (F, F5, Y), {}, ValueError,
                 r"x2 with shape \(3, 5\) must have the shape of x1", id="cosine-x2-shape"),
    pytest.param(jaxloss.cosine_embedding_loss, (F, F, Y), {"where": np.ones(3, np.int32)}, TypeError,
                 r"where must be a boolean mask", id="cosine-integer-where"),
]


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn, args, kwargs, error, match", ERRORS)
def test_bad_input_raises_at_trace_time_naming_the_argument(fn, args, kwargs, error, match, jit):
    with pytest.raises(error, match=match):
        if jit:
            static = {k: v for k, v in kwargs.items() if not isinstance(v, np.ndarray)}  # Python options
            traced = {k: v for k, v in kwargs.items() if k not in static}
            jax.jit(lambda args, traced: fn(*args, **traced, **static))(args, traced)
        else:
            fn(*args, **kwargs)
