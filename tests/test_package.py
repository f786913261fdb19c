"""The package's surface: ``__all__`` names every public object once, the licence file
matches pyproject's licence, and the package is marked as typed (PEP 561)."""

from __future__ import annotations

import pathlib
import types

import pytest

import jaxloss

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_all_lists_every_public_name_once_sorted():
    public = {n for n, v in vars(jaxloss).items() if not n.startswith("_")
              and (not isinstance(v, types.ModuleType) or n in ("checks", "queue", "reduce"))}
    assert sorted(jaxloss.__all__) == jaxloss.__all__
    assert len(set(jaxloss.__all__)) == len(jaxloss.__all__)
    assert set(jaxloss.__all__) == public


def test_licence_file_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_package_is_marked_typed():
    assert (pathlib.Path(jaxloss.__file__).parent / "py.typed").is_file()


def test_a_script_next_to_the_clone_imports_the_installed_package(tmp_path):
    """A script in the folder holding the clone (named ``jaxloss``, as ``git clone`` names
    it) imports the installed package, not the clone's folder as a namespace package."""
    import subprocess
    import sys

    (tmp_path / "jaxloss").symlink_to(ROOT, target_is_directory=True)
    (tmp_path / "script.py").write_text("import jaxloss\nprint(jaxloss.__file__, jaxloss.softmax_cross_entropy.__name__)\n")
    out = subprocess.run([sys.executable, "script.py"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out.split() == [jaxloss.__file__, "softmax_cross_entropy"]
