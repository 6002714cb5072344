"""The converted backends: the model exported once to ONNX (``export.py``) and run by ONNX
Runtime or OpenVINO (``runtime.py``): the same vectors as sentence-transformers (within cosine
0.9999 unless quantized), no torch in the process."""

from __future__ import annotations

import sys
import threading
from typing import Callable, Iterator, Sequence

import numpy as np

from jobping_pipeline.models.cpu import cpu_has_bf16
from jobping_pipeline.models.protocol import cut_for_tokenizer
from jobping_pipeline.models.runtime import ConvertedModel
from jobping_pipeline.models.spec import ModelSpec, configured_max_seq_length, model_folder, not_offline
from jobping_pipeline.settings import PRECISIONS, ConfigError


class ConvertedEncoder:
    def __init__(self, spec: ModelSpec, model: ConvertedModel, backend: str, precision: str, model_id: str) -> None:
        self.spec = spec
        self.model = model
        self.model_id = model_id
        self.backend = backend
        self.dimensions = model.dimensions
        self.device = "cpu"
        self.precision = precision if spec.quantization == "none" else spec.quantization
        self.calls = 0
        self.model_lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        with self.model_lock:
            self.calls += 1
            return self.model.encode(cut_for_tokenizer(texts, self.model.max_seq_length), batch_size=batch_size)

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every text in one pipeline through the streams, each batch yielded as it finishes: no
        stream idles between model calls (2 cores, 3,565 demo texts: the streams busy 93-95% of
        the time in calls of 512 texts, 98% in one pipeline per 1,000, 99% in one call for all).
        Holds the model until the generator ends or is closed."""
        with self.model_lock:
            self.calls += 1
            yield from self.model.encode_batches(cut_for_tokenizer(texts, self.model.max_seq_length), batch_size, stopped)

    def close(self) -> None:
        """Nothing to release: the process keeps its models (one load per process)."""


def converted_precision(spec: ModelSpec, backend: str) -> str:
    """``auto``: bf16 with OpenVINO where the CPU runs bf16 natively, fp32 otherwise; ONNX
    Runtime runs fp32 only. A quantized model runs its other layers in fp32 everywhere: bf16
    there moved its vectors by up to 0.0011 in cosine, beyond the audit's 0.999, under one id."""
    if spec.precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"JOBPING_PRECISION={spec.precision!r} must be one of {', '.join(PRECISIONS)}")
    if spec.quantization != "none":
        return "fp32"
    precision = spec.precision if spec.precision != "auto" else ("bf16" if cpu_has_bf16() else "fp32")
    if backend == "onnx" and precision != "fp32":
        if spec.precision != "auto":
            raise ConfigError(
                f"JOBPING_PRECISION={spec.precision} is not available with JOBPING_BACKEND=onnx (fp32 only); "
                "use JOBPING_BACKEND=openvino or torch"
            )
        return "fp32"
    return precision


def why_not_converted(spec: ModelSpec) -> str | None:
    """Why ``spec``'s model cannot run converted (a Dense layer, CLS pooling ...), or None."""
    from jobping_pipeline.models.export import why_not_convertible

    try:
        return why_not_convertible(model_folder(spec.name))
    except Exception as error:  # noqa: BLE001 - not found offline: the torch load says so by name
        return f"{type(error).__name__}: {error}"


def load_converted(spec: ModelSpec, backend: str, precision: str | None = None) -> ConvertedEncoder:
    """The model converted for ``backend`` (once per machine, cached) and loaded."""
    from jobping_pipeline.models.export import converted_model

    precision = precision or converted_precision(spec, backend)
    model_id = spec.model_id  # before the files are read: a folder replaced meanwhile is the next load's
    try:
        folder = model_folder(spec.name)
    except Exception as error:  # noqa: BLE001 - one clear message, as for torch
        raise not_offline(spec, error) from error
    try:
        max_seq_length = spec.max_seq_length or configured_max_seq_length(folder)
        converted = converted_model(
            folder, spec.cache_folder, max_seq_length, backend, spec.quantization, log=lambda line: print(line, file=sys.stderr)
        )
        model = ConvertedModel(converted, backend, precision=precision)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - any conversion or load failure becomes one clear message
        raise ConfigError(
            f"JOBPING_MODEL={spec.name!r} could not be converted for JOBPING_BACKEND={backend} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            + ("JOBPING_QUANTIZATION=none with " if spec.quantization != "none" else "")
            + "JOBPING_BACKEND=torch runs it with sentence-transformers"
        ) from error
    return ConvertedEncoder(spec, model, backend, precision, model_id)
