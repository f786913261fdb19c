"""Catalogue entries: Pair-based metric-learning losses (pairs.py): a batch of embeddings and class labels."""

from __future__ import annotations

from jaxloss.catalogue._common import Entry

ENTRIES: tuple[Entry, ...] = ()
