"""jaxloss.testing: assert_gradients, and the Hypothesis strategies for users' own losses.

The strategies' invariants run under the project's profile (tests/conftest.py); the tests
that the edges occur search a few hundred examples with ``hypothesis.find``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings
from hypothesis import strategies as st

import jaxloss
import jaxloss.testing as jt

# A search for an example, without shrinking it.
SEARCH = settings(max_examples=300, database=None, derandomize=True, deadline=None, phases=(Phase.generate,))


# ---------------------------------------------------------------- a user's own loss


def cross_entropy_formula(logits, labels):
    """``logsumexp(x) − x_y`` with the max shift, computed in at least float32."""
    x = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    top = jnp.max(x, axis=-1)
    lse = top + jnp.log(jnp.sum(jnp.exp(x - top[:, None]), axis=-1))
    return lse - jnp.take_along_axis(x, labels[:, None], axis=-1)[:, 0]


def user_cross_entropy(sign=1.0, frozen_softmax=False):
    """``cross_entropy_formula`` as a custom_jvp with the tangent ``⟨softmax(x) − e_y, dx⟩``;
    ``sign=-1`` plants a wrong sign, ``frozen_softmax`` a stop_gradient that only second
    derivatives see."""

    @jax.custom_jvp
    def loss(logits, labels):
        return cross_entropy_formula(logits, labels)

    @loss.defjvp
    def rule(primals, tangents):
        logits, labels = primals
        x = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
        p = jax.nn.softmax(x, axis=-1)
        p = jax.lax.stop_gradient(p) if frozen_softmax else p
        slope = p - jax.nn.one_hot(labels, x.shape[-1], dtype=x.dtype)
        return loss(logits, labels), sign * jnp.sum(slope * tangents[0].astype(x.dtype), axis=-1)

    return loss


def naive_cross_entropy(logits, labels):
    """The planted bug: ``log(sum(exp(x)))`` without the max shift overflows at |x| ≈ 89."""
    x = logits.astype(jnp.float32)
    return jnp.log(jnp.sum(jnp.exp(x), axis=-1)) - jnp.take_along_axis(x, labels[:, None], axis=-1)[:, 0]


LOGITS = jnp.array([[0.3, -1.2, 2.0, 0.0], [1.5, 0.7, -0.4, 0.9], [-2.0, 0.1, 0.4, 1.1]])
LABELS = jnp.array([2, 0, 3])


# ---------------------------------------------------------------- assert_gradients


def test_assert_gradients_returns_the_report_of_a_correct_rule():
    report = jt.assert_gradients(user_cross_entropy(), LOGITS, LABELS, reference=cross_entropy_formula)
    assert report.ok
    assert {r.mode for r in report.rows} == {"reverse", "forward", "hvp"}


def test_assert_gradients_raises_with_the_table_on_a_wrong_sign():
    with pytest.raises(AssertionError, match=r"GradientCheck\(ok=False(.|\n)*rel vs autodiff(.|\n)*reverse .* NO"):
        jt.assert_gradients(user_cross_entropy(sign=-1.0), LOGITS, LABELS, reference=cross_entropy_formula)


def test_assert_gradients_checks_second_order_by_default():
    frozen = user_cross_entropy(frozen_softmax=True)
    assert jt.assert_gradients(frozen, LOGITS, LABELS, reference=cross_entropy_formula, order=1).ok
    with pytest.raises(AssertionError, match=r"hvp .* NO"):
        jt.assert_gradients(frozen, LOGITS, LABELS, reference=cross_entropy_formula)


def test_assert_gradients_passes_the_checker_and_the_loss_their_keywords():
    report = jt.assert_gradients(jaxloss.softmax_cross_entropy, LOGITS, LABELS, wrt=["logits"], label_smoothing=0.1)
    assert {r.argument for r in report.rows} == {"logits"}


# ---------------------------------------------------------------- the strategies' invariants


def assert_bounded(x, dtype):
    """Finite entries of ``x`` at most ``safe_max(dtype)`` (after rounding to ``dtype``)."""
    values = np.asarray(x, np.float64)
    bound = jt.safe_max(dtype) * (1 + float(jnp.finfo(dtype).eps))
    assert np.all(np.abs(values[np.isfinite(values)]) <= bound), values


@given(jt.logits_and_labels())
def test_logits_and_labels_are_valid(inputs):
    logits, labels = inputs
    n, c = logits.shape
    assert 1 <= n <= 8 and 2 <= c <= 10
    assert logits.dtype in (jnp.float32, jnp.bfloat16, jnp.float16)
    assert labels.shape == (n,) and labels.dtype == jnp.int32
    assert np.all((labels >= 0) & (labels < c))
    x = np.asarray(logits, np.float64)
    assert not np.any(np.isnan(x)) and not np.any(x == np.inf)
    assert np.all(np.isfinite(x[np.arange(n), labels])), (x, labels)
    assert_bounded(logits, logits.dtype)


@given(jt.logits_and_labels(batch=3, classes=st.just(5), dtypes=(jnp.float16,), max_magnitude=100.0,
                            masked_classes=False))
def test_logits_and_labels_follow_their_arguments(inputs):
    logits, _ = inputs
    assert logits.shape == (3, 5) and logits.dtype == jnp.float16
    x = np.asarray(logits, np.float64)
    assert np.all(np.isfinite(x)) and np.all(np.abs(x) <= 100.0)


@given(jt.logits_and_targets(masked_classes=False))
def test_logits_without_masked_classes_are_finite(inputs):
    assert np.all(np.isfinite(np.asarray(inputs[0], np.float64)))


@given(jt.logits_and_targets())
def test_logits_and_targets_are_distributions(inputs):
    logits, targets = inputs
    assert targets.shape == logits.shape and targets.dtype == logits.dtype
    t = np.asarray(targets, np.float64)
    assert np.all(t >= 0)
    np.testing.assert_allclose(t.sum(-1), 1.0, rtol=0, atol=logits.shape[-1] * float(jnp.finfo(targets.dtype).eps))
    assert np.all(t[~np.isfinite(np.asarray(logits, np.float64))] == 0)
    assert_bounded(logits, logits.dtype)


@given(jt.predictions_and_targets())
def test_predictions_and_targets_are_finite_and_alike(inputs):
    predictions, targets = inputs
    assert predictions.shape == targets.shape and 1 <= predictions.ndim <= 3
    assert predictions.dtype == targets.dtype
    for x in inputs:
        assert np.all(np.isfinite(np.asarray(x, np.float64)))
        assert_bounded(x, x.dtype)


@given(jt.predictions_and_targets(shape=(2, 3), dtypes=(jnp.bfloat16,)))
def test_predictions_and_targets_take_a_fixed_shape(inputs):
    assert all(x.shape == (2, 3) and x.dtype == jnp.bfloat16 for x in inputs)


@given(jt.embedding_pairs(dim=4))
def test_embedding_pairs_are_finite(pair):
    anchors, positives = pair
    assert anchors.shape == positives.shape and anchors.shape[1] == 4
    assert anchors.dtype == positives.dtype
    for x in pair:
        assert np.all(np.isfinite(np.asarray(x, np.float64)))
        assert_bounded(x, x.dtype)


@given(jt.masks(st.sampled_from([(3,), (2, 4)])))
def test_masks_are_boolean_of_the_shape(where):
    assert where.dtype == jnp.bool_ and where.shape in ((3,), (2, 4))


def test_safe_max_keeps_sums_and_squares_finite():
    for dtype in jt.DTYPES:
        bound = jt.safe_max(dtype)
        assert np.isfinite(np.asarray(jnp.asarray(4 * bound, dtype), np.float64))
        assert np.isfinite(np.float32(bound) ** 2 * np.float32(jt.ROW))
    assert jt.safe_max(jnp.float16) == 16376.0


# ---------------------------------------------------------------- the edges occur


def f64(x):
    return np.asarray(x, np.float64)


def has_duplicate_rows(x):
    x = f64(x).reshape(x.shape[0], -1)
    return any(np.array_equal(x[i], x[j]) for i in range(len(x)) for j in range(i))


def has_tie_at_the_max(x):
    x = f64(x)
    return bool(np.any(np.sum(x == x.max(-1, keepdims=True), axis=-1) >= 2))


def peak(x):
    x = f64(x)
    return float(np.max(np.abs(x[np.isfinite(x)]), initial=0.0))


EDGES = {
    "logits: -inf": (jt.logits_and_labels(), lambda i: np.any(f64(i[0]) == -np.inf)),
    "logits: exact zero": (jt.logits_and_labels(), lambda i: np.any(f64(i[0]) == 0)),
    "logits: duplicate rows": (jt.logits_and_labels(), lambda i: has_duplicate_rows(i[0])),
    "logits: a tie at the max": (jt.logits_and_labels(), lambda i: has_tie_at_the_max(i[0])),
    "logits: 1e4": (jt.logits_and_labels(dtypes=(jnp.float32,)), lambda i: peak(i[0]) == 1e4),
    "logits: safe_max": (jt.logits_and_labels(dtypes=(jnp.float32,)),
                         lambda i: peak(i[0]) == np.float32(jt.safe_max(jnp.float32))),
    "targets: one-hot row": (jt.logits_and_targets(), lambda i: np.any(np.max(f64(i[1]), -1) == 1)),
    "targets: soft row with a zero": (jt.logits_and_targets(), lambda i: np.any(
        (np.max(f64(i[1]), -1) < 1) & np.any(f64(i[1]) == 0, -1))),
    "predictions: all equal to targets": (jt.predictions_and_targets(), lambda i: np.array_equal(*map(f64, i))),
    "predictions: some equal to targets": (jt.predictions_and_targets(), lambda i: np.any(f64(i[0]) == f64(i[1]))
                                           and not np.array_equal(*map(f64, i))),
    "predictions: exact zero": (jt.predictions_and_targets(), lambda i: np.any(f64(i[0]) == 0)),
    "predictions: huge": (jt.predictions_and_targets(), lambda i: peak(i[0]) >= 1e4),
    "embeddings: zero vector": (jt.embedding_pairs(), lambda p: np.any(np.all(f64(p[0]) == 0, -1))),
    "embeddings: identical pair": (jt.embedding_pairs(), lambda p: np.any(np.all(f64(p[0]) == f64(p[1]), -1)
                                                                          & np.any(f64(p[0]) != 0, -1))),
    "embeddings: near-duplicate pair": (jt.embedding_pairs(dtypes=(jnp.float32,)), lambda p: np.any(
        np.any(f64(p[0]) != f64(p[1]), -1)
        & (np.max(np.abs(f64(p[0]) - f64(p[1])), -1) <= 1e-5 * np.max(np.abs(f64(p[0])), -1)))),
    "embeddings: duplicate anchors": (jt.embedding_pairs(), lambda p: has_duplicate_rows(p[0])),
    "embeddings: huge norm": (jt.embedding_pairs(), lambda p: peak(p[0]) >= 1e4),
    "masks: all False": (jt.masks((2, 3)), lambda m: not np.any(m)),
    "masks: all True": (jt.masks((2, 3)), lambda m: np.all(m)),
    "masks: mixed": (jt.masks((2, 3)), lambda m: np.any(m) and not np.all(m)),
}


@pytest.mark.parametrize("edge", EDGES)
def test_the_edge_occurs(edge):
    strategy, holds = EDGES[edge]
    find(strategy, lambda x: bool(holds(x)), settings=SEARCH)  # raises NoSuchExample if it never does


# ---------------------------------------------------------------- finding bugs in a user's loss


def finite_loss_and_gradient(loss):
    """The property a user would write: the loss and its gradient are finite on every draw."""

    @jax.jit
    def losses_and_gradient(logits, labels):
        return loss(logits, labels), jax.grad(lambda x: jnp.sum(loss(x, labels)))(logits)

    @given(jt.logits_and_labels(batch=4, classes=6))  # one shape: one compilation per dtype
    def check(inputs):
        losses, grad = losses_and_gradient(*inputs)
        assert np.all(np.isfinite(np.asarray(losses, np.float64))), inputs
        assert np.all(np.isfinite(np.asarray(grad, np.float64))), inputs

    return check


def test_a_correct_custom_rule_passes_the_property():
    finite_loss_and_gradient(user_cross_entropy())()


def test_the_property_finds_the_overflow_without_the_max_shift():
    with pytest.raises(AssertionError):
        settings(max_examples=300)(finite_loss_and_gradient(naive_cross_entropy))()
    logits, labels = find(jt.logits_and_labels(batch=4, classes=6),
                          lambda i: not np.all(np.isfinite(naive_cross_entropy(*i))),
                          settings=settings(SEARCH, phases=tuple(Phase)))  # the shrunk example
    assert peak(logits) >= 1e4  # a magnitude the max shift handles
    assert np.all(np.isfinite(np.asarray(user_cross_entropy()(logits, labels))))
