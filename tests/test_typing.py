"""Every public function of jaxloss is annotated (parameters and return), so that a type
checker sees the API; ``.ci/run`` runs mypy on the package (configured in pyproject.toml)."""

import inspect

import pytest

import jaxloss
from jaxloss import checks, gradients, reduce, testing


def _defined_in(module):
    return [name for name, f in vars(module).items()
            if inspect.isfunction(f) and not name.startswith("_") and f.__module__ == module.__name__]


PUBLIC = sorted(
    {(f"jaxloss.{n}", getattr(jaxloss, n)) for n in jaxloss.__all__ if callable(getattr(jaxloss, n))
     and not inspect.ismodule(getattr(jaxloss, n))}
    | {(f"jaxloss.reduce.{n}", getattr(reduce, n)) for n in reduce.__all__}
    | {(f"jaxloss.checks.{n}", getattr(checks, n)) for n in _defined_in(checks)}
    | {(f"jaxloss.testing.{n}", getattr(testing, n)) for n in testing.__all__}
    | {(f"jaxloss.gradients.{n}", getattr(gradients, n)) for n in gradients.__all__
       if inspect.isfunction(getattr(gradients, n))},
    key=lambda item: item[0])


def test_the_public_api_is_found():
    names = {name for name, _ in PUBLIC}
    assert {"jaxloss.softmax_cross_entropy", "jaxloss.reduce.mean", "jaxloss.checks.checked",
            "jaxloss.testing.assert_gradients", "jaxloss.gradients.hand_derivative"} <= names
    assert len(PUBLIC) > 90


@pytest.mark.parametrize("name,fn", PUBLIC, ids=[name for name, _ in PUBLIC])
def test_every_parameter_and_the_return_are_annotated(name, fn):
    signature = inspect.signature(fn)
    missing = [p.name for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
    assert missing == [], f"{name}: parameters without a type annotation: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, f"{name}: no return annotation"
