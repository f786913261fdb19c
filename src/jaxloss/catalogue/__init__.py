"""The catalogue: one entry per public loss.

Each entry names the loss, its family and what it matches in optax / PyTorch, and
knows how to make sample inputs (float32, away from the points where the loss has a
kink, so that finite differences mean something) and extreme inputs (values up to
1e4, exact zeros, empty masks).  ``tests/test_catalogue.py`` and
``python -m jaxloss verify`` run every entry through the same checks, so a new loss is
tested by adding its entry to its family's module here.
"""

from __future__ import annotations

from jaxloss.catalogue import (binary, contrastive, divergence, embedding, margin, multiclass, pairs, proxies, ranking,
                               regression, segmentation, selfsupervised, sequence, sparsemax)
from jaxloss.catalogue._common import Entry as Entry
from jaxloss.catalogue._common import Inputs as Inputs

_FAMILIES = (regression, binary, multiclass, margin, sparsemax, divergence, ranking, embedding, pairs, proxies, contrastive,
             segmentation, sequence, selfsupervised)
ENTRIES: tuple[Entry, ...] = tuple(entry for family in _FAMILIES for entry in family.ENTRIES)

BY_NAME: dict[str, Entry] = {e.name: e for e in ENTRIES}


def markdown_table() -> str:
    """The README's table of losses, generated from the entries."""
    yes = lambda flag: "yes" if flag else "–"  # noqa: E731
    lines = ["| loss | family | returns | matches | hand rule (verified) | forward mode | blockwise | sharded |",
             "|---|---|---|---|---|---|---|---|"]
    for e in ENTRIES:
        matches = e.matches.replace("; ", "<br>") or "–"
        mode = "custom_jvp" if e.forward_mode else "custom_vjp"
        returns = "one per batch" if e.per_batch else "per example"
        lines.append(f"| `{e.name}` | {e.family} | {returns} | {matches} | {mode} | {yes(e.forward_mode)} | "
                     f"{yes(e.blockwise)} | {yes(e.sharded)} |")
    return "\n".join(lines)
