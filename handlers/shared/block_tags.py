"""How Tocsin marks the domain blocks it applies, and Mastodon's domain-block CSV: read by the scan
(which blocks it applied for which advisory), the incidents family (announcing them) and `tocsin blocks`."""

from __future__ import annotations

import csv
import io
import re

from bot.mastodon.client import DomainBlock

BLOCK_TAG = "[tocsin advisory {id}]"
"""Written at the start of the private comment of every block Tocsin applies for an advisory."""
BLOCK_TAG_PATTERN = re.compile(r"\[tocsin advisory ([^\]\s]+)\]")

CSV_HEADER = ["#domain", "#severity", "#reject_media", "#reject_reports", "#public_comment", "#obfuscate"]
"""Mastodon's domain-block import/export format (Administration → Federation → Import)."""


def tagged_advisory(block: DomainBlock) -> str | None:
    """The advisory id of a block Tocsin applied (found by BLOCK_TAG in its private comment)."""
    match = BLOCK_TAG_PATTERN.search(block.private_comment or "")
    return match.group(1) if match else None


def read_blocks_csv(text: str) -> list[dict[str, str]]:
    """Rows of a domain-block CSV (Mastodon's header, or without the leading #)."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{key.lstrip("#").strip(): (value or "").strip() for key, value in row.items() if key} for row in rows]
