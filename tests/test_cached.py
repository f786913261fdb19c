"""jaxloss.cached_contrastive (GradCache): the full batch's value_and_grad, one chunk's activations."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss.cached import cached_contrastive

pytestmark = pytest.mark.full

N, D_IN, HIDDEN, D = 16, 5, 12, 4


def mlp(params, x):
    return jnp.tanh(x @ params["w1"] + params["b1"]) @ params["w2"]


def _params(dtype, hidden=HIDDEN, key=0):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return {"w1": (jax.random.normal(k1, (D_IN, hidden)) / 2).astype(dtype),
            "b1": (0.1 * jax.random.normal(k2, (hidden,))).astype(dtype),
            "w2": (jax.random.normal(k3, (hidden, D)) / 3).astype(dtype)}


def _views(dtype, n=N):
    k1, k2 = jax.random.split(jax.random.key(1))
    x = jax.random.normal(k1, (n, D_IN))
    return x.astype(dtype), (x + 0.3 * jax.random.normal(k2, (n, D_IN))).astype(dtype)


LOSSES = {
    "info_nce": (jaxloss.info_nce_loss, {"temperature": 0.5}),
    "mnrl": (jaxloss.multiple_negatives_ranking_loss, {"scale": 5.0, "symmetric": True}),
    "clip": (jaxloss.clip_loss, {"logit_scale": 0.3}),
}


def _full(loss, apply, params, x, y, where=None, **kwargs):
    """Plain ``jax.value_and_grad`` of the full batch's mean loss."""
    applies = apply if isinstance(apply, tuple) else (apply, apply)

    def mean(params):
        options = kwargs if where is None else {**kwargs, "where": where}
        losses = loss(applies[0](params, x), applies[1](params, y), **options)
        return jaxloss.reduce.mean(losses, where=where)
    return jax.value_and_grad(mean)(params)


def _close(got, want, rtol, atol):
    value, grads = got
    np.testing.assert_allclose(value, want[0], rtol=rtol, atol=atol, equal_nan=False)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(want[1]), strict=True):
        assert ours.dtype == theirs.dtype
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=False)


@pytest.mark.parametrize("name, chunk_size, block_size", [
    ("info_nce", 4, None), ("info_nce", 16, None), ("info_nce", 1, 8), ("mnrl", 8, 4), ("clip", 4, None)])
def test_equals_full_batch_value_and_grad_in_float64(x64, name, chunk_size, block_size):
    loss, kwargs = LOSSES[name]
    params, (x, y) = _params(jnp.float64), _views(jnp.float64)
    got = cached_contrastive(loss, mlp, params, x, y, chunk_size=chunk_size, block_size=block_size, **kwargs)
    _close(got, _full(loss, mlp, params, x, y, block_size=block_size, **kwargs), 1e-12, 1e-14)


@pytest.mark.parametrize("name", LOSSES)
def test_equals_full_batch_value_and_grad_in_float32_under_jit(name):
    loss, kwargs = LOSSES[name]
    params, (x, y) = _params(jnp.float32), _views(jnp.float32)
    step = jax.jit(functools.partial(cached_contrastive, loss, mlp, chunk_size=4, block_size=8, **kwargs))
    _close(step(params, x, y), _full(loss, mlp, params, x, y, **kwargs), 2e-5, 1e-6)


def test_two_towers_pytree_inputs_and_mask(x64):
    """One encoder per input (CLIP's image and text towers), inputs as dicts of arrays, and a
    padding mask: masked examples leave the mean and the other examples' negatives."""
    params = {"image": _params(jnp.float64, key=2), "text": _params(jnp.float64, key=3)}
    x, y = _views(jnp.float64)
    image = lambda p, batch: mlp(p["image"], batch["pixels"])  # noqa: E731
    text = lambda p, batch: mlp(p["text"], batch["tokens"] * batch["scale"][:, None])  # noqa: E731
    scale = jnp.linspace(0.5, 1.5, N)
    where = jnp.arange(N) % 5 != 3
    got = cached_contrastive(jaxloss.clip_loss, (image, text), params, {"pixels": x}, {"tokens": y, "scale": scale},
                             chunk_size=4, where=where, logit_scale=0.2)
    want = _full(jaxloss.clip_loss, (lambda p, x: image(p, {"pixels": x}),
                                     lambda p, y: text(p, {"tokens": y, "scale": scale})),
                 params, x, y, where=where, logit_scale=0.2)
    _close(got, want, 1e-12, 1e-14)


def test_info_nce_with_more_keys_than_queries(x64):
    """Inputs of different sizes: the queries' positives are ids among the keys."""
    params, (x, y) = _params(jnp.float64), _views(jnp.float64, n=2 * N)
    x, labels = x[:N], jnp.arange(N) * 2
    got = cached_contrastive(jaxloss.info_nce_loss, mlp, params, x, y, chunk_size=4, labels=labels, temperature=0.3)
    _close(got, _full(jaxloss.info_nce_loss, mlp, params, x, y, labels=labels, temperature=0.3), 1e-12, 1e-14)


def test_flax_nnx_module_through_split_and_merge(x64):
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Sequential(nnx.Linear(D_IN, HIDDEN, rngs=nnx.Rngs(0), param_dtype=jnp.float64), jnp.tanh,
                           nnx.Linear(HIDDEN, D, rngs=nnx.Rngs(1), param_dtype=jnp.float64))
    graphdef, state = nnx.split(model, nnx.Param)
    apply = lambda state, x: nnx.merge(graphdef, state)(x)  # noqa: E731
    x, y = _views(jnp.float64)
    step = jax.jit(functools.partial(cached_contrastive, jaxloss.info_nce_loss, apply, chunk_size=4, temperature=0.5))
    got = step(state, x, y)
    assert jax.tree.structure(got[1]) == jax.tree.structure(state)
    _close(got, _full(jaxloss.info_nce_loss, apply, state, x, y, temperature=0.5), 1e-12, 1e-14)


def test_low_precision_params_keep_their_dtype_and_accumulate_in_float32():
    params, (x, y) = _params(jnp.bfloat16), _views(jnp.bfloat16)
    value, grads = cached_contrastive(jaxloss.info_nce_loss, mlp, params, x, y, chunk_size=4, temperature=0.5)
    want = _full(jaxloss.info_nce_loss, mlp, jax.tree.map(lambda p: p.astype(jnp.float32), params),
                 x.astype(jnp.float32), y.astype(jnp.float32), temperature=0.5)
    assert value.dtype == jnp.float32 and all(g.dtype == jnp.bfloat16 for g in jax.tree.leaves(grads))
    np.testing.assert_allclose(value, want[0], rtol=3e-2)
    for ours, theirs in zip(jax.tree.leaves(grads), jax.tree.leaves(want[1])):
        np.testing.assert_allclose(np.float32(ours), theirs, rtol=0.1, atol=0.05 * np.abs(theirs).max())


# ------------------------------------------------------------------ data parallel


@pytest.mark.parametrize("check_vma", [True, False])
@pytest.mark.parametrize("name", ["info_nce", "mnrl"])
def test_sharded_over_8_devices_equals_one_device(mesh, name, check_vma):
    loss, kwargs = LOSSES[name]
    params, (x, y) = _params(jnp.float32), _views(jnp.float32, n=4 * N)
    where = jnp.arange(4 * N) % 7 != 2

    def local(params, x, y, where):
        return cached_contrastive(loss, mlp, params, x, y, chunk_size=4, where=where, axis_name="x", block_size=8,
                                  **kwargs)
    step = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P("x"), P("x"), P("x")), out_specs=(P(), P()),
                                 check_vma=check_vma))
    _close(step(params, x, y, where), _full(loss, mlp, params, x, y, where=where, **kwargs), 2e-5, 1e-6)


def test_named_vmap_axis_equals_one_device():
    params, (x, y) = _params(jnp.float32), _views(jnp.float32, n=4 * N)
    split = lambda a: a.reshape(8, -1, *a.shape[1:])  # noqa: E731
    value, grads = jax.vmap(lambda x, y: cached_contrastive(jaxloss.info_nce_loss, mlp, params, x, y, chunk_size=4,
                                                            axis_name="d", temperature=0.5),
                            axis_name="d")(split(x), split(y))
    _close((value[0], jax.tree.map(lambda g: g[0], grads)),
           _full(jaxloss.info_nce_loss, mlp, params, x, y, temperature=0.5), 2e-5, 1e-6)


# ------------------------------------------------------------------ memory


def _footprint(fn, n, hidden):
    params = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), _params(jnp.float32, hidden))
    x = jax.ShapeDtypeStruct((n, D_IN), jnp.float32)
    memory = jax.jit(fn).lower(params, x, x).compile().memory_analysis()
    return memory.temp_size_in_bytes + memory.output_size_in_bytes


def test_encoder_activations_do_not_grow_with_the_number_of_chunks():
    """At a fixed chunk, batch × 4 adds to the footprint only what the loss itself adds (its
    embeddings' value and gradient) and the per-example inputs and embeddings; the plain
    value_and_grad adds the wide encoder's activations of every example."""
    hidden, n, block = 2048, 512, 64
    cached = functools.partial(cached_contrastive, jaxloss.info_nce_loss, mlp, chunk_size=64, block_size=block)
    plain = lambda p, x, y: _full(jaxloss.info_nce_loss, mlp, p, x, y, block_size=block)  # noqa: E731
    loss_only = jax.value_and_grad(
        lambda p, x, y: jnp.mean(jaxloss.info_nce_loss(x[:, :D], y[:, :D], block_size=block)), (1, 2))
    grow = {name: _footprint(fn, 4 * n, hidden) - _footprint(fn, n, hidden)
            for name, fn in {"cached": cached, "plain": plain, "loss": loss_only}.items()}
    per_example = 2 * (D_IN + 3 * D) * 4  # both sides: inputs, embeddings, their gradients (float32)
    assert grow["cached"] <= grow["loss"] + 1.5 * 3 * n * per_example, grow
    activations = 3 * n * 2 * hidden * 4  # the extra examples' hidden layer, both sides
    assert grow["plain"] >= activations > 10 * grow["cached"], grow


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("call, error, match", [
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, p, x, x, chunk_size=5), ValueError,
     r"chunk_size=5 must divide the batch size of inputs\[0\], 16"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, p, x, x[:12], chunk_size=8), ValueError,
     r"inputs\[1\], 12"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, p, x, x, chunk_size=0), ValueError, "chunk_size"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, (mlp,) * 3, p, x, x, chunk_size=4), ValueError,
     "3 encoders for 2 inputs"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, lambda p, c: mlp(p, c).T, p, x, x, chunk_size=8),
     ValueError, r"one embedding per example"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, {**p, "step": jnp.int32(0)}, x, x, chunk_size=4),
     TypeError, r"params\['step'\] must be floating-point"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, p, x, x, chunk_size=4, where=jnp.ones(3, bool)),
     ValueError, "where"),
    (lambda p, x: cached_contrastive(jaxloss.info_nce_loss, mlp, p, chunk_size=4), ValueError, "at least one input"),
])
def test_bad_input_raises_naming_the_argument(call, error, match):
    params, (x, _) = _params(jnp.float32), _views(jnp.float32)
    with pytest.raises(error, match=match):
        call(params, x)


def test_the_benchmark_script_runs_on_a_small_problem(capsys):
    from jaxloss import __main__ as cli

    assert cli.main(["bench", "cached_contrastive", "--ns", "64", "128", "--chunk", "32", "--dim-in", "8",
                     "--hidden", "16", "--dim", "4", "--block-size", "32", "--time-ns", "64", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "| 64 |" in out and "| 128 |" in out, out
