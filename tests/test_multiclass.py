"""softmax_cross_entropy and nll_loss: float64 references, optax and torch parity, stability,
reverse-mode residuals and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss.multiclass import nll_loss, softmax_cross_entropy

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C = 6, 5


def _inputs(seed=0, shape=(N, C)):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal(shape)
    ids = rng.integers(0, shape[-1], size=shape[:-1])
    probabilities = rng.dirichlet(np.ones(shape[-1]), size=shape[:-1])
    weights = rng.uniform(0.5, 2.0, shape[-1])
    return logits, ids, probabilities, weights


def _np_log_softmax(x):
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def _np_cross_entropy(x, labels, eps=0.0, w=None):
    """−Σ_c w_c ỹ_c log softmax(x)_c with ỹ = (1 − ε) y + ε / C."""
    classes = x.shape[-1]
    y = np.eye(classes)[labels] if np.issubdtype(np.asarray(labels).dtype, np.integer) else labels
    w = np.ones(classes) if w is None else w
    smoothed = (1 - np.asarray(eps)[..., None]) * y + np.asarray(eps)[..., None] / classes
    return -(w * smoothed * _np_log_softmax(x)).sum(-1)


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
@pytest.mark.parametrize("options", [{}, {"label_smoothing": 0.1}, {"class_weights": True},
                                     {"class_weights": True, "label_smoothing": 0.3}],
                         ids=["plain", "smoothing", "weights", "weights+smoothing"])
@pytest.mark.parametrize("shape", [(N, C), (2, 3, 4)], ids=["2d", "3d"])
def test_cross_entropy_matches_numpy_float64_reference(targets, options, shape, x64):
    logits, ids, probabilities, weights = _inputs(1, shape)
    labels = ids if targets == "ids" else probabilities
    w = weights if options.get("class_weights") else None
    eps = options.get("label_smoothing", 0.0)
    got = softmax_cross_entropy(logits, labels, label_smoothing=eps, class_weights=w)
    assert got.shape == shape[:-1]
    np.testing.assert_allclose(got, _np_cross_entropy(logits, labels, eps, w), rtol=1e-12)


def test_cross_entropy_gradient_is_weighted_softmax_minus_targets(x64):
    logits, ids, _, w = _inputs(2)
    eps = 0.2
    g = jax.grad(lambda x: softmax_cross_entropy(x, ids, label_smoothing=eps, class_weights=w).sum())(logits)
    a = w * ((1 - eps) * np.eye(C)[ids] + eps / C)
    softmax = np.exp(_np_log_softmax(logits))
    np.testing.assert_allclose(g, a.sum(-1, keepdims=True) * softmax - a, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
def test_cross_entropy_derivatives_of_every_float_argument_check_out(targets):
    logits, ids, probabilities, w = _inputs(3)
    labels = ids if targets == "ids" else probabilities
    result = jaxloss.check_gradients(softmax_cross_entropy, logits, labels,
                                     label_smoothing=np.full(N, 0.15), class_weights=w)
    assert result.ok, result
    assert {r.argument for r in result.rows} >= {"logits", "label_smoothing", "class_weights"}
    if targets == "probabilities":
        assert "labels" in {r.argument for r in result.rows}


def test_nll_matches_numpy_and_its_derivatives_check_out(x64):
    logits, ids, _, w = _inputs(4)
    log_probs = _np_log_softmax(logits)
    np.testing.assert_allclose(nll_loss(log_probs, ids, class_weights=w), -w[ids] * log_probs[np.arange(N), ids],
                               rtol=1e-12)
    assert jaxloss.check_gradients(nll_loss, log_probs, ids, class_weights=w).ok


# ----------------------------------------------------------------------------- optax parity


def test_cross_entropy_matches_optax_for_ids_and_probabilities():
    logits, ids, probabilities, _ = (jnp.float32(a) for a in _inputs(5))
    ids = jnp.int32(ids)
    for ours, theirs, labels in [
        (softmax_cross_entropy, optax.losses.softmax_cross_entropy_with_integer_labels, ids),
        (softmax_cross_entropy, optax.losses.softmax_cross_entropy, probabilities),
    ]:
        # float32 both; a loss near 0.03 differs by ~2e-7 (ours is the closer to float64).
        np.testing.assert_allclose(ours(logits, labels), theirs(logits, labels), rtol=1e-6, atol=1e-6)
        g = jax.grad(lambda x: ours(x, labels).sum())(logits)
        np.testing.assert_allclose(g, jax.grad(lambda x: theirs(x, labels).sum())(logits), rtol=1e-5, atol=1e-7)


def test_label_smoothing_matches_optax_smooth_labels():
    logits, ids, _, _ = (jnp.asarray(a) for a in _inputs(6))
    smoothed = optax.smooth_labels(jax.nn.one_hot(ids, C), 0.1)
    np.testing.assert_allclose(softmax_cross_entropy(jnp.float32(logits), jnp.int32(ids), label_smoothing=0.1),
                               optax.losses.softmax_cross_entropy(jnp.float32(logits), smoothed), rtol=1e-6)


# ----------------------------------------------------------------------------- torch parity

torch = pytest.importorskip("torch", reason="torch parity tests need torch (CI installs torch==2.13.0)")
F = torch.nn.functional


def _torch_value_and_grad(fn, logits, *args, **kwargs):
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    loss = fn(x, *args, reduction="none", **kwargs)
    loss.sum().backward()
    return loss.detach().numpy(), x.grad.numpy()


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_cross_entropy_matches_torch_with_weights_and_smoothing(targets, eps, x64):
    logits, ids, probabilities, w = _inputs(7)
    labels = ids if targets == "ids" else probabilities
    torch_labels = torch.tensor(labels)
    value, grad = _torch_value_and_grad(F.cross_entropy, logits, torch_labels, weight=torch.tensor(w),
                                        label_smoothing=eps)
    ours = lambda x: softmax_cross_entropy(x, labels, label_smoothing=eps, class_weights=w)  # noqa: E731
    np.testing.assert_allclose(ours(logits), value, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(lambda x: ours(x).sum())(logits), grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_torch_weighted_mean_is_reduce_ratio_over_the_label_weights(eps, x64):
    """torch's reduction='mean' with weight= divides by the summed weight of the
    non-ignored targets; ignore_index examples are masked with where=."""
    logits, ids, _, w = _inputs(8)
    ids = ids.copy()
    ids[[1, 4]] = -100  # torch's default ignore_index
    mask = ids != -100
    x = torch.tensor(logits, requires_grad=True)
    expected = F.cross_entropy(x, torch.tensor(ids), weight=torch.tensor(w), label_smoothing=eps)
    expected.backward()

    def ours(logits):
        losses = softmax_cross_entropy(logits, ids, class_weights=w, label_smoothing=eps, where=mask)
        return jaxloss.reduce.ratio(losses, jnp.asarray(w)[jnp.where(mask, ids, 0)], where=mask)

    np.testing.assert_allclose(ours(logits), expected.item(), rtol=1e-12)
    np.testing.assert_allclose(jax.grad(ours)(logits), x.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_nll_loss_matches_torch_with_weights_and_ignored_ids(x64):
    logits, ids, _, w = _inputs(9)
    ids = ids.copy()
    ids[2] = -100
    log_probs = _np_log_softmax(logits)
    value, grad = _torch_value_and_grad(F.nll_loss, log_probs, torch.tensor(ids), weight=torch.tensor(w))
    np.testing.assert_allclose(nll_loss(log_probs, ids, class_weights=w), value, rtol=1e-12)
    np.testing.assert_allclose(jax.grad(lambda lp: nll_loss(lp, ids, class_weights=w).sum())(log_probs), grad,
                               rtol=1e-12)


# ----------------------------------------------------------------------------- stability


def test_masked_classes_with_minus_inf_logits_cost_nothing():
    logits, ids, _, _ = (np.float32(a) for a in _inputs(10))
    ids = np.where(ids == 3, 0, ids).astype(np.int32)
    masked = logits.copy()
    masked[:, 3] = -np.inf
    loss = softmax_cross_entropy(masked, ids)
    expected = softmax_cross_entropy(np.delete(logits, 3, axis=1), np.where(ids > 3, ids - 1, ids))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    g = jax.grad(lambda x: softmax_cross_entropy(x, ids).sum())(masked)
    assert np.all(np.isfinite(g)) and np.all(g[:, 3] == 0)
    probabilities = np.asarray(jax.nn.softmax(masked))
    g_targets = jax.grad(lambda y: softmax_cross_entropy(masked, y).sum())(probabilities)
    assert np.all(np.isfinite(g_targets)) and np.all(g_targets[:, 3] == 0)


def test_label_smoothing_onto_a_minus_inf_class_gives_infinite_loss():
    logits = np.array([[1.0, -np.inf, 0.0]], np.float32)
    assert softmax_cross_entropy(logits, np.array([0]), label_smoothing=0.1)[0] == np.inf


def test_huge_logits_give_exact_values_and_gradients():
    logits = np.array([[1e4, -1e4, 0.0], [1e4, 1e4, -1e4]], np.float32)
    labels = np.array([1, 0])
    np.testing.assert_allclose(softmax_cross_entropy(logits, labels), [2e4, np.log(2.0)], rtol=1e-6)
    g = jax.grad(lambda x: softmax_cross_entropy(x, labels).sum())(logits)
    np.testing.assert_allclose(g, [[1.0, -1.0, 0.0], [-0.5, 0.5, 0.0]], atol=1e-6)


@pytest.mark.parametrize("batched", ["plain", "vmap"])
def test_rows_whose_label_shift_overflows_fall_back_to_the_maximum(batched, x64):
    # Class ids shift Σ exp by the label logit; a row with a loss above ~88 (float32) or
    # ~709 (float64) overflows that way and the batch is redone shifted by the maximum.
    logits, ids, _, _ = _inputs(14)
    logits = np.float32(logits)
    logits[2, ids[2]] = -300.0  # loss ≈ 300: exp(x_c − x_y) overflows in float32
    loss_fn = lambda x, y: softmax_cross_entropy(x, y)  # noqa: E731
    if batched == "vmap":
        loss_fn = jax.vmap(loss_fn)
    got = loss_fn(logits, ids)
    np.testing.assert_allclose(got, _np_cross_entropy(np.float64(logits), ids), rtol=1e-6)
    g = jax.grad(lambda x: loss_fn(x, ids).sum())(logits)
    expected = np.asarray(jax.nn.softmax(np.float64(logits))) - np.eye(C)[ids]
    np.testing.assert_allclose(g, expected, atol=1e-6)


def test_ignored_id_gives_zero_loss_with_smoothing_and_z_loss_and_other_out_of_range_ids_nan():
    logits = np.float32(_inputs(11)[0])
    labels = np.array([0, -100, C, 1, 2, 3])
    loss = np.asarray(softmax_cross_entropy(logits, labels, label_smoothing=0.2, z_loss=0.1))
    assert loss[1] == 0.0 and np.isnan(loss[2])
    assert np.all(loss[[0, 3, 4, 5]] > 0)


def test_bfloat16_logits_give_float32_loss_and_bfloat16_gradient():
    logits, ids, _, _ = _inputs(12)
    low = jnp.bfloat16(logits)
    loss = softmax_cross_entropy(low, ids)
    assert loss.dtype == jnp.float32
    np.testing.assert_allclose(loss, softmax_cross_entropy(low.astype(jnp.float32), ids), rtol=1e-6)
    g = jax.grad(lambda x: softmax_cross_entropy(x, ids).sum())(low)
    assert g.dtype == jnp.bfloat16


@pytest.mark.parametrize("keep", [False, True], ids=["recomputed", "kept"])
def test_reverse_mode_keeps_the_log_sum_exp_and_the_logits_or_on_cpu_the_exponentials(keep, monkeypatch):
    monkeypatch.setattr(jaxloss.multiclass, "keeps_exponentials", lambda x: keep)
    logits, ids, _, _ = _inputs(13, (64, 100))
    logits = jnp.float32(logits)
    _, vjp = jax.vjp(lambda x: softmax_cross_entropy(x, ids), logits)
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(vjp) if hasattr(leaf, "shape")]
    assert any(leaf is logits for leaf in leaves) == (not keep)  # the rule reads exp(x − m) instead
    big = [leaf for leaf in leaves if leaf is not logits and leaf.size >= logits.size]
    # no softmax or one-hot kept: only [N] statistics and the labels, and exp(x − m) where kept
    assert [leaf.shape for leaf in big] == [logits.shape] * keep
    if keep:
        m = jnp.max(logits, axis=-1, keepdims=True)
        np.testing.assert_allclose(big[0], jnp.exp(logits - m), rtol=1e-6)


def test_kept_exponentials_follow_the_backend_and_dtype():
    f32, bf16 = jnp.zeros((2, 3), jnp.float32), jnp.zeros((2, 3), jnp.bfloat16)
    assert jaxloss._softmax.keeps_exponentials(f32) == (jax.default_backend() == "cpu")
    assert not jaxloss._softmax.keeps_exponentials(bf16)


@pytest.mark.parametrize("targets", ["ids", "probabilities"])
def test_kept_and_recomputed_exponentials_give_the_same_derivatives(targets, monkeypatch, x64):
    # The CPU rule reads the forward's exp(x − m); an accelerator's recomputes it from the
    # logits: values, gradients of every float argument, JVP and HVP agree to rounding.
    logits, ids, probabilities, weights = _inputs(15)
    logits[1, 2] = -np.inf
    labels = ids if targets == "ids" else probabilities
    class_mask = np.ones((N, C), bool)
    class_mask[3, 1] = False
    mask_ok = ids != 1

    def loss(x, w, eps, z):
        return jnp.sum(softmax_cross_entropy(x, labels, class_weights=w, label_smoothing=eps, z_loss=z,
                                             class_mask=class_mask, where=mask_ok) ** 2)

    args = (logits, weights, 0.1, 0.01)
    tangent = np.random.default_rng(1).standard_normal((N, C))
    tangent[1, 2] = 0.0
    results = {}
    for keep in (False, True):
        monkeypatch.setattr(jaxloss.multiclass, "keeps_exponentials", lambda x, keep=keep: keep)
        value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(*args)
        _, jvp = jax.jvp(lambda x: loss(x, *args[1:]), (logits,), (tangent,))
        hvp = jax.jvp(jax.grad(lambda x: loss(x, *args[1:])), (logits,), (tangent,))[1]
        results[keep] = [value, *grads, jvp, hvp]
    for recomputed, kept in zip(results[False], results[True]):
        assert np.all(np.isfinite(kept))
        np.testing.assert_allclose(kept, recomputed, rtol=1e-10, atol=1e-12, equal_nan=False)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_compiled_gradient_has_no_logits_sized_temporary(dtype):
    # bfloat16 logits are computed in float32 inside, but with no float32 [N, C] copy or
    # buffer: the compiled value-and-gradient needs no more memory than optax's.
    logits = jax.ShapeDtypeStruct((512, 1000), dtype)
    labels = jax.ShapeDtypeStruct((512,), jnp.int32)

    def memory(loss):
        f = jax.value_and_grad(lambda x, y: jnp.mean(loss(x, y)))
        return jax.jit(f).lower(logits, labels).compile().memory_analysis()

    ours, theirs = memory(softmax_cross_entropy), memory(optax.softmax_cross_entropy_with_integer_labels)
    assert ours.temp_size_in_bytes < 512 * 1000 // 8, ours  # well under one [N, C] array
    footprint = lambda m: m.temp_size_in_bytes + m.output_size_in_bytes  # noqa: E731
    assert footprint(ours) <= footprint(theirs), (ours, theirs)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("fn", [softmax_cross_entropy, nll_loss])
@pytest.mark.parametrize("args, error, match", [
    ((np.ones((N, C), np.int32), np.zeros(N, np.int32)), TypeError, r"must be a floating-point array"),
    ((np.ones((N, C), np.float32), np.zeros(N + 1, np.int32)), ValueError,
     r"integer labels \(class ids\) must have the batch shape of \w+, \(6,\), got shape \(7,\)"),
    ((np.ones(C, np.float32)[0], np.zeros((), np.int32)), ValueError, r"must have a class axis"),
], ids=["integer-logits", "label-shape", "no-class-axis"])
def test_bad_input_raises_naming_the_argument(fn, args, error, match):
    with pytest.raises(error, match=match):
        fn(*args)
    with pytest.raises(error, match=match):
        jax.jit(fn)(*args)


def test_float_labels_of_the_batch_shape_ask_for_integers():
    with pytest.raises(ValueError, match=r"probability targets\) must have the shape of logits.*pass class ids"):
        softmax_cross_entropy(np.ones((N, C), np.float32), np.zeros(N, np.float32))
    with pytest.raises(TypeError, match="labels must be integer class ids"):
        nll_loss(np.ones((N, C), np.float32), np.zeros((N, C), np.float32))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"label_smoothing": 1.5}, ValueError, r"label_smoothing must lie in \[0, 1\]"),
    ({"class_weights": np.ones(C + 1, np.float32)}, ValueError, r"class_weights with shape \(6,\) does not broadcast"),
    ({"class_weights": -np.ones(C, np.float32)}, ValueError, r"class_weights must be >= 0"),
    ({"where": np.ones(N)}, TypeError, r"where must be a boolean mask"),
    ({"where": np.ones(N + 1, bool)}, ValueError, r"where with shape \(7,\) does not broadcast"),
])
def test_bad_options_raise_naming_the_option(kwargs, error, match):
    with pytest.raises(error, match=match):
        softmax_cross_entropy(np.ones((N, C), np.float32), np.zeros(N, np.int32), **kwargs)
