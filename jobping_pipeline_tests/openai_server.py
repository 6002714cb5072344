"""A real HTTP server speaking the OpenAI embeddings protocol, with scripted faults, for tests.

``POST /v1/embeddings`` with ``{"model", "input": str | list[str], "encoding_format"?,
"dimensions"?}`` answers ``{"object": "list", "data": [{"object": "embedding", "index": i,
"embedding": [...] or base64}], "model", "usage"}``. Each vector is :func:`vector_for` its text:
deterministic, unit length, 1536 dimensions unless the request or the server says otherwise.

Faults are queued and each is taken by the next request to arrive, or pinned to the n-th
request the server receives (1 is the first), for a client in another process::

    with FakeEmbeddingsServer(api_key="sk-...") as server:
        server.fail_next(status=429, headers={"Retry-After": "1"})
        server.slow_next(2.0)
        server.fail_at(5, status=500)
        ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

DEFAULT_DIMENSIONS = 1536
MAX_INPUTS = 2048


def vector_for(text: str, dimensions: int = DEFAULT_DIMENSIONS) -> np.ndarray:
    """The server's vector for ``text``: float32, unit length, seeded by the text's SHA-256."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@dataclass
class RecordedRequest:
    """One request as the server saw it. ``headers`` leaves out Authorization; whether it was
    sent, and whether it carried the expected key, is all that is kept of it."""

    path: str
    headers: dict[str, str]
    authorization_present: bool
    authorization_matches: bool
    model: str | None = None
    inputs: list[str] = field(default_factory=list)
    encoding_format: str | None = None
    dimensions: int | None = None


@dataclass(frozen=True)
class _Fault:
    kind: str
    status: int = 500
    headers: tuple[tuple[str, str], ...] = ()
    message: str = ""
    seconds: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """A client that hung up (a timed-out request) is expected here, not news."""


class FakeEmbeddingsServer:
    """The OpenAI embeddings endpoint on 127.0.0.1 (a free port), in a background thread.

    ``api_key`` set: requests without ``Authorization: Bearer <api_key>`` get a 401 whose message
    echoes the header received, as a careless server might. ``force_format`` answers in that
    encoding whatever was asked; ``ignore_dimensions`` ignores the ``dimensions`` parameter;
    ``vector_scale`` multiplies every vector; ``delay_seconds`` delays every answer.
    ``max_in_flight`` is the most requests seen in progress at once."""

    def __init__(self, api_key: str | None = None, dimensions: int = DEFAULT_DIMENSIONS) -> None:
        self.api_key = api_key
        self.dimensions = dimensions
        self.force_format: str | None = None
        self.ignore_dimensions = False
        self.vector_scale = 1.0
        self.delay_seconds = 0.0
        self.requests: list[RecordedRequest] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: deque[_Fault] = deque()
        self._faults_at: dict[int, _Fault] = {}
        self._lock = threading.Lock()
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> FakeEmbeddingsServer:
        """Bind a free port and serve in a daemon thread."""
        self._httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        # A short poll interval: stop() waits up to one interval for serve_forever to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-embeddings-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout=5)
            self._httpd = None

    def __enter__(self) -> FakeEmbeddingsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def fail_next(
        self, status: int, headers: dict[str, str] | None = None, message: str | None = None, times: int = 1
    ) -> None:
        """The next ``times`` requests get ``status`` with an OpenAI-style error body."""
        fault = _Fault(
            "fail", status=status, headers=tuple((headers or {}).items()), message=message or f"scripted error {status}"
        )
        self._queue(fault, times)

    def fail_at(
        self, request_number: int, status: int, headers: dict[str, str] | None = None, message: str | None = None
    ) -> None:
        """The ``request_number``-th request received (1 is the first) gets ``status``; it takes
        precedence over queued faults."""
        fault = _Fault(
            "fail", status=status, headers=tuple((headers or {}).items()), message=message or f"scripted error {status}"
        )
        with self._lock:
            self._faults_at[request_number] = fault

    def slow_next(self, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests are answered normally after ``seconds``."""
        self._queue(_Fault("slow", seconds=seconds), times)

    def wrong_dimension_next(self) -> None:
        """The next answer's last vector is one value short."""
        self._queue(_Fault("wrong_dimension"), 1)

    def short_answer_next(self) -> None:
        """The next answer leaves out its last vector."""
        self._queue(_Fault("short_answer"), 1)

    def shuffled_next(self) -> None:
        """The next answer lists its items in reverse order, each with its correct index."""
        self._queue(_Fault("shuffled"), 1)

    def non_finite_next(self) -> None:
        """The next answer's last vector starts with NaN."""
        self._queue(_Fault("non_finite"), 1)

    def recover(self) -> None:
        """Every queued or pinned fault is dropped: the server answers normally again."""
        with self._lock:
            self._faults.clear()
            self._faults_at.clear()

    @property
    def pending_faults(self) -> int:
        """Faults queued or pinned and not yet taken by a request."""
        with self._lock:
            return len(self._faults) + len(self._faults_at)

    def _queue(self, fault: _Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    def _next_fault(self, request_number: int) -> _Fault | None:
        with self._lock:
            pinned = self._faults_at.pop(request_number, None)
            if pinned is not None:
                return pinned
            return self._faults.popleft() if self._faults else None

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def answer(self, path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, dict[str, str], dict]:
        """Status, extra headers and JSON body for one request (runs in a handler thread)."""
        authorization = next((value for name, value in headers.items() if name.lower() == "authorization"), None)
        record = RecordedRequest(
            path=path,
            headers={name: value for name, value in headers.items() if name.lower() != "authorization"},
            authorization_present=authorization is not None,
            authorization_matches=self.api_key is not None and authorization == f"Bearer {self.api_key}",
        )
        with self._lock:
            self.requests.append(record)
            request_number = len(self.requests)
        if not path.rstrip("/").endswith("/embeddings"):
            return _error(404, f"no route {path}", "invalid_request_error")
        if self.api_key is not None and not record.authorization_matches:
            received = (authorization or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {received}", "invalid_request_error")
        try:
            body = json.loads(raw_body)
        except ValueError:
            return _error(400, "the body is not JSON", "invalid_request_error")
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        record.model = body.get("model")
        record.inputs = inputs if isinstance(inputs, list) else []
        record.encoding_format = body.get("encoding_format")
        record.dimensions = body.get("dimensions")
        fault = self._next_fault(request_number)
        delay = self.delay_seconds + (fault.seconds if fault is not None and fault.kind == "slow" else 0.0)
        if delay:
            time.sleep(delay)
        if fault is not None and fault.kind == "fail":
            return _error(fault.status, fault.message, "scripted", dict(fault.headers))
        problem = _input_problem(inputs)
        if problem:
            return _error(400, problem, "invalid_request_error")
        dimensions = self.dimensions if self.ignore_dimensions else body.get("dimensions") or self.dimensions
        answer_format = self.force_format or body.get("encoding_format") or "float"
        data = self._items(inputs, dimensions, answer_format, fault.kind if fault is not None else None)
        tokens = sum(math.ceil(len(text.encode("utf-8")) / 4) for text in inputs)
        return 200, {}, {
            "object": "list",
            "data": data,
            "model": record.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def _items(self, inputs: list[str], dimensions: int, answer_format: str, fault: str | None) -> list[dict]:
        vectors = [vector_for(text, dimensions) * np.float32(self.vector_scale) for text in inputs]
        if fault == "wrong_dimension":
            vectors[-1] = vectors[-1][:-1]
        if fault == "non_finite":
            vectors[-1] = vectors[-1].copy()
            vectors[-1][0] = np.nan
        items = [
            {"object": "embedding", "index": index, "embedding": _encoded(vector, answer_format)}
            for index, vector in enumerate(vectors)
        ]
        if fault == "short_answer":
            items.pop()
        if fault == "shuffled":
            items.reverse()
        return items


def _encoded(vector: np.ndarray, answer_format: str) -> Any:
    if answer_format == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return vector.astype(np.float32).tolist()


def _input_problem(inputs: Any) -> str | None:
    if not isinstance(inputs, list) or not inputs or not all(isinstance(text, str) for text in inputs):
        return "'input' must be a string or a non-empty array of strings"
    if len(inputs) > MAX_INPUTS:
        return f"'input' has {len(inputs)} items, the maximum is {MAX_INPUTS}"
    if any(text == "" for text in inputs):
        return "'input' cannot contain an empty string"
    return None


def _error(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], dict]:
    return status, headers or {}, {"error": {"message": message, "type": kind, "param": None, "code": None}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        fake: FakeEmbeddingsServer = self.server.fake
        raw_body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake._enter()
        try:
            status, headers, body = fake.answer(self.path, dict(self.headers.items()), raw_body)
        finally:
            fake._leave()
        payload = json.dumps(body).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Silent: tests read ``requests`` instead of stderr."""
