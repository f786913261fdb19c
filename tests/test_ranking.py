"""Learning-to-rank losses: float64 NumPy references of the formulas, masking of items and
lists, and parity with rax 0.4 (values and gradients, rax's reductions through jaxloss.reduce)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full

PAIRWISE = {
    "pairwise_logistic_loss": lambda d: np.logaddexp(0.0, -d),
    "pairwise_hinge_loss": lambda d: np.maximum(1.0 - d, 0.0),
    "pairwise_soft_zero_one_loss": lambda d: 0.5 * (1.0 - np.tanh(d / 2)),
}
POINTWISE = {
    "pointwise_sigmoid_loss": lambda s, y: np.logaddexp(0.0, s) - s * np.clip(y, 0.0, 1.0),
    "pointwise_mse_loss": lambda s, y: (s - y) ** 2,
}
WEIGHTED = ["ranking_softmax_loss", *PAIRWISE, *POINTWISE]
ALL = [*WEIGHTED, "listmle_loss"]


def close(actual, expected, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=rtol,
                               atol=atol, equal_nan=False)


# ---------------------------------------------------------------- float64 references, one list at a time


def _reference_list(name, s, y, w, m):
    s, y, w = s[m], y[m], w[m]
    if not s.size:
        return 0.0
    if name == "ranking_softmax_loss":
        lse = np.logaddexp.reduce(s)
        return float(np.sum(w * y * (lse - s)))
    if name in PAIRWISE:
        valid = y[:, None] > y[None, :]
        losses = w[:, None] * PAIRWISE[name](s[:, None] - s[None, :])
        return float(np.sum(losses[valid]) / max(valid.sum(), 1))
    if name in POINTWISE:
        return float(np.mean(w * POINTWISE[name](s, y)))
    order = np.argsort(-y, kind="stable")
    x = s[order]
    return float(sum(np.logaddexp.reduce(x[k:]) - x[k] for k in range(x.size)))


def reference(name, s, y, w=None, m=None):
    s, y = np.asarray(s, np.float64), np.asarray(y, np.float64)
    w = np.ones_like(s) if w is None else np.broadcast_to(np.asarray(w, np.float64), s.shape)
    m = np.ones(s.shape, bool) if m is None else np.broadcast_to(np.asarray(m), s.shape)
    out = [_reference_list(name, *a) for a in zip(s.reshape(-1, s.shape[-1]), y.reshape(-1, s.shape[-1]),
                                                   w.reshape(-1, s.shape[-1]), m.reshape(-1, s.shape[-1]))]
    return np.reshape(out, s.shape[:-1])


def _lists(seed, shape=(6, 7), scale=2.0):
    rng = np.random.default_rng(seed)
    scores = jnp.float32(scale * rng.standard_normal(shape))
    labels = jnp.float32(rng.integers(0, 4, shape))  # graded, with ties
    labels = labels.at[1].set(0.0)  # a list without relevant items
    weights = jnp.float32(rng.uniform(0.5, 2.0, shape))
    items = jnp.asarray(rng.random(shape) < 0.7).at[2].set(False)  # a list with every item masked
    return scores, labels, weights, items


def _options(name, weights):
    return {"weights": weights} if name in WEIGHTED else {}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("scale", [2.0, 1e4])
def test_matches_float64_reference_with_masked_items(name, scale):
    s, y, w, items = _lists(0, scale=scale)
    fn = getattr(jaxloss, name)
    out = fn(s, y, where=items, **_options(name, w))
    expected = reference(name, s, y, w if name in WEIGHTED else None, items)
    close(out, expected, rtol=2e-5, atol=1e-5 * max(1.0, scale))
    assert out[2] == 0 and out.shape == (6,)


@pytest.mark.parametrize("name", ALL)
def test_tied_scores_and_a_single_item(name):
    s = jnp.zeros((2, 4)).at[1].set(jnp.array([0.5, 0.5, -1.0, 2.0]))
    y = jnp.array([[2.0, 1.0, 0.0, 1.0], [0.0, 3.0, 3.0, 1.0]])
    close(getattr(jaxloss, name)(s, y), reference(name, s, y))
    one = getattr(jaxloss, name)(jnp.array([[3.0]]), jnp.array([[1.0]]))
    close(one, reference(name, [[3.0]], [[1.0]]))


@pytest.mark.parametrize("name", ALL)
def test_masked_items_are_padding_nan_and_inf_take_no_part(name):
    s, y, w, items = _lists(1)
    fn = getattr(jaxloss, name)
    options = _options(name, w)
    padded = jnp.where(items, s, jnp.array([jnp.nan, jnp.inf, -jnp.inf])[jnp.arange(s.size) % 3].reshape(s.shape))
    grad = jax.grad(lambda x: jnp.sum(fn(x, jnp.where(items, y, jnp.nan), where=items, **options)))(padded)
    assert jnp.all(grad[~items] == 0) and jnp.all(jnp.isfinite(grad))
    close(fn(padded, y, where=items, **options), fn(s, y, where=items, **options))
    # forward mode and order 2 through the padding
    f = lambda x: jnp.sum(fn(x, y, where=items, **options))  # noqa: E731
    v = jnp.ones_like(s)
    hvp = jax.jvp(jax.grad(f), (padded,), (v,))[1]
    assert jnp.all(hvp[~items] == 0) and jnp.all(jnp.isfinite(hvp))
    close(jax.jvp(f, (padded,), (v,))[1], jax.jvp(f, (s,), (jnp.where(items, v, 0),))[1], rtol=1e-4)


@pytest.mark.parametrize("name", ALL)
def test_a_list_mask_equals_the_item_mask_of_whole_lists(name):
    s, y, w, _ = _lists(2)
    lists = jnp.array([True, False, True, True, False, True])
    fn = getattr(jaxloss, name)
    close(fn(s, y, where=lists, **_options(name, w)), fn(s, y, where=jnp.broadcast_to(lists[:, None], s.shape),
                                                        **_options(name, w)))


@pytest.mark.parametrize("name", ALL)
def test_all_masked_list_and_no_relevant_item_give_finite_zero_gradients(name):
    s, y = jnp.array([[0.0, 3.0, 1.0, 2.0]]), jnp.array([[0.0, 0.0, 0.0, 0.0]])
    fn = getattr(jaxloss, name)
    g = jax.grad(lambda x: jnp.sum(fn(x, y, where=jnp.zeros((1, 4), bool))))(s)
    assert jnp.all(g == 0)
    if name in ("ranking_softmax_loss", *PAIRWISE):  # no relevant item: nothing to learn
        g = jax.grad(lambda x: jnp.sum(fn(x, y)))(s)
        assert jnp.all(g == 0)


@pytest.mark.parametrize("name", ["ranking_softmax_loss", "pairwise_logistic_loss", "pointwise_sigmoid_loss"])
def test_weights_and_labels_get_their_derivative(name):
    s, _, w, items = _lists(3)
    y = jnp.float32(np.argsort(np.random.default_rng(3).random(s.shape), -1) * 0.12 + 0.1)  # no ties, inside (0, 1)
    fn = getattr(jaxloss, name)
    result = jaxloss.check_gradients(lambda s, y, w: fn(s, y, weights=w, where=items), s, y, w,
                                     reference=lambda s, y, w: fn.reference(s, y, weights=w, where=items))
    assert result.ok, result


# ---------------------------------------------------------------- rax 0.4


def _rax():
    return pytest.importorskip("rax")


def _pair_counts(y, items):
    valid = (y[..., :, None] > y[..., None, :]) & items[..., :, None] & items[..., None, :]
    return jnp.sum(valid, axis=(-2, -1)).astype(jnp.float32)


def _rax_mean(name, losses, y, items):
    """rax's default ``reduce_fn=jnp.mean`` from jaxloss's per-list losses."""
    if name in PAIRWISE:
        return jaxloss.reduce.mean(losses, weights=_pair_counts(y, items))
    if name in POINTWISE:
        return jaxloss.reduce.mean(losses, weights=jnp.sum(items, -1).astype(jnp.float32))
    return jaxloss.reduce.mean(losses, where=jnp.any(items, -1))


def _rax_fn(rax, name):
    return getattr(rax, "softmax_loss" if name == "ranking_softmax_loss" else name)


def _cases():
    s, y, w, items = _lists(4)
    tied = jnp.round(s)  # many tied scores
    return {"random": (s, y, w, items), "tied": (tied, y, w, items), "huge": (s * 5e3, y, w, items),
            "unmasked": (s, y, w, jnp.ones_like(items))}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("case", ["random", "tied", "huge", "unmasked"])
def test_rax_values_and_gradients(name, case):
    rax = _rax()
    s, y, w, items = _cases()[case]
    options = _options(name, w)
    peer = _rax_fn(rax, name)

    def ours(s, w):
        return _rax_mean(name, getattr(jaxloss, name)(s, y, where=items, **_options(name, w)), y, items)

    def theirs(s, w):
        return peer(s, y, where=items, **_options(name, w))

    (value, grads), (expected, expected_grads) = (jax.value_and_grad(f, argnums=(0, 1))(s, w) for f in (ours, theirs))
    scale = float(jnp.max(jnp.abs(s)))
    close(value, expected, rtol=2e-6, atol=1e-6 * scale)
    if (case, name) not in RAX_OFF_AT_TIES:
        close(grads[0], expected_grads[0], rtol=1e-5, atol=1e-6)
    if options:  # rax's weight gradient is NaN at masked items (0 · −inf): compared on the others
        assert jnp.all(grads[1][~items] == 0)
        close(grads[1][items], expected_grads[1][items], rtol=1e-5, atol=1e-6 * scale)


# rax's autodiff is off where its formula has a kink the loss has not: ``relu(s) + log1p(exp(−|s|))``
# at s = 0 (−ŷ − ½ instead of σ(0) − ŷ), ListMLE's cumulative log-sum-exp at tied scores (a
# ``minimum`` tie in its running-max correction); test_exact_gradient_at_ties checks ours there.
RAX_OFF_AT_TIES = {("tied", "pointwise_sigmoid_loss"), ("tied", "listmle_loss")}


@pytest.mark.parametrize("name, s, y, where, expected", [
    ("pointwise_sigmoid_loss", [0.0, 0.0, 1.0], [1.0, 0.0, 0.0], None,
     [-1 / 6, 1 / 6, 1 / (3 * (1 + np.exp(-1.0)))]),
    ("listmle_loss", [2.0, 2.0, -2.0, 2.0], [3.0, 3.0, 3.0, 1.0], [True, True, False, True],
     [-2 / 3, -1 / 6, 0.0, 5 / 6]),
])
def test_exact_gradient_at_ties(name, s, y, where, expected):
    """Where rax's autodiff is off (RAX_OFF_AT_TIES): the hand rule, the reference and float64
    finite differences agree with the exact derivative."""
    fn = getattr(jaxloss, name)
    s, y = jnp.float32(s), jnp.float32(y)
    where = None if where is None else jnp.asarray(where)
    for f in (fn, fn.reference):
        close(jax.grad(lambda x: f(x, y, where=where))(s), expected, rtol=1e-6)
    assert jaxloss.check_gradients(lambda x: fn(x, y, where=where), s,
                                   reference=lambda x: fn.reference(x, y, where=where)).ok


@pytest.mark.parametrize("name", ["ranking_softmax_loss", "listmle_loss"])
def test_rax_unreduced_listwise_losses(name):
    rax = _rax()
    s, y, w, items = _lists(5)
    options = _options(name, w)
    close(getattr(jaxloss, name)(s, y, where=items, **options),
          _rax_fn(rax, name)(s, y, where=items, reduce_fn=None, **options), rtol=2e-6)


@pytest.mark.parametrize("name", [*PAIRWISE, *POINTWISE])
def test_rax_sum_is_the_count_weighted_sum(name):
    rax = _rax()
    s, y, w, items = _lists(6)
    counts = _pair_counts(y, items) if name in PAIRWISE else jnp.sum(items, -1)
    losses = getattr(jaxloss, name)(s, y, weights=w, where=items)
    close(jaxloss.reduce.sum(losses * counts), getattr(rax, name)(s, y, weights=w, where=items, reduce_fn=jnp.sum),
          rtol=2e-6)


# ---------------------------------------------------------------- lambda weights on the softmax loss (TF-Ranking)

SOFTMAX_LAMBDAS = [("ndcg", None), ("ndcg", 2), ("dcg", None)]


def _tf_individual_weights(kind, topn, s, y, m):
    """TF-Ranking's ``DCGLambdaWeight.individual_weights`` (gains ``2^y − 1``, discounts
    ``1/log2(1 + r)``; NDCG: times the inverse ideal DCG@topn of the labels, 0 where that DCG is
    0), with the labels masked to 0 and the ranks of the scores, masked items last, ties in
    list order."""
    y = np.where(m, y, 0.0)
    ranks = np.empty(s.size)
    ranks[np.lexsort((np.arange(s.size), -np.where(m, s, -np.inf)))] = np.arange(1, s.size + 1)
    gain = 2.0 ** y - 1.0
    if kind == "ndcg":
        ideal = np.sort(gain)[::-1][:topn]
        z = float(np.sum(ideal / np.log2(np.arange(2, ideal.size + 2))))
        gain = gain * (1.0 / z if z > 0 else 0.0)
    return np.where(m, gain / np.log2(1.0 + ranks), 0.0)


def _tf_softmax_list(kind, topn, s, y, w, m):
    """TF-Ranking's ``SoftmaxLoss(lambda_weight=...)`` on one list, from its formula: each label
    replaced by its individual weight times the item weight; the softmax cross-entropy of those
    labels normalised to sum 1, times their sum (TF-Ranking's list weight).  TF-Ranking's
    masked logit log(1e-10) is left out (the masked item exactly)."""
    labels = (_tf_individual_weights(kind, topn, s, y, m) * w)[m]
    total = labels.sum()
    if total <= 0:
        return 0.0
    log_p = s[m] - np.logaddexp.reduce(s[m])
    return float(-np.sum(labels / total * log_p) * total)


def _tf_softmax(kind, topn, s, y, w, m):
    s, y, w = (np.asarray(a, np.float64) for a in (s, y, w))
    m = np.asarray(m)
    out = [_tf_softmax_list(kind, topn, *a) for a in zip(s.reshape(-1, s.shape[-1]), y.reshape(-1, s.shape[-1]),
                                                          w.reshape(-1, s.shape[-1]), m.reshape(-1, s.shape[-1]))]
    return np.reshape(out, s.shape[:-1])


@pytest.mark.parametrize("kind, topn", SOFTMAX_LAMBDAS)
@pytest.mark.parametrize("scale", [2.0, 1e4])
def test_lambda_weighted_softmax_matches_tf_ranking_formula(kind, topn, scale):
    s, y, w, items = _lists(7, scale=scale)
    s = s.at[3, :3].set(s[3, 0])  # tied scores: ranked in list order
    out = jaxloss.ranking_softmax_loss(s, y, weights=w, where=items, lambda_weights=kind, topn=topn)
    close(out, _tf_softmax(kind, topn, s, y, w, items), rtol=2e-5, atol=1e-5 * max(1.0, scale))
    assert out[1] == 0 and out[2] == 0  # no relevant item; every item masked


@pytest.mark.parametrize("kind, topn", SOFTMAX_LAMBDAS)
def test_lambda_weighted_softmax_derivatives(kind, topn):
    """Scores: λ a constant (ranks); labels and weights: their true derivative through λ (order 2
    with topn; the catalogue's verify row checks order 2 too)."""
    rng = np.random.default_rng(8)
    items = jnp.asarray(rng.random((3, 5)) < 0.8)
    s = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.45)
    y = jnp.float32(np.argsort(rng.random(items.shape), -1) * 0.37 + 0.1)  # no ties
    w = jnp.float32(rng.uniform(0.5, 2.0, items.shape))

    def call(f):
        return lambda s, y, w: f(s, y, weights=w, where=items, lambda_weights=kind, topn=topn)

    result = jaxloss.check_gradients(call(jaxloss.ranking_softmax_loss), s, y, w,
                                     reference=call(jaxloss.ranking_softmax_loss.reference), order=2 if topn else 1)
    assert result.ok, result
    # the score gradient is TF-Ranking's: p Σ g − g with g = w λ held fixed
    g = jax.grad(lambda x: jnp.sum(call(jaxloss.ranking_softmax_loss)(x, y, w)))(s)
    s64, y64, w64, m = np.float64(s), np.float64(y), np.float64(w), np.asarray(items)
    for i in range(3):
        gain = _tf_individual_weights(kind, topn, s64[i], y64[i], m[i]) * w64[i]
        p = np.where(m[i], np.exp(s64[i] - np.logaddexp.reduce(s64[i][m[i]])), 0.0)
        close(g[i], p * gain.sum() - gain, rtol=1e-5, atol=1e-6)


def test_lambda_weighted_softmax_masks_and_empty_lists():
    fn = jaxloss.ranking_softmax_loss
    s = jnp.array([[0.0, 3.0, 1.0, 2.0], [1e4, -1e4, 0.0, 0.0], [jnp.nan, jnp.inf, 1.0, 2.0]])
    y = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 0.0, 1.0], [jnp.nan, 1.0, 2.0, 0.0]])
    where = jnp.array([[True] * 4, [False] * 4, [False, False, True, True]])
    f = lambda s, y: jnp.sum(fn(s, y, where=where, lambda_weights="ndcg", topn=2))  # noqa: E731
    out, (gs, gy) = jax.value_and_grad(f, argnums=(0, 1))(s, y)
    assert jnp.isfinite(out) and jnp.all(jnp.isfinite(gs)) and jnp.all(jnp.isfinite(gy))
    assert jnp.all(gs[~where] == 0) and jnp.all(gy[~where] == 0) and jnp.all(gs[0] == 0)
    close(fn(s, y, where=where, lambda_weights="ndcg", topn=2)[2],
          _tf_softmax_list("ndcg", 2, np.array([0.0, 0.0, 1.0, 2.0]), np.array([0.0, 0.0, 2.0, 0.0]), np.ones(4),
                           np.asarray(where[2])))


@pytest.mark.parametrize("options, match", [
    ({"lambda_weights": "label_diff"}, "pairwise-only"),
    ({"lambda_weights": "dcg", "topn": 2}, "topn cuts the ideal DCG"),
    ({"topn": 2}, "topn cuts the ideal DCG"),
    ({"lambda_weights": "ndcg", "topn": 0}, "topn must be a positive int"),
    ({"lambda_weights": "ncdg"}, "lambda_weights must be one of"),
])
def test_bad_softmax_lambda_options_raise(options, match):
    with pytest.raises(ValueError, match=match):
        jaxloss.ranking_softmax_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), **options)
