"""The torch backend: sentence-transformers, on the CPU or a GPU. The only module of the models
package (with the export) that imports torch."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import numpy as np

from jobping_pipeline.models.cpu import cpu_has_bf16
from jobping_pipeline.models.protocol import cut_for_tokenizer, in_model_calls, unit_rows
from jobping_pipeline.models.spec import ModelSpec, bundled_model_path, not_offline
from jobping_pipeline.settings import BUNDLED_MODEL, PRECISIONS, ConfigError


class TorchEncoder:
    """A sentence-transformers model on torch."""

    backend = "torch"

    def __init__(self, spec: ModelSpec, model, model_id: str | None = None) -> None:
        self.spec = spec
        self.model = model
        # As the weights were when loaded: a folder replaced in place later makes a new id for the
        # checks, never for the vectors of these weights.
        self.model_id = model_id or spec.model_id
        self.dimensions: int = int(model.get_embedding_dimension())
        self.device: str = str(model.device)
        self.precision: str = resolve_precision(spec.precision, self.device)
        self.calls = 0
        self.model_lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order. One call at a time
        (a run and the thread encoding ahead of it share the model): each uses every core."""
        with self.model_lock:
            self.calls += 1
            with self._compute_context():
                vectors = self.model.encode(
                    cut_for_tokenizer(texts, self.model.max_seq_length),
                    batch_size=batch_size,
                    convert_to_numpy=True,
                    show_progress_bar=False,
                )
            return unit_rows(vectors)

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return in_model_calls(self.encode, texts, batch_size, stopped)

    def close(self) -> None:
        """Nothing to release: the process keeps its models (one load per process)."""

    def _compute_context(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 autocast on CPUs with native bf16 and on CUDA GPUs that support it, fp16
    on other CUDA GPUs, fp32 everywhere else. Measured retrieval quality vs fp32 is in docs/performance.md."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ConfigError(f"JOBPING_PRECISION={precision!r} must be one of {', '.join(PRECISIONS)}")
        return precision
    if device.startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_has_bf16():
        return "bf16"
    return "fp32"


def resolve_device(device: str) -> str:
    """``auto`` picks cuda (the GPU with most free memory when there are several), then mps,
    then cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        if count == 1:
            return "cuda"
        # Several GPUs, one embedding run each (pool limit = GPUs): take the one with most free memory.
        free = [torch.cuda.mem_get_info(index)[0] for index in range(count)]
        return f"cuda:{free.index(max(free))}"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@contextlib.contextmanager
def _quiet_loading():
    """transformers draws a 'Loading weights' progress bar on stderr for every load."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()


def load_torch(spec: ModelSpec) -> TorchEncoder:
    """The model on torch, from its folder, offline."""
    from sentence_transformers import SentenceTransformer

    model_id = spec.model_id  # before the weights are read
    device = resolve_device(spec.device)
    source = str(bundled_model_path()) if spec.name == BUNDLED_MODEL else spec.name
    try:
        with _quiet_loading():
            model = SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure becomes one clear message
        raise not_offline(spec, error) from error
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    return TorchEncoder(spec, model, model_id)
