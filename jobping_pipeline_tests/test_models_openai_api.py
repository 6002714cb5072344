"""The OpenAI-compatible embeddings provider against a real local HTTP server: decoding, order,
request planning, concurrency, retries, answer validation, and the API key kept out of sight."""

from __future__ import annotations

import logging
import time

import numpy as np
import openai
import pytest

from jobping_pipeline.models import openai_api as openai_encoder
from jobping_pipeline.models import openai_protocol
from jobping_pipeline.models.openai_api import PROBE_TEXT, ApiSpec, OpenAIEncoder
from jobping_pipeline.models.openai_protocol import (
    ApiAnswerInvalid,
    ApiRequestFailed,
    backoff_delay,
    cut_to_token_limit,
    estimate_tokens,
    plan_requests,
    retry_after_seconds,
)
from jobping_pipeline.settings import ConfigError

from .openai_server import FakeEmbeddingsServer, vector_for

API_KEY = "sk-test-DO-NOT-LOG-123"
LOGGERS = ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "jobping_pipeline")


@pytest.fixture
def server():
    with FakeEmbeddingsServer(api_key=API_KEY) as running:
        yield running


def make_encoder(server: FakeEmbeddingsServer, sleeps: list[float] | None = None, **spec_fields) -> OpenAIEncoder:
    """An encoder on ``server`` whose retry waits are recorded in ``sleeps`` instead of slept."""
    spec = ApiSpec(model=spec_fields.pop("model", "text-embedding-3-small"), base_url=server.base_url, **spec_fields)
    recorded = sleeps if sleeps is not None else []
    return OpenAIEncoder(spec, api_key=API_KEY, sleep=recorded.append)


def expected_vectors(texts: list[str], dimensions: int = 1536) -> np.ndarray:
    return np.stack([vector_for(text, dimensions) for text in texts])


def encode_requests(server: FakeEmbeddingsServer):
    """The requests after the construction-time probe."""
    assert server.requests[0].inputs == [PROBE_TEXT]
    return server.requests[1:]


TEXTS = ["Data analyst, Berlin", "Backend engineer (Go)", "Nurse – night shifts", "Koch/Köchin in Wien"]


# --- decoding, order, dimensions -------------------------------------------------------------


def test_base64_and_float_answers_decode_to_the_same_vectors(server):
    encoder = make_encoder(server)
    from_base64 = encoder.encode(TEXTS, batch_size=8)
    server.force_format = "float"
    from_floats = encoder.encode(TEXTS, batch_size=8)
    assert from_base64.dtype == from_floats.dtype == np.float32
    assert np.array_equal(from_base64, expected_vectors(TEXTS))
    assert np.array_equal(from_floats, from_base64)
    assert {request.encoding_format for request in server.requests} == {"base64"}


def test_the_server_speaks_both_formats_to_the_plain_sdk(server):
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=0)
    by_sdk_default = client.embeddings.create(model="m", input=TEXTS)  # SDK asks base64, decodes
    as_floats = client.embeddings.create(model="m", input=TEXTS, encoding_format="float")
    assert server.requests[0].encoding_format == "base64" and server.requests[1].encoding_format == "float"
    for answer in (by_sdk_default, as_floats):
        vectors = np.asarray([item.embedding for item in answer.data], dtype=np.float32)
        assert np.array_equal(vectors, expected_vectors(TEXTS))
    client.close()


def test_a_shuffled_answer_is_put_in_order_by_index(server):
    encoder = make_encoder(server)
    server.shuffled_next()
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert server.pending_faults == 0
    assert np.array_equal(vectors, expected_vectors(TEXTS))


def test_vectors_are_written_as_returned_without_normalizing(server):
    encoder = make_encoder(server)
    server.vector_scale = 2.5
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 2.5, atol=1e-5)
    assert np.array_equal(vectors, expected_vectors(TEXTS) * np.float32(2.5))


def test_dimensions_are_learned_from_the_probe_at_construction():
    with FakeEmbeddingsServer(api_key=API_KEY, dimensions=384) as server:
        encoder = make_encoder(server)
        assert encoder.dimensions == 384
        assert len(server.requests) == 1 and server.requests[0].dimensions is None
        assert encoder.calls == 0
        vectors = encoder.encode(TEXTS, batch_size=8)
        assert vectors.shape == (len(TEXTS), 384) and encoder.calls == 1


def test_the_dimensions_parameter_is_passed_through(server):
    encoder = make_encoder(server, dimensions=256)
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert encoder.dimensions == 256 and encoder.model_id.endswith("@256")
    assert {request.dimensions for request in server.requests} == {256}
    assert np.array_equal(vectors, expected_vectors(TEXTS, 256))


def test_a_server_that_ignores_dimensions_fails_at_construction(server):
    server.ignore_dimensions = True
    with pytest.raises(ApiAnswerInvalid, match="vector 0 has 1536 dimensions, expected 256"):
        make_encoder(server, dimensions=256)


def test_no_texts_means_no_request(server):
    encoder = make_encoder(server)
    assert encoder.encode([], batch_size=8).shape == (0, 1536)
    assert encode_requests(server) == []


# --- request planning --------------------------------------------------------------------------


def test_token_estimate_is_conservative_for_ascii_and_other_scripts():
    assert [estimate_tokens(text) for text in ("", "abc", "abcd", "é", "日本", "ab日")] == [0, 1, 2, 2, 6, 4]


def test_long_texts_are_cut_to_the_input_token_limit(server):
    encoder = make_encoder(server, dimensions=8)
    ascii_text, cjk_text, short = "a" * 100_000, "日" * 10_000, "short text"
    encoder.encode([ascii_text, cjk_text, short], batch_size=8)
    sent = encode_requests(server)[0].inputs
    assert sent == [ascii_text[: 3 * 8191], cjk_text[: 8191 // 3], short]
    assert all(estimate_tokens(text) <= 8191 for text in sent)
    assert cut_to_token_limit("a" * 10, limit=2) == "a" * 6


def test_requests_split_at_2048_inputs(server):
    texts = [f"job {number}" for number in range(5000)]
    encoder = make_encoder(server, dimensions=8, concurrency=1)
    vectors = encoder.encode(texts, batch_size=64)
    assert [len(request.inputs) for request in encode_requests(server)] == [2048, 2048, 904]
    assert np.array_equal(vectors, expected_vectors(texts, 8))


def test_a_call_is_spread_over_the_concurrency_but_never_below_batch_size():
    assert [len(part) for part in plan_requests([1] * 5000, batch_size=64, concurrency=4)] == [1250] * 4
    assert [len(part) for part in plan_requests([1] * 100, batch_size=64, concurrency=4)] == [64, 36]


def test_requests_split_at_the_token_budget(server, monkeypatch):
    monkeypatch.setattr(openai_protocol, "MAX_TOKENS_PER_REQUEST", 100)
    texts = [f"{number:02d}" + "x" * 28 for number in range(25)]  # 30 ASCII bytes: 10 tokens each
    encoder = make_encoder(server, dimensions=8)
    vectors = encoder.encode(texts, batch_size=64)
    sent = [request.inputs for request in encode_requests(server)]
    assert sorted(len(inputs) for inputs in sent) == [5, 10, 10]  # in flight together: any order
    assert all(sum(estimate_tokens(text) for text in inputs) <= 100 for inputs in sent)
    assert np.array_equal(vectors, expected_vectors(texts, 8))


def test_an_input_over_the_token_budget_goes_alone(monkeypatch):
    monkeypatch.setattr(openai_protocol, "MAX_TOKENS_PER_REQUEST", 100)
    assert plan_requests([30, 150, 30, 30], batch_size=64, concurrency=1) == [range(0, 1), range(1, 2), range(2, 4)]


def test_requests_overlap_up_to_the_concurrency(server, monkeypatch):
    monkeypatch.setattr(openai_protocol, "MAX_TOKENS_PER_REQUEST", 20)
    texts = [f"{number:02d}" + "y" * 28 for number in range(12)]  # 2 per request: 6 requests
    encoder = make_encoder(server, dimensions=8, concurrency=3)
    server.max_in_flight = 0
    server.delay_seconds = 0.15
    vectors = encoder.encode(texts, batch_size=1)
    assert len(encode_requests(server)) == 6
    assert 1 < server.max_in_flight <= 3
    assert np.array_equal(vectors, expected_vectors(texts, 8))


# --- retries -----------------------------------------------------------------------------------


def test_429_waits_the_retry_after_seconds_for_real(server):
    waits: list[float] = []

    def recording_sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    spec = ApiSpec("text-embedding-3-small", base_url=server.base_url)
    encoder = OpenAIEncoder(spec, api_key=API_KEY, sleep=recording_sleep)
    server.fail_next(status=429, headers={"Retry-After": "1"})
    started = time.monotonic()
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert time.monotonic() - started >= 1.0
    assert waits == [1.0]
    assert [request.inputs for request in encode_requests(server)] == [TEXTS, TEXTS]
    assert np.array_equal(vectors, expected_vectors(TEXTS))


def test_retry_after_ms_takes_precedence(server):
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps)
    server.fail_next(status=429, headers={"retry-after-ms": "250", "Retry-After": "7"})
    encoder.encode(TEXTS, batch_size=8)
    assert sleeps == [0.25]


def test_retry_after_parsing():
    assert retry_after_seconds({"retry-after": "2.5"}) == 2.5
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "86400"}) == openai_protocol.MAX_RETRY_AFTER_SECONDS
    in_a_while = retry_after_seconds({"retry-after": "Wed, 21 Oct 2099 07:28:00 GMT"})
    assert in_a_while == openai_protocol.MAX_RETRY_AFTER_SECONDS


def test_backoff_is_exponential_with_full_jitter_and_capped():
    highest = [backoff_delay(attempt, draw=lambda low, high: high) for attempt in range(8)]
    assert highest == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert backoff_delay(3, draw=lambda low, high: low) == 0.0


def test_5xx_is_retried_with_backoff_and_logged(server, caplog):
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps)
    server.fail_next(status=500, times=2)
    server.fail_next(status=503)
    with caplog.at_level(logging.WARNING, logger="jobping_pipeline"):
        vectors = encoder.encode(TEXTS, batch_size=8)
    assert np.array_equal(vectors, expected_vectors(TEXTS))
    assert len(encode_requests(server)) == 4
    assert len(sleeps) == 3
    assert all(0 <= delay <= 0.5 * 2**attempt for attempt, delay in enumerate(sleeps))
    warnings = [record.getMessage() for record in caplog.records if record.name == "jobping_pipeline.models.openai_api"]
    assert len(warnings) == 3 and "HTTP 500" in warnings[0] and "HTTP 503" in warnings[2]
    assert all(f"in {delay:.2f} s" in message for delay, message in zip(sleeps, warnings))


def test_5xx_that_persists_fails_after_max_retries(server):
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps, max_retries=2)
    server.fail_next(status=502, message="bad gateway", times=3)
    with pytest.raises(ApiRequestFailed, match=r"failed 3 attempts; last: HTTP 502: bad gateway"):
        encoder.encode(TEXTS, batch_size=8)
    assert len(sleeps) == 2 and len(encode_requests(server)) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_4xx_fail_at_once(server, status):
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps)
    server.fail_next(status=status, message="'$.input' is invalid")
    with pytest.raises(ApiRequestFailed, match=rf"refused the request: HTTP {status}: '\$\.input' is invalid"):
        encoder.encode(TEXTS, batch_size=8)
    assert sleeps == [] and len(encode_requests(server)) == 1


def test_a_timeout_is_retried(server):
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps, timeout_seconds=0.5)
    server.slow_next(1.5)
    vectors = encoder.encode(TEXTS, batch_size=8)
    assert len(sleeps) == 1 and len(encode_requests(server)) == 2
    assert np.array_equal(vectors, expected_vectors(TEXTS))


def test_an_unreachable_server_fails_at_construction_after_retries():
    with FakeEmbeddingsServer() as gone:
        base_url = gone.base_url  # a port that was free a moment ago and is closed now
    sleeps: list[float] = []
    spec = ApiSpec("text-embedding-3-small", base_url=base_url, max_retries=1)
    with pytest.raises(ApiRequestFailed, match=r"failed 2 attempts; last: connection failed"):
        OpenAIEncoder(spec, api_key=API_KEY, sleep=sleeps.append)
    assert len(sleeps) == 1


def test_after_a_request_spends_every_retry_requests_fail_fast_for_a_while(server):
    now = [1000.0]
    spec = ApiSpec("text-embedding-3-small", base_url=server.base_url, max_retries=1)
    encoder = OpenAIEncoder(spec, api_key=API_KEY, sleep=lambda seconds: None, clock=lambda: now[0])
    server.fail_next(status=503, times=2)
    with pytest.raises(ApiRequestFailed, match="failed 2 attempts; last: HTTP 503"):
        encoder.encode(TEXTS, batch_size=8)
    sent = len(server.requests)
    now[0] += openai_encoder.FAIL_FAST_SECONDS - 1
    with pytest.raises(ApiRequestFailed, match=r"not sent: a request spent every retry 59 s ago \(last: HTTP 503"):
        encoder.encode(TEXTS[:1], batch_size=8)
    assert len(server.requests) == sent
    now[0] += 1
    assert np.array_equal(encoder.encode(TEXTS, batch_size=8), expected_vectors(TEXTS))
    assert len(server.requests) == sent + 1


def test_a_refused_request_does_not_hold_back_the_next(server):
    """The pipeline retries a failed batch text by text: a 400 for one text must cost only it."""
    encoder = make_encoder(server)
    server.fail_next(status=400, message="bad input")
    with pytest.raises(ApiRequestFailed, match="refused the request"):
        encoder.encode(TEXTS[:1], batch_size=8)
    assert np.array_equal(encoder.encode(TEXTS, batch_size=8), expected_vectors(TEXTS))


def test_a_failed_request_fails_the_whole_call_with_concurrent_requests(server, monkeypatch):
    monkeypatch.setattr(openai_protocol, "MAX_TOKENS_PER_REQUEST", 20)
    texts = [f"{number:02d}" + "z" * 28 for number in range(12)]
    encoder = make_encoder(server, dimensions=8, concurrency=3)
    server.fail_next(status=400, message="no")
    with pytest.raises(ApiRequestFailed, match="HTTP 400: no"):
        encoder.encode(texts, batch_size=1)


# --- answer validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("wrong_dimension_next", "vector 3 has 1535 dimensions, expected 1536"),
        ("short_answer_next", "answer has 3 vectors for 4 inputs"),
        ("non_finite_next", "vector 3 has NaN or infinite values"),
    ],
)
def test_a_bad_answer_is_refused(server, fault, message):
    encoder = make_encoder(server)
    getattr(server, fault)()
    with pytest.raises(ApiAnswerInvalid, match=message):
        encoder.encode(TEXTS, batch_size=8)


def test_repeated_and_out_of_range_indexes_are_refused():
    class Item:
        def __init__(self, index):
            self.index, self.embedding = index, [0.5, 0.5]

    with pytest.raises(ApiAnswerInvalid, match="index 0 appears more than once"):
        openai_encoder.vectors_from_answer([Item(0), Item(0)], 2, 2)
    with pytest.raises(ApiAnswerInvalid, match="answer has index 2, outside 0..1"):
        openai_encoder.vectors_from_answer([Item(0), Item(2)], 2, 2)


# --- model id, configuration, the key -----------------------------------------------------------


def test_model_id_names_provider_server_model_and_dimensions():
    assert ApiSpec("text-embedding-3-small").model_id == "openai:text-embedding-3-small"
    assert ApiSpec("text-embedding-3-small", dimensions=512).model_id == "openai:text-embedding-3-small@512"
    official = ApiSpec("text-embedding-3-small", base_url="https://api.openai.com/v1")
    assert official.model_id == "openai:text-embedding-3-small"
    for port in (8000, 8001):
        local = ApiSpec("bge-small", base_url=f"http://127.0.0.1:{port}/v1")
        assert local.model_id == f"openai+http://127.0.0.1:{port}:bge-small"
    with_secrets = ApiSpec("bge", base_url="https://user:hunter2@Embed.Example.com:443/v1?token=abc")
    assert with_secrets.model_id == "openai+https://embed.example.com:bge"
    assert "hunter2" not in repr(with_secrets)


def test_invalid_specs_are_refused():
    for fields in ({"concurrency": 0}, {"dimensions": 0}, {"max_retries": -1}, {"base_url": "ftp://host"}):
        with pytest.raises(ConfigError):
            ApiSpec("text-embedding-3-small", **fields)


def test_a_missing_key_is_a_config_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIEncoder(ApiSpec("text-embedding-3-small", base_url="http://127.0.0.1:9/v1"))


def test_the_key_is_read_from_the_environment(server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    encoder = OpenAIEncoder(ApiSpec("text-embedding-3-small", base_url=server.base_url))
    encoder.encode(TEXTS, batch_size=8)
    assert all(request.authorization_matches for request in server.requests)


def test_the_key_is_sent_but_never_logged_raised_or_shown(server, caplog):
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    sleeps: list[float] = []
    encoder = make_encoder(server, sleeps)
    server.fail_next(status=429, headers={"Retry-After": "0"})
    server.fail_next(status=500)
    encoder.encode(TEXTS, batch_size=8)
    server.fail_next(status=400, message="bad input")
    with pytest.raises(ApiRequestFailed) as refused:
        encoder.encode(TEXTS, batch_size=8)

    with FakeEmbeddingsServer(api_key="sk-the-right-one") as other:
        with pytest.raises(ApiRequestFailed, match="HTTP 401: Incorrect API key provided: \\*\\*\\*") as unauthorized:
            make_encoder(other)  # this server echoes the wrong key it got; the message must not

    assert all(request.authorization_present and request.authorization_matches for request in server.requests)
    assert all("authorization" not in (name.lower() for name in request.headers) for request in server.requests)
    logged = [record.getMessage() for record in caplog.records] + [caplog.text]
    assert any("retry 1 of 6" in message for message in logged), "nothing was logged: the check is vacuous"
    assert {record.name.split(".")[0] for record in caplog.records} >= {"openai", "jobping_pipeline"}
    for error in (refused.value, unauthorized.value):
        assert error.__cause__ is None and error.__context__ is None  # no SDK error holding the request
    shown = [*logged, str(refused.value), str(unauthorized.value)]
    shown += [repr(encoder), str(encoder), repr(encoder.spec), encoder.model_id]
    assert not [text for text in shown if API_KEY in text]


def test_a_given_client_is_used_with_the_sdk_retries_off(server):
    client = openai.OpenAI(api_key=API_KEY, base_url=server.base_url, max_retries=5)
    sleeps: list[float] = []
    spec = ApiSpec("text-embedding-3-small", base_url=server.base_url)
    encoder = OpenAIEncoder(spec, client=client, sleep=sleeps.append)
    server.fail_next(status=500)
    encoder.encode(TEXTS, batch_size=8)
    assert len(sleeps) == 1 and len(encode_requests(server)) == 2
