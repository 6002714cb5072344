"""Progress bars for long commands: drawn on a terminal, silent in logs, cron and CI."""

from __future__ import annotations

import sys
from typing import Iterable, Iterator, TypeVar

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
