"""ctc_loss and ctc_loss_with_forward_probs: parity with optax and PyTorch, the hand rule against autodiff,
impossible alignments, the forward tables against a float64 NumPy recursion."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxloss
from jaxloss import ctc_loss, ctc_loss_with_forward_probs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.full  # the full tier (pytest --full): the fast tier checks every loss through the catalogue


def _close(a, b, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol,
                               equal_nan=False)


def _batch(seed, batch=5, frames=16, classes=6, n=5, blank_id=0, repeats=True):
    """Random logits and labels with padded frames and labels, some labels repeated."""
    rng = np.random.default_rng(seed)
    logits = 2 * rng.standard_normal((batch, frames, classes))
    label_lengths = rng.integers(1, n + 1, batch)
    label_lengths[0] = n
    labels = rng.integers(0, classes - 1, (batch, n))
    labels = np.where(labels >= blank_id, labels + 1, labels)  # never the blank
    if repeats:
        labels[0, 1] = labels[0, 0]
        labels[1, -1] = labels[1, -2]
    # Enough frames for the labels and the blanks between repeats.
    need = label_lengths + np.array([np.sum(row[1:k] == row[:k - 1]) for row, k in zip(labels, label_lengths)])
    frame_lengths = np.array([rng.integers(k, frames + 1) for k in need])
    frame_lengths[0] = frames
    logit_paddings = (np.arange(frames)[None] >= frame_lengths[:, None]).astype(np.float32)
    label_paddings = (np.arange(n)[None] >= label_lengths[:, None]).astype(np.float32)
    return (jnp.float32(logits), jnp.float32(logit_paddings), jnp.int32(labels), jnp.float32(label_paddings),
            frame_lengths, label_lengths)


def _torch_ctc(logits, labels, frame_lengths, label_lengths, blank_id=0, zero_infinity=False):
    log_probs = torch.log_softmax(torch.tensor(np.asarray(logits, np.float64)), -1).transpose(0, 1)
    return torch.nn.functional.ctc_loss(
        log_probs, torch.tensor(np.asarray(labels)).long(), torch.tensor(frame_lengths), torch.tensor(label_lengths),
        blank=blank_id, reduction="none", zero_infinity=zero_infinity).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_match_optax_and_torch(seed):
    x, lp, y, yp, frame_lengths, label_lengths = _batch(seed)
    ours = ctc_loss(x, lp, y, yp)
    _close(ours, optax.ctc_loss(x, lp, y, yp))
    _close(ours, _torch_ctc(x, y, frame_lengths, label_lengths))


def test_blank_id_other_than_zero_matches_optax_and_torch():
    x, lp, y, yp, frame_lengths, label_lengths = _batch(3, blank_id=2)
    ours = ctc_loss(x, lp, y, yp, blank_id=2)
    _close(ours, optax.ctc_loss(x, lp, y, yp, blank_id=2))
    _close(ours, _torch_ctc(x, y, frame_lengths, label_lengths, blank_id=2))


def test_uniform_logits_count_the_alignments():
    # Labels (1, 2) in 3 frames: 5 of the 3³ equally likely paths collapse to them.
    loss = ctc_loss(jnp.zeros((1, 3, 3)), jnp.zeros((1, 3)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
    _close(loss, [np.log(27 / 5)])


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_matches_autodiff_of_reference_and_optax(seed):
    x, lp, y, yp, *_ = _batch(seed)
    w = jnp.asarray(np.random.default_rng(7).standard_normal(x.shape[0]), jnp.float32)
    grad = lambda fn: jax.jit(jax.grad(lambda x: jnp.sum(w * fn(x, lp, y, yp))))(x)  # noqa: E731
    ours = grad(ctc_loss)
    _close(ours, grad(ctc_loss.reference), atol=1e-5)
    _close(ours, grad(optax.ctc_loss), atol=1e-5)
    # Padded frames get no gradient.
    assert jnp.all(ours[lp > 0.5] == 0)


def test_gradient_is_softmax_minus_occupancy_summing_to_zero_per_frame():
    x, lp, y, yp, *_ = _batch(4)
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp)))(x)
    _close(jnp.sum(grad, axis=-1), jnp.zeros(lp.shape), atol=1e-5)


@pytest.mark.parametrize("seed", [0, 5])
def test_check_gradients_passes(seed):
    x, lp, y, yp, *_ = _batch(seed, batch=3, frames=8, classes=4, n=3)
    result = jaxloss.check_gradients(ctc_loss, x, lp, y, yp)
    assert result.ok, result
    assert {r.argument for r in result.rows} == {"logits", "logit_paddings", "label_paddings"}


def test_paddings_get_zero_derivative():
    x, lp, y, yp, *_ = _batch(6)
    for fn in (ctc_loss, ctc_loss.reference):
        g_lp, g_yp = jax.grad(lambda a, b, fn=fn: jnp.sum(fn(x, a, y, b)), argnums=(0, 1))(lp, yp)
        assert jnp.all(g_lp == 0) and jnp.all(g_yp == 0)


def _impossible():
    # Sequence 0: labels (1, 1) need 3 frames (a blank between the repeats), it has 2.
    # Sequence 1: labels (1, 2, 3) in 2 frames.  Sequence 2 is possible.
    logits = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 5)), jnp.float32)
    logit_paddings = jnp.float32([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0]])
    labels = jnp.int32([[1, 1, 0], [1, 2, 3], [2, 2, 4]])
    label_paddings = jnp.float32([[0, 0, 1], [0, 0, 0], [0, 0, 1]])
    return logits, logit_paddings, labels, label_paddings


def test_impossible_alignment_gives_inf_and_zero_gradient():
    x, lp, y, yp = _impossible()
    losses = ctc_loss(x, lp, y, yp)
    assert jnp.all(jnp.isinf(losses[:2])) and jnp.isfinite(losses[2])
    _close(losses, _torch_ctc(x, y, [2, 2, 4], [2, 3, 2]))
    for fn in (ctc_loss, ctc_loss.reference):
        grad = jax.grad(lambda x, fn=fn: jnp.sum(jnp.where(jnp.isfinite(losses), fn(x, lp, y, yp), 0.0)))(x)
        assert jnp.all(jnp.isfinite(grad))
        full = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, lp, y, yp)))(x)
        assert jnp.all(jnp.isfinite(full)) and jnp.all(full[:2] == 0)
    # optax gives a large finite stand-in (log 0 ≈ -1e5) there instead.
    theirs = optax.ctc_loss(x, lp, y, yp)
    assert jnp.all(jnp.isfinite(theirs)) and jnp.all(theirs[:2] > 1e4)
    _close(losses[2], theirs[2])


def test_zero_infinity_gives_zero_loss_and_gradient_like_torch():
    x, lp, y, yp = _impossible()
    losses = ctc_loss(x, lp, y, yp, zero_infinity=True)
    _close(losses, _torch_ctc(x, y, [2, 2, 4], [2, 3, 2], zero_infinity=True))
    assert jnp.all(losses[:2] == 0)
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, zero_infinity=True)))(x)
    assert jnp.all(grad[:2] == 0) and jnp.any(grad[2] != 0)
    _close(grad, jax.grad(lambda x: jnp.sum(ctc_loss.reference(x, lp, y, yp, zero_infinity=True)))(x))


@pytest.mark.parametrize("seed", [4, 5])
def test_normalize_by_length_mean_is_torch_default_mean_reduction(seed):
    x, lp, y, yp, frame_lengths, label_lengths = _batch(seed)
    yp = yp.at[3].set(1.0)  # a sequence without labels: torch clamps its length to 1, as here
    label_lengths = label_lengths.copy()
    label_lengths[3] = 0

    def ours(x):
        return jaxloss.reduce.mean(ctc_loss(x, lp, y, yp, normalize_by_length=True))

    log_probs = torch.log_softmax(torch.tensor(np.asarray(x, np.float64), requires_grad=True), -1)
    theirs = torch.nn.functional.ctc_loss(log_probs.transpose(0, 1), torch.tensor(np.asarray(y)).long(),
                                          torch.tensor(frame_lengths), torch.tensor(label_lengths))  # "mean"
    logits = log_probs.detach().requires_grad_(True)  # differentiate through the log-softmax in torch too
    value = torch.nn.functional.ctc_loss(torch.log_softmax(logits, -1).transpose(0, 1),
                                         torch.tensor(np.asarray(y)).long(), torch.tensor(frame_lengths),
                                         torch.tensor(label_lengths))
    value.backward()
    _close(ours(x), theirs.item(), rtol=1e-6, atol=0)
    _close(jax.grad(ours)(x), logits.grad.numpy(), rtol=1e-5, atol=1e-6)  # float32 against float64
    _close(jax.grad(ours)(x), jax.grad(lambda x: jaxloss.reduce.mean(
        ctc_loss.reference(x, lp, y, yp, normalize_by_length=True)))(x), rtol=1e-5, atol=1e-6)
    check = jaxloss.check_gradients(ctc_loss, x, lp, y, yp, normalize_by_length=True, wrt=[0])
    assert check.ok, check


def _optax_one_to_one_case():
    """optax's ``test_with_one_to_one_alignment_and_paddings`` inputs (its seed, its draws), the
    float64 gradient of the mean loss (softmax − one-hot over the unpadded frames, / batch) and
    the float32 one optax's test compares with."""
    state = np.random.get_state()
    np.random.seed(1234)
    try:
        batch, classes, steps = 5, 13, 7
        logits = np.random.normal(size=[batch, steps, classes])
        labels = []
        for _ in range(batch):
            row = list(range(1, classes))
            np.random.shuffle(row)
            labels.append(row[:steps])
        labels = np.array(labels)
        lengths = np.random.randint(3, 6, size=(batch,))
    finally:
        np.random.set_state(state)
    paddings = (np.arange(steps)[None] >= lengths[:, None]).astype(np.float32)
    shifted = logits - logits.max(-1, keepdims=True)
    exact = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    single = np.array(jax.nn.softmax(jnp.float32(logits)), np.float64)
    for grad in (exact, single):
        for n in range(batch):
            grad[n, lengths[n]:] = 0
            grad[n, np.arange(lengths[n]), labels[n, :lengths[n]]] -= 1
        grad /= batch
    return logits, paddings, labels, exact, single


def test_float32_gradient_precision_at_least_optax_on_its_one_to_one_alignment_case():
    logits, paddings, labels, exact, single = _optax_one_to_one_case()
    errors = {}
    for name, f in (("jaxloss", ctc_loss), ("optax", optax.ctc_loss)):
        g = np.asarray(jax.jit(jax.grad(lambda x: jnp.mean(f(x, paddings, labels, paddings))))(jnp.float32(logits)),
                       np.float64)
        counted = exact != 0
        errors[name] = (np.max(np.abs(g - exact)[counted] / np.abs(exact)[counted]),
                        np.max(np.abs(g - single)[counted] / np.abs(single)[counted]))
    # Against float64 the two are within float32 rounding (3.4e-7 and 3.2e-7 measured); against
    # optax's own float32 expectation (its test's measure) ours is closer (7.1e-8 and 1.7e-7).
    assert errors["jaxloss"][0] <= 1.25 * errors["optax"][0], errors
    assert errors["jaxloss"][1] <= errors["optax"][1], errors


def test_all_frames_padded_with_no_labels_gives_zero():
    loss = ctc_loss(jnp.ones((1, 3, 4)), jnp.ones((1, 3)), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2)))
    _close(loss, [0.0])


def test_huge_logits_are_finite():
    x, lp, y, yp, *_ = _batch(8)
    x = 1e4 * jnp.sign(x)
    losses, grad = jax.value_and_grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, zero_infinity=True)))(x)
    assert jnp.isfinite(losses) and jnp.all(jnp.isfinite(grad))


def test_leading_batch_shapes_and_vmap():
    x, lp, y, yp, *_ = _batch(9, batch=4)
    flat = ctc_loss(x, lp, y, yp)
    shaped = lambda a: a.reshape((2, 2) + a.shape[1:])  # noqa: E731
    _close(ctc_loss(*map(shaped, (x, lp, y, yp))), flat.reshape(2, 2))
    _close(jax.vmap(ctc_loss)(*map(shaped, (x, lp, y, yp))), flat.reshape(2, 2))
    _close(ctc_loss(x[0], lp[0], y[0], yp[0]), flat[0])


def test_where_masks_loss_and_gradient():
    x, lp, y, yp = _impossible()
    where = jnp.array([False, False, True])
    losses, grad = jax.value_and_grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp, where=where)))(x)
    _close(losses, ctc_loss(x, lp, y, yp)[2])
    assert jnp.all(grad[:2] == 0) and jnp.any(grad[2] != 0)


def test_low_precision_logits_compute_in_float32():
    x, lp, y, yp, *_ = _batch(10)
    losses = ctc_loss(x.astype(jnp.bfloat16), lp, y, yp)
    assert losses.dtype == jnp.float32
    _close(losses, ctc_loss(x.astype(jnp.bfloat16).astype(jnp.float32), lp, y, yp))
    grad = jax.grad(lambda x: jnp.sum(ctc_loss(x, lp, y, yp)))(x.astype(jnp.bfloat16))
    assert grad.dtype == jnp.bfloat16


# Bad inputs both CTC functions reject: (fn, logits, logit_paddings, labels, label_paddings) -> call.
BAD_INPUTS = [
    (lambda f, x, lp, y, yp: f(x.astype(jnp.int32), lp, y, yp), TypeError, "logits"),
    (lambda f, x, lp, y, yp: f(x[0, 0], lp, y, yp), ValueError, "logits"),
    (lambda f, x, lp, y, yp: f(x, lp[:, 1:], y, yp), ValueError, "logit_paddings"),
    (lambda f, x, lp, y, yp: f(x, lp, y.astype(jnp.float32), yp), TypeError, "labels"),
    (lambda f, x, lp, y, yp: f(x, lp, y[1:], yp[1:]), ValueError, "labels"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp[:, 1:]), ValueError, "label_paddings"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, blank_id=6), ValueError, "blank_id"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, zero_infinity=1), TypeError, "zero_infinity"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, where=jnp.ones(3, bool)), ValueError, "where"),
]


@pytest.mark.parametrize("call, error, words", BAD_INPUTS)
def test_bad_inputs_raise_naming_the_argument(call, error, words):
    x, lp, y, yp, *_ = _batch(0)
    with pytest.raises(error, match=words):
        call(ctc_loss, x, lp, y, yp)


# ------------------------------------------------------------------ ctc_loss_with_forward_probs


def _numpy_forward_probs(logits, logit_paddings, labels, label_paddings, blank_id=0, log_epsilon=-np.inf):
    """The docstring's recursion in float64: α_{-1} = (1, ε, ..., ε); on an unpadded frame
    α_t(s) = y_t[l'_s] (α(s) + c_s α(s-1) + d_s α(s-2)), c_s = 1 + ε at blanks, d_s = 1 at a label
    differing from the one before, ε at a repeated (or first) label, 0 at blanks; the last blank
    row adds the label state before each blank.  Returns log tables [T, B, N+1], [T, B, N]."""
    x = np.asarray(logits, np.float64)
    y = np.exp(x - x.max(-1, keepdims=True))
    y /= y.sum(-1, keepdims=True)
    eps = np.exp(log_epsilon)
    frames, n = x.shape[1], labels.shape[1]
    blanks, emits = np.zeros((frames, len(x), n + 1)), np.zeros((frames, len(x), n))
    for b in range(len(x)):
        ext = [blank_id] + [v for label in labels[b] for v in (label, blank_id)]
        alpha = np.full(2 * n + 1, eps)
        alpha[0] = 1.0
        rows = []
        for t in range(frames):
            if logit_paddings[b, t] < 0.5:
                new = np.zeros_like(alpha)
                for s, k in enumerate(ext):
                    total = alpha[s]
                    if s >= 1:
                        total += (1 + eps if s % 2 == 0 else 1) * alpha[s - 1]
                    if s >= 2 and s % 2 == 1:
                        total += (1 if ext[s] != ext[s - 2] else eps) * alpha[s - 2]
                    prob = y[b, t, k] if 0 <= k < x.shape[-1] else 1.0  # a padded id outside [0, K): probability 1
                    new[s] = prob * total
                alpha = new
            rows.append(alpha)
        rows = np.array(rows)
        with np.errstate(divide="ignore"):
            blanks[:, b], emits[:, b] = np.log(rows[:, ::2]), np.log(rows[:, 1::2])
            blanks[-1, b, 1:] = np.log(rows[-1, 2::2] + rows[-1, 1::2])
    return blanks, emits


def _table_close(ours, theirs):
    # optax's unreachable states sit near multiples of log_epsilon = -1e5, where a float32 ulp is ~0.008.
    _close(ours, theirs, rtol=1e-6, atol=2e-5)


@pytest.mark.parametrize("seed, blank_id", [(0, 0), (1, 0), (2, 0), (3, 2)])
def test_forward_probs_match_optax_and_numpy(seed, blank_id):
    x, lp, y, yp, *_ = _batch(seed, blank_id=blank_id)
    loss, blank, emit = ctc_loss_with_forward_probs(x, lp, y, yp, blank_id=blank_id)
    theirs = optax.ctc_loss_with_forward_probs(x, lp, y, yp, blank_id=blank_id)
    assert blank.shape == (16, 5, 6) and emit.shape == (16, 5, 5)
    _close(loss, theirs[0])
    _table_close(blank, theirs[1])
    _table_close(emit, theirs[2])
    # The floor stands exactly where the exact tables (log_epsilon=-inf) have -inf: the unreachable states.
    unreachable = (np.asarray(theirs[1]) < -1e4, np.asarray(theirs[2]) < -1e4)
    assert unreachable[0].any() and unreachable[1].any()
    exact = ctc_loss_with_forward_probs(x, lp, y, yp, blank_id=blank_id, log_epsilon=-jnp.inf)
    reference = _numpy_forward_probs(x, lp, np.asarray(y), yp, blank_id)
    for ours, ref, floor in zip(exact[1:], reference, unreachable):
        np.testing.assert_array_equal(np.isneginf(ours), floor)
        _close(ours, ref, atol=2e-5)


@pytest.mark.parametrize("log_epsilon", [-10.0, -1.0])
def test_small_log_epsilon_weights_the_forbidden_moves_as_optax(log_epsilon):
    # ε = e^log_epsilon enters the start, a repeated label's skip and (as 1 + ε) the step into a blank.
    x, lp, y, yp, *_ = _batch(1)
    ours = ctc_loss_with_forward_probs(x, lp, y, yp, log_epsilon=log_epsilon)
    theirs = optax.ctc_loss_with_forward_probs(x, lp, y, yp, log_epsilon=log_epsilon)
    reference = _numpy_forward_probs(x, lp, np.asarray(y), yp, log_epsilon=log_epsilon)
    for a, b, c in zip(ours[1:], theirs[1:], reference):
        _table_close(a, b)
        _close(a, c, atol=2e-5)


def test_padded_label_ids_outside_the_classes_match_optax():
    x, lp, y, yp, *_ = _batch(2)
    for pad_id in (-1, 99):
        y_padded = jnp.where(yp > 0.5, pad_id, y)
        ours = ctc_loss_with_forward_probs(x, lp, y_padded, yp)
        theirs = optax.ctc_loss_with_forward_probs(x, lp, y_padded, yp)
        _close(ours[0], ctc_loss(x, lp, y, yp))
        _table_close(ours[1], theirs[1])
        _table_close(ours[2], theirs[2])


def test_forward_probs_loss_is_ctc_loss_and_the_last_blank_row():
    x, lp, y, yp = _impossible()
    for zero_infinity in (False, True):
        loss, blank, _ = ctc_loss_with_forward_probs(x, lp, y, yp, zero_infinity=zero_infinity)
        np.testing.assert_array_equal(loss, ctc_loss(x, lp, y, yp, zero_infinity=zero_infinity))
    # Possible sequences: -logalpha_blank[-1, b, L_b] is the loss; impossible ones keep optax's floor there.
    x, lp, y, yp, _, label_lengths = _batch(5)
    loss, blank, _ = ctc_loss_with_forward_probs(x, lp, y, yp)
    _close(-blank[-1, np.arange(5), label_lengths], loss)
    x, lp, y, yp = _impossible()
    ended = ctc_loss_with_forward_probs(x, lp, y, yp)[1][-1, np.arange(3), [2, 3, 2]]
    _close(ended, optax.ctc_loss_with_forward_probs(x, lp, y, yp)[1][-1, np.arange(3), [2, 3, 2]], rtol=1e-6)
    assert jnp.all(ended[:2] < -1e4) and ended[2] > -1e4


def _tables_objective(fn, x, lp, y, yp, **options):
    w = jnp.asarray(np.random.default_rng(3).standard_normal(x.shape[0]), jnp.float32)
    loss, blank, emit = fn(x, lp, y, yp, **options)
    return jnp.sum(w * loss) + jnp.sum(jnp.exp(blank)) + 0.5 * jnp.sum(jnp.exp(emit))


@pytest.mark.parametrize("seed", [0, 4])
def test_forward_probs_derivatives_match_optax_in_every_mode(seed):
    x, lp, y, yp, *_ = _batch(seed)
    ours = lambda x: _tables_objective(ctc_loss_with_forward_probs, x, lp, y, yp)  # noqa: E731
    theirs = lambda x: _tables_objective(optax.ctc_loss_with_forward_probs, x, lp, y, yp)  # noqa: E731
    grad = jax.jit(jax.grad(ours))(x)
    _close(grad, jax.grad(theirs)(x), atol=1e-5)
    assert jnp.all(grad[lp > 0.5] == 0)
    v = jnp.asarray(np.random.default_rng(seed).standard_normal(x.shape), jnp.float32)
    value, tangent = jax.jvp(ours, (x,), (v,))
    _close(value, theirs(x))
    _close(tangent, jnp.sum(grad * v), rtol=1e-4)
    hvp = jax.jit(lambda x: jax.jvp(jax.grad(ours), (x,), (v,))[1])(x)
    assert jnp.all(jnp.isfinite(hvp))
    _close(hvp, jax.jvp(jax.grad(theirs), (x,), (v,))[1], rtol=1e-4, atol=1e-4)


def test_exact_tables_have_finite_derivatives_and_log_epsilon_has_one():
    x, lp, y, yp, *_ = _batch(6)
    f = lambda x, e: _tables_objective(ctc_loss_with_forward_probs, x, lp, y, yp, log_epsilon=e)  # noqa: E731
    gx, ge = jax.grad(f, argnums=(0, 1))(x, -jnp.inf)
    assert jnp.all(jnp.isfinite(gx)) and ge == 0
    _close(gx, jax.grad(f)(x, -1e5), atol=1e-6)
    # The tables' derivative in log_epsilon is optax's (the loss, exact here, does not depend on it).
    tables = lambda fn: jax.grad(lambda e: jnp.sum(jnp.exp(fn(x, lp, y, yp, log_epsilon=e)[1])))(-2.0)  # noqa: E731
    ge = tables(ctc_loss_with_forward_probs)
    _close(ge, tables(optax.ctc_loss_with_forward_probs), rtol=1e-4)
    assert ge != 0


def test_forward_probs_under_jit_with_traced_and_integer_log_epsilon():
    x, lp, y, yp, *_ = _batch(7)
    eager = ctc_loss_with_forward_probs(x, lp, y, yp, log_epsilon=-100000)
    jitted = jax.jit(lambda x, e: ctc_loss_with_forward_probs(x, lp, y, yp, log_epsilon=e))(x, jnp.int32(-100000))
    for a, b in zip(eager, jitted):
        _table_close(a, b)
        assert b.dtype == jnp.float32


def test_forward_probs_nan_for_invalid_labels_and_where_masks_examples():
    x, lp, y, yp, *_ = _batch(8, batch=3)
    y = y.at[1, 0].set(0)  # the blank as a label: invalid
    outputs = ctc_loss_with_forward_probs(x, lp, y, yp)
    for out, batch_axis in zip(outputs, (0, 1, 1)):
        assert jnp.all(jnp.isnan(jnp.take(out, 1, batch_axis)))
        assert jnp.all(jnp.isfinite(jnp.take(out, np.array([0, 2]), batch_axis)))
    where = jnp.array([True, False, True])
    x = x.at[1].set(jnp.nan)
    masked = ctc_loss_with_forward_probs(x, lp, y, yp, where=where)
    for out, full, batch_axis in zip(masked, outputs, (0, 1, 1)):
        assert jnp.all(jnp.take(out, 1, batch_axis) == 0)
        np.testing.assert_array_equal(jnp.take(out, np.array([0, 2]), batch_axis),
                                      jnp.take(full, np.array([0, 2]), batch_axis))
    grad = jax.grad(lambda x: _tables_objective(ctc_loss_with_forward_probs, x, lp, y, yp, where=where))(x)
    assert jnp.all(grad[1] == 0) and jnp.all(jnp.isfinite(grad)) and jnp.any(grad[0] != 0)


def test_forward_probs_leading_batch_shapes_and_low_precision():
    x, lp, y, yp, *_ = _batch(9, batch=4)
    flat = ctc_loss_with_forward_probs(x, lp, y, yp)
    shaped = lambda a: a.reshape((2, 2) + a.shape[1:])  # noqa: E731
    loss, blank, emit = ctc_loss_with_forward_probs(*map(shaped, (x, lp, y, yp)))
    _close(loss, flat[0].reshape(2, 2))
    _close(blank, flat[1].reshape(16, 2, 2, 6))
    _close(emit, flat[2].reshape(16, 2, 2, 5))
    low = ctc_loss_with_forward_probs(x.astype(jnp.bfloat16), lp, y, yp)
    upcast = ctc_loss_with_forward_probs(x.astype(jnp.bfloat16).astype(jnp.float32), lp, y, yp)
    for a, b in zip(low, upcast):
        assert a.dtype == jnp.float32
        _close(a, b)


@pytest.mark.parametrize("call, error, words", BAD_INPUTS + [
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, log_epsilon=None), TypeError, "log_epsilon"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, log_epsilon=True), TypeError, "log_epsilon"),
    (lambda f, x, lp, y, yp: f(x, lp, y, yp, log_epsilon=jnp.ones(2)), ValueError, "log_epsilon"),
])
def test_forward_probs_bad_inputs_raise_naming_the_argument(call, error, words):
    x, lp, y, yp, *_ = _batch(0)
    with pytest.raises(error, match=words):
        call(ctc_loss_with_forward_probs, x, lp, y, yp)
