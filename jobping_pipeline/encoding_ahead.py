"""Encoding ahead of the runs: the model works while Dagster starts, reads and records.

A backfill spends seconds on things that are not the model: importing Dagster and making its
instance (~2 s on 2 cores), starting each run, reading each chunk, and the writes the model
waits for at the end of a chunk. :class:`EncodingAhead` loads the model in a thread of its own,
prepares the chunks (setup, registry, which chunks have work), then encodes the texts of the
chunks with work, in the order the runs will take them, one chunk ahead of the runs at most.

The runs still do everything else, and decide everything: a run reads its chunk again, and a
vector made ahead is used only for a text that is exactly the text the run would embed now,
by the same encoder (an edit in between leaves the old text's vector unused and the new text
is encoded in the run). A text the thread could not encode is encoded by the run, which
records why it failed if it fails there too. Nothing is written by the thread.

Imports nothing of Dagster, so the thread starts before Dagster's imports.
"""

from __future__ import annotations

import logging
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from jobping_pipeline.embedding import texts_to_encode, validate_vectors
from jobping_pipeline.models import Encoder, EncoderSpec, ModelSpec, load_encoder, spec_from_settings
from jobping_pipeline.settings import Settings
from jobping_pipeline.store import JobStore

logger = logging.getLogger(__name__)

WAIT_SLICE = 0.25  # waits wake this often, so a signal is handled in the waiting thread


@dataclass
class _ChunkAhead:
    """What the thread does for one chunk: the texts it will encode, and those it has."""

    planned: set[str] = field(default_factory=set)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    done: bool = False


class EncodingAhead:
    """Loads the model and prepares the chunks in a thread, then encodes the chunks' texts ahead
    of the runs (local models only: an API is not called before a run asks for it).

    ``prepare(store, encoder)`` runs in the thread once the model is loaded and returns
    ``(result, chunk keys)``: what :meth:`prepared` hands back, and the chunks to encode ahead
    in the order the runs will embed them."""

    def __init__(
        self,
        spec: EncoderSpec,
        store: JobStore,
        batch_size: int,
        prepare: Callable[[JobStore, Encoder], tuple[Any, Sequence[str]]],
        *,
        chunks_ahead: int = 1,
    ):
        self.spec = spec
        self.store = store
        self.batch_size = batch_size
        self.chunks_ahead = chunks_ahead
        self.encoder: Encoder | None = None
        self.texts_encoded = 0
        self.seconds: dict[str, float] = {}
        self.first_encode_at: float | None = None  # time.perf_counter() of its first model call
        self.last_encode_end: float | None = None  # and of the last vectors it handed over
        self._prepare = prepare
        self._ready = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._order: dict[str, int] = {}
        self._chunks: dict[str, _ChunkAhead] = {}
        self._runs_at = 0  # position in the order of the chunk the runs are on
        self._thread_at = 0  # position of the chunk the thread is on (or will take next)
        self._stopped = False
        self._ended = False
        self._thread = threading.Thread(target=self._work, name="jobping-encoding-ahead", daemon=True)

    def start(self) -> "EncodingAhead":
        self._thread.start()
        return self

    def prepared(self) -> tuple[Encoder, Any]:
        """The encoder and what ``prepare`` returned, once the thread has them; raises what the
        load or the preparation raised."""
        self._wait_until_prepared()
        if self._error is not None:
            raise self._error
        return self.encoder, self._result

    def stop(self, *, wait: bool = True) -> None:
        """No more encoding ahead; ``wait`` for the batches under way (one per stream) to end."""
        with self._changed:
            self._stopped = True
            self._changed.notify_all()
        if wait and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _wait_until_prepared(self) -> None:
        while not self._ready.wait(WAIT_SLICE):
            pass

    # The runs' side (embedding.VectorsAhead).

    def vectors(self, chunk_key: str, texts: Sequence[str]) -> dict[str, np.ndarray]:
        self._wait_until_prepared()  # the order of the chunks is known from then on
        position = self._order.get(chunk_key)
        if position is None:
            return {}
        with self._changed:
            self._runs_at = max(self._runs_at, position)
            self._changed.notify_all()
            while not self._ended and not self._stopped and self._thread_at <= position:
                chunk = self._chunks.get(chunk_key)
                if chunk is not None and (chunk.done or not any(t in chunk.planned and t not in chunk.vectors for t in texts)):
                    break
                self._changed.wait(WAIT_SLICE)
            chunk = self._chunks.get(chunk_key)
            if chunk is None:
                return {}
            return {text: chunk.vectors[text] for text in texts if text in chunk.vectors}

    def finished(self, chunk_key: str) -> None:
        self._wait_until_prepared()
        position = self._order.get(chunk_key)
        if position is None:
            return
        with self._changed:
            self._runs_at = max(self._runs_at, position + 1)
            self._chunks.pop(chunk_key, None)
            self._changed.notify_all()

    # The thread.

    def _work(self) -> None:
        try:
            started = time.perf_counter()
            self.encoder = load_encoder(self.spec)
            self.seconds["model"] = time.perf_counter() - started
            started = time.perf_counter()
            self._result, chunk_keys = self._prepare(self.store, self.encoder)
            self.seconds["setup and chunks"] = time.perf_counter() - started
            self._order = {key: position for position, key in enumerate(chunk_keys)}
        except BaseException as error:  # noqa: BLE001 - raised again by prepared(), in the caller
            self._error = error
            self._end()
            return
        finally:
            self._ready.set()
        try:
            if isinstance(self.spec, ModelSpec):
                self._encode_ahead(chunk_keys)
        except Exception as error:  # noqa: BLE001 - the runs encode what is missing themselves
            logger.warning(f"encoding ahead stopped ({type(error).__name__}: {error}); the runs encode their own texts")
        finally:
            self._end()

    def _end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def _encode_ahead(self, chunk_keys: Sequence[str]) -> None:
        with self.store.connect(autocommit=True) as connection:
            for position, chunk_key in enumerate(chunk_keys):
                with self._changed:
                    self._thread_at = position
                    self._changed.notify_all()
                    while not self._stopped and position > self._runs_at + self.chunks_ahead:
                        self._changed.wait(WAIT_SLICE)
                    if self._stopped:
                        return
                    if position < self._runs_at:
                        continue  # the runs went past it
                # Longest first across the chunk: batches of like lengths pad least (3,565 demo
                # texts: 851,004 tokens with padding, 864,817 when each 512 were sorted apart).
                texts = sorted(texts_to_encode(self.store, self.encoder, connection, chunk_key), key=len, reverse=True)
                chunk = _ChunkAhead(planned=set(texts))
                with self._changed:
                    self._chunks[chunk_key] = chunk
                    self._changed.notify_all()
                self._encode_chunk(position, chunk, texts)
                with self._changed:
                    chunk.done = True
                    self._changed.notify_all()
            with self._changed:
                self._thread_at = len(chunk_keys)

    def _encode_chunk(self, position: int, chunk: _ChunkAhead, texts: list[str]) -> None:
        """The chunk's texts in one pipeline, each batch handed to the runs as it finishes. A
        batch that fails leaves the texts not yet encoded to the run, which encodes them itself
        and records why if the model fails there too."""

        def stopped() -> bool:
            with self._changed:
                return self._stopped or position < self._runs_at

        if self.first_encode_at is None:
            self.first_encode_at = time.perf_counter()
        try:
            with closing(self.encoder.encode_batches(texts, self.batch_size, stopped)) as batches:
                for index, vectors in batches:
                    validate_vectors(vectors, len(index), self.encoder.dimensions)
                    with self._changed:
                        chunk.vectors.update(zip((texts[i] for i in index), vectors))
                        self.texts_encoded += len(index)
                        self.last_encode_end = time.perf_counter()
                        self._changed.notify_all()
        except Exception:  # noqa: BLE001 - the run encodes these texts again and records the error
            with self._changed:
                chunk.planned.intersection_update(chunk.vectors)
                self._changed.notify_all()


@dataclass
class ChunkPlan:
    """What a backfill found before its runs (made by :func:`plan_chunks`)."""

    changes: list[str]
    new_keys: list[str]
    chunk_keys: list[str]
    pending: list[tuple[str, int]]


def plan_chunks(store: JobStore, encoder: Encoder) -> tuple[ChunkPlan, list[str]]:
    """The backfill's preparation, run by its :class:`EncodingAhead` thread once the model is
    loaded: the plan, and the chunks to encode ahead (those with pending work, in run order)."""
    changes, new_keys = store.prepare_chunks(encoder.dimensions)
    pending = store.chunks_with_pending_work(encoder.model_id)
    return ChunkPlan(changes, new_keys, store.chunk_keys(), pending), [key for key, _ in pending]


def start_encoding_ahead(settings: Settings) -> EncodingAhead:
    """The thread that loads the model, plans the backfill and encodes ahead of its runs: the
    CLI starts it before importing Dagster."""
    return EncodingAhead(spec_from_settings(settings), JobStore(settings), settings.batch_size, plan_chunks).start()


def encode_ahead_of(encoder: Encoder, store: JobStore, batch_size: int, chunk_keys: Sequence[str]) -> EncodingAhead:
    """Encoding ahead within one run of several chunks (a run worker's): chunk n+1 is encoded
    while chunk n is written and chunk n+1 read. The thread reads through a store of its own."""
    planned = list(chunk_keys)
    return EncodingAhead(encoder.spec, JobStore(store.settings), batch_size, lambda store, encoder: (None, planned)).start()


_active: list[EncodingAhead] = []


@contextmanager
def encoding_ahead_for_runs(ahead: EncodingAhead) -> Iterator[None]:
    """Runs executed in this process (the CLI's backfill) take their vectors from ``ahead``."""
    _active.append(ahead)
    try:
        yield
    finally:
        _active.remove(ahead)


def active_for(encoder: Encoder) -> EncodingAhead | None:
    """The encoding ahead that this process's runs use with ``encoder``, if any: only one that
    encodes with that very encoder."""
    for ahead in _active:
        if ahead.encoder is encoder:
            return ahead
    return None
