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


TEXT_TEMPLATES = ("lines", "sentences", "labelled", "pipes")
"""How column values are joined into the text that is embedded (``JOBPING_TEXT_TEMPLATE``):

- ``lines``: each value on a line of its own (``Data Engineer\nAcme\nBerlin``);
- ``sentences``: each value a sentence (``Data Engineer. Acme. Berlin.``);
- ``labelled``: each value after its column name (``title: Data Engineer\ncompany: Acme``);
- ``pipes``: values separated by `` | ``."""

DEFAULT_TEXT_TEMPLATE = "lines"

_SENTENCE_ENDS = (".", "!", "?", ":", ";")


def build_text(values: Sequence[Any], template: str = DEFAULT_TEXT_TEMPLATE, columns: Sequence[str] = ()) -> str:
    """The text of a job: its non-empty column values in the configured column order (short
    fields first, so truncation cuts the description, not the title), joined by ``template``
    (:data:`TEXT_TEMPLATES`; ``labelled`` names each value by its entry in ``columns``)."""
    parts = [(index, text) for index, text in ((index, format_value(value)) for index, value in enumerate(values)) if text]
    if template == "lines":
        return "\n".join(text for _, text in parts)
    if template == "sentences":
        return " ".join(text if text.endswith(_SENTENCE_ENDS) else f"{text}." for _, text in parts)
    if template == "labelled":
        return "\n".join(f"{columns[index]}: {text}" for index, text in parts)
    if template == "pipes":
        return " | ".join(text for _, text in parts)
    raise ValueError(f"unknown text template {template!r}; one of {', '.join(TEXT_TEMPLATES)}")


def text_template_suffix(template: str) -> str:
    """What a model id gains for a template: nothing for ``lines`` (the texts of every vector
    written before templates existed), ``+text=<template>`` for the others, so that vectors of
    texts joined another way never count as fresh."""
    return "" if template == DEFAULT_TEXT_TEMPLATE else f"+text={template}"


def text_hash(text: str) -> bytes:
    """16-byte digest of a text; equal texts give equal hashes across processes and versions."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def unique_in_order(texts: Iterable[str]) -> list[str]:
    """Each distinct text once, in first-seen order."""
    return list(dict.fromkeys(texts))
