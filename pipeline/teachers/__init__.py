"""Teacher backends behind one interface, chosen by a config string or mapping.

Config strings::

    synthetic                          the synthetic world's reference teacher (no model)
    transformers:/models/qwen-0.5b     a local Hugging Face model, batched generation
    vllm:Qwen/Qwen2.5-7B-Instruct      offline vLLM engine (GPU; extra [vllm])
    openai:MODEL@http://host:8000/v1   any OpenAI-compatible server, e.g. ``vllm serve``

or a mapping ``{"backend": ..., "name": ..., "options": {...}}`` whose options are the fields of
the backend's config dataclass (``SyntheticConfig``, ``TransformersConfig``, ``VLLMConfig``,
``OpenAIConfig``). Backends are imported lazily, so vLLM is needed only when used.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import threading
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .base import Completion, GenerationRequest, SamplingConfig, TeacherBackend

__all__ = [
    "BACKENDS",
    "Completion",
    "GenerationRequest",
    "SamplingConfig",
    "TeacherBackend",
    "TeacherSpec",
    "cached_teacher",
    "teacher_in_process",
    "make_teacher",
]

# backend -> (module, backend class, config class, option that names the model)
BACKENDS: dict[str, tuple[str, str, str, str | None]] = {
    "synthetic": ("pipeline.teachers.synthetic_backend", "SyntheticBackend", "SyntheticConfig", None),
    "transformers": ("pipeline.teachers.transformers_backend", "TransformersBackend", "TransformersConfig", "model"),
    "vllm": ("pipeline.teachers.vllm_backend", "VLLMBackend", "VLLMConfig", "model"),
    "openai": ("pipeline.teachers.openai_backend", "OpenAIBackend", "OpenAIConfig", "model"),
}

# options that change speed or robustness but never what is generated (left out of run ids)
NON_OUTPUT_OPTIONS = frozenset({
    "batch_size", "max_concurrency", "timeout_s", "max_retries", "backoff_base_s", "backoff_max_s",
    "use_tqdm", "gpu_memory_utilization", "api_key_env", "latency_s", "bisect_on_error", "device", "vectorised",
})  # fmt: skip


class TeacherSpec(BaseModel):
    """Which teacher to run: backend, the name recorded in the ``teacher`` column, options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["synthetic", "transformers", "vllm", "openai"]
    name: str | None = Field(default=None, description="teacher column value; default: the model id")
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        backend, _, rest = value.partition(":")
        if backend == "synthetic" and not rest:
            return {"backend": "synthetic"}
        if backend == "openai":
            model, _, url = rest.partition("@")
            return {"backend": backend, "options": {"model": model, **({"base_url": url} if url else {})}}
        if backend in BACKENDS and backend != "synthetic" and rest:
            return {"backend": backend, "options": {"model": rest}}
        raise ValueError(
            f"teacher {value!r}: expected 'synthetic', 'transformers:PATH', 'vllm:MODEL' or 'openai:MODEL@URL'"
        )

    @model_validator(mode="after")
    def _check_options(self) -> TeacherSpec:
        module, _, config_cls, model_key = BACKENDS[self.backend]
        cfg = getattr(importlib.import_module(module), config_cls)
        fields = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(self.options) - fields)
        if unknown:
            raise ValueError(f"unknown {self.backend} option(s) {unknown}; known: {sorted(fields)}")
        if model_key and not self.options.get(model_key):
            raise ValueError(f"the {self.backend} backend needs options.{model_key}")
        return self

    @property
    def teacher_name(self) -> str:
        """The value written to the ``teacher`` column."""
        if self.name:
            return self.name
        if self.backend == "synthetic":
            return "synthetic/reference"
        return str(self.options[BACKENDS[self.backend][3]])

    def identity(self) -> dict[str, Any]:
        """What about this teacher changes its outputs (for run ids)."""
        options = {k: v for k, v in sorted(self.options.items()) if k not in NON_OUTPUT_OPTIONS}
        return {"backend": self.backend, "name": self.teacher_name, "options": options}

    def build_config(self) -> Any:
        module, _, config_cls, _ = BACKENDS[self.backend]
        return getattr(importlib.import_module(module), config_cls)(**self.options)


def make_teacher(spec: TeacherSpec | str | dict[str, Any]) -> TeacherBackend:
    """Construct the backend of ``spec`` (raises with a clear message on a bad config)."""
    spec = spec if isinstance(spec, TeacherSpec) else TeacherSpec.model_validate(spec)
    module, backend_cls, _, _ = BACKENDS[spec.backend]
    backend = getattr(importlib.import_module(module), backend_cls)(spec.build_config())
    backend.name = spec.teacher_name
    return backend


_CACHE: dict[str, TeacherBackend] = {}
_CACHE_LOCK = threading.Lock()


def cached_teacher(spec: TeacherSpec) -> TeacherBackend:
    """One backend per spec per process: model engines load once and serve every shard task."""
    return teacher_in_process(spec)[0]


def teacher_in_process(spec: TeacherSpec) -> tuple[TeacherBackend, bool]:
    """The process's backend of ``spec`` and whether this call built it (False: built earlier and reused).

    Every shard task a worker process runs (a thread of the flow's process, a Dask or Ray worker) asks
    here, so a model engine is built once per process, by the first shard that needs it."""
    key = json.dumps(spec.model_dump(), sort_keys=True, default=str)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key], False
        _CACHE[key] = make_teacher(spec)
        return _CACHE[key], True
