"""The ``vllm`` teacher: an offline ``vllm.LLM`` engine on local GPUs (docs/design.md).

vLLM is an optional extra (``pip install 'mind-distill[vllm]'`` on a GPU machine) and is only
imported when a :class:`VLLMBackend` is built. All requests of one ``generate`` call go to the
engine in one batch, each with its own ``SamplingParams`` (``n=1``, ``max_tokens`` always set,
the request's own seed). With a chat template (``use_chat``: ``auto`` detects it from the
tokenizer) the request's messages go through ``LLM.chat``; otherwise its plain-text prompt
through ``LLM.generate``.

If the engine call fails (e.g. one prompt longer than ``max_model_len``), the batch is split in
halves and retried, so that only the failing requests become
``Completion(finish_reason="error")``. A dead engine raises :class:`VLLMEngineError` instead:
later batches could not succeed either.

The mapping request -> (prompt or messages, ``SamplingParams``) and ``RequestOutput`` ->
:class:`Completion` are pure functions that take the ``vllm`` module (or objects with the same
documented fields) as a parameter, so that they are tested without vLLM.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pipeline.perspectives import fold_system_message
from pipeline.teachers.base import Completion, GenerationRequest, TeacherBackend

__all__ = [
    "INSTALL_HINT",
    "VLLMBackend",
    "VLLMConfig",
    "VLLMEngineError",
    "VLLMNotInstalledError",
    "generate_batch",
    "generate_resilient",
    "has_chat_template",
    "import_vllm",
    "llm_kwargs",
    "resolve_use_chat",
    "to_chat_messages",
    "to_completion",
    "to_sampling_params",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'mind-distill[vllm]'"
_USE_CHAT = {"auto": "auto", "true": "true", "false": "false", True: "true", False: "false"}


class VLLMNotInstalledError(ImportError):
    """vLLM is not installed (it is an optional, GPU-only extra)."""


class VLLMEngineError(RuntimeError):
    """The vLLM engine died; no later request can succeed on it."""


def import_vllm() -> ModuleType:
    """Import vLLM, or raise :class:`VLLMNotInstalledError` saying how to install it."""
    try:
        import vllm
    except ImportError as exc:
        raise VLLMNotInstalledError(
            f"the 'vllm' teacher backend needs vLLM, which cannot be imported ({exc}). "
            f"Install it on a machine with a CUDA GPU: {INSTALL_HINT}. Without a local GPU, use the "
            "'openai' backend against a `vllm serve` endpoint, or the 'transformers' backend."
        ) from exc
    return vllm


@dataclass(frozen=True)
class VLLMConfig:
    """Settings of the ``vllm`` backend.

    The first block are ``vllm.LLM`` arguments (``max_model_len=None``: the model's own);
    ``engine_kwargs`` passes any other ``LLM``/``EngineArgs`` argument (e.g. ``quantization``,
    ``enforce_eager``). ``use_chat``: ``auto`` (chat when the tokenizer has a chat template),
    ``true`` or ``false``. ``logprobs``: record the cumulative log-prob of each sample.
    ``fold_system`` merges the system message into the first user turn (templates without a
    system role). ``chat_template`` overrides the tokenizer's template.
    """

    model: str
    tensor_parallel_size: int = 1
    max_model_len: int | None = None
    gpu_memory_utilization: float = 0.9
    dtype: str = "auto"
    seed: int = 0
    trust_remote_code: bool = False
    enable_prefix_caching: bool = True
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    use_chat: str | bool = "auto"
    logprobs: bool = False
    fold_system: bool = False
    chat_template: str | None = None
    chat_template_kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    use_tqdm: bool = False
    bisect_on_error: bool = True

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("vllm.model must be set (a Hugging Face id or a local path)")
        key = self.use_chat.lower() if isinstance(self.use_chat, str) else self.use_chat
        if key not in _USE_CHAT:
            raise ValueError(f"vllm.use_chat must be auto, true or false, got {self.use_chat!r}")
        object.__setattr__(self, "use_chat", _USE_CHAT[key])
        if self.tensor_parallel_size < 1:
            raise ValueError(f"vllm.tensor_parallel_size must be >= 1, got {self.tensor_parallel_size}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"vllm.gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.max_model_len is not None and self.max_model_len <= 0:
            raise ValueError(f"vllm.max_model_len must be > 0, got {self.max_model_len}")


# ----------------------------------------------------------------------- pure mapping


def llm_kwargs(config: VLLMConfig) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM``."""
    kwargs: dict[str, Any] = dict(
        model=config.model,
        tensor_parallel_size=config.tensor_parallel_size,
        gpu_memory_utilization=config.gpu_memory_utilization,
        dtype=config.dtype,
        seed=config.seed,
        trust_remote_code=config.trust_remote_code,
        enable_prefix_caching=config.enable_prefix_caching,
    )
    if config.max_model_len is not None:
        kwargs["max_model_len"] = config.max_model_len
    kwargs.update(config.engine_kwargs)
    return kwargs


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the engine's tokenizer can render chat messages."""
    if getattr(tokenizer, "chat_template", None):
        return True
    return "mistral" in type(tokenizer).__name__.lower()  # mistral-common tokenizers chat natively


def resolve_use_chat(setting: str, tokenizer: Any, chat_template: str | None = None) -> bool:
    """``auto`` -> whether a chat template exists; ``true`` requires one; ``false`` -> plain prompts."""
    available = chat_template is not None or has_chat_template(tokenizer)
    if setting == "false":
        return False
    if setting == "true" and not available:
        raise ValueError(
            "vllm.use_chat=true but the tokenizer has no chat template; set vllm.chat_template or use_chat=auto/false"
        )
    return available


def to_sampling_params(vllm: Any, request: GenerationRequest, *, logprobs: bool = False) -> Any:
    """``vllm.SamplingParams`` for one request: ``n=1``, ``max_tokens`` set, the request's seed."""
    s = request.sampling
    return vllm.SamplingParams(
        n=1,
        temperature=s.temperature,
        top_p=s.top_p,
        max_tokens=s.max_tokens,
        stop=list(s.stop) or None,
        seed=request.seed,
        logprobs=0 if logprobs else None,  # 0: only the sampled token's log-prob
    )


def to_chat_messages(request: GenerationRequest, *, fold_system: bool = False) -> list[dict[str, str]]:
    """The request's conversation as a list of ``{"role", "content"}`` dicts for ``LLM.chat``."""
    messages = fold_system_message(request.messages) if fold_system else request.messages
    return [dict(m) for m in messages]


def _sum_token_logprobs(out: Any) -> float | None:
    """Sum the sampled tokens' log-probs from ``CompletionOutput.logprobs`` (list of {id: Logprob})."""
    steps = getattr(out, "logprobs", None)
    if not steps:
        return None
    total = 0.0
    for token_id, step in zip(out.token_ids, steps, strict=False):
        entry = step.get(token_id) if hasattr(step, "get") else None
        if entry is None:
            return None
        total += float(getattr(entry, "logprob", entry))
    return total


def to_completion(request_output: Any, *, logprobs: bool = False, latency_s: float | None = None) -> Completion:
    """Map a ``RequestOutput`` (its first ``CompletionOutput``) to a :class:`Completion`."""
    outputs = getattr(request_output, "outputs", None) or ()
    if not outputs:
        return Completion(text="", finish_reason="error", latency_s=latency_s, error="vLLM returned no output")
    out = outputs[0]
    cumulative = None
    if logprobs:
        cumulative = out.cumulative_logprob
        cumulative = float(cumulative) if cumulative is not None else _sum_token_logprobs(out)
    return Completion(
        text=out.text or "",
        finish_reason=out.finish_reason or "unknown",
        num_tokens=len(out.token_ids) if out.token_ids is not None else None,
        cumulative_logprob=cumulative,
        latency_s=latency_s,
    )


def _safe_completion(request_output: Any, *, logprobs: bool, latency_s: float) -> Completion:
    try:
        return to_completion(request_output, logprobs=logprobs, latency_s=latency_s)
    except Exception as exc:  # noqa: BLE001 - an odd output must not lose the batch
        return Completion(text="", finish_reason="error", latency_s=latency_s, error=f"bad vLLM output: {exc!r}")


def generate_batch(
    llm: Any, vllm: Any, requests: Sequence[GenerationRequest], *, use_chat: bool, config: VLLMConfig
) -> list[Completion]:
    """One engine call for ``requests``; raises if the engine call fails.

    ``latency_s`` is the batch's wall time divided by its size (amortised; vLLM batches
    requests, so per-request wall time has no meaning offline).
    """
    params = [to_sampling_params(vllm, r, logprobs=config.logprobs) for r in requests]
    start = time.perf_counter()
    if use_chat:
        extra: dict[str, Any] = {}
        if config.chat_template is not None:
            extra["chat_template"] = config.chat_template
        if config.chat_template_kwargs:
            extra["chat_template_kwargs"] = dict(config.chat_template_kwargs)
        conversations = [to_chat_messages(r, fold_system=config.fold_system) for r in requests]
        outputs = llm.chat(conversations, sampling_params=params, use_tqdm=config.use_tqdm, **extra)
    else:
        outputs = llm.generate([r.prompt for r in requests], sampling_params=params, use_tqdm=config.use_tqdm)
    outputs = list(outputs)
    if len(outputs) != len(requests):
        raise RuntimeError(f"vLLM returned {len(outputs)} outputs for {len(requests)} requests")
    latency = (time.perf_counter() - start) / len(requests)
    return [_safe_completion(o, logprobs=config.logprobs, latency_s=latency) for o in outputs]


def _is_engine_dead(exc: BaseException) -> bool:
    return "enginedead" in type(exc).__name__.lower()


def generate_resilient(
    llm: Any, vllm: Any, requests: Sequence[GenerationRequest], *, use_chat: bool, config: VLLMConfig
) -> list[Completion]:
    """:func:`generate_batch`, splitting a failing batch in halves so only failing requests error."""
    if not requests:
        return []
    try:
        return generate_batch(llm, vllm, requests, use_chat=use_chat, config=config)
    except Exception as exc:  # noqa: BLE001 - isolate the failing requests
        if _is_engine_dead(exc):
            raise VLLMEngineError(f"the vLLM engine died: {exc!r}") from exc
        if len(requests) == 1 or not config.bisect_on_error:
            log.warning("vllm backend: %d request(s) failed: %r", len(requests), exc)
            error = f"vLLM engine error: {type(exc).__name__}: {exc}"
            return [Completion(text="", finish_reason="error", error=error) for _ in requests]
        mid = len(requests) // 2
        return generate_resilient(llm, vllm, requests[:mid], use_chat=use_chat, config=config) + generate_resilient(
            llm, vllm, requests[mid:], use_chat=use_chat, config=config
        )


# ---------------------------------------------------------------------------- backend


class VLLMBackend(TeacherBackend):
    """Teacher on an offline ``vllm.LLM`` engine (tensor parallel on one machine).

    ``vllm_module`` replaces ``import vllm`` (tests pass a fake of the documented API).
    """

    name = "vllm"

    def __init__(self, config: VLLMConfig | None = None, *, vllm_module: Any | None = None, **kwargs: Any):
        if config is not None and kwargs:
            raise TypeError("give either a VLLMConfig or keyword arguments, not both")
        self.config = config if config is not None else VLLMConfig(**kwargs)
        self._vllm = vllm_module if vllm_module is not None else import_vllm()
        self._llm: Any = self._vllm.LLM(**llm_kwargs(self.config))
        tokenizer = self._llm.get_tokenizer()
        self.use_chat = resolve_use_chat(self.config.use_chat, tokenizer, self.config.chat_template)
        log.info("vllm backend: model %s, %s", self.config.model, "chat" if self.use_chat else "plain prompts")

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One completion per request, in order (one batched engine call, split on failure)."""
        if self._llm is None:
            raise RuntimeError("the vllm backend is closed")
        return generate_resilient(self._llm, self._vllm, list(requests), use_chat=self.use_chat, config=self.config)

    def close(self) -> None:
        """Drop the engine and free GPU memory where possible."""
        self._llm = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is a core dependency
            pass
