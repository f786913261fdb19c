"""Approximate NDCG/MRR losses and the lambda weights of the pairwise losses: float64 NumPy
references of the formulas, masking, and parity with rax 0.4 (values and gradients)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full

PAIRWISE = ["pairwise_logistic_loss", "pairwise_hinge_loss", "pairwise_soft_zero_one_loss"]
PAIR_LOSS = {
    "pairwise_logistic_loss": lambda d: np.logaddexp(0.0, -d),
    "pairwise_hinge_loss": lambda d: np.maximum(1.0 - d, 0.0),
    "pairwise_soft_zero_one_loss": lambda d: 0.5 * (1.0 - np.tanh(d / 2)),
}
KINDS = [("ndcg", None), ("ndcg", 3), ("dcg", None), ("dcg", 2), ("label_diff", None)]


def close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol,
                               atol=atol, equal_nan=False)


def _lists(seed, shape=(6, 7), scale=2.0):
    rng = np.random.default_rng(seed)
    scores = jnp.float32(scale * rng.standard_normal(shape))
    labels = jnp.float32(rng.integers(0, 4, shape)).at[1].set(0.0)  # graded with ties; a list without relevant items
    weights = jnp.float32(rng.uniform(0.5, 2.0, shape))
    items = jnp.asarray(rng.random(shape) < 0.7).at[2].set(False)  # a list with every item masked
    return scores, labels, weights, items


# ---------------------------------------------------------------- float64 references, one list at a time


def _ideal_dcg(g, topn=None):
    ordered = np.sort(g)[::-1]
    d = 1.0 / np.log2(np.arange(2, ordered.size + 2))
    if topn is not None:
        d[topn:] = 0.0
    z = float(np.sum(ordered * d))
    return 1.0 if z == 0 else z


def _approx_ranks(s, temperature):
    x = (s[None, :] - s[:, None]) / temperature
    return 1.0 + np.sum(0.5 * (1.0 + np.tanh(x / 2)), axis=-1) - 0.5  # the diagonal's σ(0) = ½ left out


def _approx_list(name, s, y, w, m, temperature, topn=None):
    s, y, w = s[m], y[m], w[m]
    if not s.size:
        return 0.0
    r = _approx_ranks(s, temperature)
    if name == "approx_ndcg_loss":
        g = (2.0 ** y - 1.0) * w
        kappa = 1.0
        if topn is not None and s.size > topn:  # the midpoint of the topn-th and (topn+1)-th smallest ranks
            c = np.mean(np.sort(r)[topn - 1:topn + 1])
            kappa = 0.5 * (1.0 + np.tanh((c - r) / temperature / 2))
        return -float(np.sum(g * kappa / np.log2(1.0 + r))) / _ideal_dcg(g, topn)
    return -float(np.max(np.where(y >= 1, 1.0 / r, 0.0)))


def _per_list(fn, s, y, w, m, *options):
    s, y, w, m = (np.asarray(a, np.float64 if a.dtype != bool else bool) for a in (s, y, w, m))
    out = [fn(*a, *options) for a in zip(s.reshape(-1, s.shape[-1]), y.reshape(-1, s.shape[-1]),
                                         w.reshape(-1, s.shape[-1]), m.reshape(-1, s.shape[-1]))]
    return np.reshape(out, s.shape[:-1])


def _lambda_list(kind, topn, s, y, w, m, list_size):
    """λ over the valid items of one list (rax's definitions, from their formulas)."""
    if kind == "label_diff":
        return np.abs(y[:, None] - y[None, :])
    g = (2.0 ** y - 1.0) * w
    ranks = np.empty(s.size)
    ranks[np.argsort(-s, kind="stable")] = np.arange(1, s.size + 1)
    d = np.where(ranks <= (topn or s.size), 1.0 / np.log2(1.0 + ranks), 0.0)
    lam = list_size * np.abs(g[:, None] - g[None, :]) * np.abs(d[:, None] - d[None, :])
    return lam / _ideal_dcg(g, topn) if kind == "ndcg" else lam


def _pairwise_list(name, kind, topn, list_size, s, y, w, m):
    s, y, w = s[m], y[m], w[m]
    valid = y[:, None] > y[None, :]
    if not valid.any():
        return 0.0
    lam = _lambda_list(kind, topn, s, y, w, m, list_size)
    losses = w[:, None] * lam * PAIR_LOSS[name](s[:, None] - s[None, :])
    return float(np.sum(losses[valid]) / valid.sum())


@pytest.mark.parametrize("name", ["approx_ndcg_loss", "approx_mrr_loss"])
@pytest.mark.parametrize("scale, temperature", [(2.0, 1.0), (2.0, 0.3), (1e4, 1.0)])
def test_approx_metrics_match_float64_reference(name, scale, temperature):
    s, y, w, items = _lists(0, scale=scale)
    weights = {"weights": w} if name == "approx_ndcg_loss" else {}
    out = getattr(jaxloss, name)(s, y, where=items, temperature=temperature, **weights)
    expected = _per_list(functools.partial(_approx_list, name), s, y, w if weights else jnp.ones_like(w), items,
                         temperature)
    close(out, expected, rtol=2e-6, atol=1e-7)
    assert out[1] == 0 and out[2] == 0 and out.shape == (6,)  # no relevant item; every item masked


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("kind, topn", KINDS)
def test_lambda_weighted_pairwise_losses_match_float64_reference(name, kind, topn):
    s, y, w, items = _lists(1)
    out = getattr(jaxloss, name)(s, y, weights=w, where=items, lambda_weights=kind, topn=topn)
    expected = _per_list(functools.partial(_pairwise_list, name, kind, topn, s.shape[-1]), s, y, w, items)
    close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["approx_ndcg_loss", "approx_mrr_loss", *PAIRWISE])
def test_all_masked_and_no_relevant_lists_give_zero_finite_gradients(name):
    s, y = jnp.array([[0.0, 3.0, 1.0, 2.0], [1e4, -1e4, 0.0, 0.0]]), jnp.zeros((2, 4))
    options = {"lambda_weights": "ndcg"} if name in PAIRWISE else {}
    fn = getattr(jaxloss, name)
    for where in (jnp.zeros((2, 4), bool), None):
        out, g = jax.value_and_grad(lambda x: jnp.sum(fn(x, y, where=where, **options)))(s)
        assert out == 0 and jnp.all(g == 0)
    padded = jnp.array([[jnp.nan, jnp.inf, 1.0, 2.0]])
    where = jnp.array([[False, False, True, True]])
    g = jax.grad(lambda x: jnp.sum(fn(x, jnp.array([[1.0, 1.0, 2.0, 0.0]]), where=where, **options)))(padded)
    assert jnp.all(jnp.isfinite(g)) and jnp.all(g[~where] == 0)


@pytest.mark.parametrize("name", ["approx_ndcg_loss", "approx_mrr_loss"])
def test_temperature_scores_labels_and_weights_get_their_derivative(name):
    s, _, w, items = _lists(2, shape=(3, 5))
    y = jnp.float32(np.argsort(np.random.default_rng(2).random(s.shape), -1) * 0.5 + 0.2)  # no ties, none at 1
    fn = getattr(jaxloss, name)
    if name == "approx_ndcg_loss":
        call = lambda f: lambda s, y, w, t: f(s, y, weights=w, temperature=t, where=items)  # noqa: E731
        args = (s, y, w, jnp.float32(0.7))
    else:
        call = lambda f: lambda s, t: f(s, y, temperature=t, where=items)  # noqa: E731
        args = (s, jnp.float32(0.7))
    result = jaxloss.check_gradients(call(fn), *args, reference=call(fn.reference), order=2)
    assert result.ok, result


@pytest.mark.parametrize("name", PAIRWISE)
@pytest.mark.parametrize("kind, topn", KINDS)
def test_lambda_weights_pass_labels_and_weights_their_derivative(name, kind, topn):
    _, _, _, items = _lists(3, shape=(3, 5))
    rng = np.random.default_rng(3)
    s = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.45)  # differences away from the hinge's kink at 1
    y = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.37 + 0.1)  # no ties
    w = jnp.float32(rng.uniform(0.9, 1.1, items.shape))  # gains in the labels' order
    fn = getattr(jaxloss, name)

    def call(f):
        return lambda s, y, w: f(s, y, weights=w, where=items, lambda_weights=kind, topn=topn)

    result = jaxloss.check_gradients(call(fn), s, y, w, reference=call(fn.reference))
    assert result.ok, result


@pytest.mark.parametrize("options, match", [
    ({"lambda_weights": "ndgc"}, "lambda_weights must be one of"),
    ({"lambda_weights": "label_diff", "topn": 2}, "topn cuts"),
    ({"lambda_weights": "ndcg", "topn": 0}, "topn must be a positive int"),
])
def test_bad_lambda_options_raise(options, match):
    s = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=match):
        jaxloss.pairwise_logistic_loss(s, s, **options)


@pytest.mark.parametrize("name", ["approx_ndcg_loss", "approx_mrr_loss"])
def test_non_positive_temperature_raises(name):
    with pytest.raises(ValueError, match="temperature"):
        getattr(jaxloss, name)(jnp.zeros(3), jnp.zeros(3), temperature=0.0)


# ---------------------------------------------------------------- rax 0.4


def _rax():
    return pytest.importorskip("rax")


def _rax_approx(rax, name, temperature):
    """rax.approx_t12n(metric, temperature) spelt out: rax 0.4's wrapper calls ``jax.util.wraps``,
    gone from current JAX, so the metric is called with the approximate rank and cutoff functions
    it would pass."""
    metric = rax.ndcg_metric if name == "approx_ndcg_loss" else rax.mrr_metric
    step = lambda x: jax.nn.sigmoid(x / temperature)  # noqa: E731
    return lambda s, y, **kw: -metric(s, y, rank_fn=functools.partial(rax.utils.approx_ranks, step_fn=step),
                                      cutoff_fn=functools.partial(rax.utils.approx_cutoff, step_fn=step), **kw)


def _cases():
    s, y, w, items = _lists(4)
    return {"random": (s, y, w, items), "tied": (jnp.round(s), y, w, items), "huge": (s * 5e3, y, w, items),
            "unmasked": (s, y, w, jnp.ones_like(items))}


@pytest.mark.parametrize("name", ["approx_ndcg_loss", "approx_mrr_loss"])
@pytest.mark.parametrize("case", ["random", "tied", "huge", "unmasked"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_rax_approx_metrics_values_and_gradients(name, case, temperature):
    rax = _rax()
    s, y, w, items = _cases()[case]
    weights = name == "approx_ndcg_loss"
    peer = _rax_approx(rax, name, temperature)

    def ours(s, y, w):
        options = {"weights": w} if weights else {}
        losses = getattr(jaxloss, name)(s, y, where=items, temperature=temperature, **options)
        return jaxloss.reduce.mean(losses, where=jnp.any(items, -1))

    def theirs(s, y, w):
        return peer(s, y, where=items, **({"weights": w} if weights else {}))

    (value, grads), (expected, expected_grads) = (jax.value_and_grad(f, argnums=(0, 1, 2))(s, y, w)
                                                  for f in (ours, theirs))
    close(value, expected, rtol=2e-6, atol=1e-7)
    for g, e in zip(grads, expected_grads):  # rax's gradients at masked items may be NaN: compared on the others
        assert jnp.all(g[~items] == 0)
        close(g[items], e[items], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, case", [("pairwise_logistic_loss", c) for c in ("random", "tied", "huge", "unmasked")]
                         + [("pairwise_hinge_loss", "tied"), ("pairwise_soft_zero_one_loss", "huge")])
@pytest.mark.parametrize("kind, topn", KINDS)
def test_rax_lambda_weights_values_and_gradients(name, kind, topn, case):
    rax = _rax()
    s, y, w, items = _cases()[case]
    lambdaweight_fn = (rax.labeldiff_lambdaweight if kind == "label_diff" else
                       functools.partial(rax.dcg_lambdaweight, normalize=kind == "ndcg", topn=topn))
    pairs = (y[..., :, None] > y[..., None, :]) & items[..., :, None] & items[..., None, :]
    counts = jnp.sum(pairs, axis=(-2, -1)).astype(jnp.float32)

    def ours(s, y, w):
        losses = getattr(jaxloss, name)(s, y, weights=w, where=items, lambda_weights=kind, topn=topn)
        return jaxloss.reduce.mean(losses, weights=counts)

    def theirs(s, y, w):
        return getattr(rax, name)(s, y, weights=w, where=items, lambdaweight_fn=lambdaweight_fn)

    (value, grads), (expected, expected_grads) = (jax.value_and_grad(f, argnums=(0, 1, 2))(s, y, w)
                                                  for f in (ours, theirs))
    scale = float(jnp.max(jnp.abs(s)))
    close(value, expected, rtol=2e-6, atol=1e-6 * scale)
    for g, e in zip(grads, expected_grads):
        assert jnp.all(g[~items] == 0)
        close(g[items], e[items], rtol=1e-5, atol=1e-6 * scale)


# ---------------------------------------------------------------- approx_ndcg_loss's topn (rax's approx_cutoff)


@pytest.mark.parametrize("topn", [1, 3, 7])
def test_approx_ndcg_topn_matches_float64_reference(topn):
    s, y, w, items = _lists(5)
    out = jaxloss.approx_ndcg_loss(s, y, weights=w, where=items, temperature=0.5, topn=topn)
    expected = _per_list(functools.partial(_approx_list, "approx_ndcg_loss"), s, y, w, items, 0.5, topn)
    close(out, expected, rtol=2e-6, atol=1e-7)
    assert out[1] == 0 and out[2] == 0


def test_approx_ndcg_topn_derivatives():
    """Scores, labels, weights and temperature, with the cutoff point's own derivative; order 2."""
    _, _, _, items = _lists(6, shape=(3, 6))
    rng = np.random.default_rng(6)
    s = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.45)
    y = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.37 + 0.1)
    w = jnp.float32(rng.uniform(0.9, 1.1, items.shape))

    def call(f):
        return lambda s, y, w, t: f(s, y, weights=w, temperature=t, where=items, topn=2)

    result = jaxloss.check_gradients(call(jaxloss.approx_ndcg_loss), s, y, w, jnp.float32(0.6),
                                     reference=call(jaxloss.approx_ndcg_loss.reference), order=2)
    assert result.ok, result


def _moving_cutoff(a, n=None, *, where=None, segments=None, step_fn=jax.nn.sigmoid):
    """rax's ``approx_cutoff`` (unmasked lists) with the cutoff point differentiated: the
    midpoint of the ``n``-th and ``(n+1)``-th largest ``a``."""
    if n is None or n >= a.shape[-1]:
        return jnp.ones_like(a)
    order = jnp.argsort(-a, axis=-1)
    return step_fn(a - jnp.mean(jnp.take_along_axis(a, order[..., n - 1:n + 1], axis=-1), axis=-1, keepdims=True))


@pytest.mark.parametrize("case", ["random", "tied", "huge"])
@pytest.mark.parametrize("topn", [1, 3])
def test_rax_approx_ndcg_topn(case, topn):
    """Unmasked lists: values as rax's; label and weight gradients as rax's; score and temperature
    gradients as rax's metric with the cutoff point not stopped (rax stops its gradient)."""
    rax = _rax()
    s, y, w, _ = _cases()[case]
    step = lambda x, t: jax.nn.sigmoid(x / t)  # noqa: E731

    def theirs(cutoff):
        def f(s, y, w, t):
            return -rax.ndcg_metric(s, y, weights=w, topn=topn,
                                    rank_fn=functools.partial(rax.utils.approx_ranks, step_fn=lambda x: step(x, t)),
                                    cutoff_fn=functools.partial(cutoff, step_fn=lambda x: step(x, t)))
        return f

    def ours(s, y, w, t):
        return jnp.mean(jaxloss.approx_ndcg_loss(s, y, weights=w, temperature=t, topn=topn))

    args = (s, y, w, jnp.float32(0.5))
    (value, grads), (expected, stopped), (moving, moved) = (
        jax.value_and_grad(f, argnums=(0, 1, 2, 3))(*args)
        for f in (ours, theirs(rax.utils.approx_cutoff), theirs(_moving_cutoff)))
    close(value, expected, rtol=2e-6, atol=1e-7)
    close(moving, expected, rtol=1e-6, atol=1e-7)
    for g, e in zip(grads[1:3], stopped[1:3]):
        close(g, e, rtol=1e-5, atol=1e-7)
    for g, e in (grads[0], moved[0]), (grads[3], moved[3]):
        close(g, e, rtol=1e-5, atol=1e-6)


def test_bad_topn_on_approx_ndcg_raises():
    with pytest.raises(ValueError, match="topn must be a positive int"):
        jaxloss.approx_ndcg_loss(jnp.zeros(3), jnp.zeros(3), topn=0)
