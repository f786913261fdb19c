"""jaxloss.check_gradients: it passes right rules and cannot be fooled by wrong ones.

Each kind of wrong rule is planted in a user-written function and must be caught, with and
without a reference: a wrong sign, a missing factor, a NaN tangent, a right first derivative
with a wrong second, a wrong leaf of a pytree argument, a wrong rule at a masked (−inf) input.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss.gradients import GradientCheck, hand_derivative, tangent_sum

# User-written functions with custom derivative rules, right and wrong.


def _plain(x, y, scale):
    return scale * jnp.sin(x) * y


def _plain_jvp(primals, tangents, factor=1.0):
    x, y, s = primals
    dx, dy, ds = tangents
    return _plain(x, y, s), factor * s * jnp.cos(x) * y * dx + s * jnp.sin(x) * dy + jnp.sin(x) * y * ds


@jax.custom_jvp
def good_jvp(x, y, scale):
    return _plain(x, y, scale)


good_jvp.defjvp(_plain_jvp)


@jax.custom_jvp
def bad_jvp(x, y, scale):  # the x-derivative is off by a factor 2
    return _plain(x, y, scale)


bad_jvp.defjvp(lambda primals, tangents: _plain_jvp(primals, tangents, factor=2.0))


def _vjp_fwd(x, y, s):
    return _plain(x, y, s), (x, y, s)


def _vjp_bwd(res, g, sign=1.0, zero_y=False):
    x, y, s = res
    dy = jnp.zeros_like(y) if zero_y else s * jnp.sin(x) * g
    return sign * s * jnp.cos(x) * y * g, dy, jnp.sum(jnp.sin(x) * y * g)


@jax.custom_vjp
def good_vjp(x, y, scale):
    return _plain(x, y, scale)


good_vjp.defvjp(_vjp_fwd, _vjp_bwd)


@jax.custom_vjp
def bad_vjp(x, y, scale):  # the x-cotangent has the wrong sign
    return _plain(x, y, scale)


bad_vjp.defvjp(_vjp_fwd, lambda res, g: _vjp_bwd(res, g, sign=-1.0))


@jax.custom_vjp
def missing_vjp(x, y, scale):  # returns a zero cotangent for the differentiable y
    return _plain(x, y, scale)


missing_vjp.defvjp(_vjp_fwd, lambda res, g: _vjp_bwd(res, g, zero_y=True))

X = jnp.array([0.3, -1.2, 2.0, 0.7])
Y = jnp.array([1.5, 0.7, -0.4, 2.2])


def _failing(check: GradientCheck):
    return {(r.argument, r.mode) for r in check.rows if not r.ok}


@pytest.mark.parametrize("with_reference", [False, True])
def test_checker_catches_wrong_custom_jvp_rule(with_reference):
    check = jaxloss.check_gradients(bad_jvp, X, Y, 1.3, reference=_plain if with_reference else None)
    assert not check.ok
    assert _failing(check) == {("x", "reverse"), ("x", "forward")}
    if with_reference:
        assert check.max_error("forward", "autodiff") > 0.5
    assert check.max_error("reverse", "fd") > 0.5


@pytest.mark.parametrize("with_reference", [False, True])
def test_checker_catches_wrong_custom_vjp_rule(with_reference):
    check = jaxloss.check_gradients(bad_vjp, X, Y, 1.3, reference=_plain if with_reference else None)
    assert not check.ok
    assert _failing(check) == {("x", "reverse")}


@pytest.mark.parametrize("with_reference", [False, True])
def test_checker_catches_missing_cotangent_in_custom_vjp(with_reference):
    check = jaxloss.check_gradients(missing_vjp, X, Y, 1.3, reference=_plain if with_reference else None)
    assert not check.ok
    assert _failing(check) == {("y", "reverse")}


def test_checker_passes_correct_custom_jvp():
    check = jaxloss.check_gradients(good_jvp, X, Y, 1.3, reference=_plain)
    assert check.ok, check
    assert {(r.argument, r.mode) for r in check.rows} == {
        (a, m) for a in ("x", "y", "scale") for m in ("reverse", "forward")}
    assert all(not r.note for r in check.rows)


def test_checker_passes_correct_custom_vjp_and_skips_forward_mode():
    check = jaxloss.check_gradients(good_vjp, X, Y, 1.3, reference=_plain)
    assert check.ok, check
    forward = [r for r in check.rows if r.mode == "forward"]
    assert len(forward) == 3
    assert all(r.ok and "skipped" in r.note and "custom_vjp" in r.note for r in forward)
    reverse = [r for r in check.rows if r.mode == "reverse"]
    assert all(r.ok and not r.note for r in reverse)


def test_checker_repr_is_a_readable_table():
    text = repr(jaxloss.check_gradients(bad_vjp, X, Y, 1.3, reference=_plain))
    lines = text.splitlines()
    assert lines[0].startswith("GradientCheck(ok=False")
    assert "argument" in lines[1] and "mode" in lines[1]
    for name in ("x", "y", "scale"):
        assert any(line.split()[0] == name for line in lines[2:])
    assert any(line.split()[:2] == ["x", "reverse"] and " NO " in line for line in lines)
    assert "skipped" in text
    assert repr(jaxloss.check_gradients(jaxloss.huber_loss, X, Y, delta=1.3)).count(" yes ") == 6


def test_checker_wrt_selects_arguments():
    by_name = jaxloss.check_gradients(bad_jvp, X, Y, 1.3, wrt=["y", "scale"])
    assert by_name.ok  # the wrong x-rule is not looked at
    assert {r.argument for r in by_name.rows} == {"y", "scale"}
    by_index = jaxloss.check_gradients(bad_jvp, X, Y, 1.3, wrt=[0])
    assert {r.argument for r in by_index.rows} == {"x"} and not by_index.ok
    only_delta = jaxloss.check_gradients(jaxloss.huber_loss, X, Y, delta=1.3, wrt=["delta"])
    assert [(r.argument, r.mode) for r in only_delta.rows] == [("delta", "reverse"), ("delta", "forward")]


def test_checker_checks_python_float_keyword_option():
    check = jaxloss.check_gradients(jaxloss.huber_loss, X, Y, delta=1.3)
    assert check.ok, check
    assert {r.argument for r in check.rows} == {"predictions", "targets", "delta"}

    # A rule that forgets the option's derivative is caught on the option's row.
    def forgets_a(p, t, out, res):
        return tangent_sum((p.a * jax.nn.sigmoid(p.a * p.x), t.x))

    @hand_derivative(forgets_a)
    def scaled_softplus(x, *, a=1.0):
        return jax.nn.softplus(a * x)

    check = jaxloss.check_gradients(scaled_softplus, X, a=1.3)
    assert _failing(check) == {("a", "reverse"), ("a", "forward")}


def test_checker_skips_integer_arguments():
    check = jaxloss.check_gradients(jaxloss.huber_loss, X, jnp.array([1, 0, -1, 2]), delta=1.3)
    assert {r.argument for r in check.rows} == {"predictions", "delta"}
    assert check.ok, check



REFERENCE = pytest.mark.parametrize("with_reference", [False, True], ids=["fd only", "with reference"])


def _rule(fn, tangent):
    """``fn`` as a custom_jvp with the rule ``tangent(primals, tangents)``."""
    f = jax.custom_jvp(fn)
    f.defjvp(lambda primals, tangents: (fn(*primals), tangent(primals, tangents)))
    return f


def _softplus_sum(x):
    return jnp.sum(jax.nn.softplus(x), axis=-1)


def _softplus_rule(sign=1.0, factor=1.0):
    return _rule(_softplus_sum, lambda p, t: jnp.sum(sign * factor * jax.nn.sigmoid(p[0]) * t[0], axis=-1))


SOFTPLUS_X = jnp.array([[0.3, -1.2, 2.0], [0.7, 1.5, -0.4]])


@REFERENCE
@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("planted", ["wrong sign", "missing factor"])
def test_checker_catches_a_wrong_first_derivative(planted, order, with_reference):
    wrong = _softplus_rule(sign=-1.0) if planted == "wrong sign" else _softplus_rule(factor=0.5)
    check = jaxloss.check_gradients(wrong, SOFTPLUS_X, order=order,
                                    reference=_softplus_sum if with_reference else None)
    assert not check.ok
    assert {("x", "reverse"), ("x", "forward")} <= _failing(check)
    assert check.max_error("reverse", "fd") > 0.3


@REFERENCE
def test_checker_catches_a_nan_tangent(with_reference):
    nan_at_one = _rule(_softplus_sum, lambda p, t: jnp.sum(
        jnp.where(p[0] == p[0][0, 1], jnp.nan, jax.nn.sigmoid(p[0])) * t[0], axis=-1))
    check = jaxloss.check_gradients(nan_at_one, SOFTPLUS_X, reference=_softplus_sum if with_reference else None)
    assert _failing(check) == {("x", "reverse"), ("x", "forward")}
    reverse = next(r for r in check.rows if r.mode == "reverse")
    assert "not finite" in reverse.note and np.isinf(check.max_error("reverse", "fd"))
    if with_reference:
        assert reverse.autodiff.worst == (0, 1)
        assert "non-finite" in repr(check)


@REFERENCE
def test_checker_catches_a_wrong_second_derivative_only_at_order_two(with_reference):
    # The first derivative is right, but its factor is frozen: its own derivative is lost.
    frozen = _rule(_softplus_sum, lambda p, t: jnp.sum(jax.lax.stop_gradient(jax.nn.sigmoid(p[0])) * t[0], axis=-1))
    reference = _softplus_sum if with_reference else None
    assert jaxloss.check_gradients(frozen, SOFTPLUS_X, reference=reference).ok
    check = jaxloss.check_gradients(frozen, SOFTPLUS_X, reference=reference, order=2)
    assert _failing(check) == {("x", "hvp")}
    assert jaxloss.check_gradients(_softplus_rule(), SOFTPLUS_X, reference=reference, order=2).ok


def _linear(params, x):
    return jnp.tanh(x @ params["w"] + params["b"])


def _linear_rule(b_factor):
    def tangent(p, t):
        (params, x), (dparams, dx) = p, t
        slope = 1 - _linear(params, x) ** 2
        return slope * (x @ dparams["w"] + dx @ params["w"] + b_factor * dparams["b"])

    return _rule(_linear, tangent)


PARAMS = {"w": jnp.array([[0.5, -0.3], [0.2, 0.8], [-0.6, 0.1]]), "b": jnp.array([0.1, -0.2])}
INPUTS = jnp.array([[0.3, -1.0, 0.5], [1.2, 0.4, -0.7]])


@REFERENCE
def test_checker_names_the_wrong_leaf_of_a_pytree_argument(with_reference):
    check = jaxloss.check_gradients(_linear_rule(b_factor=-1.0), PARAMS, INPUTS, order=2,
                                    reference=_linear if with_reference else None)
    assert {r.argument for r in check.rows} == {"params['w']", "params['b']", "x", "(all)"}
    # (all) moves every leaf: it fails against the reference; against finite differences of
    # the function's own (wrongly signed) gradient its second derivative is consistent.
    assert {a for a, _ in _failing(check)} - {"(all)"} == {"params['b']"}
    assert (("(all)", "hvp") in _failing(check)) == with_reference
    assert jaxloss.check_gradients(_linear_rule(b_factor=1.0), PARAMS, INPUTS, order=2,
                                   reference=_linear if with_reference else None).ok


@dataclasses.dataclass
class Layer:
    w: jax.Array
    b: jax.Array
    name: str = "dense"


def test_checker_opens_dataclasses_lists_and_tuples():
    def f(layer, pair, scales):
        return jnp.tanh(pair[0] @ layer.w + layer.b) * pair[1] * scales[0] + scales[1]

    check = jaxloss.check_gradients(f, Layer(PARAMS["w"], PARAMS["b"]), (INPUTS, 2.0), [jnp.float32(1.5), 0.5])
    assert {r.argument for r in check.rows} == {"layer.w", "layer.b", "pair[0]", "pair[1]", "scales[0]", "scales[1]"}
    assert check.ok, check


def test_checker_checks_flax_nnx_state_leaf_by_leaf():
    nnx = pytest.importorskip("flax.nnx")
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)

    def loss(state, x):
        return jnp.sum(jnp.tanh(nnx.merge(graphdef, state)(x)), axis=-1)

    check = jaxloss.check_gradients(loss, state, INPUTS, order=2)
    assert {r.argument for r in check.rows} == {"state['kernel'].value", "state['bias'].value", "x", "(all)"}
    assert check.ok, check


def test_checker_rejects_an_argument_it_cannot_check():
    with pytest.raises(TypeError, match="argument x.*complex"):
        jaxloss.check_gradients(lambda x: jnp.abs(x), jnp.array([1 + 2j]))

    class Opaque:
        pass

    with pytest.raises(TypeError, match="argument config.*Opaque"):
        jaxloss.check_gradients(lambda x, config: x ** 2, jnp.array([1.0]), Opaque())


def test_checker_with_no_float_argument_is_not_ok():
    check = jaxloss.check_gradients(lambda n: jnp.ones(3) * n, jnp.array([1, 2, 3]))
    assert not check.ok and not check.rows and "no float argument" in repr(check)


# A softmax cross-entropy over logits with a masked class (−inf), as attention and vocabulary
# masks make them; its rule is p − y, or the wrong sign of it.
def _cross_entropy(x):
    return jax.nn.logsumexp(x, axis=-1) - x[:, 0]


def _cross_entropy_rule(sign):
    def tangent(p, t):
        grad = jax.nn.softmax(p[0]) - jax.nn.one_hot(0, p[0].shape[-1])
        return sign * jnp.sum(jnp.where(jnp.isfinite(p[0]), grad * t[0], 0.0), axis=-1)

    return _rule(_cross_entropy, tangent)


MASKED_LOGITS = jnp.array([[2.0, 0.5, -jnp.inf, -1.0], [0.3, -jnp.inf, 1.2, 0.8]])


@REFERENCE
def test_checker_catches_a_wrong_rule_at_a_masked_input(with_reference):
    reference = _cross_entropy if with_reference else None
    check = jaxloss.check_gradients(_cross_entropy_rule(-1.0), MASKED_LOGITS, reference=reference, order=2)
    assert not check.ok
    assert {("x", "reverse"), ("x", "forward")} <= _failing(check)
    # The right rule passes: the finite differences move only the finite logits.
    right = jaxloss.check_gradients(_cross_entropy_rule(1.0), MASKED_LOGITS, reference=reference, order=2)
    assert right.ok, right


def test_checker_fails_a_row_whose_finite_differences_are_not_finite():
    # sqrt at 0: the central difference steps to a negative argument (NaN).
    check = jaxloss.check_gradients(lambda x: jnp.sqrt(jnp.abs(x) + x), jnp.array([0.0, 1.0]))
    assert not check.ok
    assert all("not finite" in r.note for r in check.rows if not r.ok)


def test_checker_without_reference_says_n_a():
    check = jaxloss.check_gradients(_softplus_rule(), SOFTPLUS_X)
    assert check.ok and not check.has_reference
    assert all(r.autodiff is None and r.rel_vs_autodiff is None for r in check.rows)
    text = repr(check)
    assert "only finite differences were compared" in text and "n/a" in text
    assert jaxloss.check_gradients(jaxloss.huber_loss, X, Y).has_reference  # fn.reference


def test_checker_reports_the_worst_element_and_a_per_element_error():
    # Element 1's derivative is 0.1% off, but it is 1e-6 of element 0's: the global error
    # (1e-9) passes, the per-element error does not.
    scale = jnp.array([1e6, 1.0])
    f = _rule(lambda x: scale * x ** 2, lambda p, t: jnp.array([2e6, 2.002]) * p[0] * t[0])
    check = jaxloss.check_gradients(f, jnp.array([1.0, 1.0]), reference=lambda x: scale * x ** 2)
    reverse = next(r for r in check.rows if r.mode == "reverse")
    assert reverse.autodiff.rel_error < 1e-6 < reverse.autodiff.elementwise
    assert reverse.autodiff.worst == (1,) and not reverse.ok


@jax.custom_vjp
def float32_inside(x):
    return jnp.sin(x.astype(jnp.float32))


float32_inside.defvjp(lambda x: (float32_inside(x), x),
                      lambda x, g: ((jnp.cos(x.astype(jnp.float32)) * g).astype(jnp.float32),))


def test_checker_explains_a_function_that_computes_in_float32():
    with pytest.raises(TypeError, match='dtype="float32"'):
        jaxloss.check_gradients(float32_inside, jnp.array([0.3, 1.0]))
    check = jaxloss.check_gradients(float32_inside, jnp.array([0.3, 1.0]), dtype="float32",
                                    reference=lambda x: jnp.sin(x))
    assert check.ok and check.dtype == "float32", check


def test_checker_order_two_checks_mixed_derivatives():
    # d/dy of the x-gradient is wrong (the rule forgets y's effect on x's slope).
    def f(x, y):
        return jnp.sin(x * y)

    wrong = _rule(f, lambda p, t: jnp.cos(p[0] * p[1]) * (jax.lax.stop_gradient(p[1]) * t[0] + p[0] * t[1]))
    check = jaxloss.check_gradients(wrong, jnp.array([0.3, 1.1]), jnp.array([0.7, -0.4]), order=2)
    assert ("(all)", "hvp") in _failing(check)


def test_hand_derivative_losses_pass_order_two():
    check = jaxloss.check_gradients(jaxloss.huber_loss, X, Y, delta=1.3, order=2)
    assert check.ok, check
    assert {r.mode for r in check.rows} == {"reverse", "forward", "hvp"}
