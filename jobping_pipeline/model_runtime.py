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
from pathlib import Path
from typing import Sequence

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
            self._infer, self.input_names = _onnxruntime_session(folder / ONNX_FILE, threads)
        elif backend == "openvino":
            self._infer, self.input_names = _openvino_request(folder / OPENVINO_FILE, threads, precision)
        else:
            raise ValueError(f"backend must be onnx or openvino, not {backend!r}")

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        order = np.argsort([-len(text) for text in texts], kind="stable")
        vectors = np.empty((len(texts), self.dimensions), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in index])
            feeds = {
                "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
            }
            hidden = np.asarray(self._infer({name: feeds[name] for name in self.input_names}), dtype=np.float32)
            mask = feeds["attention_mask"].astype(np.float32)[:, :, None]
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            vectors[index] = pooled / np.where(norms > 0, norms, 1.0)
        return vectors


def _onnxruntime_session(path: Path, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [item.name for item in session.get_inputs()]
    return (lambda feeds: session.run(None, feeds)[0]), names


# JOBPING_PRECISION as OpenVINO's inference precision hint (its weights stay fp32 on disk).
OPENVINO_PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


# OpenVINO keeps what it compiled for this CPU here (beside the converted model): a later
# process loads it in ~0.13 s instead of compiling again (~0.3-0.5 s measured on 2 cores).
OPENVINO_COMPILED = "openvino-compiled"


def _openvino_request(path: Path, threads: int, precision: str):
    import openvino

    core = openvino.Core()
    config = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "INFERENCE_PRECISION_HINT": OPENVINO_PRECISIONS[precision],
    }
    try:
        compiled = core.compile_model(str(path), "CPU", {**config, "CACHE_DIR": str(path.parent / OPENVINO_COMPILED)})
    except RuntimeError:  # a read-only model cache: compiled in this process only
        compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    names = [item.get_any_name() for item in compiled.inputs]
    return (lambda feeds: request.infer(feeds)[0]), names
