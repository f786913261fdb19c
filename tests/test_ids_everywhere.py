"""Class ids in the angular, contrastive, sequence and segmentation losses follow the one rule of
jaxloss: ids are compared in int32; an id equal to ``ignore_index`` counts as nothing (loss 0 and
derivative exactly 0; for segmentation, the pixel is left out as if masked); any other id outside
``[0, C)`` gives a NaN loss with derivative 0 (never a silent finite loss), and
``jaxloss.checks.checked`` names it.  Each case runs eagerly and under ``jit``, against
``.reference`` (autodiff of the formula), and in every form (dense, blockwise, sharded)."""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxloss
from jaxloss import checks

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue

N, C, D = 4, 6, 3
ROW = 1  # the example whose id is changed


class Case(NamedTuple):
    """A loss ``fn`` of float inputs ``floats`` (a dict) and ids: ``call(fn, floats, ids, **options)``
    gives the per-example losses (``fn`` or its ``.reference``).  ``at`` is the index of the
    changed id in ``ids``; its example is ROW."""

    fn: object
    call: object
    floats: dict
    ids: jax.Array
    at: tuple
    ignores: bool = True

    def loss(self, floats, ids, **options):
        return self.call(self.fn, floats, ids, **options)

    def reference(self, floats, ids, **options):
        return self.call(self.fn.reference, floats, ids, **options)


def _angular(fn, **options):
    rng = np.random.default_rng(0)
    floats = {"embeddings": jnp.float32(rng.normal(size=(N, D))), "class_centers": jnp.float32(rng.normal(size=(C, D))),
              "scale": jnp.float32(4.0)}

    def call(fn, f, ids, **kw):
        return fn(f["embeddings"], f["class_centers"], ids, scale=f["scale"], **options, **kw)

    return Case(fn, call, floats, jnp.int32([0, 3, 5, 2]), (ROW,))


def _info_nce(form):
    rng = np.random.default_rng(1)
    floats = {"queries": jnp.float32(rng.normal(size=(N, D))), "keys": jnp.float32(rng.normal(size=(C, D))),
              "temperature": jnp.float32(0.5)}

    def call(fn, f, ids, **kw):
        if form != "sharded":
            blocks = {"block_size": 4} if form == "blockwise" else {}
            return fn(f["queries"], f["keys"], temperature=f["temperature"], labels=ids, **blocks, **kw)
        where = kw.pop("where", None)
        local = functools.partial(fn, temperature=f["temperature"], axis_name="shards", **kw)
        split = lambda x: None if x is None else x.reshape((2, -1) + x.shape[1:])  # noqa: E731
        return jax.vmap(lambda q, k, y, m: local(q, k, labels=y, where=m), axis_name="shards")(
            split(f["queries"]), split(f["keys"]), split(ids), split(where)).reshape(-1)

    return Case(jaxloss.info_nce_loss, call, floats, jnp.int32([0, 3, 5, 2]), (ROW,))


def _ctc():
    rng = np.random.default_rng(2)
    floats = {"logits": jnp.float32(rng.normal(size=(N, 5, C)))}
    label_paddings = jnp.float32([[0, 0], [0, 0], [0, 1], [0, 0]])

    def call(fn, f, ids, **kw):
        return fn(f["logits"], jnp.zeros((N, 5)), ids, label_paddings, **kw)

    return Case(jaxloss.ctc_loss, call, floats, jnp.int32([[1, 2], [3, 3], [5, 9], [4, 1]]), (ROW, 0), ignores=False)


def _segmentation(fn):
    rng = np.random.default_rng(3)
    floats = {"predictions": jnp.float32(rng.normal(size=(N, 2, 3, C)))}

    def call(fn, f, ids, **kw):
        return fn(f["predictions"], ids, from_logits="softmax", **kw)

    return Case(fn, call, floats, jnp.int32(rng.integers(0, C, size=(N, 2, 3))), (ROW, 1, 2))


CASES = {
    "angular_margin_loss": _angular(jaxloss.angular_margin_loss, m1=2, m2=0.2, m3=0.1),
    "arcface_loss": _angular(jaxloss.arcface_loss),
    "arcface_loss[straight_through]": _angular(jaxloss.arcface_loss, straight_through=True),
    "cosface_loss": _angular(jaxloss.cosface_loss),
    "sphereface_loss": _angular(jaxloss.sphereface_loss),
    "info_nce_loss": _info_nce("dense"),
    "info_nce_loss[blockwise]": _info_nce("blockwise"),
    "info_nce_loss[sharded]": _info_nce("sharded"),
    "ctc_loss": _ctc(),
    **{fn.__name__: _segmentation(fn) for fn in (jaxloss.soft_dice_loss, jaxloss.jaccard_loss, jaxloss.tversky_loss,
                                                 jaxloss.generalized_dice_loss)},
}
ALL = pytest.mark.parametrize("name", list(CASES))
IGNORING = pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.ignores])
SEGMENTATION = [n for n in CASES if n.endswith("dice_loss") or n in ("jaccard_loss", "tversky_loss")]
JIT = pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])


def _with(case, value):
    return case.ids.at[case.at].set(value)


def _losses(case, ids, jit, **options):
    fn = functools.partial(case.loss, **options)
    return (jax.jit(fn) if jit else fn)(case.floats, ids)


def _grad(case, ids, jit, pick, **options):
    """The gradient, per float input, of ``pick(losses)``."""
    def total(floats):
        return pick(case.loss(floats, ids, **options))

    return (jax.jit(jax.grad(total)) if jit else jax.grad(total))(case.floats)


def _jvp(case, ids, **options):
    tangents = jax.tree.map(lambda x: jnp.ones_like(x), case.floats)
    return jax.jvp(lambda floats: case.loss(floats, ids, **options), (case.floats,), (tangents,))[1]


def _hvp(case, ids, pick, **options):
    tangents = jax.tree.map(lambda x: jnp.full_like(x, 0.3), case.floats)
    return jax.jvp(jax.grad(lambda floats: pick(case.loss(floats, ids, **options))), (case.floats,), (tangents,))[1]


def _assert_zero(tree):
    for leaf in jax.tree.leaves(tree):
        assert np.all(np.asarray(leaf) == 0), leaf


def _assert_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-6, atol=1e-7, equal_nan=False)


def _others(losses):
    return jnp.sum(jnp.delete(losses, ROW))


BAD = {"too_large": C, "negative": -1, "blank": 0}


@ALL
@pytest.mark.parametrize("bad, jit", [("too_large", False), ("too_large", True), ("negative", True), ("blank", True)],
                         ids=["too_large-eager", "too_large-jit", "negative-jit", "blank-jit"])  # eager once: slow
def test_an_invalid_id_gives_a_nan_loss_with_derivative_zero(name, bad, jit):
    # Before: the angular losses selected no class (loss lse), info_nce_loss gave the
    # log-sum-exp alone, ctc_loss clipped the id into range, the segmentation losses counted
    # the pixel in no class: a finite loss, silently.
    case = CASES[name]
    if bad == "blank" and name != "ctc_loss":
        pytest.skip("the blank is a class id only for ctc_loss")
    options = {}
    ids = _with(case, BAD[bad])
    losses, good = _losses(case, ids, jit, **options), _losses(case, case.ids, jit, **options)
    assert np.isnan(losses[ROW])
    np.testing.assert_array_equal(np.delete(losses, ROW), np.delete(good, ROW))
    _assert_zero(_grad(case, ids, jit, lambda losses: losses[ROW], **options))
    _assert_equal(_grad(case, ids, jit, _others, **options), _grad(case, case.ids, jit, _others, **options))
    assert _jvp(case, ids, **options)[ROW] == 0
    _assert_zero(_hvp(case, ids, lambda losses: losses[ROW], **options))


@ALL
def test_an_invalid_id_of_a_masked_example_gives_zero(name):
    case = CASES[name]
    where = jnp.arange(N) != ROW
    if name in SEGMENTATION:  # a pixel mask
        where = jnp.ones(case.ids.shape, bool).at[case.at].set(False)
    ids = _with(case, C + 3)
    losses = case.loss(case.floats, ids, where=where)
    assert np.all(np.isfinite(losses))
    grads = jax.grad(lambda f: jnp.sum(case.loss(f, ids, where=where)))(case.floats)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


@IGNORING
@pytest.mark.parametrize("ignore_index, jit", [(-100, False), (-100, True), (2, True)],
                         ids=["default-eager", "default-jit", "inside_the_classes-jit"])
def test_an_ignored_id_counts_as_nothing_with_derivatives_exactly_zero(name, ignore_index, jit):
    case = CASES[name]
    ids = _with(case, ignore_index)
    if ignore_index == 2:
        ids = jnp.where((ids == 2) & (jnp.arange(ids.size).reshape(ids.shape) != np.ravel_multi_index(
            case.at, ids.shape)), 1, ids)  # 2 only at the changed position
    losses = _losses(case, ids, jit, ignore_index=ignore_index)
    if name in SEGMENTATION:  # the pixel is left out: as if masked by where
        where = jnp.ones(ids.shape, bool).at[case.at].set(False)
        _assert_equal(losses, _losses(case, ids, jit, ignore_index=ignore_index, where=where))
        grads = _grad(case, ids, jit, jnp.sum, ignore_index=ignore_index)
        assert np.all(np.asarray(grads["predictions"][case.at]) == 0)
        return
    assert losses[ROW] == 0
    base = ids.at[case.at].set(case.ids[case.at])  # the same ids, none ignored
    np.testing.assert_array_equal(np.delete(losses, ROW), np.delete(_losses(case, base, jit), ROW))
    _assert_zero(_grad(case, ids, jit, lambda losses: losses[ROW], ignore_index=ignore_index))
    _assert_equal(_grad(case, ids, jit, _others, ignore_index=ignore_index), _grad(case, base, jit, _others))
    assert _jvp(case, ids, ignore_index=ignore_index)[ROW] == 0
    _assert_zero(_hvp(case, ids, lambda losses: losses[ROW], ignore_index=ignore_index))


@IGNORING
def test_ignore_index_is_minus_100_by_default_and_none_makes_it_invalid(name):
    case = CASES[name]
    ids = _with(case, -100)
    assert np.isfinite(case.loss(case.floats, ids)[ROW])
    assert np.isnan(case.loss(case.floats, ids, ignore_index=None)[ROW])


@IGNORING
@pytest.mark.parametrize("dtype", [jnp.int8, jnp.uint8])  # signed (as int16) and unsigned
def test_ids_of_narrow_dtypes_mean_what_they_mean_in_int32(name, dtype):
    case = CASES[name]
    value = 200 if dtype == jnp.uint8 else -100  # uint8: out of range, not wrapped
    ids = _with(case, value).astype(dtype)
    wide = _with(case, value)
    np.testing.assert_array_equal(case.loss(case.floats, ids), case.loss(case.floats, wide))
    assert np.isnan(case.loss(case.floats, ids)[ROW]) == (dtype == jnp.uint8)


@ALL
def test_the_reference_agrees_at_ignored_and_invalid_ids(name):
    case = CASES[name]
    ids = _with(case, C + 1)
    if case.ignores:
        ids = ids.at[(ROW - 1,) + case.at[1:]].set(-100)
    ours, theirs = case.loss(case.floats, ids), case.reference(case.floats, ids)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    _assert_equal(jnp.nan_to_num(ours), jnp.nan_to_num(theirs))
    grads = [jax.grad(lambda f: jnp.nansum(loss(f, ids)))(case.floats) for loss in (case.loss, case.reference)]
    for g, r in zip(*map(jax.tree.leaves, grads)):
        np.testing.assert_allclose(g, r, rtol=2e-4, atol=2e-6, equal_nan=False)


@pytest.mark.parametrize("form", ["info_nce_loss", "info_nce_loss[blockwise]"])
def test_info_nce_labels_match_torch_cross_entropy_with_ignore_index(form):
    case = CASES[form]
    ids = _with(case, -100)
    f = case.floats
    q, k = (torch.tensor(np.asarray(f[n], np.float64), requires_grad=True) for n in ("queries", "keys"))
    theirs = torch.nn.functional.cross_entropy(q @ k.T / 0.5, torch.tensor(np.asarray(ids)).long(), reduction="none")
    theirs.sum().backward()
    np.testing.assert_allclose(case.loss(f, ids), theirs.detach().numpy(), rtol=1e-5, atol=1e-6)
    grads = _grad(case, ids, False, jnp.sum)
    np.testing.assert_allclose(grads["queries"], q.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["keys"], k.grad.numpy(), rtol=1e-4, atol=1e-6)


@JIT
def test_checked_names_an_invalid_info_nce_label_and_passes_the_ignored_one(jit):
    case = CASES["info_nce_loss"]
    f = case.floats
    loss = checks.checked(jaxloss.info_nce_loss)

    def call(ids, **kw):
        fn = functools.partial(loss, temperature=f["temperature"], **kw)
        return jax.block_until_ready((jax.jit(fn) if jit else fn)(f["queries"], f["keys"], labels=ids))

    np.testing.assert_array_equal(call(_with(case, -100)), case.loss(f, _with(case, -100)))
    with pytest.raises(Exception, match=r"info_nce_loss: labels\[1\] = 6 is outside \[0, 6\) "
                                        r"and is not the ignore_index \(-100\)"):
        call(_with(case, C))
    with pytest.raises(Exception, match=r"labels\[1\] = -100 is outside \[0, 6\)"):
        call(_with(case, -100), ignore_index=None)
    call(_with(case, C), where=jnp.arange(N) != ROW)  # a masked query is not checked
