"""Catalogue entries: Learning-to-rank losses (ranking.py): per-list losses of scores and graded relevance."""

from __future__ import annotations

from jaxloss.catalogue._common import Entry

ENTRIES: tuple[Entry, ...] = ()
