"""Bad inputs (jaxloss._inputs): every catalogue entry rejects each at trace time, naming the argument."""

import dataclasses
import inspect

import jax.numpy as jnp
import pytest

from jaxloss import _inputs, catalogue

ENTRIES = pytest.mark.parametrize("entry", catalogue.ENTRIES, ids=lambda e: e.name)


@ENTRIES
def test_every_bad_input_raises_naming_the_argument(entry):
    outcomes = [_inputs.run(c) for c in _inputs.cases(entry)]
    failed = [(o.case.name, o.raised, o.message) for o in outcomes if not o.ok]
    assert not failed, failed


@ENTRIES
def test_every_entry_gets_rank_dtype_and_mask_cases(entry):
    names = {c.name for c in _inputs.cases(entry)}
    first = next(iter(inspect.signature(entry.fn).parameters))
    assert {f"{first} without its leading axis", f"integer {first}"} <= names
    assert "float where" in names


def test_every_accepted_case_is_one_the_generator_makes():
    made = {(e.name, c.name) for e in catalogue.ENTRIES for c in _inputs.cases(e, accepted={})}
    for (loss, case), reason in _inputs.ACCEPTED.items():
        assert reason
        assert any(case == c and loss in ("*", name) for name, c in made), (loss, case)


def test_options_get_negative_and_zero_cases_by_name():
    names = {c.name: c for c in _inputs.cases(catalogue.BY_NAME["info_nce_loss"])}
    assert names["negative temperature"].kwargs["temperature"] == -1.0
    assert names["zero temperature"].kwargs["temperature"] == 0.0
    weights = {c.name: c for c in _inputs.cases(catalogue.BY_NAME["softmax_cross_entropy"])}["negative class_weights"]
    assert weights.kwargs["class_weights"].shape == (5,) and jnp.all(weights.kwargs["class_weights"] == -1)


def _unchecked(predictions, targets, *, delta=1.0, where=None):
    return jnp.abs(predictions - targets) * delta


def test_a_loss_without_checks_fails_its_cases():
    entry = dataclasses.replace(catalogue.BY_NAME["huber_loss"], fn=_unchecked)
    outcomes = {o.case.name: o for o in _inputs.check([entry])}
    assert outcomes["negative delta"].raised == "nothing" and not outcomes["negative delta"].ok
    assert outcomes["integer predictions"].raised == "nothing"
    assert outcomes["mismatched targets"].raised == "TypeError"  # from jnp's broadcasting, not naming targets
    assert not outcomes["mismatched targets"].ok
    assert "| _unchecked | negative delta | delta | nothing | FAIL |" in _inputs.table(list(outcomes.values()))


def test_an_error_must_name_the_argument():
    case = _inputs.cases(catalogue.BY_NAME["huber_loss"])[0]
    assert _inputs.Outcome(case, "ValueError", f"{case.argument} has the wrong shape").ok
    assert not _inputs.Outcome(case, "ValueError", "something has the wrong shape").ok
    assert not _inputs.Outcome(case, "RuntimeError", f"{case.argument} has the wrong shape").ok
