"""The ``openai`` teacher against a real local HTTP server that mimics an OpenAI-compatible API.

The server (``http.server`` in a daemon thread on 127.0.0.1) picks its behaviour from the first
word of the request's text: ``ok``, ``length``, ``slowok``, ``retry429``, ``flaky503``,
``always500``, ``ctx400``, ``slow``, ``garbage``, ``auth401``. It counts attempts per text and
the maximum number of requests in flight, and stops by itself after a minute at the latest.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from pipeline.teachers.base import GenerationRequest, SamplingConfig
from pipeline.teachers.openai_backend import (
    OpenAIBackend,
    OpenAIBackendError,
    OpenAIConfig,
    backoff_delay,
    build_payload,
    parse_response,
    retry_after_seconds,
)

pytestmark = pytest.mark.timeout(60)

CTX_MESSAGE = (
    "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens "
    "(8500 in the messages, 500 in the completion). Please reduce the length of the messages or completion."
)


class FakeOpenAIServer:
    """State and lifecycle of the mimic server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.attempts: Counter[str] = Counter()
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.headers: list[dict[str, str]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.watchdog = threading.Timer(60.0, self.close)
        self.watchdog.daemon = True

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self.thread.start()
        self.watchdog.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.watchdog.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self.lock:
            self.attempts.clear()
            self.bodies.clear()
            self.headers.clear()
            self.in_flight = self.max_in_flight = 0

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    self._handle(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _handle(self, body: dict[str, Any]) -> None:
                chat = self.path == "/v1/chat/completions"
                if not chat and self.path != "/v1/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                text = body["messages"][-1]["content"] if chat else body["prompt"]
                with server.lock:
                    server.attempts[text] += 1
                    attempt = server.attempts[text]
                    server.bodies.append((self.path, body))
                    server.headers.append(dict(self.headers))
                scenario = text.split()[0]
                if scenario == "retry429" and attempt == 1:
                    return self._send(429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"})
                if scenario == "flaky503" and attempt <= 2:
                    return self._send(503, {"error": {"message": "overloaded"}})
                if scenario == "always500":
                    return self._send(500, {"error": {"message": "boom"}})
                if scenario == "ctx400":
                    error = {"object": "error", "message": CTX_MESSAGE, "type": "BadRequestError", "code": 400}
                    return self._send(400, error)
                if scenario == "auth401":
                    return self._send(401, {"error": {"message": "invalid api key"}})
                if scenario == "garbage":
                    return self._send_raw(200, b"not json at all")
                if scenario == "slow":
                    server.stop.wait(5.0)
                if scenario == "slowok":
                    time.sleep(0.15)
                self._send(200, self._completion(body, chat, text, "length" if scenario == "length" else "stop"))

            def _completion(self, body: dict[str, Any], chat: bool, text: str, finish: str) -> dict[str, Any]:
                out = f"echo {text}\nThe answer is 5."
                choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
                if chat:
                    choice["message"] = {"role": "assistant", "content": out}
                    if body.get("logprobs"):
                        tokens = [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -0.25}]
                        choice["logprobs"] = {"content": tokens}
                else:
                    choice["text"] = out
                    if body.get("logprobs") is not None:
                        choice["logprobs"] = {"tokens": ["a", "b", "c"], "token_logprobs": [-0.5, None, -0.25]}
                return {
                    "id": "cmpl-1",
                    "object": "chat.completion" if chat else "text_completion",
                    "model": body.get("model"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
                }

            def _send(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                self._send_raw(status, json.dumps(data).encode(), headers)

            def _send_raw(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for k, v in (headers or {}).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
                    pass

        return Handler


@pytest.fixture(scope="module")
def fake_server():
    server = FakeOpenAIServer().start()
    yield server
    server.close()


@pytest.fixture
def server(fake_server: FakeOpenAIServer) -> FakeOpenAIServer:
    fake_server.reset()
    return fake_server


def make_request(text: str, seed: int = 7, index: int = 0, sampling: SamplingConfig | None = None) -> GenerationRequest:
    return GenerationRequest(
        question_id=f"q{index}",
        perspective="stepwise",
        teacher="test/teacher",
        sample_index=0,
        seed=seed,
        messages=({"role": "system", "content": "Be brief."}, {"role": "user", "content": text}),
        prompt=text,
        sampling=sampling or SamplingConfig(temperature=0.6, top_p=0.9, max_tokens=64, stop=("\n\n###",)),
    )


def make_backend(server: FakeOpenAIServer, **overrides: Any) -> OpenAIBackend:
    kwargs: dict[str, Any] = dict(
        model="test-model", base_url=server.base_url, api_key_env=None, max_concurrency=4,
        timeout_s=3.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=2.0,
    )
    kwargs.update(overrides)
    return OpenAIBackend(OpenAIConfig(**kwargs))


# ------------------------------------------------------------------------------ happy path


def test_chat_success_maps_text_finish_reason_tokens_latency(server):
    out = make_backend(server).generate([make_request("ok one"), make_request("length two")])
    assert [c.finish_reason for c in out] == ["stop", "length"]
    assert out[0].text == "echo ok one\nThe answer is 5."
    assert all(c.num_tokens == 7 and c.error is None and c.latency_s > 0 for c in out)
    assert all(c.cumulative_logprob is None for c in out)
    assert {p for p, _ in server.bodies} == {"/v1/chat/completions"}


def test_seed_and_sampling_params_pass_through(server):
    reqs = [make_request(f"ok seed {i}", seed=1000 + i, index=i) for i in range(3)]
    greedy = SamplingConfig(temperature=0.0, top_p=1.0, max_tokens=9)
    reqs.append(make_request("ok plain", seed=(1 << 62) + 5, sampling=greedy))
    make_backend(server).generate(reqs)
    bodies = {b["messages"][-1]["content"]: b for _, b in server.bodies}
    for r in reqs:
        body = bodies[r.prompt]
        assert body["seed"] == r.seed
        assert body["n"] == 1 and body["model"] == "test-model"
        assert body["temperature"] == r.sampling.temperature and body["top_p"] == r.sampling.top_p
        assert body["max_tokens"] == r.sampling.max_tokens
        assert body["messages"] == [dict(m) for m in r.messages]
        assert "prompt" not in body
    assert bodies["ok seed 0"]["stop"] == ["\n\n###"]
    assert "stop" not in bodies["ok plain"]


def test_completions_endpoint_uses_plain_prompt(server):
    out = make_backend(server, use_chat=False).generate([make_request("ok plain prompt", seed=3)])
    assert out[0].text.startswith("echo ok plain prompt") and out[0].finish_reason == "stop"
    (path, body), = server.bodies
    assert path == "/v1/completions"
    assert body["prompt"] == "ok plain prompt" and "messages" not in body and body["seed"] == 3


def test_logprobs_are_summed_when_requested(server):
    chat = make_backend(server, logprobs=True).generate([make_request("ok lp chat")])
    plain = make_backend(server, logprobs=True, use_chat=False).generate([make_request("ok lp plain")])
    assert chat[0].cumulative_logprob == pytest.approx(-0.75)
    assert plain[0].cumulative_logprob == pytest.approx(-0.75)
    bodies = {p: b for p, b in server.bodies}
    assert bodies["/v1/chat/completions"]["logprobs"] is True
    assert bodies["/v1/completions"]["logprobs"] == 1


def test_api_key_from_env_extra_body_and_fold_system(server, monkeypatch):
    monkeypatch.setenv("MIND_TEST_OPENAI_KEY", "sekrit")
    backend = make_backend(server, api_key_env="MIND_TEST_OPENAI_KEY", extra_body={"top_k": 20}, fold_system=True)
    backend.generate([make_request("ok keyed")])
    assert server.headers[0].get("Authorization") == "Bearer sekrit"
    body = server.bodies[0][1]
    assert body["top_k"] == 20
    assert body["messages"] == [{"role": "user", "content": "Be brief.\n\nok keyed"}]


def test_no_authorization_header_without_key(server):
    make_backend(server, api_key_env="MIND_TEST_UNSET_KEY_VAR").generate([make_request("ok anon")])
    assert "Authorization" not in server.headers[0]


# --------------------------------------------------------------------------- retries/errors


def test_429_retried_after_retry_after(server):
    start = time.perf_counter()
    out = make_backend(server, backoff_base_s=0.0).generate([make_request("retry429 a")])
    elapsed = time.perf_counter() - start
    assert out[0].finish_reason == "stop" and out[0].error is None
    assert server.attempts["retry429 a"] == 2
    assert elapsed >= 0.95, "Retry-After: 1 must be honoured"


def test_503_retried_with_backoff_then_success(server):
    out = make_backend(server).generate([make_request("flaky503 b")])
    assert out[0].finish_reason == "stop"
    assert server.attempts["flaky503 b"] == 3


def test_500_until_retries_exhausted_is_error_completion(server):
    out = make_backend(server, max_retries=2).generate([make_request("always500 c"), make_request("ok d")])
    assert server.attempts["always500 c"] == 3
    assert out[0].finish_reason == "error" and out[0].text == ""
    assert "3 attempt" in out[0].error and "HTTP 500" in out[0].error and "boom" in out[0].error
    assert out[1].finish_reason == "stop"


def test_context_length_400_is_error_completion_without_retry(server):
    out = make_backend(server).generate([make_request("ctx400 e"), make_request("ok f")])
    assert server.attempts["ctx400 e"] == 1
    assert out[0].finish_reason == "error"
    assert "HTTP 400" in out[0].error and "maximum context length" in out[0].error
    assert out[1].finish_reason == "stop"


def test_slow_response_times_out_and_is_retried(server):
    start = time.perf_counter()
    out = make_backend(server, timeout_s=0.3, max_retries=1).generate([make_request("slow g"), make_request("ok h")])
    elapsed = time.perf_counter() - start
    assert out[0].finish_reason == "error" and "timeout" in out[0].error
    assert server.attempts["slow g"] == 2
    assert out[1].finish_reason == "stop"
    assert elapsed < 3.0


def test_malformed_body_is_error_completion(server):
    out = make_backend(server).generate([make_request("garbage i")])
    assert out[0].finish_reason == "error" and out[0].error
    assert server.attempts["garbage i"] == 1


def test_auth_error_raises(server):
    with pytest.raises(OpenAIBackendError, match="401"):
        make_backend(server).generate([make_request("auth401 j"), make_request("ok k")])


def test_unknown_endpoint_raises(server):
    backend = make_backend(server, base_url=server.base_url.removesuffix("/v1") + "/nope")
    with pytest.raises(OpenAIBackendError, match="404"):
        backend.generate([make_request("ok l")])


def test_connection_refused_is_error_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(
        model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=None,
        timeout_s=2.0, max_retries=1, backoff_base_s=0.01,
    )
    out = backend.generate([make_request("ok m")])
    assert out[0].finish_reason == "error" and "connection error" in out[0].error


# ------------------------------------------------------------------------ concurrency/loops


def test_concurrency_is_bounded(server):
    reqs = [make_request(f"slowok {i}", index=i) for i in range(12)]
    out = make_backend(server, max_concurrency=3).generate(reqs)
    assert [c.text for c in out] == [f"echo slowok {i}\nThe answer is 5." for i in range(12)]
    assert server.max_in_flight == 3


def test_generate_inside_running_event_loop(server):
    backend = make_backend(server)

    async def caller() -> list:
        return backend.generate([make_request("ok in loop")])

    out = asyncio.run(caller())
    assert out[0].finish_reason == "stop"
    assert asyncio.run(backend.agenerate([make_request("ok async")]))[0].finish_reason == "stop"


def test_empty_request_list():
    assert OpenAIBackend(model="m", api_key_env=None).generate([]) == []


# ------------------------------------------------------------------------------ pure parts


def test_config_validation():
    with pytest.raises(ValueError, match="model"):
        OpenAIConfig(model="")
    with pytest.raises(ValueError, match="base_url"):
        OpenAIConfig(model="m", base_url="localhost:8000")
    with pytest.raises(ValueError, match="max_concurrency"):
        OpenAIConfig(model="m", max_concurrency=0)
    with pytest.raises(TypeError):
        OpenAIBackend(OpenAIConfig(model="m"), model="n")


def test_build_payload_custom_max_tokens_field():
    body = build_payload(OpenAIConfig(model="m", max_tokens_field="max_completion_tokens"), make_request("x"))
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body


def test_parse_response_edge_cases():
    c = parse_response({"choices": [{"message": {"content": None}, "finish_reason": "tool_calls"}]}, chat=True)
    assert c.text == "" and c.finish_reason == "tool_calls" and c.num_tokens is None
    c = parse_response({"choices": [{"text": "hi", "finish_reason": None}]}, chat=False)
    assert c.finish_reason == "unknown"
    with pytest.raises(ValueError, match="malformed"):
        parse_response({"choices": []}, chat=True)


def test_retry_after_parsing_and_backoff():
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0
    rng = random.Random(0)
    delays = [backoff_delay(a, 0.5, 4.0, rng) for a in range(6)]
    assert 0.25 <= delays[0] <= 0.5 and 1.0 <= delays[2] <= 2.0
    assert all(2.0 <= d <= 4.0 for d in delays[3:])
