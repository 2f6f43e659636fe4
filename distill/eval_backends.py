"""Which engine decodes the student in ``distill.evaluate``: ``--backend`` strings and their set-up.

    transformers        the student folder in this process (default): the transformers teacher
                        backend's batched, vectorised decoding, prompt ids checked against training
    vllm                offline ``vllm.LLM`` on this machine's GPUs (the ``vllm`` teacher backend:
                        ``LLM.generate`` for plain prompts, ``LLM.chat`` for chat, ``SamplingParams``
                        per request); vLLM is imported only here, with a clear error when missing
    openai:URL          an OpenAI-compatible server at URL (e.g. ``vllm serve DIR`` ->
                        ``openai:http://127.0.0.1:8000/v1``; the ``openai`` teacher backend:
                        ``/completions`` for plain prompts, ``/chat/completions`` for chat)

The engines other than ``transformers`` render and tokenize the prompt themselves, as training
did: a plain prompt is tokenized with the tokenizer's special tokens (BOS), a chat conversation
through the chat template with ``add_generation_prompt`` and no extra special tokens (vLLM's
``LLM.chat`` and its server's chat endpoint do exactly this). ``--backend_option KEY=VALUE``
sets fields of ``VLLMConfig`` / ``OpenAIConfig`` (e.g. ``tensor_parallel_size=2``,
``max_model_len=4096``, ``max_concurrency=64``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from distill.formatting import PromptStyle, resolve_style
from pipeline.hub import looks_local
from pipeline.teachers.base import TeacherBackend

__all__ = ["BackendChoice", "make_remote_backend", "parse_backend"]

BACKEND_HELP = "transformers (default), vllm, or openai:URL (e.g. openai:http://127.0.0.1:8000/v1)"
#: Fields of the backends' configs that ``distill.evaluate`` sets itself.
_OWN_FIELDS = {"model", "use_chat", "base_url"}


@dataclass(frozen=True)
class BackendChoice:
    """A parsed ``--backend``: the engine and, for ``openai``, the server's base URL."""

    kind: Literal["transformers", "vllm", "openai"]
    url: str | None = None

    def __str__(self) -> str:
        return f"openai:{self.url}" if self.kind == "openai" else self.kind


def parse_backend(text: str) -> BackendChoice:
    """``transformers``, ``vllm`` or ``openai:URL``; ``ValueError`` naming the forms otherwise."""
    kind, sep, rest = text.strip().partition(":")
    kind = kind.strip().lower()
    if kind in ("transformers", "vllm") and not sep:
        return BackendChoice(kind)  # type: ignore[arg-type]
    if kind == "openai":
        url = rest.strip()
        if not url:
            raise ValueError("--backend openai needs the server's URL: openai:http://HOST:PORT/v1")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--backend openai:URL: the URL must start with http:// or https://, got {url!r}")
        return BackendChoice("openai", url)
    raise ValueError(f"unknown --backend {text!r}; expected {BACKEND_HELP}")


def _fields(config_cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)} - _OWN_FIELDS


def _checked_options(config_cls: type, options: Mapping[str, Any], backend: str) -> dict[str, Any]:
    known = _fields(config_cls)
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown --backend_option {', '.join(unknown)} for {backend}; known: {', '.join(sorted(known))}")
    return dict(options)


def make_remote_backend(
    choice: BackendChoice,
    model: str,
    *,
    prompt_style: PromptStyle = "auto",
    options: Mapping[str, Any] | None = None,
    tokenizer: str | None = None,
) -> tuple[TeacherBackend, Literal["plain", "chat"]]:
    """The ``vllm`` or ``openai`` teacher backend for the student ``model`` and the prompt style
    it will use (``auto``: chat when the student's tokenizer has a chat template, as training).

    ``vllm``: ``model`` is the student folder (or a hub id); ``auto`` is resolved by the backend
    from the engine's tokenizer. ``openai``: ``model`` is the name the server serves; the server's
    tokenizer is not visible, so ``auto`` needs ``tokenizer`` (a folder; default ``model`` when
    it is a folder). Raises ``ValueError`` (bad option, missing folder, undecidable style) and
    ``VLLMNotInstalledError`` (an ``ImportError``) when vLLM is missing.
    """
    options = dict(options or {})
    if choice.kind == "vllm":
        from pipeline.teachers.vllm_backend import VLLMBackend, VLLMConfig

        if looks_local(model) and not Path(model).expanduser().exists():
            raise ValueError(f"model folder {model!r} does not exist")
        use_chat = {"auto": "auto", "plain": "false", "chat": "true"}[prompt_style]
        config = VLLMConfig(model=model, use_chat=use_chat, **_checked_options(VLLMConfig, options, "vllm"))
        backend = VLLMBackend(config)
        return backend, "chat" if backend.use_chat else "plain"
    if choice.kind == "openai":
        from pipeline.teachers.openai_backend import OpenAIBackend, OpenAIConfig

        style: Literal["plain", "chat"]
        if prompt_style == "auto":
            folder = tokenizer or (model if Path(model).expanduser().is_dir() else None)
            if folder is None:
                raise ValueError(
                    "--backend openai:URL cannot see the served model's tokenizer: give --prompt_style plain or "
                    "chat (the format the student was trained with), or --tokenizer DIR (the student's folder)"
                )
            from transformers import AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(folder)
            except Exception as exc:
                raise ValueError(f"cannot load the tokenizer from {folder!r}: {exc}") from exc
            style = resolve_style(tok, "auto")
        else:
            style = prompt_style
        opts = _checked_options(OpenAIConfig, options, "openai")
        backend = OpenAIBackend(OpenAIConfig(model=model, base_url=choice.url or "", use_chat=style == "chat", **opts))
        return backend, style
    raise ValueError(f"the {choice.kind} backend is not a remote backend")
