"""Writes the API reference (``docs/api/*.rst``) from the catalogue, at every build.

Each catalogue family gets a page listing its losses (with what they match in optax /
torch); the public functions that are not catalogue entries are placed by :data:`HELPERS`;
an alias (a second public name of the same function) gets a short entry under the
function it names.  A public function of :mod:`jaxloss` that is none of these is left out
and reported by :func:`unplaced`: ``conf.py`` turns that into a build warning (an error
under ``sphinx-build -W``) and ``tests/test_docs.py`` fails on it.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import jaxloss
from jaxloss.catalogue import ENTRIES

# Public functions that are not catalogue entries, and the page that documents them.
HELPERS = {
    "check_gradients": "gradients",
    "smooth_labels": "helpers",
    "make_fenchel_young_loss": "helpers",
    "dino_center_update": "helpers",
    "center_update": "helpers",
    "ctc_loss_with_forward_probs": "helpers",
    "valid_triplet_anchors": "helpers",
    "cached_contrastive": "helpers",
}

TITLES = {"regression": "Regression", "probabilistic": "Probabilistic", "binary": "Binary classification",
          "multiclass": "Multiclass classification", "embedding": "Embedding (metric learning)",
          "angular": "Angular margin", "ranking": "Learning to rank",
          "metric-learning": "Metric learning: pairs, centres and proxies", "contrastive": "Contrastive", "segmentation": "Segmentation",
          "sequence": "Sequence (CTC)", "self-supervised": "Self-supervised"}

MODULE_PAGES = {
    "reduce": ("Reductions: jaxloss.reduce", """\
Every loss returns one value per example; these reductions give the scalar a training step
minimises.  Give the same ``where`` mask to the loss and to the reduction: see
:doc:`../masking`.

.. automodule:: jaxloss.reduce
   :members:
"""),
    "checks": ("Run-time checks: jaxloss.checks", """\
.. automodule:: jaxloss.checks
   :members:
"""),
    "gradients": ("Gradient checking: check_gradients and jaxloss.testing", """\
:func:`check_gradients` checks any function's derivatives (a jaxloss loss or your own
``custom_jvp`` / ``custom_vjp``); :mod:`jaxloss.testing` wraps it as an assertion and provides
the Hypothesis strategies jaxloss fuzzes its own losses with.  The guide is
:doc:`../checking_gradients`.

.. currentmodule:: jaxloss

{functions}

.. autoclass:: jaxloss.gradients.GradientCheck
   :members: ok, max_error

.. autoclass:: jaxloss.gradients.GradientRow

.. autoclass:: jaxloss._gradcheck.Comparison

jaxloss.testing
---------------

.. automodule:: jaxloss.testing
   :members:
"""),
    "helpers": ("Helpers", """\
Functions that build or accompany a loss without being one.

.. currentmodule:: jaxloss

{functions}
"""),
}


def public_functions() -> dict[str, object]:
    """``{name: function}`` for every public callable of :mod:`jaxloss` (modules left out)."""
    return {name: obj for name in dir(jaxloss) if not name.startswith("_")
            for obj in [getattr(jaxloss, name)] if callable(obj) and not inspect.ismodule(obj)}


def _canonical(functions) -> dict[str, str]:
    """``{alias: name}``: public names whose function is documented under another public name
    (its ``__name__``)."""
    return {name: fn.__name__ for name, fn in functions.items()
            if fn.__name__ != name and functions.get(fn.__name__) is fn}


def placement() -> dict[str, list[str]]:
    """``{page: [public function names]}``, in page order (families first, as the catalogue
    lists them)."""
    functions = public_functions()
    pages: dict[str, list[str]] = {}
    for entry in ENTRIES:
        if functions.get(entry.name) is entry.fn:
            pages.setdefault(entry.family, []).append(entry.name)
    for page in MODULE_PAGES:
        pages.setdefault(page, [])
    for name, page in HELPERS.items():
        if name in functions:
            pages[page].append(name)
    return pages


def unplaced() -> list[str]:
    """Public functions that the reference would leave out (neither placed nor an alias)."""
    functions = public_functions()
    placed = {name for names in placement().values() for name in names}
    aliases = _canonical(functions)
    return sorted(name for name in functions if name not in placed and aliases.get(name) not in placed)


def _function_entries(names, functions, aliases) -> str:
    blocks = []
    for name in names:
        blocks.append(f".. autofunction:: {name}\n")
        for alias in sorted(a for a, canonical in aliases.items() if canonical == name):
            signature = inspect.signature(functions[alias]).replace(return_annotation=inspect.Signature.empty)
            blocks.append(f".. py:function:: {alias}{signature}\n\n   Alias of :func:`{name}`: the same function.\n")
    return "\n".join(blocks)


def _family_page(family, names, functions, aliases) -> str:
    by_name = {e.name: e for e in ENTRIES}
    rows = "\n".join(f"   * - :func:`{n}`\n     - {by_name[n].matches.replace('; ', ', ') or '–'}" for n in names)
    title = TITLES.get(family, family.capitalize())
    return f"""{title}
{'=' * len(title)}

.. currentmodule:: jaxloss

.. list-table::
   :header-rows: 1
   :widths: 30 70

   * - loss
     - matches
{rows}

{_function_entries(names, functions, aliases)}"""


def write(out: Path) -> list[str]:
    """Writes ``out/index.rst`` and one page per family and module; returns the page names."""
    out.mkdir(parents=True, exist_ok=True)
    functions, aliases = public_functions(), _canonical(public_functions())
    pages = placement()
    for page, names in pages.items():
        if page in MODULE_PAGES:
            title, body = MODULE_PAGES[page]
            text = f"{title}\n{'=' * len(title)}\n\n" + body.format(
                functions=_function_entries(names, functions, aliases))
        else:
            text = _family_page(page, names, functions, aliases)
        _write_if_changed(out / f"{page}.rst", text)
    toctree = "\n".join(f"   {page}" for page in pages)
    _write_if_changed(out / "index.rst", f"""API reference
=============

Generated from the docstrings: one page per family of losses (as the catalogue,
``src/jaxloss/catalogue/``, groups them), then the reductions, the run-time checks, the
gradient checker and the helpers.  Every loss returns one value per example unless its
page says otherwise.

.. toctree::
   :maxdepth: 1

{toctree}
""")
    return list(pages)


def _write_if_changed(path: Path, text: str) -> None:
    """Writes only a changed page, so Sphinx rebuilds only what changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
