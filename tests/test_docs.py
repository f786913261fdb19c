"""The documentation's API reference documents every public function of jaxloss, once.

The reference is generated at build time by ``docs/_apigen.py``; these tests write its pages
into a temporary folder and read the names they document (no Sphinx build).
"""

import importlib.util
import re
from collections import Counter
from pathlib import Path

import pytest

import jaxloss

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTED = re.compile(r"^\.\. (?:autofunction|py:function):: (\w+)", re.MULTILINE)


def _apigen():
    spec = importlib.util.spec_from_file_location("_apigen", ROOT / "docs" / "_apigen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _documented(tmp_path) -> Counter:
    """How many times each name is documented across the generated pages."""
    pages = _apigen().write(tmp_path)
    assert (tmp_path / "index.rst").exists() and pages
    return Counter(name for page in pages for name in DOCUMENTED.findall((tmp_path / f"{page}.rst").read_text()))


def test_every_public_function_is_documented_once(tmp_path):
    public = set(_apigen().public_functions())
    documented = _documented(tmp_path)
    assert sorted(public - set(documented)) == [], "public functions missing from the API reference"
    assert sorted(set(documented) - public) == [], "documented names that jaxloss does not export"
    assert {name: n for name, n in documented.items() if n > 1} == {}, "documented more than once"


def test_a_new_public_function_is_reported(tmp_path, monkeypatch):
    monkeypatch.setattr(jaxloss, "brand_new_loss", lambda x: x, raising=False)
    assert _apigen().unplaced() == ["brand_new_loss"]
    assert "brand_new_loss" not in _documented(tmp_path)


def test_aliases_point_to_their_function(tmp_path):
    _apigen().write(tmp_path)
    text = (tmp_path / "regression.rst").read_text()
    assert ".. py:function:: l1_loss(" in text and "Alias of :func:`absolute_error`" in text


@pytest.mark.parametrize("marker", ["<!-- coming-from:start -->", "<!-- coming-from:end -->"])
def test_readme_has_the_markers_the_docs_include(marker):
    readme = (ROOT / "README.md").read_text()
    assert readme.count(marker) == 1
    assert marker in (ROOT / "docs" / "coming_from.md").read_text()
