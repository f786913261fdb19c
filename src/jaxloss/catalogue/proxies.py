"""Catalogue entries: Centre- and proxy-based metric-learning losses (proxies.py): embeddings against learned class vectors."""

from __future__ import annotations

from jaxloss.catalogue._common import Entry

ENTRIES: tuple[Entry, ...] = ()
