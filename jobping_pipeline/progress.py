"""Progress bars for long commands: drawn on a terminal, silent in logs, cron and CI."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def on_terminal() -> bool:
    return sys.stderr.isatty()


def bar(total: int, description: str, unit: str = "job") -> tqdm:
    """A bar with rate and ETA on stderr, disabled when stderr is not a terminal."""
    return tqdm(total=total, desc=description, unit=unit, disable=not on_terminal(), dynamic_ncols=True)


def counted(items: Iterable[T], total: int, description: str, unit: str = "job") -> Iterator[T]:
    with bar(total, description, unit) as progress:
        for item in items:
            yield item
            progress.update(1)


# Process-local: a run executed in this process (the CLI's backfill) tells its caller about each
# chunk as it finishes, so a run of 10 chunks still shows progress chunk by chunk.
_chunk_listeners: list[Callable[[Any, str | None], None]] = []


@contextmanager
def listening_to_chunks(listener: Callable[[Any, str | None], None]) -> Iterator[None]:
    """Call ``listener(report, error)`` for each chunk that a run in this process finishes:
    its ChunkReport, and the error that failed some of its jobs (None when none did)."""
    _chunk_listeners.append(listener)
    try:
        yield
    finally:
        _chunk_listeners.remove(listener)


def chunk_finished(report: Any, error: str | None = None) -> None:
    for listener in list(_chunk_listeners):
        listener(report, error)
