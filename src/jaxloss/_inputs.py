"""Bad inputs for every catalogue entry, and whether each loss rejects them at trace time.

The cases are derived from an entry's sample, so a new loss is covered by its entry:

* ``<first> without its leading axis``: the first argument loses its leading axis while
  the others keep theirs (a rank / batch mismatch);
* ``mismatched <arg>``: each later array argument with its last axis one longer;
* ``integer <arg>``: each float positional argument cast to int32 (integer logits);
* ``float <arg>``: each integer positional argument cast to float32 (float class ids);
* ``float where`` and ``where of the wrong shape`` (one more example along the leading axis);
* ``negative <option>`` / ``zero <option>``: the options of :data:`POSITIVE` (must be > 0)
  and :data:`NON_NEGATIVE` (must be >= 0) that the loss takes.

Each case must raise ``ValueError`` or ``TypeError`` while tracing (:func:`jax.eval_shape`;
options stay concrete, as under ``jit`` with options closed over), with a message naming
the argument.  A case a loss legitimately accepts is listed in :data:`ACCEPTED` with the
reason, and not generated.  ``python -m jaxloss verify --inputs`` prints the table.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxloss.catalogue import Entry

# Options whose zero or negative values are meaningless, by name, wherever a loss takes them.
POSITIVE = ("temperature", "student_temperature", "teacher_temperature", "scale", "delta")
# Options that must be >= 0 (weights, coefficients, smoothing, exponents, distance margins).
NON_NEGATIVE = ("smooth", "gamma", "eps", "alpha", "beta", "label_smoothing", "class_weights",
                "pos_weight", "margin", "z_loss", "lambda_", "sim_coeff", "std_coeff", "cov_coeff",
                "quantiles")

# (loss or "*", case) -> why the loss accepts it.  "*" holds for every loss taking the argument.
ACCEPTED: dict[tuple[str, str], str] = {
    ("*", "integer is_similar"): "similar / dissimilar: 0/1 of any real dtype",
    ("*", "integer logit_paddings"): "paddings are 0/1 of any real dtype",
    ("*", "integer label_paddings"): "paddings are 0/1 of any real dtype",
    **{(loss, "integer targets"): "regression targets may be integers" for loss in (
        "squared_error", "absolute_error", "huber_loss", "smooth_l1_loss", "log_cosh", "quantile_loss", "l2_loss")},
    **{(loss, "integer target"): "targets may be integers (counts)" for loss in (
        "gaussian_nll_loss", "poisson_nll_loss")},
    **{(loss, "integer labels"): "binary labels in {0, 1} may be integers" for loss in (
        "sigmoid_binary_cross_entropy", "sigmoid_focal_loss", "multilabel_soft_margin_loss", "binary_cross_entropy")},
    **{(loss, "float labels"): "binary labels in {0, 1} may be floats" for loss in (
        "hinge_loss", "squared_hinge_loss", "logistic_loss", "square_loss", "perceptron_loss",
        "hinge_embedding_loss", "sparsemax_loss")},
    ("dice_loss", "integer targets"): "one-hot or {0, 1} targets of the predictions' shape may be integers (optax)",
    ("margin_ranking_loss", "float y"): "y in {1, -1} may be float, as in torch",
    ("margin_ranking_loss", "negative margin"): "a signed margin on x1 - x2, any real (torch)",
    ("cosine_embedding_loss", "negative margin"): "a margin on the cosine, in [-1, 1]",
    ("cosine_embedding_loss", "float y"): "y in {1, -1} may be float, as in torch",
    ("hinge_embedding_loss", "negative margin"): "a margin on the input, any real (torch)",
}

EXPECTED = ("ValueError", "TypeError")


@dataclasses.dataclass(frozen=True)
class Case:
    """A bad input: ``loss(*args, **kwargs)`` must raise naming ``argument``."""

    loss: str
    name: str
    argument: str
    fn: Callable = dataclasses.field(repr=False)
    args: tuple = dataclasses.field(repr=False)
    kwargs: dict = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Outcome:
    case: Case
    raised: str  # the exception's type name, or "nothing"
    message: str

    @property
    def names_argument(self) -> bool:
        return re.search(rf"\b{re.escape(self.case.argument)}\b", self.message) is not None

    @property
    def ok(self) -> bool:
        return self.raised in EXPECTED and self.names_argument


def _accepted(entry: Entry, case: str, accepted) -> bool:
    return (entry.name, case) in accepted or ("*", case) in accepted


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.floating)


def where_shape(entry: Entry, args, kwargs) -> tuple[int, ...]:
    """The shape of a ``where`` mask over the entry's examples (or pixels)."""
    if entry.pixel_where:
        return tuple(args[0].shape[:-1])
    if entry.per_batch:
        return tuple(args[0].shape[:1])
    return tuple(jax.eval_shape(functools.partial(entry.fn, **kwargs), *args).shape)


def _like(value, v: float):
    """``v`` in the shape of the option ``value`` (an array), or as a Python float."""
    if value is None or value is inspect.Parameter.empty or jnp.ndim(value) == 0:
        return v
    return jnp.full(jnp.shape(value), v, jnp.float32)


def cases(entry: Entry, seed: int = 0, accepted=ACCEPTED) -> list[Case]:
    """Every bad-input case of ``entry``, but those in ``accepted``."""
    args, kwargs = entry.sample(np.random.default_rng(seed))
    parameters = inspect.signature(entry.fn).parameters
    names = list(parameters)[: len(args)]
    out = []

    def add(name, argument, new_args=args, **new_kwargs):
        if not _accepted(entry, name, accepted):
            out.append(Case(entry.name, name, argument, entry.fn, tuple(new_args), {**kwargs, **new_kwargs}))

    def replace(i, value):
        return (*args[:i], value, *args[i + 1:])

    add(f"{names[0]} without its leading axis", names[0], replace(0, args[0][0]))
    for i, (name, a) in enumerate(zip(names, args)):
        if i and jnp.ndim(a) >= 1:
            longer = jnp.concatenate([a, a[..., :1]], axis=-1)
            add(f"mismatched {name}", name, replace(i, longer))
        if _is_float(a):
            add(f"integer {name}", name, replace(i, a.astype(jnp.int32)))
        elif jnp.issubdtype(a.dtype, jnp.integer):
            add(f"float {name}", name, replace(i, a.astype(jnp.float32)))
    if "where" in parameters:
        shape = where_shape(entry, args, kwargs)
        add("float where", "where", where=jnp.ones(shape, jnp.float32))
        if shape:
            add("where of the wrong shape", "where", where=jnp.ones((shape[0] + 1, *shape[1:]), bool))
    for option in (*POSITIVE, *NON_NEGATIVE):
        if option not in parameters or parameters[option].kind != inspect.Parameter.KEYWORD_ONLY:
            continue
        value = kwargs.get(option, parameters[option].default)
        if isinstance(value, (bool, str)):
            continue
        add(f"negative {option}", option, **{option: _like(value, -1.0)})
        if option in POSITIVE:
            add(f"zero {option}", option, **{option: _like(value, 0.0)})
    return out


def run(case: Case) -> Outcome:
    """Trace the case (options concrete, arrays abstract) and record what it raised."""
    fn = functools.partial(case.fn, **case.kwargs)
    try:
        jax.eval_shape(fn, *case.args)
    except Exception as e:  # noqa: BLE001  (any other exception is recorded as a failure)
        return Outcome(case, type(e).__name__, str(e))
    return Outcome(case, "nothing", "")


def check(entries, seed: int = 0) -> list[Outcome]:
    return [run(c) for e in entries for c in cases(e, seed)]


def table(outcomes: list[Outcome]) -> str:
    lines = ["| loss | case | argument | raised | ok |", "|---|---|---|---|---|"]
    for o in outcomes:
        verdict = "ok" if o.ok else "FAIL (message does not name it)" if o.raised in EXPECTED else "FAIL"
        lines.append(f"| {o.case.loss} | {o.case.name} | {o.case.argument} | {o.raised} | {verdict} |")
    return "\n".join(lines)
