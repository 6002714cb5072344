"""How a job becomes the text that is embedded, and the hash that says whether it changed."""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Sequence


def format_value(value: Any) -> str:
    """One column's value as text: arrays joined with commas, NULL and blanks dropped."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(part for part in (format_value(item) for item in value) if part)
    return " ".join(str(value).split()) if not isinstance(value, str) else value.strip()


def build_text(values: Sequence[Any]) -> str:
    """The text of a job: each non-empty column value on a line of its own, in the configured
    column order (short fields first, so truncation cuts the description, not the title)."""
    return "\n".join(part for part in (format_value(value) for value in values) if part)


def text_hash(text: str) -> bytes:
    """16-byte digest of a text; equal texts give equal hashes across processes and versions."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def unique_in_order(texts: Iterable[str]) -> list[str]:
    """Each distinct text once, in first-seen order."""
    return list(dict.fromkeys(texts))
