"""From a spec to an encoder: the one way in. Picks the backend (an explicit setting, torch where
a GPU may be, else the fastest exact path measured on this CPU, ``choice.py``), loads it once
per process, and leaves the rest to the backend's own module."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from pathlib import Path
from typing import Callable, Sequence

from jobping_pipeline.models.choice import Candidate, Choice, ChoiceCache, candidate_paths, choose
from jobping_pipeline.models.converted import load_converted, why_not_converted
from jobping_pipeline.models.cpu import gpu_may_be_present, this_cpu
from jobping_pipeline.models.openai_api import ApiSpec, OpenAIEncoder
from jobping_pipeline.models.protocol import Encoder
from jobping_pipeline.models.samples import sample_texts
from jobping_pipeline.models.spec import EncoderSpec, ModelSpec, configured_max_seq_length, model_folder
from jobping_pipeline.models.torch_backend import load_torch
from jobping_pipeline.settings import ConfigError

_loaded: dict[EncoderSpec, Encoder] = {}
_load_lock = threading.Lock()


def load_encoder(spec: EncoderSpec) -> Encoder:
    """The process-wide encoder for ``spec``, made on first use: a local model is loaded, an API
    is probed once (one request, which also learns its dimension). A failure is not cached."""
    with _load_lock:
        encoder = _loaded.get(spec)
        if encoder is None:
            encoder = _load(spec)
            _loaded[spec] = encoder
        return encoder


def loaded_model_count() -> int:
    """How many encoders (local models and APIs) this process has made (tests use it to prove
    reuse)."""
    return len(_loaded)


def _load(spec: EncoderSpec) -> Encoder:
    if isinstance(spec, ApiSpec):
        return OpenAIEncoder(spec)
    backend, precision = resolve_backend(spec)
    if backend == "torch":
        return load_torch(dataclasses.replace(spec, precision=precision) if precision else spec)
    return load_converted(spec, backend, precision)


def on_cpu_only(spec: ModelSpec) -> bool:
    return spec.device == "cpu" or (spec.device == "auto" and not gpu_may_be_present())


def resolve_backend(spec: ModelSpec) -> tuple[str, str | None]:
    """(backend, precision or None for the spec's own). ``auto``: torch where a GPU may be (torch
    then picks the device) or for a model the converted runtimes cannot reproduce (a Dense layer,
    CLS pooling ...); on a CPU, the fastest exact path measured here (``choice.py``)."""
    if spec.backend != "auto":
        return spec.backend, None
    if spec.quantization != "none":
        # Not measured: the two int8 recipes compute different vectors (model ids), and the id
        # must not depend on which machine measured (docs/performance.md, "int8").
        return spec.quantized_backend, None
    if not on_cpu_only(spec) or why_not_converted(spec) is not None:
        return "torch", None
    if not [path for path in candidate_paths(this_cpu(), spec.precision) if not path.lossy]:
        raise ConfigError(
            f"JOBPING_PRECISION={spec.precision} has no exact path on this CPU with JOBPING_BACKEND=auto "
            "(bf16 needs AVX-512 BF16 or AMX; fp16 is for GPUs): set JOBPING_PRECISION=auto, or name a "
            "backend (JOBPING_BACKEND=torch or openvino)"
        )
    choice = measured_choice(spec)
    return choice.backend, choice.precision


def measured_choice(
    spec: ModelSpec, *, remeasure: bool = False, lossy: bool = False, log: Callable[[str], None] | None = None
) -> Choice:
    """The backend measurement for ``spec``'s model on this machine: cached, or made now (with
    ``remeasure`` and ``lossy``, the int8 paths too)."""
    folder = model_folder(spec.name)
    texts = sample_texts()
    max_seq_length = spec.max_seq_length or configured_max_seq_length(folder)
    return choose(
        architecture(folder),
        ChoiceCache(spec.cache_folder),
        lambda candidate: _open(spec, candidate),
        texts,
        lambda: gflop_per_text(folder, texts, max_seq_length),
        precision=spec.precision,
        remeasure=remeasure,
        lossy=lossy,
        log=log or (lambda line: print(line, file=sys.stderr)),
    )


def _open(spec: ModelSpec, candidate: Candidate) -> Callable[[Sequence[str], int], object]:
    if candidate.backend == "torch":
        return load_torch(dataclasses.replace(spec, backend="torch", device="cpu", precision=candidate.precision, quantization="none")).encode
    if candidate.lossy:
        quantized = dataclasses.replace(spec, backend=candidate.backend, quantization=candidate.precision)
        return load_converted(quantized, candidate.backend).encode
    exact = dataclasses.replace(spec, backend=candidate.backend, quantization="none")
    return load_converted(exact, candidate.backend, candidate.precision).encode


ARCHITECTURE_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "intermediate_size", "num_attention_heads")


def architecture(folder: Path) -> str:
    """What the ranking of the paths depends on: the model's shape, not its weights or its token
    limit (a fine-tuned copy, or the model cut to 128 tokens, reuses its measurement)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return str(folder)
    return ",".join(f"{name}={config.get(name)}" for name in ARCHITECTURE_FIELDS)


def gflop_per_text(folder: Path, texts: Sequence[str], max_seq_length: int) -> float:
    """The model's work for an average text of ``texts``: 2 FLOP per weight of its layers per
    token, plus attention (4 x layers x tokens^2 x hidden). 0 when the model's config is unknown."""
    try:
        config = json.loads((folder / "config.json").read_text())
        layers, hidden = int(config["num_hidden_layers"]), int(config["hidden_size"])
        intermediate = int(config.get("intermediate_size", 4 * hidden))
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokens = [min(len(encoding.ids), max_seq_length) for encoding in tokenizer.encode_batch(list(texts))]
    except Exception:  # noqa: BLE001 - the % of peak is a nicety: an unknown config leaves it out
        return 0.0
    weights = layers * (4 * hidden * hidden + 2 * hidden * intermediate)
    flops = [2 * weights * n + 4 * layers * n * n * hidden for n in tokens]
    return sum(flops) / len(flops) / 1e9
