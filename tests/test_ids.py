"""Class ids, the same in every loss that takes them: an id equal to ``ignore_index`` gives loss 0
and derivative exactly 0 (value, gradient, JVP, HVP; every argument); any other id outside
``[0, C)`` gives NaN; ids of every integer dtype mean what they mean in int32; the fused linear
cross-entropies equal softmax_cross_entropy of the materialised logits; and a class of weight 0
whose logit is −inf adds 0 to the value and to every derivative."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue


class Case(NamedTuple):
    """A loss on ids: ``make(rng, n, classes)`` gives ``(floats, options)``: the differentiated
    arguments by name, and the static options.  ``inputs`` name the positional float arguments,
    which come before the labels."""

    fn: object
    make: object
    inputs: tuple

    def call(self, floats, labels, **options):
        keywords = {n: v for n, v in floats.items() if n not in self.inputs}
        return self.fn(*(floats[n] for n in self.inputs), labels, **keywords, **options)


def _logits(rng, n, c):
    return jnp.float32(rng.normal(size=(n, c)) * 2)


def _cross_entropy(rng, n, c):
    return {"logits": _logits(rng, n, c), "label_smoothing": jnp.float32(rng.uniform(0.05, 0.3, n)),
            "z_loss": jnp.float32(0.01), "class_weights": jnp.float32(rng.uniform(0.5, 2, c))}, {}


def _nll(rng, n, c):
    return {"log_probs": jax.nn.log_softmax(_logits(rng, n, c)),
            "class_weights": jnp.float32(rng.uniform(0.5, 2, c))}, {}


def _focal(rng, n, c):
    return {"logits": _logits(rng, n, c), "class_weights": jnp.float32(rng.uniform(0.2, 1, c)),
            "gamma": jnp.float32(rng.uniform(0.5, 2.5, n))}, {}


def _poly1(rng, n, c):
    return {"logits": _logits(rng, n, c), "epsilon": jnp.float32(rng.uniform(-0.5, 2, n))}, {}


def _with(make, **extra):
    """``make`` with more differentiated options (per example) and a class mask (the last class
    left out, as optax's ``where``) among the static options."""
    def made(rng, n, c):
        floats, options = make(rng, n, c)
        more = {k: jnp.float32(rng.uniform(*v, n)) for k, v in extra.items()}
        return {**floats, **more}, {**options, "class_mask": jnp.arange(c) != c - 1}
    return made


def _hinge(kind):
    def make(rng, n, c):
        return {"scores": _logits(rng, n, c), "margin": jnp.float32(rng.uniform(0.5, 1.5, n))}, {"kind": kind, "p": 2}
    return make


def _linear(rng, n, c, h=4):
    return {"hidden": jnp.float32(rng.normal(size=(n, h))), "weight": jnp.float32(rng.normal(size=(h, c))),
            "bias": jnp.float32(rng.normal(size=c)), "label_smoothing": jnp.float32(0.1),
            "z_loss": jnp.float32(0.01)}, {"block_size": 3}


PER_EXAMPLE = {
    "softmax_cross_entropy": Case(jaxloss.softmax_cross_entropy, _cross_entropy, ("logits",)),
    "nll_loss": Case(jaxloss.nll_loss, _nll, ("log_probs",)),
    "softmax_focal_loss": Case(jaxloss.softmax_focal_loss, _focal, ("logits",)),
    "poly1_cross_entropy": Case(jaxloss.poly1_cross_entropy, _poly1, ("logits",)),
    "softmax_cross_entropy[class_mask]": Case(jaxloss.softmax_cross_entropy, _with(_cross_entropy), ("logits",)),
    "poly1_cross_entropy[label_smoothing, class_mask]": Case(
        jaxloss.poly1_cross_entropy, _with(_poly1, label_smoothing=(0.05, 0.3)), ("logits",)),
    "softmax_focal_loss[label_smoothing]": Case(
        jaxloss.softmax_focal_loss, lambda rng, n, c: (_focal(rng, n, c)[0] | {
            "label_smoothing": jnp.float32(rng.uniform(0.05, 0.3, n))}, {}), ("logits",)),
    "multiclass_hinge_loss[crammer_singer]": Case(jaxloss.multiclass_hinge_loss, _hinge("crammer_singer"),
                                                  ("scores",)),
    "multiclass_hinge_loss[weston_watkins]": Case(jaxloss.multiclass_hinge_loss, _hinge("weston_watkins"),
                                                  ("scores",)),
    "linear_softmax_cross_entropy": Case(jaxloss.linear_softmax_cross_entropy, _linear, ("hidden", "weight")),
}
MEAN = Case(jaxloss.linear_softmax_cross_entropy_mean, _linear, ("hidden", "weight"))
CASES = pytest.mark.parametrize("case", list(PER_EXAMPLE.values()), ids=list(PER_EXAMPLE))
N, C = 5, 6
IGNORED = 1  # the row whose label is ignored


def _make(case, labels, classes=C, seed=0, minus_inf=True):
    floats, options = case.make(np.random.default_rng(seed), len(labels), classes)
    first = list(floats)[0]
    if minus_inf and first != "hidden":  # a masked-out class in the ignored row (smoothing gives it mass)
        floats[first] = floats[first].at[IGNORED, 3].set(-jnp.inf)
    return floats, options


def _per_row(case, floats):
    """The floats with a leading example axis (the per-example arguments, and per-example options)."""
    n = floats[list(floats)[0]].shape[0]
    return {k for k, v in floats.items() if k in ("logits", "log_probs", "scores", "hidden") or v.shape == (n,)}


def _hvp(f, floats, tangent):
    return jax.jvp(jax.grad(f), (floats,), (tangent,))[1]


def _tangent(floats, seed=1):
    rng = np.random.default_rng(seed)
    return {k: jnp.float32(rng.normal(size=np.shape(v))) for k, v in floats.items()}


@CASES
@pytest.mark.parametrize("ignore_index", [-100, 2], ids=["default", "inside_the_classes"])
def test_ignored_id_gives_zero_loss_and_exactly_zero_derivatives_in_every_mode(case, ignore_index):
    labels = jnp.array([1, ignore_index, 2 if ignore_index != 2 else 5, 0, 4], jnp.int32)
    floats, options = _make(case, labels)
    options["ignore_index"] = ignore_index
    rows = _per_row(case, floats)
    weights = jnp.arange(1.0, N + 1)

    def total(floats):
        return jnp.sum(weights * case.call(floats, labels, **options))

    losses = case.call(floats, labels, **options)
    assert losses[IGNORED] == 0.0 and np.all(np.isfinite(np.delete(np.asarray(losses), IGNORED)))
    tangent = _tangent(floats)
    _, jvp = jax.jvp(lambda f: case.call(f, labels, **options), (floats,), (tangent,))
    assert jvp[IGNORED] == 0.0 and np.all(np.isfinite(jvp))
    grads, hvp = jax.grad(total)(floats), _hvp(total, floats, tangent)
    # Without the ignored row: the same losses, and the same derivatives of every argument.
    keep = np.arange(N) != IGNORED
    kept = {k: (v[keep] if k in rows else v) for k, v in floats.items()}
    kept_total = lambda f: jnp.sum(weights[keep] * case.call(f, labels[keep], **options))  # noqa: E731
    np.testing.assert_allclose(losses[keep], case.call(kept, labels[keep], **options), rtol=1e-6)
    kept_grads = jax.grad(kept_total)(kept)
    kept_hvp = _hvp(kept_total, kept, {k: (v[keep] if k in rows else v) for k, v in tangent.items()})
    for name in floats:
        for got, want in ((grads[name], kept_grads[name]), (hvp[name], kept_hvp[name])):
            got = np.asarray(got)
            assert np.all(np.isfinite(got)), name
            if name in rows:
                np.testing.assert_array_equal(got[IGNORED], 0.0)
                got = got[keep]
            np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6, err_msg=name)


@CASES
@pytest.mark.parametrize("bad", [C, -1, 300, -100], ids=["C", "minus_one", "300", "minus_100_not_ignored"])
def test_other_out_of_range_ids_give_nan_loss_and_zero_derivatives(case, bad):
    # Loud in the value, as optax; the derivatives are those of an ignored example, so that
    # masking the NaN afterwards (jnp.where) leaves the others' gradients intact.
    labels = jnp.array([1, bad, 2, 0, 4], jnp.int32)
    floats, options = _make(case, labels, minus_inf=False)
    options["ignore_index"] = None if bad == -100 else -100
    losses = np.asarray(case.call(floats, labels, **options))
    assert np.isnan(losses[IGNORED]) and np.all(np.isfinite(np.delete(losses, IGNORED)))
    keep = jnp.arange(N) != IGNORED
    masked = lambda f: jnp.sum(jnp.where(keep, case.call(f, labels, **options), 0.0))  # noqa: E731
    ignored_labels, ignoring = labels.at[IGNORED].set(-100), {**options, "ignore_index": -100}
    ignored = lambda f: jnp.sum(case.call(f, ignored_labels, **ignoring))  # noqa: E731
    for got, want in zip(jax.tree_util.tree_leaves(jax.grad(masked)(floats)),
                         jax.tree_util.tree_leaves(jax.grad(ignored)(floats))):
        np.testing.assert_array_equal(got, want)


@CASES
@pytest.mark.parametrize("dtype", [jnp.int8, jnp.int16, jnp.uint8, np.int64])
def test_every_id_dtype_means_what_it_means_in_int32(case, dtype):
    # 300 classes: an iota in int8 or uint8 wraps (uint8 5 matched class 261, int8 −100 class 156).
    signed = jnp.issubdtype(dtype, jnp.signedinteger)
    labels = np.array([5, -100 if signed else 7, 0, 99, 42])
    floats, options = _make(case, labels, classes=300, minus_inf=False)

    def results(ids):
        f = lambda f: case.call(f, ids, **options)  # noqa: E731
        tangent = _tangent(floats)
        return f(floats), jax.grad(lambda x: jnp.sum(f(x)))(floats), jax.jvp(f, (floats,), (tangent,))[1]

    want = results(jnp.asarray(labels, jnp.int32))
    got = results(np.asarray(labels).astype(dtype))
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(a, b)
    if signed:
        assert want[0][1] == 0.0


def test_ignore_index_is_a_static_option_under_jit():
    logits, labels = jnp.full((3, 4), jnp.log(0.25)), jnp.array([0, 3, -100])
    for fn in (jaxloss.softmax_cross_entropy, jaxloss.nll_loss, jaxloss.poly1_cross_entropy):
        losses = jax.jit(fn, static_argnames="ignore_index")(logits, labels, ignore_index=3)
        assert losses[1] == 0.0 and np.isnan(losses[2])
        assert jax.jit(functools.partial(fn, ignore_index=None))(logits, labels)[1] != 0.0
    with pytest.raises(TypeError, match="ignore_index"):
        jaxloss.softmax_cross_entropy(logits, labels, ignore_index=3.0)


# ----------------------------------------------------------------------------- linear = softmax of h @ w


def test_linear_cross_entropy_of_an_ignored_label_is_zero_as_on_the_logits():
    h, w, y = jnp.array([[1.0, 2.0]]), jnp.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]]), jnp.array([-100])
    assert jaxloss.linear_softmax_cross_entropy(h, w, y)[0] == 0.0 == jaxloss.softmax_cross_entropy(h @ w, y)[0]
    assert jaxloss.linear_softmax_cross_entropy_mean(h, w, y) == 0.0


@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.2}, {"z_loss": 0.05}, {"bias": True},
                                     {"label_smoothing": 0.1, "z_loss": 1e-2, "bias": True}],
                         ids=["plain", "smoothing", "z_loss", "bias", "all"])
@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_linear_cross_entropy_equals_softmax_cross_entropy_of_the_logits_with_ignored_labels(options, layout):
    rng = np.random.default_rng(3)
    h, w, b = (jnp.float32(rng.normal(size=s)) for s in ((7, 5), (5, 11), (11,)))
    y = jnp.array([3, -100, 10, 0, -100, 7, 2])
    bias = b if options.get("bias") else None
    kw = {k: v for k, v in options.items() if k != "bias"}
    weight = w if layout == "hv" else w.T

    def dense(h, w, b):
        return jaxloss.softmax_cross_entropy(h @ w + (0 if b is None else b), y, **kw)

    def fused(h, w, b):
        return jaxloss.linear_softmax_cross_entropy(h, w if layout == "hv" else w.T, y, bias=b, block_size=4,
                                                    weight_layout=layout, **kw)

    np.testing.assert_allclose(fused(h, w, bias), dense(h, w, bias), rtol=1e-5, atol=1e-6)
    weights = jnp.arange(1.0, 8.0)
    wrt = (0, 1) if bias is None else (0, 1, 2)
    for a, c in zip(jax.grad(lambda *x: jnp.sum(weights * fused(*x)), wrt)(h, w, bias),
                    jax.grad(lambda *x: jnp.sum(weights * dense(*x)), wrt)(h, w, bias)):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)
    # The mean counts the tokens that are not ignored, as torch's cross_entropy(ignore_index=-100).
    mean = jaxloss.linear_softmax_cross_entropy_mean(h, weight, y, bias=bias, weight_layout=layout, block_size=3, **kw)
    np.testing.assert_allclose(mean, jaxloss.reduce.mean(dense(h, w, bias), where=y != -100), rtol=1e-5)
    g_mean = jax.grad(lambda h, w: jaxloss.linear_softmax_cross_entropy_mean(h, w, y, bias=bias, block_size=3, **kw),
                      (0, 1))(h, w)
    g_dense = jax.grad(lambda h, w: jaxloss.reduce.mean(dense(h, w, bias), where=y != -100), (0, 1))(h, w)
    for a, c in zip(g_mean, g_dense):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(g_mean[0])[np.asarray(y) == -100] == 0)


def test_linear_cross_entropy_mean_is_nan_for_an_unmasked_invalid_label_only():
    rng = np.random.default_rng(4)
    h, w = jnp.float32(rng.normal(size=(4, 3))), jnp.float32(rng.normal(size=(3, 5)))
    y = jnp.array([0, 5, 2, -100])
    mean = jaxloss.linear_softmax_cross_entropy_mean
    assert np.isnan(mean(h, w, y))
    # Its gradient is the reference's: the invalid token counts, with derivative 0.
    for a, c in zip(jax.grad(mean, (0, 1))(h, w, y), jax.grad(mean.reference, (0, 1))(h, w, y)):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)
    keep = y != 5
    np.testing.assert_allclose(mean(h, w, y, where=keep),
                               jaxloss.reduce.mean(jaxloss.softmax_cross_entropy(h @ w, y), where=keep & (y >= 0)),
                               rtol=1e-6)


def test_vocabulary_parallel_form_ignores_and_flags_ids_as_the_dense_form(mesh):
    from jax.sharding import PartitionSpec as P

    rng = np.random.default_rng(5)
    h, w = jnp.float32(rng.normal(size=(6, 4))), jnp.float32(rng.normal(size=(4, 16)))
    y = jnp.array([3, -100, 15, 16, 0, -100])
    kw = dict(label_smoothing=0.1, z_loss=1e-2)

    @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P(), P(None, "x")), out_specs=P())
    def sharded(h, w):
        return jaxloss.linear_softmax_cross_entropy(h, w, y, vocab_axis_name="x", **kw)

    np.testing.assert_allclose(sharded(h, w), jaxloss.softmax_cross_entropy(h @ w, y, **kw), rtol=1e-5)
    g = jax.grad(lambda h, w: jnp.sum(jnp.where(y != 16, sharded(h, w), 0.0)), (0, 1))(h, w)
    want = jax.grad(lambda h, w: jnp.sum(jnp.where(y != 16, jaxloss.softmax_cross_entropy(h @ w, y, **kw), 0.0)),
                    (0, 1))(h, w)
    for a, c in zip(g, want):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(g[0])[1] == 0)


# ----------------------------------------------------------------------------- 0·inf: weight 0, logit −inf


def _np_cross_entropy(x, targets, w, eps):
    """Σ_c w_c ỹ_c (lse − x_c), ỹ = (1 − ε)·y + ε/C, in float64, with 0·inf read as 0; and its
    derivatives by ε, by y and by w from the same reading (0 where w_c ỹ_c = 0 and x_c = −inf)."""
    x, y, w = (np.asarray(a, np.float64) for a in (x, targets, w))
    c = x.shape[-1]
    nll = np.log(np.sum(np.exp(x - x.max(-1, keepdims=True)), -1, keepdims=True)) + x.max(-1, keepdims=True) - x
    smoothed = (1 - eps) * y + eps / c
    a = w * smoothed
    nll_a = np.where((a == 0) & np.isinf(nll), 0.0, nll)
    return (np.sum(a * nll_a, -1), np.sum(w * (1 / c - y) * nll_a, -1), (1 - eps) * w * nll_a,
            smoothed * nll_a)


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
@pytest.mark.parametrize("fn", ["hand", "reference"])
def test_zero_class_weight_on_a_minus_inf_logit_adds_zero_to_the_value_and_every_derivative(targets, fn, x64):
    x = jnp.array([[2.0, 0.0, -jnp.inf]])
    w = jnp.array([1.0, 1.0, 0.0])
    probabilities = jnp.array([[0.7, 0.3, 0.0]])
    labels = jnp.array([0]) if targets == "ids" else probabilities
    loss_fn = jaxloss.softmax_cross_entropy if fn == "hand" else jaxloss.softmax_cross_entropy.reference

    def loss(x, y, w, eps):
        return jnp.sum(loss_fn(x, labels if targets == "ids" else y, class_weights=w, label_smoothing=eps))

    value, d_eps, d_y, d_w = _np_cross_entropy(x, jnp.eye(3)[0:1] if targets == "ids" else probabilities, w, 0.1)
    args = (x, probabilities, w, jnp.float64(0.1))
    np.testing.assert_allclose(loss(*args), value.sum(), rtol=1e-14)
    grads = jax.grad(loss, (0, 1, 2, 3))(*args)
    if targets == "ids":
        np.testing.assert_allclose(grads[3], 0.6243573296523425, rtol=1e-14)  # (nll_0 + nll_1)/3 − nll_0
    np.testing.assert_allclose(grads[3], d_eps.sum(), rtol=1e-14)
    np.testing.assert_allclose(grads[2], d_w.sum(0), rtol=1e-14)
    if targets == "probabilities":
        np.testing.assert_allclose(grads[1], d_y, rtol=1e-14)
        assert grads[1][0, 2] == 0.0
    tangents = tuple(jnp.ones_like(a) for a in args)
    hvp = jax.jvp(lambda *a: jax.grad(loss, (0, 1, 2, 3))(*a), args, tangents)
    outputs = [grads, jax.jvp(loss, args, tangents), hvp]
    for leaf in jax.tree_util.tree_leaves(outputs):
        assert np.all(np.isfinite(leaf)), outputs


@pytest.mark.parametrize("fn", [jaxloss.nll_loss, jaxloss.nll_loss.reference], ids=["hand", "reference"])
def test_nll_of_a_zero_weight_label_with_log_probability_minus_inf_is_zero_with_finite_derivatives(fn):
    log_probs, w = jnp.array([[-jnp.inf, 0.0], [jnp.log(0.25), jnp.log(0.75)]]), jnp.array([0.0, 1.0])
    loss = lambda lp, w: jnp.sum(fn(lp, jnp.array([0, 1]), class_weights=w))  # noqa: E731
    np.testing.assert_allclose(loss(log_probs, w), -np.log(0.75), rtol=1e-6)
    g_lp, g_w = jax.grad(loss, (0, 1))(log_probs, w)
    np.testing.assert_array_equal(g_lp, [[0.0, 0.0], [0.0, -1.0]])
    np.testing.assert_allclose(g_w, [0.0, -np.log(0.75)], rtol=1e-6)
