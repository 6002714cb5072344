"""Embeddings from an OpenAI-compatible API, behind the interface of the local :class:`Encoder`.

:class:`OpenAIEncoder` offers what the pipeline asks of an encoder (``encode(texts, batch_size)``,
``dimensions``, ``device``, ``precision``, ``model_id``, ``calls``) and gets its vectors from
``POST {base_url}/embeddings`` through the official ``openai`` SDK: OpenAI itself, or any server
that speaks the same protocol (vLLM, text-embeddings-inference, LiteLLM, Ollama, ...).

Requests ask for ``encoding_format="base64"``: little-endian float32 bytes, a quarter of the size
of JSON floats and decoded here without a round trip through Python floats. Answers in JSON
floats (servers that ignore the parameter) are accepted too. Vectors are written exactly as the
API returns them, ordered by each item's ``index``; nothing is re-normalized.

The API key is never stored on the spec: it comes from the ``api_key`` argument or from
``OPENAI_API_KEY``, lives only in the SDK client, and is removed from any text this module puts
into a log record or an exception.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from jobping_pipeline.models.openai_protocol import (
    ApiRequestRefused,
    ApiUnavailable,
    _Failure,
    _is_retryable_status,
    _server_message,
    backoff_delay,
    cut_to_token_limit,
    estimate_tokens,
    plan_requests,
    retry_after_seconds,
    vectors_from_answer,
)
from jobping_pipeline.models.api_spec import OPENAI_BASE_URL, ApiSpec
from jobping_pipeline.models.protocol import in_model_calls
from jobping_pipeline.settings import ConfigError

logger = logging.getLogger(__name__)

# After a request fails for good on the server's side (every retry spent), calls within this many
# seconds fail at once, unsent: the pipeline retries a failed batch text by text, which would
# otherwise wait through every retry again for each text while the server is down.
FAIL_FAST_SECONDS = 60.0

PROBE_TEXT = "dimension probe"


class OpenAIEncoder:
    """An embeddings API with the few things the pipeline asks of an encoder.

    Construction sends one probe request (one short text) and learns ``dimensions`` from its
    answer, so a wrong key, URL or model fails here, before the pipeline reads any job. ``calls``
    counts ``encode`` calls (the probe is not one).

    The key comes from ``api_key`` or else ``OPENAI_API_KEY``. A ``client`` (an ``openai.OpenAI``)
    may be given instead; it is used with the SDK's own retries off and this spec's timeout, and
    ``api_key`` is then ignored. Retries are this class's: 429 waits what ``retry-after-ms`` or
    ``Retry-After`` says (else backs off), 408, 5xx, timeouts and connection errors back off
    exponentially with full jitter (:func:`backoff_delay`), up to ``spec.max_retries``; any other
    4xx raises :class:`ApiRequestFailed` at once. Once a request has spent every retry, requests
    in the next :data:`FAIL_FAST_SECONDS` raise at once without being sent. ``sleep`` and
    ``clock`` are injectable for tests."""

    device = "api"
    precision = "api"
    backend = "openai"

    def __init__(
        self,
        spec: ApiSpec,
        api_key: str | None = None,
        client: Any = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self.calls = 0
        self._sleep = sleep
        self._clock = clock
        self._gave_up: tuple[float, str] | None = None  # when the last request spent every retry, and why
        self._client = _configured_client(spec, api_key, client)
        self.dimensions: int = 0
        self.dimensions = int(self._embed([PROBE_TEXT], spec.dimensions).shape[1])

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    def __repr__(self) -> str:
        return f"OpenAIEncoder(model_id={self.model_id!r}, dimensions={self.dimensions})"

    def close(self) -> None:
        """Close the HTTP connections of the client."""
        self._client.close()

    def __enter__(self) -> OpenAIEncoder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def encode_batches(
        self, texts: Sequence[str], batch_size: int, stopped: Callable[[], bool] = lambda: False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return in_model_calls(self.encode, texts, batch_size, stopped)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """Float32 vectors exactly as the API returned them, one row per text, in input order.

        Texts over :data:`MAX_TOKENS_PER_INPUT` are cut (:func:`cut_to_token_limit`); requests
        are planned by :func:`plan_requests` and up to ``spec.concurrency`` are in flight. If a
        request fails for good, requests not yet started are dropped and the error is raised."""
        self.calls += 1
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        inputs = [cut_to_token_limit(text) for text in texts]
        requests = plan_requests([estimate_tokens(text) for text in inputs], batch_size, self.spec.concurrency)
        if len(requests) == 1:
            return self._embed(inputs, self.dimensions)
        workers = min(self.spec.concurrency, len(requests))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jobping-embeddings-api")
        try:
            futures = [pool.submit(self._embed, inputs[part.start : part.stop], self.dimensions) for part in requests]
            return np.concatenate([future.result() for future in futures])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _embed(self, inputs: list[str], dimensions: int | None) -> np.ndarray:
        response = self._send(inputs)
        return vectors_from_answer(getattr(response, "data", None), len(inputs), dimensions)

    def _send(self, inputs: list[str]) -> Any:
        """One request with this class's retry policy; the SDK's answer object on success."""
        self._fail_fast_after_giving_up()
        attempts = self.spec.max_retries + 1
        for attempt in range(attempts):
            outcome = self._attempt(inputs)
            if not isinstance(outcome, _Failure):
                self._gave_up = None
                return outcome
            if not outcome.retryable:
                raise ApiRequestRefused(
                    f"{self.model_id}: the embeddings API refused the request: {outcome.reason}", outcome.status
                )
            if attempt + 1 == attempts:
                break
            delay = outcome.retry_after if outcome.retry_after is not None else backoff_delay(attempt)
            logger.warning(
                "%s: embeddings request of %d inputs failed (%s); retry %d of %d in %.2f s",
                self.model_id, len(inputs), outcome.reason, attempt + 1, self.spec.max_retries, delay,
            )
            self._sleep(delay)
        # Raised outside any except block: the SDK's exceptions carry the request and its
        # Authorization header, so none is chained onto this one.
        self._gave_up = (self._clock(), outcome.reason)
        raise ApiUnavailable(
            f"{self.model_id}: the embeddings API failed {attempts} attempts; last: {outcome.reason}"
        )

    def _fail_fast_after_giving_up(self) -> None:
        if self._gave_up is None:
            return
        gave_up_at, reason = self._gave_up
        elapsed = self._clock() - gave_up_at
        if elapsed < FAIL_FAST_SECONDS:
            raise ApiUnavailable(
                f"{self.model_id}: not sent: a request spent every retry {elapsed:.0f} s ago (last: {reason}); "
                f"requests resume {FAIL_FAST_SECONDS:g} s after that"
            )

    def _attempt(self, inputs: list[str]) -> Any:
        import openai

        arguments: dict[str, Any] = {"model": self.spec.model, "input": inputs, "encoding_format": "base64"}
        if self.spec.dimensions is not None:
            arguments["dimensions"] = self.spec.dimensions
        try:
            return self._client.embeddings.create(**arguments)
        except openai.APIStatusError as error:
            status = error.status_code
            message = self._redacted(_server_message(error.body, error.message))
            retry_after = retry_after_seconds(error.response.headers) if _is_retryable_status(status) else None
            return _Failure(f"HTTP {status}: {message}", _is_retryable_status(status), retry_after, status)
        except openai.APITimeoutError:
            return _Failure(f"no answer within {self.spec.timeout_seconds:g} s", True)
        except openai.APIConnectionError as error:
            cause = error.__cause__
            detail = f"{type(cause).__name__}: {cause}" if cause is not None else error.message
            return _Failure(self._redacted(f"connection failed ({detail})"), True)

    def _redacted(self, text: str) -> str:
        """``text`` without the API key, should a server echo it back."""
        key = getattr(self._client, "api_key", None)
        return text.replace(key, "***") if isinstance(key, str) and len(key) >= 4 else text


def _configured_client(spec: ApiSpec, api_key: str | None, client: Any) -> Any:
    """The SDK client: the given one with the SDK's retries off, or a new one."""
    if client is not None:
        return client.with_options(max_retries=0, timeout=spec.timeout_seconds)
    import openai

    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    if not key:
        raise ConfigError(
            "no API key for the embeddings API: set OPENAI_API_KEY (a server that needs no key "
            "accepts any placeholder)"
        )
    return openai.OpenAI(
        api_key=key,
        base_url=spec.base_url or OPENAI_BASE_URL,
        timeout=spec.timeout_seconds,
        max_retries=0,
    )
