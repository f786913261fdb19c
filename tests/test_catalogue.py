"""Every catalogue entry through the same checks: a new loss is tested by its entry."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import _verify, catalogue

ENTRIES = pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)


def _close(a, b, rtol=1e-5, atol=1e-6):
    """Two float32 results agree: per element within ``rtol``, with an absolute floor of ``atol``
    times the array's largest magnitude (an element that cancels to near 0 carries the rounding
    of the terms it came from); NaN never equals NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol * scale, equal_nan=False)


def _sum_of(fn, args, kwargs):
    """The sum of the losses as a function of the first argument."""
    return lambda x: jnp.sum(fn(x, *args[1:], **kwargs))


def test_every_public_loss_is_in_the_catalogue():
    """Every exported loss has an entry (an alias, such as optax's
    ``softmax_cross_entropy_with_integer_labels``, is the same object as its loss), and every
    entry is exported or made by an exported maker."""
    public = {obj for obj in vars(jaxloss).values() if callable(obj) and hasattr(obj, "reference")}
    entries = {e.fn for e in catalogue.ENTRIES}
    assert sorted(f.__name__ for f in public - entries) == []
    assert sorted(f.__name__ for f in entries - public) == ["fenchel_young_loss"]  # make_fenchel_young_loss's


@ENTRIES
def test_derivatives_match_autodiff_and_finite_differences(entry):
    """Reverse and forward mode against autodiff of the formula and float64 finite differences,
    for every float argument (order 2 in the full tier's :func:`test_verify_row_is_ok`)."""
    args, kwargs = _verify.sample(entry)
    result = jaxloss.check_gradients(entry.fn, *args, **kwargs)
    assert result.ok, result
    assert {r.mode for r in result.rows} == {"reverse", "forward"}
    checked = {row.argument for row in result.rows}
    floats = [n for n, a in zip(inspect.signature(entry.fn).parameters, args) if jnp.issubdtype(a.dtype, jnp.floating)]
    float_options = {k for k, v in kwargs.items() if not isinstance(v, (str, bool, int)) and
                     jnp.issubdtype(jnp.result_type(v), jnp.floating)}
    assert set(floats) | float_options <= checked


@pytest.mark.full
@ENTRIES
def test_jit_matches_eager(entry):
    args, kwargs = _verify.sample(entry)
    _close(jax.jit(lambda *a: entry.fn(*a, **kwargs))(*args), entry.fn(*args, **kwargs))


@ENTRIES
def test_losses_are_per_example(entry):
    """One loss per example; a per-batch loss (Barlow Twins, VICReg) returns a scalar."""
    args, kwargs = _verify.sample(entry)
    losses = entry.fn(*args, **kwargs)
    if entry.per_batch:
        assert losses.shape == ()
    else:
        assert losses.ndim >= 1 and losses.shape == args[0].shape[: losses.ndim]


def _two_samples(entry):
    (a1, kwargs), (a2, _) = _verify.sample(entry, 0), _verify.sample(entry, 1)
    return a1, a2, [jnp.stack([x, y]) for x, y in zip(a1, a2)], kwargs


@pytest.mark.full
@ENTRIES
def test_vmap_matches_per_sample_calls(entry):
    a1, a2, stacked, kwargs = _two_samples(entry)
    mapped = jax.vmap(lambda *a: entry.fn(*a, **kwargs))(*stacked)
    _close(mapped, jnp.stack([entry.fn(*a1, **kwargs), entry.fn(*a2, **kwargs)]))


@pytest.mark.full
@ENTRIES
def test_vmap_of_gradient_and_hvp_matches_reference(entry):
    _, _, stacked, kwargs = _two_samples(entry)
    v = jnp.ones_like(stacked[0][0])

    def grad_and_hvp(fn):
        def one(*a):
            g = jax.grad(_sum_of(fn, a, kwargs))
            return g(a[0]), jax.jvp(g, (a[0],), (v,))[1]

        return jax.jit(jax.vmap(one))(*stacked)

    for ours, ref in zip(grad_and_hvp(entry.fn), grad_and_hvp(entry.fn.reference)):
        _close(ours, ref)


@pytest.mark.full
@ENTRIES
def test_hessian_matches_reference(entry):
    args, kwargs = _verify.sample(entry)
    x = args[0]
    hessian = lambda fn: jax.jit(jax.hessian(_sum_of(fn, args, kwargs)))(x)  # noqa: E731
    _close(hessian(entry.fn), hessian(entry.fn.reference))


@pytest.mark.full
@ENTRIES
def test_grad_of_grad_matches_reference(entry):
    args, kwargs = _verify.sample(entry)

    def grad_norm(fn):
        return jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(_sum_of(fn, args, kwargs))(x) ** 2)))(args[0])

    _close(grad_norm(entry.fn), grad_norm(entry.fn.reference))


@pytest.mark.full
@pytest.mark.verify
@ENTRIES
def test_verify_row_is_ok(entry):
    """What ``python -m jaxloss verify`` checks for the loss, row by row: reverse, forward and
    forward-over-reverse (order 2) derivatives of every float argument against autodiff of the
    formula and float64 finite differences; float32 and bfloat16 inputs against float64; each
    row's float32 value and gradient error at most 2× (floor 1e-6) that of autodiff of the
    textbook formula, and no negative value where the exact ones are not (on the sample and the
    easy batches); the blockwise and sharded forms against the dense one.  Marked ``verify``:
    CI runs ``python -m jaxloss verify`` itself and leaves this test out (``-m "not verify"``)."""
    verdict = _verify.verify(entry)
    assert verdict.ok, _verify.table_row(verdict)
    assert {r.mode for r in verdict.gradients.rows} == {"reverse", "forward", "hvp"}


@pytest.mark.full
@ENTRIES
def test_float16_inputs_compute_in_float32(entry):
    """float16 inputs against float64 on the same rounded inputs (``verify`` checks float32 and
    bfloat16)."""
    loss_error, grad_error = _verify.precision_error(entry, jnp.float16)
    assert loss_error <= _verify.PRECISION_RTOL[jnp.float16]
    assert grad_error <= _verify.PRECISION_RTOL[jnp.float16]


@pytest.mark.full
@ENTRIES
def test_extreme_inputs_give_finite_values_and_derivatives_in_every_mode(entry):
    """Values, gradients w.r.t. every float array argument (array options included), the JVP
    and the forward-over-reverse HVP are finite at every extreme input."""
    for args, kwargs in entry.extremes():
        results = _verify.derivatives(entry.fn, args, kwargs, hvp=True, forward=entry.forward_mode)
        for what, result in zip(("values", "gradients", "JVP", "HVP"), results):
            for x in jax.tree_util.tree_leaves(result):
                assert np.all(np.isfinite(np.asarray(x, np.float64))), (what, args, kwargs, x)


def _check_pixel_where(entry, args, kwargs):
    """``where`` over the pixels ``args[0].shape[:-1]``: masked pixels (NaN padding here) get
    gradient exactly 0, and each loss is that of its example with the masked pixels removed."""
    x = args[0]
    where = jnp.asarray(np.random.default_rng(5).random(x.shape[:-1]) < 0.5)
    padded = jnp.where(where[..., None], x, jnp.nan)
    losses, grad = _verify.value_and_grad(entry, (padded, *args[1:]), {**kwargs, "where": where})
    assert jnp.all(grad[~where] == 0) and jnp.any(grad[where] != 0)
    for b in range(x.shape[0]):
        keep = np.asarray(where[b])
        _close(losses[b], entry.fn(*[a[b][keep][None] for a in args], **kwargs)[0])


def _check_per_batch_where(entry, args, kwargs):
    """A per-batch loss: ``where`` over the examples (the leading axis) leaves the masked ones
    (NaN padding here) out of the batch statistics: gradient exactly 0 there, and the loss is
    that of the batch without them."""
    x = args[0]
    keep = np.random.default_rng(5).random(x.shape[0]) < 0.5
    keep[:2], keep[-1] = True, False  # at least two examples (batch variances), one masked
    where = jnp.asarray(keep)
    padded = jnp.where(where.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.nan)
    loss, grad = _verify.value_and_grad(entry, (padded, *args[1:]), {**kwargs, "where": where})
    assert loss.shape == () and jnp.all(grad[~where] == 0) and jnp.any(grad[where] != 0)
    subset = lambda a: a[keep] if jnp.ndim(a) and jnp.shape(a)[0] == keep.size else a  # noqa: E731
    _close(loss, entry.fn(*map(subset, args), **kwargs))


@ENTRIES
def test_masked_entries_give_zero_loss_and_zero_gradient(entry):
    args, kwargs = _verify.sample(entry)
    if entry.pixel_where:
        return _check_pixel_where(entry, args, kwargs)
    if entry.per_batch:
        return _check_per_batch_where(entry, args, kwargs)
    where = jnp.asarray(np.random.default_rng(5).random(entry.fn(*args, **kwargs).shape) < 0.5)
    losses, grad = _verify.value_and_grad(entry, args, {**kwargs, "where": where})
    assert jnp.all(losses[~where] == 0) and jnp.all(grad[~where] == 0)
    if not entry.coupled:
        _close(losses[where], entry.fn(*args, **kwargs)[where])
    elif losses.ndim == 1:  # masked examples are left out of the batch altogether
        keep = np.asarray(where)
        subset = lambda a: a[keep] if jnp.ndim(a) and jnp.shape(a)[0] == keep.size else a  # noqa: E731
        _close(losses[where], entry.fn(*map(subset, args), **{k: subset(v) for k, v in kwargs.items()}))
    assert jnp.any(grad[where] != 0)


FORMS = pytest.mark.parametrize("entry", [e for e in catalogue.ENTRIES if e.blockwise or e.sharded],
                                ids=lambda e: e.name)


@FORMS
def test_blockwise_and_sharded_forms_equal_the_dense_one(entry):
    errors = _verify.form_errors(entry)
    assert set(errors) == {f for f in ("blockwise", "sharded") if getattr(entry, f)}
    assert all(e <= _verify.FORMS_RTOL for e in errors.values()), errors


def test_readme_catalogue_table_is_current():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert catalogue.markdown_table() in readme, "run `python -m jaxloss catalogue` and paste it into README.md"
