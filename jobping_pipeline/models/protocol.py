"""What the pipeline asks of an encoder, whichever backend computes the vectors."""

from __future__ import annotations

from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

# sentence-transformers spends ~30 ms per encode() call beyond the batches themselves; one call per
# 64 texts cost 6% of the model's speed (measured: 17.7 s for 800 texts in one call, 19.0 s in
# calls of 64). Eight batches per call amortize it while the writer still overlaps the model.
BATCHES_PER_MODEL_CALL = 8


@runtime_checkable
class Encoder(Protocol):
    """Texts in, unit-length float32 vectors out (one row per text, in input order)."""

    model_id: str  # recorded with every vector: two vectors compare when their ids are equal
    dimensions: int
    device: str
    backend: str
    calls: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(indices into texts, their vectors)`` as each part is encoded; none started once
        ``stopped()``."""
        ...


def in_model_calls(
    encode: Callable[[Sequence[str], int], np.ndarray],
    texts: Sequence[str],
    batch_size: int,
    stopped: Callable[[], bool],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``encode_batches`` for an encoder that has only ``encode``: one model call per
    ``BATCHES_PER_MODEL_CALL`` batches."""
    group_size = batch_size * BATCHES_PER_MODEL_CALL
    for start in range(0, len(texts), group_size):
        if stopped():
            return
        group = texts[start : start + group_size]
        yield np.arange(start, start + len(group)), encode(group, batch_size)


def cut_for_tokenizer(texts: Sequence[str], max_seq_length: int | None) -> list[str]:
    """A 5 MB description would be tokenized whole before truncation; no token spans more than
    100 characters, so cutting at 100 x max_seq_length characters changes no vector."""
    limit = 100 * int(max_seq_length or 512)
    return [text[:limit] for text in texts]


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, in float32, whatever precision the model ran in."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)
