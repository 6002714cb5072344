"""The OpenAI embeddings protocol as plain functions: how many tokens a text may cost, how texts
are split into requests within the API's limits, how long to wait before a retry, and how an
answer is decoded and checked. :mod:`jobping_pipeline.models.openai_api` drives them."""

from __future__ import annotations

import base64
import binascii
import math
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# The API's limits (OpenAI embeddings reference): inputs per request, tokens summed over one
# request's inputs, and tokens of one input.
MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_REQUEST = 300_000
MAX_TOKENS_PER_INPUT = 8191

BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 20.0
# A Retry-After is honoured up to this long; a larger value is a server bug, not a plan.
MAX_RETRY_AFTER_SECONDS = 300.0

_HIGH_BYTES = bytes(range(128, 256))


class ApiRequestFailed(RuntimeError):
    """The embeddings API refused a request (the message names the status and the server's
    error message) or stayed unreachable through every retry. Never contains the API key."""


class ApiUnavailable(ApiRequestFailed):
    """Every retry failed (5xx, 429, 408, timeouts, connection errors), or requests are held back
    after that (the encoder's open circuit): the API's fault, never one text's."""


class ApiRequestRefused(ApiRequestFailed):
    """The API answered with a status that retrying cannot change (4xx but 408 and 429)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class ApiAnswerInvalid(RuntimeError):
    """The API answered, but the answer cannot be the vectors asked for: wrong count, a missing
    or repeated index, a wrong dimension, NaN or infinite values, or undecodable data."""


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens of ``text``, without a tokenizer.

    ASCII counts one token per 3 bytes, rounded up (English runs near 4 bytes per token, code
    and numbers near 3). Every UTF-8 byte of a non-ASCII character counts as a whole token: a
    byte-level BPE token covers at least one byte, so for CJK and other scripts this is a true
    bound, where bytes/3 would undercount rare characters."""
    encoded = text.encode("utf-8", "surrogatepass")
    ascii_bytes = len(encoded.translate(None, _HIGH_BYTES))
    return -(-ascii_bytes // 3) + (len(encoded) - ascii_bytes)


def cut_to_token_limit(text: str, limit: int = MAX_TOKENS_PER_INPUT) -> str:
    """The longest prefix of ``text`` whose :func:`estimate_tokens` is at most ``limit``.

    A text over the model's input limit is refused with a 400; cutting it here costs its tail
    only (24,573 ASCII characters fit 8191 tokens by this estimate)."""
    if estimate_tokens(text) <= limit:
        return text
    # Counted in thirds of a token: an ASCII character costs 1, each byte of any other 3.
    budget = 3 * limit
    spent = 0
    for position, character in enumerate(text):
        spent += 1 if character < "\x80" else 3 * len(character.encode("utf-8", "surrogatepass"))
        if spent > budget:
            return text[:position]
    return text


def plan_requests(token_counts: Sequence[int], batch_size: int, concurrency: int) -> list[range]:
    """Split inputs (given by their token estimates) into consecutive requests.

    A request holds at most :data:`MAX_INPUTS_PER_REQUEST` inputs and at most
    :data:`MAX_TOKENS_PER_REQUEST` estimated tokens (an input over that budget goes alone).
    Within those limits a call is spread over ``concurrency`` requests, but no request is made
    smaller than ``batch_size``: an API charges a round trip per request rather than work per
    batch, so the pipeline's batch size is a floor, and one call fills every request slot."""
    target = min(MAX_INPUTS_PER_REQUEST, max(batch_size, math.ceil(len(token_counts) / concurrency), 1))
    requests: list[range] = []
    start = 0
    tokens = 0
    for index, cost in enumerate(token_counts):
        count = index - start
        if count and (count >= target or tokens + cost > MAX_TOKENS_PER_REQUEST):
            requests.append(range(start, index))
            start, tokens = index, 0
        tokens += cost
    if start < len(token_counts):
        requests.append(range(start, len(token_counts)))
    return requests


def backoff_delay(attempt: int, draw: Callable[[float, float], float] = random.uniform) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(20 s, 0.5 s x 2^attempt)]."""
    return draw(0.0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt))


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """What the server asked to wait: ``retry-after-ms``, else ``Retry-After`` in seconds or as
    an HTTP date; None when it asked nothing usable. Capped at :data:`MAX_RETRY_AFTER_SECONDS`."""
    seconds = _number(headers.get("retry-after-ms"))
    if seconds is not None:
        seconds /= 1000.0
    else:
        value = headers.get("retry-after")
        seconds = _number(value)
        if seconds is None and value:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
    if seconds is None:
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def decode_vector(raw: Any, index: int) -> np.ndarray:
    """One item's ``embedding``: base64 of little-endian float32, or a list of numbers."""
    if isinstance(raw, str):
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiAnswerInvalid(f"vector {index} is not valid base64") from None
        if len(data) % 4:
            raise ApiAnswerInvalid(f"vector {index} has {len(data)} bytes, not a whole number of float32 values")
        return np.frombuffer(data, dtype="<f4").astype(np.float32)
    if isinstance(raw, list):
        try:
            with np.errstate(over="ignore"):  # a float64 beyond float32 becomes inf, caught later
                vector = np.asarray(raw, dtype=np.float32)
        except (TypeError, ValueError):
            raise ApiAnswerInvalid(f"vector {index} holds values that are not numbers") from None
        if vector.ndim == 1:
            return vector
    raise ApiAnswerInvalid(f"vector {index} is a {type(raw).__name__}, expected a list of floats or base64 text")


def vectors_from_answer(data: Any, count: int, dimensions: int | None) -> np.ndarray:
    """The answer's vectors as a ``(count, dimensions)`` float32 array, row i from the item with
    ``index`` i. ``dimensions`` None accepts the first vector's length (the probe fixes it)."""
    if not isinstance(data, list):
        raise ApiAnswerInvalid(f"answer has no list of vectors (data is {type(data).__name__})")
    if len(data) != count:
        raise ApiAnswerInvalid(f"answer has {len(data)} vectors for {count} inputs")
    rows: list[np.ndarray | None] = [None] * count
    for item in data:
        index = getattr(item, "index", None)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise ApiAnswerInvalid(f"answer has index {index!r}, outside 0..{count - 1}")
        if rows[index] is not None:
            raise ApiAnswerInvalid(f"index {index} appears more than once in the answer")
        rows[index] = decode_vector(getattr(item, "embedding", None), index)
    expected = dimensions if dimensions is not None else len(rows[0])
    if expected == 0:
        raise ApiAnswerInvalid("vector 0 is empty")
    for index, row in enumerate(rows):
        if len(row) != expected:
            raise ApiAnswerInvalid(f"vector {index} has {len(row)} dimensions, expected {expected}")
        if not np.isfinite(row).all():
            raise ApiAnswerInvalid(f"vector {index} has NaN or infinite values")
    return np.stack(rows)


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, as plain values: no SDK object (whose request holds the key) survives."""

    reason: str
    retryable: bool
    retry_after: float | None = None
    status: int | None = None


def _is_retryable_status(status: int) -> bool:
    # 408 is the server's own timeout; other 4xx answers would be the same on every try.
    return status in (408, 429) or status >= 500


def _server_message(body: object, fallback: str) -> str:
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        message = body["message"]
    elif isinstance(body, str) and body.strip():
        message = body
    else:
        message = fallback
    return " ".join(message.split())[:500]
