"""The ``openai`` teacher: any OpenAI-compatible HTTP server, e.g. ``vllm serve`` (docs/design.md).

Requests go to ``{base_url}/chat/completions`` (``use_chat``, with the request's messages) or
``{base_url}/completions`` (with its plain-text prompt), asynchronously with at most
``max_concurrency`` in flight. Each request carries its own ``seed`` and ``n=1``. Timeouts,
connection errors, HTTP 408/409/425/429 and 5xx are retried with exponential backoff and
jitter (``Retry-After`` / ``retry-after-ms`` honoured, capped at ``backoff_max_s``). Other HTTP
errors (e.g. 400 for a prompt longer than the context) and requests still failing after the
retries become ``Completion(finish_reason="error")``. HTTP 401/403/404 (bad key, unknown model
or endpoint) would fail every request alike, so they raise :class:`OpenAIBackendError`.
``latency_s`` is the duration of the attempt that succeeded.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx

from pipeline.perspectives import fold_system_message
from pipeline.teachers.base import Completion, GenerationRequest, TeacherBackend

__all__ = [
    "OpenAIBackend",
    "OpenAIBackendError",
    "OpenAIConfig",
    "backoff_delay",
    "build_payload",
    "parse_response",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 425, 429})
FATAL_STATUSES = frozenset({401, 403, 404})


class OpenAIBackendError(RuntimeError):
    """A configuration error that fails every request alike (bad key, unknown model or endpoint)."""


@dataclass(frozen=True)
class OpenAIConfig:
    """Settings of the ``openai`` backend.

    ``base_url`` includes the API prefix (``http://host:8000/v1``). The API key is read from
    the environment variable named ``api_key_env`` (no ``Authorization`` header when unset or
    empty, as for a local ``vllm serve``). ``timeout_s`` bounds one attempt of one request.
    ``extra_body`` is merged into every request body (e.g. ``{"top_k": 20}`` or
    ``{"chat_template_kwargs": {...}}`` for vLLM). ``fold_system`` merges the system message
    into the first user turn for chat templates without a system role.
    """

    model: str
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str | None = "OPENAI_API_KEY"
    use_chat: bool = True
    max_concurrency: int = 16
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    logprobs: bool = False
    fold_system: bool = False
    max_tokens_field: str = "max_tokens"
    extra_body: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("openai.model must be set (the model name the server serves)")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"openai.base_url must start with http:// or https://, got {self.base_url!r}")
        if self.max_concurrency < 1:
            raise ValueError(f"openai.max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.timeout_s <= 0:
            raise ValueError(f"openai.timeout_s must be > 0, got {self.timeout_s}")
        if self.max_retries < 0:
            raise ValueError(f"openai.max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0:
            raise ValueError("openai.backoff_base_s and openai.backoff_max_s must be >= 0")


# ----------------------------------------------------------------------- pure helpers


def build_payload(config: OpenAIConfig, request: GenerationRequest) -> dict[str, Any]:
    """The JSON body for one request (chat or completions form)."""
    s = request.sampling
    body: dict[str, Any] = {
        "model": config.model,
        "n": 1,
        "temperature": s.temperature,
        "top_p": s.top_p,
        config.max_tokens_field: s.max_tokens,
        "seed": request.seed,
    }
    if s.stop:
        body["stop"] = list(s.stop)
    if config.use_chat:
        messages = fold_system_message(request.messages) if config.fold_system else request.messages
        body["messages"] = [dict(m) for m in messages]
        if config.logprobs:
            body["logprobs"] = True
    else:
        body["prompt"] = request.prompt
        if config.logprobs:
            body["logprobs"] = 1
    body.update(config.extra_body)
    return body


def _sum_logprobs(choice: Mapping[str, Any], chat: bool) -> float | None:
    lp = choice.get("logprobs")
    if not isinstance(lp, Mapping):
        return None
    if chat:
        values = [t.get("logprob") for t in lp.get("content") or () if isinstance(t, Mapping)]
    else:
        values = list(lp.get("token_logprobs") or ())
    values = [float(v) for v in values if v is not None]
    return sum(values) if values else None


def parse_response(data: Mapping[str, Any], *, chat: bool, logprobs: bool = False) -> Completion:
    """Map a (chat) completions response body to a :class:`Completion`; ``ValueError`` if malformed."""
    try:
        choice = data["choices"][0]
        text = choice["message"].get("content") if chat else choice["text"]
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed response: no choices[0].{'message' if chat else 'text'} ({exc!r})") from None
    usage = data.get("usage") or {}
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    return Completion(
        text=text or "",
        finish_reason=choice.get("finish_reason") or "unknown",
        num_tokens=int(tokens) if tokens is not None else None,
        cumulative_logprob=_sum_logprobs(choice, chat) if logprobs else None,
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with jitter: uniform in [d/2, d], d = min(max_s, base_s * 2**attempt)."""
    d = min(max_s, base_s * 2.0**attempt)
    return rng.uniform(d / 2, d)


def _error_message(response: httpx.Response, limit: int = 500) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:limit] or response.reason_phrase
    if isinstance(data, Mapping):
        err = data.get("error")
        if isinstance(err, Mapping) and err.get("message"):
            return str(err["message"])[:limit]
        if isinstance(err, str):
            return err[:limit]
        if data.get("message"):
            return str(data["message"])[:limit]
    return str(data)[:limit]


def _error(message: str, latency_s: float | None = None) -> Completion:
    return Completion(text="", finish_reason="error", latency_s=latency_s, error=message)


# ---------------------------------------------------------------------------- backend


class OpenAIBackend(TeacherBackend):
    """Teacher behind an OpenAI-compatible server; see the module docstring for the policy."""

    name = "openai"

    def __init__(self, config: OpenAIConfig | None = None, **kwargs: Any):
        if config is not None and kwargs:
            raise TypeError("give either an OpenAIConfig or keyword arguments, not both")
        self.config = config if config is not None else OpenAIConfig(**kwargs)
        env = self.config.api_key_env
        self._api_key = os.environ.get(env) if env else None
        self._rng = random.Random()

    @property
    def endpoint(self) -> str:
        return "chat/completions" if self.config.use_chat else "completions"

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Run :meth:`agenerate` to completion; in a worker thread if this thread runs an event loop."""
        if not requests:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.agenerate(requests))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-backend") as pool:
            return pool.submit(asyncio.run, self.agenerate(requests)).result()

    async def agenerate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """Generate all requests concurrently (bounded); one completion per request, in order."""
        cfg = self.config
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency)
        semaphore = asyncio.Semaphore(cfg.max_concurrency)
        async with httpx.AsyncClient(
            base_url=cfg.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(cfg.timeout_s),
            limits=limits,
        ) as client:
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(self._generate_one(client, semaphore, r)) for r in requests]
            except* OpenAIBackendError as group:
                raise group.exceptions[0] from None
        return [t.result() for t in tasks]

    async def _generate_one(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: GenerationRequest
    ) -> Completion:
        try:
            return await self._with_retries(client, semaphore, request)
        except OpenAIBackendError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad request must not lose the shard
            log.exception("openai backend: unexpected failure for %s", request.key)
            return _error(f"unexpected error: {exc!r}")

    async def _with_retries(
        self, client: httpx.AsyncClient, semaphore: asyncio.Semaphore, request: GenerationRequest
    ) -> Completion:
        cfg = self.config
        payload = build_payload(cfg, request)
        last_error = ""
        attempts = cfg.max_retries + 1
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                async with semaphore:
                    start = time.perf_counter()
                    async with asyncio.timeout(cfg.timeout_s):
                        response = await client.post(self.endpoint, json=payload)
                latency = time.perf_counter() - start
            except (TimeoutError, httpx.TimeoutException):
                last_error = f"timeout after {cfg.timeout_s:g}s"
            except httpx.TransportError as exc:
                last_error = f"connection error: {type(exc).__name__}: {exc}"
            else:
                status = response.status_code
                if status == 200:
                    return self._completion(response, latency)
                message = f"HTTP {status}: {_error_message(response)}"
                if status in FATAL_STATUSES:
                    raise OpenAIBackendError(f"{response.request.url}: {message}")
                if status not in RETRY_STATUSES and status < 500:
                    return _error(message, latency)
                last_error = message
                retry_after = retry_after_seconds(response.headers)
            if attempt + 1 < attempts:
                delay = backoff_delay(attempt, cfg.backoff_base_s, cfg.backoff_max_s, self._rng)
                if retry_after is not None:
                    delay = min(retry_after, cfg.backoff_max_s)
                log.debug("openai backend: %s for %s; retry %d in %.2fs", last_error, request.key, attempt + 1, delay)
                await asyncio.sleep(delay)
        return _error(f"failed after {attempts} attempt(s): {last_error}")

    def _completion(self, response: httpx.Response, latency: float) -> Completion:
        try:
            completion = parse_response(response.json(), chat=self.config.use_chat, logprobs=self.config.logprobs)
        except ValueError as exc:
            return _error(str(exc), latency)
        completion.latency_s = latency
        return completion
