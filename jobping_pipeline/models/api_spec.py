"""Which embeddings API to call (:class:`ApiSpec`) and the model id its vectors are recorded
under: plain values, no client."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from jobping_pipeline.settings import ConfigError
from jobping_pipeline.texts import DEFAULT_TEXT_TEMPLATE, text_template_suffix

OPENAI_BASE_URL = "https://api.openai.com/v1"
_OPENAI_ORIGIN = "https://api.openai.com"


@dataclass(frozen=True)
class ApiSpec:
    """Which embeddings API to call and how hard to push it.

    ``dimensions`` is sent as the API's ``dimensions`` parameter only when set (text-embedding-3
    models shorten their vectors on request). ``base_url`` None means OpenAI itself. The spec
    never reads ``OPENAI_BASE_URL`` by itself: the settings pass its value in explicitly
    (``Settings.openai_base_url``), so ``model_id`` always names the server that made the
    vectors. The API key is not part of the spec."""

    model: str
    base_url: str | None = None
    dimensions: int | None = None
    concurrency: int = 4
    timeout_seconds: float = 60.0
    max_retries: int = 6
    text_template: str = DEFAULT_TEXT_TEMPLATE

    def __post_init__(self) -> None:
        if not self.model.strip():
            raise ConfigError("the embeddings API model name is empty")
        if self.dimensions is not None and self.dimensions < 1:
            raise ConfigError(f"dimensions={self.dimensions} must be at least 1 (or unset)")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency={self.concurrency} must be at least 1")
        if not self.timeout_seconds > 0:
            raise ConfigError(f"timeout_seconds={self.timeout_seconds} must be positive")
        if self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries} must be 0 or more")
        if self.base_url is not None:
            parts = urlsplit(self.base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ConfigError(
                    f"base_url={_without_credentials(self.base_url)!r} must be an http(s) URL "
                    "such as http://127.0.0.1:8000/v1"
                )

    def __repr__(self) -> str:
        base_url = None if self.base_url is None else _without_credentials(self.base_url)
        return (
            f"ApiSpec(model={self.model!r}, base_url={base_url!r}, dimensions={self.dimensions!r}, "
            f"concurrency={self.concurrency!r}, timeout_seconds={self.timeout_seconds!r}, "
            f"max_retries={self.max_retries!r}, text_template={self.text_template!r})"
        )

    @property
    def model_id(self) -> str:
        """Recorded per job: two vectors are comparable when their model ids are equal.

        ``openai:<model>`` for OpenAI itself, ``openai+<origin>:<model>`` for any other server,
        where origin is ``scheme://host[:port]`` (host lower-cased, default ports 80/443 left out;
        no credentials, path, query or fragment), then ``@<dimensions>`` when dimensions is set.
        Examples: ``openai:text-embedding-3-small``, ``openai:text-embedding-3-small@512``,
        ``openai+http://127.0.0.1:8000:bge-small``."""
        origin = api_origin(self.base_url)
        provider = "openai" if origin is None else f"openai+{origin}"
        suffix = "" if self.dimensions is None else f"@{self.dimensions}"
        return f"{provider}:{self.model}{suffix}" + text_template_suffix(self.text_template)


def api_origin(base_url: str | None) -> str | None:
    """``scheme://host[:port]`` of a base URL, or None for OpenAI's own API."""
    if base_url is None:
        return None
    parts = urlsplit(base_url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 address
    port = parts.port
    default_port = {"http": 80, "https": 443}.get(scheme)
    origin = f"{scheme}://{host}" if port in (None, default_port) else f"{scheme}://{host}:{port}"
    return None if origin == _OPENAI_ORIGIN else origin


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()
