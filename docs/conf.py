"""Sphinx configuration of the jaxloss documentation.

Build: ``pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html``.
Before reading the sources, this file writes the generated pages (not committed):
``api/*.rst`` from the catalogue (``_apigen.py``), ``notebooks/*.ipynb`` copied from the
repository's ``notebooks/`` (myst-nb executes them: their outputs are not committed), and
``benchmarks/*.md``, one page per table in ``benchmarks/results/``.
"""

import os
import shutil
import sys
from pathlib import Path

from sphinx.util import logging

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import _apigen  # noqa: E402

project = "jaxloss"
author = "the jaxloss authors"
copyright = "the jaxloss authors"  # noqa: A001

extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax", "myst_nb"]
html_theme = "furo"
html_title = "jaxloss"
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints"]

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
# The benchmark scripts write their tables as ### sections under the file's # title; MyST
# would warn about the skipped level on each of those included pages.
suppress_warnings = ["myst.header"]

# The notebooks run at build time (cached by content in docs/_build/.jupyter_cache); a failing
# cell fails the build.
nb_execution_mode = "cache"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
os.environ.setdefault("MPLBACKEND", "Agg")


def _copy_if_changed(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)


def _write_benchmark_pages() -> None:
    """One page per results table; a plot the table names is shown under it."""
    results = ROOT / "benchmarks" / "results"
    for table in sorted(results.glob("*.md")):
        text = table.read_text()
        page = f"```{{include}} ../../benchmarks/results/{table.name}\n```\n"
        for plot in sorted(results.glob("*.png")):
            if plot.name in text:
                page += f"\n```{{image}} ../../benchmarks/results/{plot.name}\n:alt: {plot.stem}\n```\n"
        target = DOCS / "benchmarks" / table.name
        target.parent.mkdir(exist_ok=True)
        if not target.exists() or target.read_text() != page:
            target.write_text(page)


def _generate(app) -> None:
    _apigen.write(DOCS / "api")
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        _copy_if_changed(notebook, DOCS / "notebooks" / notebook.name)
    _write_benchmark_pages()
    for name in _apigen.unplaced():
        logging.getLogger(__name__).warning(
            f"jaxloss.{name} is in no page of the API reference: add a catalogue entry or place it in "
            f"docs/_apigen.py's HELPERS")


def setup(app):
    app.connect("builder-inited", _generate)
