"""Catalogue entries: sequence transduction (the RNN-T loss); CTC's entries stay with segmentation's."""

from __future__ import annotations

from jaxloss.catalogue._common import Entry

ENTRIES: tuple[Entry, ...] = ()
