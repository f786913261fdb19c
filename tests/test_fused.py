"""linear_softmax_cross_entropy: values against optax / torch / a float64 formula, derivatives,
ragged blocks, both weight layouts, masking, extremes, low precision, the vocabulary-parallel
and token-parallel forms on 8 CPU devices, the memory bound, and errors; the z-loss option of
softmax_cross_entropy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

f = jaxloss.linear_softmax_cross_entropy
N, H, V = 6, 5, 11


def _close(a, b, rtol=1e-5, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


def _inputs(n=N, h=H, v=V, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return (jnp.float32(rng.standard_normal((n, h)) * scale), jnp.float32(rng.standard_normal((h, v))),
            jnp.int32(rng.integers(0, v, n)), jnp.float32(rng.standard_normal(v)))


def _formula(h, w, y, b, eps=0.0, lam=0.0):
    """The loss from the logits in NumPy float64: lse − (1−ε)·z_y − ε·mean(z) + λ·lse²."""
    z = np.asarray(h, np.float64) @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
    top = z.max(-1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(-1))
    z_y = np.take_along_axis(z, np.asarray(y)[:, None], -1)[:, 0]
    return lse - (1 - eps) * z_y - eps * z.mean(-1) + lam * lse**2


@pytest.mark.parametrize("block_size", [None, 1, 3, 4, 11, 64])  # 3, 4 leave a ragged last block
@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_matches_optax_on_materialised_logits(block_size, layout):
    h, w, y, b = _inputs()
    weight = w if layout == "hv" else w.T
    ours = f(h, weight, y, bias=b, block_size=block_size, weight_layout=layout)
    _close(ours, optax.losses.softmax_cross_entropy_with_integer_labels(h @ w + b, y))


@pytest.mark.parametrize("eps, lam", [(0.1, 0.0), (0.0, 1e-2), (0.3, 1e-4)])
def test_smoothing_and_z_loss_match_the_float64_formula(eps, lam):
    h, w, y, b = _inputs(seed=1)
    _close(f(h, w, y, bias=b, label_smoothing=eps, z_loss=lam, block_size=4), _formula(h, w, y, b, eps, lam))


def test_equals_softmax_cross_entropy_on_the_logits_with_the_same_options():
    h, w, y, b = _inputs(seed=2)
    kw = dict(label_smoothing=jnp.float32(0.2), z_loss=jnp.float32(3e-3))
    _close(f(h, w, y, bias=b, block_size=3, **kw), jaxloss.softmax_cross_entropy(h @ w + b, y, **kw))


def test_matches_torch_cross_entropy_with_label_smoothing():
    torch = pytest.importorskip("torch")
    h, w, y, b = _inputs(seed=3)
    logits = torch.tensor(np.asarray(h @ w + b, np.float64))
    theirs = torch.nn.functional.cross_entropy(logits, torch.tensor(np.asarray(y)).long(), label_smoothing=0.25,
                                               reduction="none")
    _close(f(h, w, y, bias=b, label_smoothing=0.25, block_size=4), theirs.numpy())


@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_derivatives_of_every_float_argument_in_both_modes(layout):
    h, w, y, b = _inputs(seed=4)
    weight = w if layout == "hv" else w.T
    result = jaxloss.check_gradients(f, h, weight, y, bias=b, label_smoothing=jnp.float32(0.1),
                                     z_loss=jnp.float32(0.02), block_size=4, weight_layout=layout)
    assert result.ok, result
    assert {r.argument for r in result.rows} == {"hidden", "weight", "bias", "label_smoothing", "z_loss"}


def test_gradients_match_autodiff_of_the_materialised_loss():
    h, w, y, b = _inputs(seed=5)
    weights = jnp.arange(1.0, N + 1)

    def objective(loss):
        return jax.grad(lambda h, w, b: jnp.sum(weights * loss(h, w, b)), (0, 1, 2))(h, w, b)

    ours = objective(lambda h, w, b: f(h, w, y, bias=b, label_smoothing=0.1, z_loss=1e-2, block_size=3))
    theirs = objective(lambda h, w, b: jnp.asarray(_formula_jnp(h @ w + b, y, 0.1, 1e-2)))
    for a, c in zip(ours, theirs):
        _close(a, c, rtol=1e-4, atol=1e-5)


def _formula_jnp(z, y, eps, lam):
    lse = jax.nn.logsumexp(z, axis=-1)
    z_y = jnp.take_along_axis(z, y[:, None], -1)[:, 0]
    return lse - (1 - eps) * z_y - eps * z.mean(-1) + lam * lse**2


def test_batch_shape_and_vmap():
    h, w, y, b = _inputs(n=12)
    flat = f(h, w, y, bias=b, block_size=4)
    _close(f(h.reshape(3, 4, H), w, y.reshape(3, 4), bias=b, block_size=4), flat.reshape(3, 4))
    _close(jax.vmap(lambda h, y: f(h, w, y, bias=b, block_size=4))(h.reshape(3, 4, H), y.reshape(3, 4)),
           flat.reshape(3, 4))


def test_masked_tokens_give_zero_loss_and_no_gradient_even_with_nan_padding():
    h, w, y, b = _inputs(seed=6)
    keep = jnp.array([True, False, True, True, False, True])
    padded = jnp.where(keep[:, None], h, jnp.nan)
    losses = f(padded, w, y, bias=b, where=keep, block_size=4)
    assert np.all(np.asarray(losses)[~np.asarray(keep)] == 0)
    grads = jax.grad(lambda h, w, b: jnp.sum(f(h, w, y, bias=b, where=keep, block_size=4)), (0, 1, 2))(padded, w, b)
    kept = jax.grad(lambda h, w, b: jnp.sum(f(h, w, y[keep], bias=b, block_size=4)), (0, 1, 2))(h[keep], w, b)
    assert np.all(np.asarray(grads[0])[~np.asarray(keep)] == 0)
    _close(grads[0][keep], kept[0])
    _close(grads[1], kept[1])
    _close(grads[2], kept[2])


def test_an_ignored_label_gives_zero_and_a_label_outside_the_vocabulary_nan_as_softmax_cross_entropy():
    h, w, y, b = _inputs(seed=7)
    y = y.at[0].set(V).at[1].set(-1).at[2].set(-100)
    kw = dict(label_smoothing=0.1, z_loss=1e-2)
    ours = np.asarray(f(h, w, y, bias=b, block_size=4, **kw))
    np.testing.assert_allclose(ours, jaxloss.softmax_cross_entropy(h @ w + b, y, **kw), rtol=1e-5)  # NaN where NaN
    assert np.all(np.isnan(ours[:2])) and ours[2] == 0 and np.all(np.isfinite(ours[3:]))


@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_extreme_logits_give_finite_values_and_gradients(scale):
    h, w, y, b = _inputs(seed=8, scale=scale)
    losses, grads = jax.value_and_grad(lambda h, w, b: jnp.sum(f(h, w, y, bias=b, z_loss=1e-4, label_smoothing=0.1,
                                                                  block_size=4)), (0, 1, 2))(h, w, b)
    assert np.isfinite(losses) and all(np.all(np.isfinite(g)) for g in grads)
    _close(f(h, w, y, bias=b, block_size=4), _formula(h, w, y, b), rtol=1e-5, atol=1e-3 * scale)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_inputs_accumulate_in_float32_and_return_gradients_in_their_dtype(dtype):
    h, w, y, b = _inputs(n=32, h=16, v=300, seed=9)
    low = [x.astype(dtype) for x in (h, w, b)]
    losses = f(low[0], low[1], y, bias=low[2], block_size=128)
    assert losses.dtype == jnp.float32
    wide = [x.astype(jnp.float32) for x in low]
    _close(losses, f(wide[0], wide[1], y, bias=wide[2], block_size=128), rtol=1e-3, atol=1e-3)
    grads = jax.grad(lambda h, w, b: jnp.mean(f(h, w, y, bias=b, block_size=128)), (0, 1, 2))(*low)
    assert [g.dtype for g in grads] == [dtype] * 3


# ------------------------------------------------------------------ sharded over 8 CPU devices




@pytest.mark.parametrize("layout", ["hv", "vh"])
@pytest.mark.parametrize("block_size", [None, 3])
def test_vocabulary_parallel_equals_one_device(mesh, layout, block_size):
    h, w, y, b = _inputs(n=7, v=40, seed=10)  # 5 classes per shard: labels land on every shard
    weight = w if layout == "hv" else w.T
    keep = jnp.arange(7) != 3
    kw = dict(label_smoothing=0.1, z_loss=1e-2, where=keep, weight_layout=layout)
    whole = lambda h, w, b: f(h, w, y, bias=b, **kw)  # noqa: E731
    spec = P(None, "x") if layout == "hv" else P("x", None)
    sharded = jax.shard_map(lambda h, w, b: f(h, w, y, bias=b, block_size=block_size, vocab_axis_name="x", **kw),
                            mesh=mesh, in_specs=(P(), spec, P("x")), out_specs=P())
    _close(jax.jit(sharded)(h, weight, b), whole(h, weight, b))
    weights = jnp.arange(1.0, 8.0)
    grads = lambda fn: jax.jit(jax.grad(lambda *a: jnp.sum(weights * fn(*a)), (0, 1, 2)))(h, weight, b)  # noqa: E731
    for ours, theirs in zip(grads(sharded), grads(whole)):
        _close(ours, theirs)
    tangents = (h, weight, b)
    _close(jax.jit(lambda *a: jax.jvp(sharded, a, tangents)[1])(h, weight, b),
           jax.jvp(whole, (h, weight, b), tangents)[1])


def test_token_parallel_mean_equals_one_device(mesh):
    h, w, y, b = _inputs(n=16, v=30, seed=11)
    keep = jnp.arange(16) % 5 != 0

    def local(h, y, keep, w, b):
        return jaxloss.reduce.mean(f(h, w, y, bias=b, where=keep, block_size=8), where=keep, axis_name="x")

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x"), P(), P()), out_specs=P())
    whole = lambda h, y, keep, w, b: jaxloss.reduce.mean(f(h, w, y, bias=b, where=keep), where=keep)  # noqa: E731
    args = (h, y, keep, w, b)
    _close(jax.jit(sharded)(*args), whole(*args))
    for ours, theirs in zip(jax.jit(jax.grad(sharded, (0, 3, 4)))(*args), jax.grad(whole, (0, 3, 4))(*args)):
        _close(ours, theirs)


# ------------------------------------------------------------------ memory


def _temp(loss, n, h, v):
    shapes = (jax.ShapeDtypeStruct((n, h), jnp.float32), jax.ShapeDtypeStruct((h, v), jnp.float32),
              jax.ShapeDtypeStruct((n,), jnp.int32))
    objective = jax.value_and_grad(lambda h, w, y: jnp.mean(loss(h, w, y)), (0, 1))
    return jax.jit(objective).lower(*shapes).compile().memory_analysis().temp_size_in_bytes


def test_reverse_mode_holds_one_block_of_logits_not_all_of_them():
    n, h, v, block = 1024, 64, 16384, 256
    ours = _temp(lambda h, w, y: f(h, w, y, block_size=block), n, h, v)
    logits = n * v * 4
    assert ours < logits / 8, (ours, logits)  # the materialised path needs ~2 logits-sized buffers
    materialised = _temp(lambda h, w, y: optax.losses.softmax_cross_entropy_with_integer_labels(h @ w, y), n, h, v)
    assert materialised > logits, materialised


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("call, match", [
    (lambda h, w, y, b: f(h.astype(jnp.int32), w, y), "hidden must be a floating-point"),
    (lambda h, w, y, b: f(h, w[:-1], y), r"weight must be \[hidden, vocab\]"),
    (lambda h, w, y, b: f(h, w, y, weight_layout="vh"), r"weight must be \[vocab, hidden\]"),
    (lambda h, w, y, b: f(h, w, y.astype(jnp.float32)), "labels must be integer"),
    (lambda h, w, y, b: f(h, w, y[:-1]), "labels must be integer"),
    (lambda h, w, y, b: f(h, w, y, bias=b[:-1]), r"bias must have shape \(11,\)"),
    (lambda h, w, y, b: f(h, w, y, label_smoothing=1.5), "label_smoothing must lie in"),
    (lambda h, w, y, b: f(h, w, y, z_loss=-1.0), "z_loss must be >= 0"),
    (lambda h, w, y, b: f(h, w, y, block_size=0), "block_size must be a positive int"),
    (lambda h, w, y, b: f(h, w, y, weight_layout="kv"), "weight_layout must be"),
    (lambda h, w, y, b: f(h, w, y, where=jnp.ones(N)), "where must be a boolean mask"),
])
def test_bad_input_raises_naming_the_argument(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        jax.eval_shape(call, *_inputs())


# ------------------------------------------------------------------ z-loss of softmax_cross_entropy


@pytest.mark.parametrize("labels", ["ids", "probabilities"])
def test_softmax_cross_entropy_z_loss_adds_lambda_lse_squared(labels):
    rng = np.random.default_rng(12)
    x = jnp.float32(3 * rng.standard_normal((5, 7)))
    soft = jax.nn.softmax(jnp.float32(rng.standard_normal((5, 7))))
    y = jnp.int32(rng.integers(0, 7, 5)) if labels == "ids" else soft
    lse = np.log(np.exp(np.asarray(x, np.float64)).sum(-1))
    _close(jaxloss.softmax_cross_entropy(x, y, z_loss=0.01) - jaxloss.softmax_cross_entropy(x, y), 0.01 * lse**2,
           rtol=1e-4)
    assert jaxloss.check_gradients(jaxloss.softmax_cross_entropy, x, y, z_loss=jnp.float32(0.01),
                                   class_weights=jnp.float32(rng.uniform(0.5, 2, 7))).ok


# ------------------------------------------------------------------ linear_softmax_cross_entropy_mean

mean_of = jaxloss.linear_softmax_cross_entropy_mean


@pytest.mark.parametrize("block_size", [None, 1, 4, 6])  # 4 leaves a padded last block of tokens
@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_mean_equals_the_masked_mean_of_the_per_token_losses_and_its_gradients(block_size, layout):
    h, w, y, b = _inputs(seed=13)
    weight = w if layout == "hv" else w.T
    keep = jnp.array([True, False, True, True, True, False])
    kw = dict(label_smoothing=0.1, z_loss=1e-2, where=keep, weight_layout=layout)
    ours = lambda h, w, b: mean_of(h, w, y, bias=b, block_size=block_size, **kw)  # noqa: E731
    theirs = lambda h, w, b: jaxloss.reduce.mean(f(h, w, y, bias=b, **kw), where=keep)  # noqa: E731
    _close(ours(h, weight, b), theirs(h, weight, b))
    for a, c in zip(jax.grad(ours, (0, 1, 2))(h, weight, b), jax.grad(theirs, (0, 1, 2))(h, weight, b)):
        _close(a, c)


def test_mean_gradients_match_autodiff_of_the_materialised_mean_and_finite_differences():
    h, w, y, b = _inputs(seed=14)
    result = jaxloss.check_gradients(mean_of, h, w, y, bias=b, label_smoothing=jnp.float32(0.2),
                                     z_loss=jnp.float32(0.05), block_size=4)
    assert result.ok, result
    grads = jax.grad(lambda h, w, b: mean_of(h, w, y, bias=b), (0, 1, 2))(h, w, b)
    materialised = jax.grad(lambda h, w, b: jnp.mean(_formula_jnp(h @ w + b, y, 0.0, 0.0)), (0, 1, 2))(h, w, b)
    for a, c in zip(grads, materialised):
        _close(a, c, rtol=1e-4, atol=1e-6)


def test_mean_with_nan_padding_and_every_token_masked():
    h, w, y, b = _inputs(seed=15)
    keep = jnp.arange(N) % 2 == 0
    padded = jnp.where(keep[:, None], h, jnp.nan)
    value, grad = jax.value_and_grad(lambda h: mean_of(h, w, y, bias=b, where=keep))(padded)
    _close(value, jnp.mean(f(h[keep], w, y[keep], bias=b)))
    assert np.all(np.asarray(grad)[~np.asarray(keep)] == 0) and np.all(np.isfinite(grad))
    none = jnp.zeros(N, bool)
    assert float(mean_of(h, w, y, where=none)) == 0.0
    assert np.all(np.asarray(jax.grad(lambda h: mean_of(h, w, y, where=none))(h)) == 0)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_mean_low_precision_inputs_give_float32_loss_and_gradients_in_their_dtype(dtype):
    h, w, y, b = _inputs(n=32, h=16, v=300, seed=16)
    low = [x.astype(dtype) for x in (h, w, b)]
    value, grads = jax.value_and_grad(lambda h, w, b: mean_of(h, w, y, bias=b, block_size=8), (0, 1, 2))(*low)
    assert value.dtype == jnp.float32 and [g.dtype for g in grads] == [dtype] * 3
    wide = [x.astype(jnp.float32) for x in low]
    _close(value, jnp.mean(f(wide[0], wide[1], y, bias=wide[2])), rtol=1e-3, atol=1e-3)


def test_mean_holds_one_block_of_logits():
    n, h, v = 1024, 64, 16384
    ours = _temp(lambda h, w, y: mean_of(h, w, y, block_size=64), n, h, v)
    block, weight = 64 * v * 4, h * v * 4  # a block's float32 logits; the float32 weight gradient
    assert ours <= 3 * block + weight <= n * v * 4 / 4, ours  # a quarter of the logits


def test_mean_options_must_be_scalars():
    h, w, y, b = _inputs()
    with pytest.raises(ValueError, match="label_smoothing must be a scalar"):
        mean_of(h, w, y, label_smoothing=jnp.full(N, 0.1))


def _materialised_mean(h, w, y, b, eps=0.0, lam=0.0):
    return jnp.mean(_formula_jnp(h @ w + b, y, eps, lam))


def test_mean_forward_mode_matches_the_materialised_mean():
    h, w, y, b = _inputs(seed=17)
    kw = dict(label_smoothing=jnp.float32(0.1), z_loss=jnp.float32(0.02))
    primals = (h, w, b, kw["label_smoothing"], kw["z_loss"])
    tangents = tuple(jnp.float32(np.random.default_rng(18).standard_normal(jnp.shape(x))) for x in primals)
    ours = jax.jvp(lambda h, w, b, e, z: mean_of(h, w, y, bias=b, label_smoothing=e, z_loss=z, block_size=4),
                   primals, tangents)
    theirs = jax.jvp(lambda h, w, b, e, z: _materialised_mean(h, w, y, b, e, z), primals, tangents)
    for a, c in zip(ours, theirs):
        _close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layout", ["hv", "vh"])
def test_mean_hessian_and_hvps_match_the_reference_and_the_materialised_mean(layout):
    h, w, y, b = _inputs(n=5, h=3, v=7, seed=19)
    weight = w if layout == "hv" else w.T
    keep = jnp.arange(5) != 2
    kw = dict(label_smoothing=0.1, z_loss=1e-2, where=keep, weight_layout=layout)
    ours = lambda h, w, b: mean_of(h, w, y, bias=b, block_size=2, **kw)  # noqa: E731
    ref = lambda h, w, b: mean_of.reference(h, w, y, bias=b, block_size=2, **kw)  # noqa: E731
    mat = lambda h, w, b: jaxloss.reduce.mean(  # noqa: E731
        _formula_jnp(h @ (w if layout == "hv" else w.T) + b, y, 0.1, 1e-2), where=keep)
    for theirs in (ref, mat):
        for a, c in zip(jax.tree.leaves(jax.hessian(ours, (0, 1, 2))(h, weight, b)),
                        jax.tree.leaves(jax.hessian(theirs, (0, 1, 2))(h, weight, b))):
            _close(a, c, rtol=1e-4, atol=1e-6)
    direction = tuple(jnp.float32(np.random.default_rng(20).standard_normal(x.shape)) for x in (h, weight, b))
    hvp = lambda fn: jax.jvp(jax.grad(fn, (0, 1, 2)), (h, weight, b), direction)[1]  # noqa: E731
    for a, c in zip(hvp(ours), hvp(mat)):
        _close(a, c, rtol=1e-4, atol=1e-6)
    grad_norm = lambda fn: jax.grad(lambda h: jnp.sum(jax.grad(fn)(h, weight, b) ** 2))(h)  # noqa: E731
    _close(grad_norm(ours), grad_norm(mat), rtol=1e-4, atol=1e-6)


def _mean_mesh_inputs():
    h, w, y, b = _inputs(n=16, v=30, seed=21)
    y = y.at[3].set(-100).at[10].set(-100)  # ignored tokens: the count is not the shard size
    return h, w, y, b, jnp.arange(16) % 5 != 0


@pytest.mark.parametrize("normalizer", [None, 37.0])
def test_mean_token_parallel_over_8_devices_equals_one_device(mesh, normalizer):
    h, w, y, b, keep = _mean_mesh_inputs()
    kw = dict(label_smoothing=0.1, z_loss=1e-2, normalizer=normalizer, block_size=1)

    def local(h, y, keep, w, b):
        return mean_of(h, w, y, bias=b, where=keep, axis_name="x", **kw)

    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x"), P(), P()), out_specs=P())
    whole = lambda h, y, keep, w, b: mean_of(h, w, y, bias=b, where=keep, **kw)  # noqa: E731
    args = (h, y, keep, w, b)
    _close(jax.jit(sharded)(*args), whole(*args))
    _close(whole(*args), jaxloss.reduce.sum(f(h, w, y, bias=b, where=keep, label_smoothing=0.1, z_loss=1e-2))
           / (normalizer or jnp.sum(keep & (y != -100))))
    for ours, theirs in zip(jax.jit(jax.grad(sharded, (0, 3, 4)))(*args), jax.grad(whole, (0, 3, 4))(*args)):
        _close(ours, theirs)
    tangents = (h, w, b)
    jvp = lambda fn: jax.jvp(lambda h, w, b: fn(h, y, keep, w, b), (h, w, b), tangents)[1]  # noqa: E731
    _close(jax.jit(lambda: jvp(sharded))(), jvp(whole))


def test_mean_grad_inside_shard_map_gives_the_token_rows_and_the_whole_weight_gradient(mesh):
    """jax.grad inside shard_map (check_vma): each device gets its tokens' rows of ∂hidden and the
    replicated weight its whole gradient (the transpose of its implicit broadcast sums the devices'
    blocks): no psum to add."""
    h, w, y, b, keep = _mean_mesh_inputs()

    def local(h, y, keep, w):
        return jax.value_and_grad(lambda h, w: mean_of(h, w, y, where=keep, axis_name="x"), (0, 1))(h, w)

    value, (dh, dw) = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x"), P()),
                                            out_specs=(P(), (P("x"), P()))))(h, y, keep, w)
    whole_value, (whole_dh, whole_dw) = jax.value_and_grad(lambda h, w: mean_of(h, w, y, where=keep), (0, 1))(h, w)
    _close(value, whole_value)
    _close(dh, whole_dh)
    _close(dw, whole_dw)


@pytest.mark.parametrize("normalizer", [20, 20.0, np.float32(20.0)])
def test_mean_normalizer_divides_the_sum_and_accumulates_micro_batches(normalizer):
    h, w, y, b = _inputs(n=12, seed=22)
    y = y.at[4].set(-100)
    total = lambda h, w, b: jnp.sum(f(h, w, y, bias=b))  # noqa: E731
    ours = lambda h, w, b: mean_of(h, w, y, bias=b, normalizer=normalizer, block_size=5)  # noqa: E731
    _close(ours(h, w, b), total(h, w, b) / 20)
    for a, c in zip(jax.grad(ours, (0, 1, 2))(h, w, b), jax.grad(total, (0, 1, 2))(h, w, b)):
        _close(a, c / 20)
    count = int(jnp.sum(y != -100))  # gradient accumulation: two micro-batches, the whole batch's count

    def micro(part):
        return jax.value_and_grad(lambda w, b: mean_of(h[part], w, y[part], bias=b, normalizer=count), (0, 1))(w, b)

    (v1, g1), (v2, g2) = micro(slice(0, 7)), micro(slice(7, 12))
    whole, grads = jax.value_and_grad(lambda w, b: mean_of(h, w, y, bias=b), (0, 1))(w, b)
    _close(v1 + v2, whole)
    for a, c, d in zip(g1, g2, grads):
        _close(a + c, d)


def test_mean_derivative_with_respect_to_a_float_normalizer():
    h, w, y, b = _inputs(seed=23)
    result = jaxloss.check_gradients(mean_of, h, w, y, bias=b, normalizer=jnp.float32(4.5), block_size=4, order=2)
    assert result.ok, result
    assert "normalizer" in {r.argument for r in result.rows}


def _dots(fn, *shapes):
    return jax.jit(fn).lower(*shapes).compile().as_text().count(" dot(")


def test_value_and_grad_of_the_mean_costs_three_matmuls_and_the_per_token_loss_four():
    shapes = (jax.ShapeDtypeStruct((64, 8), jnp.float32), jax.ShapeDtypeStruct((8, 256), jnp.float32),
              jax.ShapeDtypeStruct((64,), jnp.int32))
    objective = lambda loss: jax.value_and_grad(lambda h, w, y: jnp.mean(loss(h, w, y)), (0, 1))  # noqa: E731
    assert _dots(objective(lambda h, w, y: mean_of(h, w, y, block_size=16)), *shapes) == 3
    assert _dots(objective(lambda h, w, y: f(h, w, y, block_size=64)), *shapes) == 4
    assert _dots(lambda h, w, y: mean_of(h, w, y, block_size=16), *shapes) == 1  # the value alone: no gradient


def test_forward_passes_hold_no_constant_block_beside_the_logits():
    """A select against a constant [tokens, block] operand inside the blockwise loops is hoisted out of
    the loop as a buffer (it was 16 MiB at 4096 × 512 × 32000): a second block of logits."""
    n, h, v = 1024, 64, 16384
    assert _temp(lambda h, w, y: f(h, w, y, block_size=256), n, h, v) <= 2 * (n * 256 * 4)  # was 2.5 blocks
    assert _temp(lambda h, w, y: mean_of(h, w, y, block_size=64), n, h, v) <= 2.25 * (64 * v * 4)  # 3.1 hoisted


@pytest.mark.parametrize("dtype, default", [(jnp.float32, "HIGHEST"), (jnp.bfloat16, "DEFAULT")])
@pytest.mark.parametrize("loss", [f, mean_of], ids=["per_token", "mean"])
def test_precision_defaults_to_highest_for_float32_and_is_passed_to_every_matmul(loss, dtype, default):
    h, w, y, b = (x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x for x in _inputs())
    objective = lambda **kw: jax.value_and_grad(lambda h, w: jnp.sum(loss(h, w, y, bias=b, **kw)), (0, 1))  # noqa: E731
    text = jax.jit(objective()).lower(h, w).as_text()
    assert text.count("dot_general") == text.count(f"precision = [{default}, {default}]") > 0
    text = jax.jit(objective(precision=jax.lax.Precision.HIGH)).lower(h, w).as_text()
    assert text.count("dot_general") == text.count("precision = [HIGH, HIGH]") > 0


@pytest.mark.parametrize("call, match", [
    (lambda h, w, y: mean_of(h, w, y, normalizer=0.0), "normalizer must be > 0"),
    (lambda h, w, y: mean_of(h, w, y, normalizer=jnp.ones(2)), "normalizer must be a scalar"),
    (lambda h, w, y: mean_of(h, w, y, precision="fast"), "precision must be a jax.lax.Precision"),
    (lambda h, w, y: f(h, w, y, precision=3), "precision must be a jax.lax.Precision"),
])
def test_bad_mean_and_precision_options_raise(call, match):
    h, w, y, _ = _inputs()
    with pytest.raises(ValueError, match=match):
        call(h, w, y)


def test_float16_mean_keeps_the_gradient_blocks_float32_range():
    """float16 inputs whose G (z-loss at logits ~1e8) overflows float16: the mean's gradient blocks
    and its JVP are those of the same values in float32, never NaN (G was cast to float16)."""
    rng = np.random.default_rng(3)
    h, w = (jnp.float16(1e4 * rng.uniform(-1, 1, s)) for s in ((4, 3), (3, 6)))
    labels = jnp.int32(rng.integers(0, 6, 4))

    def mean(h, w):
        return jaxloss.linear_softmax_cross_entropy_mean(h, w, labels, z_loss=1e-4)

    tangents = (jnp.ones_like(h), jnp.ones_like(w))
    low = jax.jvp(mean, (h, w), tangents)[1]
    wide = jax.jvp(mean, (h.astype(jnp.float32), w.astype(jnp.float32)),
                    tuple(t.astype(jnp.float32) for t in tangents))[1]
    np.testing.assert_allclose(np.float64(low), np.float64(wide), rtol=1e-5, equal_nan=False)
