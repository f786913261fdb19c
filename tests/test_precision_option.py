"""``precision=`` of the matmul-based losses (contrastive, angular, GE2E, batch-triplet).

The option is static and keyword-only (None by default: HIGHEST, since the matmuls run in
float32), and it reaches every dot of the lowered program: the value, reverse mode and
forward mode, of the public function and of ``.reference``, in the dense, blockwise and
sharded forms.  On CPU, where float32 matmuls are exact in every mode, DEFAULT and HIGHEST
give the same numbers.
"""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import jaxloss
from jaxloss._streaming import matmul_precision

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

HIGHEST, HIGH, DEFAULT = jax.lax.Precision.HIGHEST, jax.lax.Precision.HIGH, jax.lax.Precision.DEFAULT
N, D = 16, 4
GROUPS = np.arange(N) // 2  # 8 groups (classes, speakers) of 2

# name -> (loss, call(fn, x, y, **options)): ``x`` [N, D] and ``y`` [N, D] are the float inputs.
CONTRASTIVE = {
    "info_nce_loss": (jaxloss.info_nce_loss, lambda f, x, y, **o: f(x, y, temperature=0.5, **o)),
    "multiple_negatives_ranking_loss": (jaxloss.multiple_negatives_ranking_loss,
                                        lambda f, x, y, **o: f(x, y, scale=3.0, symmetric=True, **o)),
    "clip_loss": (jaxloss.clip_loss, lambda f, x, y, **o: f(x, y, logit_scale=0.5, **o)),
    "ntxent_loss": (jaxloss.ntxent_loss, lambda f, x, y, **o: f(x + y, jnp.asarray(GROUPS), temperature=0.5, **o)),
    "sigmoid_contrastive_loss": (jaxloss.sigmoid_contrastive_loss,
                                 lambda f, x, y, **o: f(x, y, temperature=2.0, bias=-1.0, **o)),
}
OTHERS = {
    "angular_margin_loss": (jaxloss.angular_margin_loss,
                            lambda f, x, y, **o: f(x, y[:8], jnp.asarray(GROUPS), scale=4.0, m1=2, m2=0.2, m3=0.1,
                                                   **o)),
    "arcface_loss": (jaxloss.arcface_loss, lambda f, x, y, **o: f(x, y[:8], jnp.asarray(GROUPS), scale=4.0, **o)),
    "cosface_loss": (jaxloss.cosface_loss, lambda f, x, y, **o: f(x, y[:8], jnp.asarray(GROUPS), scale=4.0, **o)),
    "sphereface_loss": (jaxloss.sphereface_loss,
                        lambda f, x, y, **o: f(x, y[:8], jnp.asarray(GROUPS), scale=4.0, **o)),
    "ge2e_loss": (jaxloss.ge2e_loss, lambda f, x, y, **o: f((x + y).reshape(4, 4, D), w=10.0, b=-5.0, **o)),
    "batch_triplet_loss": (jaxloss.batch_triplet_loss,
                           lambda f, x, y, **o: f(x + y, jnp.asarray(GROUPS), distance="cosine", **o)),
}
CASES = {**CONTRASTIVE, **OTHERS}


def _inputs(dtype=jnp.float32):
    kx, ky = jax.random.split(jax.random.PRNGKey(0))
    return jax.random.normal(kx, (N, D), dtype), jax.random.normal(ky, (N, D), dtype)


def _dot_precisions(program):
    """The precision of every ``dot_general`` in the StableHLO text of ``program``."""
    dots = [line for line in program.splitlines() if "stablehlo.dot_general" in line]
    found = [re.search(r"precision = \[(\w+), (\w+)\]", line) for line in dots]
    return [m.groups() if m else None for m in found]


def _value_jvp_and_grad(loss):
    """``loss(x, y)`` summed: its value and gradient (reverse mode) and a JVP (forward mode)."""
    scalar = lambda x, y: jnp.sum(loss(x, y))  # noqa: E731
    return lambda x, y: (jax.value_and_grad(scalar, (0, 1))(x, y), jax.jvp(scalar, (x, y), (y, x)))


def _assert_every_dot_at(program, precision, name):
    """Every dot at ``precision``: the value's, and the rule's (none for batch_triplet_loss,
    whose rule takes the distances' derivatives from row products, so only the forward's
    dot, in the value and under the JVP, is there)."""
    precisions = _dot_precisions(program)
    assert len(precisions) >= (2 if name == "batch_triplet_loss" else 4), precisions
    assert set(precisions) == {(precision.name, precision.name)}, precisions


@pytest.mark.parametrize("name", sorted(CASES))
def test_precision_is_a_keyword_only_option_defaulting_to_none_and_documented(name):
    fn = CASES[name][0]
    for f in (fn, fn.reference):
        parameters = inspect.signature(f).parameters
        assert parameters["precision"].kind == inspect.Parameter.KEYWORD_ONLY
        assert parameters["precision"].default is None
        assert list(parameters)[-2:] == ["precision", "where"]
    doc = fn.__doc__ if name not in ("arcface_loss", "cosface_loss", "sphereface_loss") \
        else jaxloss.angular_margin_loss.__doc__
    assert "precision: static" in doc and "None (default) is ``HIGHEST``" in doc


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("precision, expected", [(None, HIGHEST), ("default", DEFAULT), (HIGH, HIGH),
                                                 ("highest", HIGHEST), (DEFAULT, DEFAULT)])
@pytest.mark.parametrize("reference", [False, True], ids=["rule", "reference"])
def test_every_dot_of_value_and_derivatives_runs_at_the_requested_precision(name, precision, expected, reference):
    fn, call = CASES[name]
    f = fn.reference if reference else fn
    program = jax.jit(_value_jvp_and_grad(lambda x, y: call(f, x, y, precision=precision))).lower(*_inputs())
    _assert_every_dot_at(program.as_text(), expected, name)


@pytest.mark.parametrize("name", sorted(CONTRASTIVE))
@pytest.mark.parametrize("precision, expected", [(None, HIGHEST), ("default", DEFAULT)])
def test_blockwise_and_sharded_forms_run_every_dot_at_the_requested_precision(mesh, name, precision, expected):
    fn, call = CONTRASTIVE[name]
    x, y = _inputs()
    blockwise = lambda x, y: call(fn, x, y, block_size=3, precision=precision)  # noqa: E731
    _assert_every_dot_at(jax.jit(_value_jvp_and_grad(blockwise)).lower(x, y).as_text(), expected, name)
    if name == "ntxent_loss":  # its labels are per example: shard them with the embeddings
        local = lambda x, y, labels: fn(x + y, labels, temperature=0.5, block_size=3, axis_name="x",  # noqa: E731
                                        precision=precision)
        sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"), P("x"), P("x")), out_specs=P("x"))
        run = lambda x, y: sharded(x, y, jnp.asarray(GROUPS))  # noqa: E731
    else:
        run = jax.shard_map(lambda x, y: call(fn, x, y, block_size=3, axis_name="x", precision=precision),
                            mesh=mesh, in_specs=(P("x"), P("x")), out_specs=P("x"))
    _assert_every_dot_at(jax.jit(_value_jvp_and_grad(run)).lower(x, y).as_text(), expected, name)


@pytest.mark.parametrize("name", ["info_nce_loss", "arcface_loss", "ge2e_loss"])
def test_lower_precision_inputs_get_highest_too_they_are_upcast_before_the_matmuls(name):
    fn, call = CASES[name]
    program = jax.jit(_value_jvp_and_grad(lambda x, y: call(fn, x, y))).lower(*_inputs(jnp.bfloat16))
    _assert_every_dot_at(program.as_text(), HIGHEST, name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_default_and_highest_give_the_same_values_and_gradients_on_cpu(name):
    fn, call = CASES[name]
    x, y = _inputs()

    def results(precision):
        loss = lambda x, y: call(fn, x, y, precision=precision)  # noqa: E731
        (value, grads), (_, tangent) = jax.jit(_value_jvp_and_grad(loss))(x, y)
        return loss(x, y), value, *grads, tangent

    for default, highest in zip(results("default"), results(None)):
        assert np.all(np.isfinite(highest))
        np.testing.assert_allclose(default, highest, rtol=1e-6, atol=1e-7, equal_nan=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_precision_is_static_and_checked(name):
    fn, call = CASES[name]
    x, y = _inputs()
    a = jax.jit(lambda x, y: call(fn, x, y, precision="highest"))(x, y)
    np.testing.assert_allclose(a, call(fn, x, y, precision=HIGHEST), rtol=1e-5, equal_nan=False)  # jit vs eager
    for bad in ("fastest!", 2.0, jnp.asarray(2), ("highest", "highest")):
        with pytest.raises(ValueError, match="precision"):
            call(fn, x, y, precision=bad)


def test_matmul_precision_resolves_none_by_the_operands_dtype():
    f32, bf16 = jnp.ones(2, jnp.float32), jnp.ones(2, jnp.bfloat16)
    assert matmul_precision(None, f32, f32) is HIGHEST
    assert matmul_precision(None, bf16, bf16) is DEFAULT
    assert matmul_precision(None, bf16, f32) is HIGHEST
    assert matmul_precision("high", f32) is HIGH and matmul_precision(DEFAULT, f32) is DEFAULT
