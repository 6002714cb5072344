"""Every setting of the pipeline: the one typed, validated view of the environment variables
(:mod:`jobping_pipeline.variables` lists them).

Configuration flows one way. The environment fills the fields of the two Dagster resources
(:mod:`jobping_pipeline.resources`) as ``EnvVar``s, raw text as given; :func:`load_settings`
validates raw values into :class:`Settings`, the typed view every module reads. The code
location and the command line build the same resources from the same table, so a variable
means the same thing whichever way the pipeline is run. Two settings shape the Dagster
definitions themselves (the sensor's interval, the run tags) and are read when they are built.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from jobping_pipeline.texts import DEFAULT_TEXT_TEMPLATE, TEXT_TEMPLATES
from jobping_pipeline.variables import (  # noqa: F401 - re-exported: the settings' vocabulary
    BUNDLED_MODEL,
    DEFAULT_TEXT_COLUMNS,
    DEFINITIONS,
    DEVICES,
    EMBEDDING_MODEL,
    INSTANCE,
    JOBS_DATABASE,
    LOCAL_PROVIDER,
    OPENAI_DEFAULT_MODEL,
    OPENAI_PROVIDER,
    PRECISIONS,
    BACKENDS,
    QUANTIZATIONS,
    PROVIDERS,
    SETTINGS,
    Setting,
)

class ConfigError(ValueError):
    """A setting has a value the pipeline cannot work with; the message names the setting."""


@dataclass(frozen=True)
class QualifiedName:
    """A schema-qualified Postgres relation name, kept unquoted; the store quotes it."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"

    def as_setting(self) -> str:
        """Quoted so that :func:`parse_qualified_name` reads it back unchanged."""
        return ".".join('"' + part.replace('"', '""') + '"' for part in (self.schema, self.name))


@dataclass(frozen=True)
class Settings:
    """The pipeline's configuration, validated."""

    database_url: str | None = None
    data_dir: Path | None = None
    jobs_table: QualifiedName = QualifiedName("public", "jobs")
    id_column: str = "id"
    embedding_column: str = "embedding"
    text_columns: tuple[str, ...] = DEFAULT_TEXT_COLUMNS
    text_columns_explicit: bool = False
    provider: str = LOCAL_PROVIDER
    model: str | None = None
    dimensions: int | None = None
    api_concurrency: int = 4
    openai_base_url: str | None = None
    chunk_size: int = 1000
    batch_size: int = 64
    device: str = "auto"
    max_seq_length: int | None = None
    precision: str = "auto"
    backend: str = "auto"
    quantization: str = "none"
    text_template: str = DEFAULT_TEXT_TEMPLATE
    model_cache: Path | None = None
    k8s_gpus: int = 0
    state_schema: str = "jobping_pipeline"
    eligible_column: str | None = None
    grace_minutes: int = 5
    max_attempts: int = 3
    sensor_interval_seconds: int = 30
    # The raw values these settings were read from (only those that were set), and whether they
    # came from the process environment: resources are built from them (resources.py).
    raw: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    from_environment: bool = field(default=False, compare=False, repr=False)

    @property
    def model_name(self) -> str:
        """The configured model, else the provider's default."""
        if self.model:
            return self.model
        return OPENAI_DEFAULT_MODEL if self.provider == OPENAI_PROVIDER else BUNDLED_MODEL


_IDENTIFIER_PART = re.compile(r'"((?:[^"]|"")+)"|([^".]+)')


def parse_qualified_name(value: str, setting: str, default_schema: str = "public") -> QualifiedName:
    """Parse ``schema.table`` the way Postgres does: unquoted parts fold to lower case,
    double-quoted parts are kept as written (``""`` is a literal quote)."""
    parts: list[str] = []
    position = 0
    text = value.strip()
    while position < len(text):
        match = _IDENTIFIER_PART.match(text, position)
        if match is None:
            raise ConfigError(f"{setting}={value!r} is not a valid table name")
        quoted, bare = match.groups()
        if quoted is not None:
            parts.append(quoted.replace('""', '"'))
        else:
            bare = bare.strip()
            if not bare:
                raise ConfigError(f"{setting}={value!r} is not a valid table name")
            parts.append(bare.lower())
        position = match.end()
        if position < len(text):
            if text[position] != ".":
                raise ConfigError(f"{setting}={value!r} is not a valid table name")
            position += 1
            if position == len(text):
                raise ConfigError(f"{setting}={value!r} ends with a dot")
    if len(parts) == 1:
        return QualifiedName(default_schema, parts[0])
    if len(parts) == 2:
        return QualifiedName(parts[0], parts[1])
    raise ConfigError(f"{setting}={value!r}: expected table or schema.table")


def _column(value: str, setting: str) -> str:
    name = value.strip()
    if name.startswith('"') and name.endswith('"') and len(name) > 1:
        name = name[1:-1].replace('""', '"')
    if not name:
        raise ConfigError(f"{setting} is empty; name a column")
    return name


def _positive_int(env: Mapping[str, str], setting: str, default: str | None) -> int | None:
    raw = env.get(setting, default)
    if raw is None or raw.strip() == "":
        return None
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{setting}={raw!r} is not a whole number") from None
    if number <= 0:
        raise ConfigError(f"{setting}={raw!r} must be at least 1")
    return number


def _whole_number(env: Mapping[str, str], setting: str, default: str | None) -> int:
    raw = env.get(setting, "").strip() or default or "0"
    try:
        number = int(raw)
    except ValueError:
        raise ConfigError(f"{setting}={raw!r} is not a whole number") from None
    if number < 0:
        raise ConfigError(f"{setting}={raw!r} must be 0 or more")
    return number


def _provider(value: str | None) -> str:
    provider = (value or LOCAL_PROVIDER).lower()
    if provider not in PROVIDERS:
        raise ConfigError(f"JOBPING_PROVIDER={value!r} must be one of {', '.join(PROVIDERS)}")
    return provider


def _check_provider_options(provider: str, dimensions: int | None, max_seq_length: int | None) -> None:
    """Refuse a setting the provider would silently ignore: each changes what a vector is."""
    if provider == LOCAL_PROVIDER and dimensions is not None:
        raise ConfigError(
            f"JOBPING_DIMENSIONS={dimensions} applies to JOBPING_PROVIDER={OPENAI_PROVIDER} only; a "
            "sentence-transformers model makes vectors of its own dimension (unset JOBPING_DIMENSIONS)"
        )
    if provider == OPENAI_PROVIDER and max_seq_length is not None:
        raise ConfigError(
            f"JOBPING_MAX_SEQ_LENGTH={max_seq_length} applies to JOBPING_PROVIDER={LOCAL_PROVIDER} only; "
            "the embeddings API reads up to the model's own input limit (unset JOBPING_MAX_SEQ_LENGTH)"
        )


def _without_userinfo(url: str) -> str:
    return re.sub(r"://[^/?#@]*@", "://***@", url)


def _base_url(value: str | None) -> str | None:
    """``OPENAI_BASE_URL``, checked to be an http(s) URL with a host (and a valid port)."""
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ConfigError(f"OPENAI_BASE_URL={_without_userinfo(value)!r} has an invalid port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"OPENAI_BASE_URL={_without_userinfo(value)!r} must be an http(s) URL such as "
            "http://127.0.0.1:8000/v1"
        )
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every variable of :data:`SETTINGS`; raise :class:`ConfigError` naming
    the first variable that is wrong. ``env`` defaults to the process environment."""
    from_environment = env is None
    env = os.environ if env is None else env
    defaults = {setting.name: setting.default for setting in SETTINGS}

    def get(name: str) -> str | None:
        raw = env.get(name)
        if raw is None or raw.strip() == "":
            return defaults[name]
        return raw.strip()

    raw_text_columns = env.get("JOBPING_TEXT_COLUMNS", "").strip()
    text_columns = tuple(
        _column(part, "JOBPING_TEXT_COLUMNS")
        for part in (raw_text_columns or defaults["JOBPING_TEXT_COLUMNS"] or "").split(",")
    )
    if len(set(text_columns)) != len(text_columns):
        raise ConfigError(f"JOBPING_TEXT_COLUMNS={raw_text_columns!r} names a column twice")

    device = (get("JOBPING_DEVICE") or "auto").lower()
    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", device):
        raise ConfigError(f"JOBPING_DEVICE={device!r} must be one of {', '.join(DEVICES)} or cuda:N")

    precision = (get("JOBPING_PRECISION") or "auto").lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"JOBPING_PRECISION={precision!r} must be one of {', '.join(PRECISIONS)}")

    backend = _choice(get("JOBPING_BACKEND") or "auto", "JOBPING_BACKEND", BACKENDS)
    quantization = _choice(get("JOBPING_QUANTIZATION") or "none", "JOBPING_QUANTIZATION", QUANTIZATIONS)
    if quantization == "int8" and backend == "torch":
        raise ConfigError(
            "JOBPING_QUANTIZATION=int8 needs JOBPING_BACKEND=auto or onnx (ONNX Runtime's dynamic int8) or "
            "openvino (NNCF's static int8); `jobping-pipeline backends --measure` shows what each measures here"
        )
    on_gpu = device.startswith("cuda") or device == "mps"
    if quantization == "int8" and on_gpu:
        raise ConfigError(f"JOBPING_QUANTIZATION=int8 runs on the CPU; JOBPING_DEVICE={device} needs JOBPING_QUANTIZATION=none")
    if quantization == "int8" and precision not in ("auto", "fp32"):
        raise ConfigError(
            f"JOBPING_PRECISION={precision} does not apply to JOBPING_QUANTIZATION=int8 (its other layers run "
            "in fp32 on every machine, to keep one model id one computation): unset JOBPING_PRECISION"
        )
    if backend in ("onnx", "openvino") and on_gpu:
        raise ConfigError(f"JOBPING_BACKEND={backend} runs on the CPU; JOBPING_DEVICE={device} needs JOBPING_BACKEND=torch")
    model_cache = get("JOBPING_MODEL_CACHE")
    text_template = _choice(get("JOBPING_TEXT_TEMPLATE") or DEFAULT_TEXT_TEMPLATE, "JOBPING_TEXT_TEMPLATE", TEXT_TEMPLATES)
    provider = _provider(get("JOBPING_PROVIDER"))
    dimensions = _positive_int(env, "JOBPING_DIMENSIONS", None)
    max_seq_length = _positive_int(env, "JOBPING_MAX_SEQ_LENGTH", None)
    _check_provider_options(provider, dimensions, max_seq_length)

    state_schema = _column(get("JOBPING_STATE_SCHEMA") or "", "JOBPING_STATE_SCHEMA")
    data_dir = get("JOBPING_DATA_DIR")
    return Settings(
        database_url=get("JOBPING_DATABASE_URL"),
        data_dir=Path(data_dir).expanduser().resolve() if data_dir else None,
        jobs_table=parse_qualified_name(get("JOBPING_JOBS_TABLE") or "", "JOBPING_JOBS_TABLE"),
        id_column=_column(get("JOBPING_ID_COLUMN") or "", "JOBPING_ID_COLUMN"),
        embedding_column=_column(get("JOBPING_EMBEDDING_COLUMN") or "", "JOBPING_EMBEDDING_COLUMN"),
        text_columns=text_columns,
        text_columns_explicit=bool(raw_text_columns),
        provider=provider,
        model=get("JOBPING_MODEL"),
        dimensions=dimensions,
        api_concurrency=_positive_int(env, "JOBPING_API_CONCURRENCY", defaults["JOBPING_API_CONCURRENCY"]) or 4,
        # Only the openai provider talks to a server; the SDK's variable is ignored otherwise.
        openai_base_url=_base_url(get("OPENAI_BASE_URL")) if provider == OPENAI_PROVIDER else None,
        chunk_size=_positive_int(env, "JOBPING_CHUNK_SIZE", defaults["JOBPING_CHUNK_SIZE"]) or 1000,
        batch_size=_positive_int(env, "JOBPING_BATCH_SIZE", defaults["JOBPING_BATCH_SIZE"]) or 64,
        device=device,
        max_seq_length=max_seq_length,
        precision=precision,
        backend=backend,
        quantization=quantization,
        text_template=text_template,
        model_cache=Path(model_cache).expanduser().resolve() if model_cache else None,
        k8s_gpus=_whole_number(env, "JOBPING_K8S_GPUS", defaults["JOBPING_K8S_GPUS"]),
        state_schema=state_schema,
        eligible_column=(
            _column(env["JOBPING_ELIGIBLE_COLUMN"], "JOBPING_ELIGIBLE_COLUMN")
            if env.get("JOBPING_ELIGIBLE_COLUMN", "").strip()
            else None
        ),
        grace_minutes=_whole_number(env, "JOBPING_GRACE_MINUTES", defaults["JOBPING_GRACE_MINUTES"]),
        max_attempts=_positive_int(env, "JOBPING_MAX_ATTEMPTS", defaults["JOBPING_MAX_ATTEMPTS"]) or 3,
        sensor_interval_seconds=_positive_int(
            env, "JOBPING_SENSOR_INTERVAL_SECONDS", defaults["JOBPING_SENSOR_INTERVAL_SECONDS"]
        )
        or 30,
        raw={setting.name: env[setting.name] for setting in SETTINGS if env.get(setting.name, "").strip()},
        from_environment=from_environment,
    )


def _choice(value: str, name: str, choices: tuple[str, ...]) -> str:
    value = value.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return value


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``, safe for logs and error messages."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", url)
