"""A converted model run by ONNX Runtime or OpenVINO, with no torch, transformers or
sentence-transformers in the process: the fast start of ``JOBPING_BACKEND=onnx`` / ``openvino``.

The folder of a converted model (``model_export.py`` writes it) holds the model file,
``tokenizer.json`` and ``encoder.json`` (maximum sequence length, dimensions). Encoding does what
sentence-transformers does for a mean-pooling model: texts sorted by length into batches,
truncation to the maximum sequence length, padding to the longest text of each batch, mean pooling
over the attention mask, L2 normalization in float32.
"""

from __future__ import annotations

import json
import os
import queue
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
ONNX_FILE = "model.onnx"
OPENVINO_FILE = "model.xml"


class ConvertedModel:
    """A converted model loaded for inference; ``encode`` returns unit vectors in input order."""

    def __init__(self, folder: Path, backend: str, *, precision: str = "fp32", threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        config = json.loads((folder / "encoder.json").read_text())
        self.folder = folder
        self.backend = backend
        self.max_seq_length = int(config["max_seq_length"])
        self.dimensions = int(config["dimensions"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.tokenizer.enable_padding(pad_id=int(config.get("pad_id", 0)), pad_token=config.get("pad_token", "[PAD]"))
        threads = threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
        if backend == "onnx":
            self.streams: _Streams = _OnnxRuntimeStreams(folder / ONNX_FILE, threads)
        elif backend == "openvino":
            self.streams = _OpenVinoStreams(folder / OPENVINO_FILE, threads, precision)
        else:
            raise ValueError(f"backend must be onnx or openvino, not {backend!r}")
        self._runner = ThreadPoolExecutor(max_workers=self.streams.count, thread_name_prefix="jobping-stream")

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit vectors, one row per text, in input order."""
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for index, batch_vectors in self.encode_batches(texts, batch_size):
            vectors[index] = batch_vectors
        return vectors

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(indices into texts, their unit vectors)`` for each batch as it finishes: one
        pipeline for every text, so no stream waits between groups of texts. Batch n+1 is
        tokenized while the streams run the batches before it, and goes to the first stream that
        is done, whichever batch that stream had (a short batch started after a long one ends
        first); each stream pools its own batch. Once ``stopped()`` is true no batch starts; those
        running finish and are yielded. A batch that fails raises once every running batch ended."""
        order = np.argsort([-len(text) for text in texts], kind="stable")
        running: dict[Future, np.ndarray] = {}

        def finished(return_when: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
            done, _ = wait(running, return_when=return_when)
            for future in done:
                yield running.pop(future), future.result()

        try:
            for index in _balanced_batches(order, batch_size, self.streams.count):
                feeds, mask = self._feeds([texts[i] for i in index])
                if len(running) == self.streams.count:
                    yield from finished(FIRST_COMPLETED)
                if stopped():
                    break
                running[self._runner.submit(self.streams.run, feeds, mask)] = index
            yield from finished(ALL_COMPLETED)
        except BaseException as error:  # a failed batch, or the caller closed the generator
            wait(running)  # no stream may go on with a batch of this call
            if isinstance(error, Exception):
                self.streams.recover()  # a runtime may leave the stream that failed unusable
            raise

    def _feeds(self, texts: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        return {name: feeds[name] for name in self.streams.input_names}, feeds["attention_mask"]


def _balanced_batches(order: np.ndarray, batch_size: int, streams: int) -> list[np.ndarray]:
    """``order`` cut into batches of at most ``batch_size``, as many as a multiple of ``streams``
    and of equal size: every stream has a batch of about the same work until the end (a call of
    64 texts runs as 2 x 32 on 2 cores; 479 as 8 x 60, not 7 x 64 and a last 31 run alone)."""
    if len(order) == 0:
        return []
    count = -(-len(order) // batch_size)
    count = min(len(order), -(-count // streams) * streams)
    return np.array_split(order, count)


def _mean_pooled_unit(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    mask = attention_mask.astype(np.float32)
    pooled = np.einsum("bl,bld->bd", mask, np.asarray(hidden, dtype=np.float32))
    pooled /= np.clip(mask.sum(axis=1, keepdims=True), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return pooled / np.where(norms > 0, norms, 1.0)


class _Streams(Protocol):
    """Inference streams: up to ``count`` batches run at once, each on its share of the cores.

    OpenVINO runs one single-threaded stream per core: as fast alone as one stream over every
    core (measured on 2 cores), and a thread busy beside the model (Dagster starting, a run
    writing) slows one stream instead of holding up every core at each layer's synchronization
    point. ONNX Runtime runs one session over every core: two single-threaded sessions were
    5.5% slower alone and 3.5-4.5% slower in the backfill (fp32, 2 cores with AVX-512)."""

    count: int
    input_names: list[str]

    def run(self, feeds: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        """The batch's mean-pooled unit vectors; called from up to ``count`` threads at once."""

    def recover(self) -> None:
        """Makes every stream usable again after a batch failed."""


class _OnnxRuntimeStreams:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [item.name for item in self.session.get_inputs()]
        self.count = 1

    def run(self, feeds: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        return _mean_pooled_unit(self.session.run(None, feeds)[0], mask)

    def recover(self) -> None:
        pass  # a session keeps no state from one run to the next


# JOBPING_PRECISION as OpenVINO's inference precision hint (its weights stay fp32 on disk).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


# OpenVINO keeps what it compiled for this CPU here (beside the converted model): a later
# process loads it in ~0.13 s instead of compiling again (~0.3-0.5 s measured on 2 cores).
OPENVINO_COMPILED = "openvino-compiled"


class _OpenVinoStreams:
    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import openvino

        self._core = openvino.Core()
        self._path = path
        self._config = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": threads,
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
        }
        self.recover()

    def recover(self) -> None:
        # Compiled anew: after a failed inference the CPU plugin fails every later request that
        # lands on the same stream (seen with OpenVINO 2026.x), with the first failure's message.
        try:
            compiled = self._core.compile_model(
                str(self._path), "CPU", {**self._config, "CACHE_DIR": str(self._path.parent / OPENVINO_COMPILED)}
            )
        except RuntimeError:  # a read-only model cache: compiled in this process only
            compiled = self._core.compile_model(str(self._path), "CPU", self._config)
        self.input_names = [item.get_any_name() for item in compiled.inputs]
        self.count = int(compiled.get_property("NUM_STREAMS"))
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for _ in range(self.count):
            self._idle.put(compiled.create_infer_request())
        # One inference of one token here, in one thread, before the streams run together: the
        # first `Tensor.data` of a process initializes a static inside OpenVINO's Python module
        # that releases the GIL midway, and two streams reaching it at once deadlocked (one held
        # the GIL waiting for the static, the other held the static waiting for the GIL; seen in
        # about 1 of 50 backfills on 2 busy cores, gdb-confirmed).
        one_token = {name: np.full((1, 1), int(name != "token_type_ids"), dtype=np.int64) for name in self.input_names}
        self.run(one_token, one_token["attention_mask"])

    def run(self, feeds: dict[str, np.ndarray], mask: np.ndarray) -> np.ndarray:
        request = self._idle.get_nowait()  # a request per stream, a stream per calling thread
        try:
            request.infer(feeds, share_outputs=True)
            return _mean_pooled_unit(request.get_output_tensor(0).data, mask)
        finally:
            self._idle.put(request)
