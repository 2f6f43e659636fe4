"""The ``transformers`` teacher: batched, left-padded generation with a local HF causal LM.

A CPU/GPU fallback for machines without vLLM (docs/design.md). Decoding is a small explicit loop
over the model's forward pass with a KV cache instead of ``model.generate``, because
``generate`` samples every row of a batch from one global RNG, so a row's sample would depend
on its batch neighbours. Here:

* **Seeds.** Every request owns a CPU ``torch.Generator`` seeded with ``request.seed``; at each
  step a sampling row draws exactly one uniform number from its own generator and picks its
  token by inverse-CDF over its own (temperature-scaled, top-p filtered) distribution. The draw
  sequence depends only on the row's seed and its own tokens, never on the batch, the batch
  size, the device or the other rows' lengths; so a request gives the same text alone and in any
  batch (up to floating-point differences in the batched forward pass: in float32, the
  default, they only matter when a draw or an argmax tie falls within ~1e-6; in bfloat16 they
  change many outputs, so reduced precision trades batch invariance for speed).
  Greedy rows (``temperature == 0``) take the argmax and draw nothing.
* **Batching.** Requests are tokenized, sorted by prompt length (identical prompts end up
  adjacent), cut into batches of ``batch_size``, LEFT-padded with position ids that skip the
  padding (as ``generate`` does), and results are put back in request order. Identical prompts
  in a batch (the ``n`` samples of one view) are prefilled once and their KV cache is repeated.
  Rows that finish are dropped from the batch (and its cache) so the rest runs narrower.
* **Vectorised decoding.** A batch without stop strings is decoded with tensor bookkeeping
  only: per step one forward pass, the next token of every row at once (each sampling row's
  uniform draws are taken up front from its own generator, in the order the per-row loop takes
  them), EOS and length tests as tensor ops and one host sync; tokens and log-probs are
  assembled once at the end. No Python work per row per token. Requests with stop strings
  (decoded text must be inspected each step) use the per-row loop; both give the same outputs.
* **Stops.** A row stops at an EOS token (tokenizer EOS and ``generation_config.eos_token_id``)
  or when the decoded tail of its generation contains one of ``sampling.stop`` (post-hoc
  string check each step; the text is cut before the first stop string, which is not
  included, as in vLLM). ``finish_reason`` is ``"stop"`` then, ``"length"`` when
  ``max_tokens`` tokens were generated without either.
* **Counts.** ``num_tokens`` counts generated tokens up to and including the EOS token or the
  token that completed the stop string. ``cumulative_logprob`` sums, over those tokens, the
  log-probability under the model's unmodified distribution (log-softmax of the raw logits,
  before temperature and top-p; vLLM's ``raw_logprobs`` convention), so it is finite and <= 0.
  ``latency_s`` is the wall time of the batch the request ran in.
* **Failures.** An exception in a batch (e.g. CUDA out of memory) retries the batch split in
  halves, down to single requests, which then become ``finish_reason="error"`` completions.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline.hub import looks_local, missing_model_message
from pipeline.perspectives import fold_system_message
from pipeline.teachers.base import Completion, GenerationRequest, TeacherBackend
from pipeline.teachers.transformers_decoding import (
    assemble_steps, first_stop, pick_tokens, request_generator, seeded_draws
)

log = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "bfloat16", "float16")
_USE_CHAT = ("auto", "true", "false")


@dataclass(frozen=True)
class TransformersConfig:
    """Settings of the ``transformers`` teacher.

    ``model``: a local folder (or hub id, if the hub is reachable) for ``from_pretrained``;
    ``tokenizer`` defaults to ``model``. ``device``: ``auto`` (CUDA when available, else CPU),
    ``cpu``, ``cuda`` or ``cuda:N``. ``dtype``: ``auto`` is float32 on any device, which keeps
    outputs independent of batching; bfloat16/float16 are faster and lighter but batched
    kernels then perturb logits enough that a request's output may depend on its batch (as in
    vLLM). ``use_chat``: ``auto`` renders ``request.messages``
    with the tokenizer's chat template when it has one, else uses ``request.prompt``; ``true``
    requires a template; ``false`` always uses ``request.prompt``. ``chat_template`` overrides
    the tokenizer's template; ``fold_system`` merges the system message into the first user
    turn (templates without a system role). ``vectorised=False`` decodes every batch with the
    per-row loop (otherwise used only for requests with stop strings): same outputs, slower;
    kept as the reference and the baseline of ``benchmarks/evaluate.py``.
    """

    model: str
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16
    use_chat: str | bool = "auto"
    trust_remote_code: bool = False
    tokenizer: str | None = None
    attn_implementation: str | None = None
    chat_template: str | None = None
    fold_system: bool = False
    vectorised: bool = True

    def __post_init__(self) -> None:
        if not str(self.model):
            raise ValueError("transformers teacher: `model` must be set")
        if self.dtype not in _DTYPES:
            raise ValueError(
                f"transformers teacher: dtype must be one of {_DTYPES}, got {self.dtype!r}"
            )
        if self.batch_size < 1:
            raise ValueError(
                f"transformers teacher: batch_size must be >= 1, got {self.batch_size}"
            )
        use_chat = str(self.use_chat).lower()
        if use_chat not in _USE_CHAT:
            raise ValueError(
                f"transformers teacher: use_chat must be auto, true or false, got {self.use_chat!r}"
            )
        object.__setattr__(self, "use_chat", use_chat)
        device = str(self.device)
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise ValueError(
                f"transformers teacher: device must be auto, cpu or cuda[:N], got {device!r}"
            )


@dataclass
class _Prepared:
    """One request, tokenized."""

    index: int
    request: GenerationRequest
    input_ids: list[int]


@dataclass
class _Row:
    """Decoding state of one request inside a batch."""

    prep: _Prepared
    generator: Any  # torch.Generator | None
    tokens: list[int]
    logprob: float = 0.0
    finish_reason: str | None = None
    stop_cut: int | None = None  # character index of the first stop string in the text


class TransformersBackend(TeacherBackend):
    """Teacher backed by a local Hugging Face causal LM (see the module docstring)."""

    name = "transformers"

    def __init__(self, config: TransformersConfig | None = None, /, **kwargs: Any) -> None:
        """Load tokenizer and model; raise ``ValueError`` naming the path if that fails."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if config is None:
            config = TransformersConfig(**kwargs)
        elif kwargs:
            config = replace(config, **kwargs)
        self.config = config
        self.device = torch.device(_resolve_device(config.device))
        self.dtype = _resolve_dtype(config.dtype, self.device)

        tok_path = config.tokenizer or config.model
        _check_local_path(config.model, "model")
        if config.tokenizer:
            _check_local_path(config.tokenizer, "tokenizer")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                tok_path, trust_remote_code=config.trust_remote_code
            )
        except Exception as exc:
            raise ValueError(f"transformers teacher: {missing_model_message(tok_path, 'tokenizer', exc)}") from exc
        model_kwargs: dict[str, Any] = {
            "dtype": self.dtype,
            "trust_remote_code": config.trust_remote_code,
        }
        if config.attn_implementation:
            model_kwargs["attn_implementation"] = config.attn_implementation
        try:
            model = AutoModelForCausalLM.from_pretrained(config.model, **model_kwargs)
        except Exception as exc:
            raise ValueError(f"transformers teacher: {missing_model_message(config.model, 'model', exc)}") from exc
        self.model = model.to(self.device).eval()
        self._setup(tok_path)

    @classmethod
    def from_pretrained_objects(
        cls, model: Any, tokenizer: Any, config: TransformersConfig | None = None, /, **kwargs: Any
    ) -> TransformersBackend:
        """Wrap an already loaded ``model`` and ``tokenizer`` (e.g. a student being trained).

        Nothing is loaded, moved or cast: generation runs on the model's device in its dtype
        (``device``, ``dtype`` and the loading fields of the config are ignored; ``model``
        defaults to a label). The model's train/eval mode is left as it is: the caller puts it
        in eval mode for generation (dropout) and restores it afterwards.
        """
        import torch

        if config is None:
            config = TransformersConfig(**{"model": "<in-memory>", **kwargs})
        elif kwargs:
            config = replace(config, **kwargs)
        self = cls.__new__(cls)
        self.config = config
        self.tokenizer = tokenizer
        self.model = model
        param = next(iter(model.parameters()), None)
        self.device = param.device if param is not None else torch.device("cpu")
        self.dtype = param.dtype if param is not None else torch.float32
        self._setup("<in-memory tokenizer>")
        return self

    def _setup(self, tok_path: str) -> None:
        """Chat-template choice, EOS and pad ids, forward-signature probes (after loading)."""
        config = self.config
        self.has_chat_template = bool(
            config.chat_template or getattr(self.tokenizer, "chat_template", None)
        )
        if config.use_chat == "true" and not self.has_chat_template:
            raise ValueError(
                f"transformers teacher: use_chat=true but the tokenizer at {tok_path!r} "
                "has no chat template"
            )
        self.use_chat = config.use_chat == "true" or (
            config.use_chat == "auto" and self.has_chat_template
        )
        self.eos_ids: set[int] = _eos_ids(self.tokenizer, self.model)
        self.pad_id: int = next(
            (
                i
                for i in (self.tokenizer.pad_token_id, *sorted(self.eos_ids), 0)
                if isinstance(i, int)
            ),
            0,
        )
        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._pass_positions = "position_ids" in params
        self._logits_to_keep = "logits_to_keep" in params

    # ---------------------------------------------------------------- public API

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """One completion per request, in order; batches of ``config.batch_size``."""
        return self._generate(requests, self.config.batch_size)

    def generate_unbatched(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        """The same, one request at a time (reference for the batched path and benchmarks)."""
        return self._generate(requests, 1)

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        """The prompt token ids the model is fed for ``request``."""
        return self._encode(request)

    def render_prompt(self, request: GenerationRequest) -> str:
        """The text fed to the model: chat-template rendering or ``request.prompt``."""
        if self.use_chat and request.messages:
            messages = request.messages
            if self.config.fold_system:
                messages = fold_system_message(messages)
            return self.tokenizer.apply_chat_template(
                [dict(m) for m in messages],
                chat_template=self.config.chat_template,
                add_generation_prompt=True,
                tokenize=False,
            )
        return request.prompt

    def close(self) -> None:
        """Drop the model and free GPU memory."""
        import torch

        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    # ---------------------------------------------------------------- internals

    def _generate(self, requests: Sequence[GenerationRequest], batch_size: int) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        for i, req in enumerate(requests):
            try:
                prepared.append(_Prepared(i, req, self._encode(req)))
            except Exception as exc:  # a bad prompt or template must not lose the others
                results[i] = _error(exc)
        # Sort by prompt length (then content, so identical prompts are adjacent); stable.
        prepared.sort(key=lambda p: (len(p.input_ids), p.input_ids))
        for start in range(0, len(prepared), batch_size):
            batch = prepared[start : start + batch_size]
            for prep, completion in zip(batch, self._run_with_retry(batch), strict=True):
                results[prep.index] = completion
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _encode(self, request: GenerationRequest) -> list[int]:
        if self.use_chat and request.messages:
            text = self.render_prompt(request)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = self.tokenizer(request.prompt)["input_ids"]
        if not ids:  # an empty prompt without BOS: start from BOS (or EOS) alone
            start = self.tokenizer.bos_token_id
            if start is None:
                start = self.pad_id
            ids = [start]
        return list(ids)

    def _run_with_retry(self, batch: list[_Prepared]) -> list[Completion]:
        """Run a batch; on an exception retry it in halves, down to error completions."""
        try:
            return self._run_batch(batch)
        except Exception as exc:  # noqa: BLE001 - any failure is isolated, never raised
            error = f"{type(exc).__name__}: {exc}"
        # Retry outside the except block: the traceback's frames (KV cache, logits) are gone
        # by now, so their GPU memory can actually be freed before the smaller batches run.
        _free_cuda(self.device)
        if len(batch) == 1:
            log.warning("transformers teacher: request %s failed: %s", batch[0].request.key, error)
            return [Completion(text="", finish_reason="error", error=error)]
        log.warning(
            "transformers teacher: batch of %d failed (%s); retrying in halves", len(batch), error
        )
        mid = len(batch) // 2
        return self._run_with_retry(batch[:mid]) + self._run_with_retry(batch[mid:])

    def _forward(
        self, input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any, last_only: bool
    ) -> Any:
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "use_cache": True,
            self._cache_kw: cache,
        }
        if self._pass_positions:
            kwargs["position_ids"] = position_ids
        if last_only and self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        return self.model(**kwargs)

    def _advance(self, tokens: Any, mask: Any, positions: Any, cache: Any) -> tuple[Any, Any]:
        """One decoding step's forward pass over one new token per row: ``(next logits, cache)``."""
        out = self._forward(tokens[:, None], mask, positions[:, None], cache, last_only=True)
        new_cache = _get_cache(out)
        return out.logits[:, -1, :], (new_cache if new_cache is not None else cache)

    def _run_batch(self, batch: list[_Prepared]) -> list[Completion]:
        """Decode one batch: the vectorised loop unless a request has stop strings (or
        ``config.vectorised`` is off)."""
        if self.config.vectorised and not any(p.request.sampling.stop for p in batch):
            return self._run_batch_vectorised(batch)
        return self._run_batch_rows(batch)

    def _prefill(self, batch: list[_Prepared]) -> tuple[Any, Any, Any, Any]:
        """Left-padded prefill, each distinct prompt once (rows with the same prompt share its
        cache): ``(cache, last logits, attention mask, position of each row's last token)``,
        one row per request of ``batch``. Call under ``torch.inference_mode``."""
        import torch

        device = self.device
        uniq: dict[tuple[int, ...], int] = {}
        expand = [uniq.setdefault(tuple(p.input_ids), len(uniq)) for p in batch]
        prompts = list(uniq)
        width = max(len(ids) for ids in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for r, p in enumerate(prompts):  # LEFT padding
            ids[r, width - len(p) :] = torch.tensor(p, dtype=torch.long)
            mask[r, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = self._forward(ids, mask, positions, None, last_only=True)
        cache = _get_cache(out)
        logits = out.logits[:, -1, :]
        if len(prompts) < len(batch):
            index = torch.tensor(expand, device=device)
            cache.batch_select_indices(index)
            logits, mask = logits[index], mask[index]
        return cache, logits, mask, mask.sum(-1) - 1

    def _run_batch_vectorised(self, batch: list[_Prepared]) -> list[Completion]:
        """Decode ``batch`` with tensor bookkeeping only: no Python work per row per token.

        Each step: one forward pass, every row's next token (argmax, or inverse-CDF with the
        row's own uniform draw: drawn up front, ``max_tokens`` per sampling row, from the same
        per-request generator and in the same order as the per-row loop, so samples are
        unchanged), an EOS/length test as tensor ops and ONE host sync (how many rows ended);
        ended rows leave the batch and its KV cache at once, as in the per-row loop. Tokens,
        log-probs and lengths are assembled once at the end.
        """
        import torch

        t0 = time.perf_counter()
        horizon = max(p.request.sampling.max_tokens for p in batch)
        with torch.inference_mode():
            steps = self._decode_steps(batch, horizon)
            tokens, lengths, totals = assemble_steps(steps, len(batch), horizon, self.pad_id, self.device)
        token_lists, length_list, total_list = tokens.tolist(), lengths.tolist(), totals.tolist()
        elapsed = time.perf_counter() - t0
        completions = []
        for p, toks, n, total in zip(batch, token_lists, length_list, total_list, strict=True):
            row = _Row(prep=p, generator=None, tokens=toks[:n], logprob=total)
            row.finish_reason = "stop" if row.tokens and row.tokens[-1] in self.eos_ids else "length"
            completions.append(self._completion(row, elapsed))
        return completions

    def _decode_steps(self, batch: list[_Prepared], horizon: int) -> list[tuple[Any, Any, Any]]:
        """The vectorised loop, up to ``horizon`` steps: per step ``(request of each batch slot,
        tokens, raw log-probs)``; a row leaves at EOS or its ``max_tokens``. Call under
        ``torch.inference_mode``."""
        import torch

        device = self.device
        size = len(batch)
        limits = [p.request.sampling.max_tokens for p in batch]
        draws = seeded_draws([p.request for p in batch], horizon, device)
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=device)
        same_limit = len(set(limits)) == 1
        limit = torch.tensor(limits, device=device)  # per slot; follows the slots when rows leave
        rows = torch.arange(size, device=device)  # batch slot -> request
        steps: list[tuple[Any, Any, Any]] = []
        cache, logits, mask, last_pos = self._prefill(batch)
        width = mask.shape[1]
        mask = torch.cat([mask, mask.new_ones((size, horizon))], dim=-1)
        for step in range(horizon):
            logits = logits.float()
            logprobs = torch.log_softmax(logits, dim=-1)
            tok = logits.argmax(dim=-1)
            if draws is not None:
                tok = draws.choose(logits, tok, rows, step)
            steps.append((rows, tok, logprobs.gather(1, tok[:, None]).squeeze(1)))
            if step + 1 == horizon:
                break
            ended = torch.isin(tok, eos)
            if not same_limit:
                ended |= limit <= step + 1
            n_ended = int(ended.sum())  # the step's one host sync
            if n_ended == len(tok):
                break
            if n_ended:
                keep = (~ended).nonzero().squeeze(1)
                cache.batch_select_indices(keep)
                rows, tok, mask, last_pos, limit = rows[keep], tok[keep], mask[keep], last_pos[keep], limit[keep]
            last_pos = last_pos + 1
            logits, cache = self._advance(tok, mask[:, : width + step + 1], last_pos, cache)
        return steps

    def _run_batch_rows(self, batch: list[_Prepared]) -> list[Completion]:
        """The per-row decoding loop: Python bookkeeping per row and token; the only path that
        handles stop strings (and the reference the vectorised path is tested against)."""
        import torch

        t0 = time.perf_counter()
        device = self.device
        rows = [_Row(prep=p, generator=request_generator(p.request), tokens=[]) for p in batch]
        with torch.inference_mode():
            cache, logits, mask, last_pos = self._prefill(batch)
            active = list(range(len(rows)))  # rows still decoding, in batch order
            temps = torch.tensor([r.prep.request.sampling.temperature for r in rows], device=device)
            top_ps = torch.tensor([r.prep.request.sampling.top_p for r in rows], device=device)
            while True:
                generators = [rows[i].generator for i in active]
                next_tok, tok_logprob = pick_tokens(logits, generators, temps[active], top_ps[active])
                next_list = next_tok.tolist()
                lp_list = tok_logprob.tolist()
                still: list[int] = []
                for slot, (i, tok, lp) in enumerate(zip(active, next_list, lp_list, strict=True)):
                    row = rows[i]
                    row.tokens.append(tok)
                    row.logprob += lp
                    if self._check_finished(row):
                        continue
                    still.append(slot)
                if not still:
                    break
                if len(still) < len(active):
                    keep = torch.tensor(still, device=device)
                    cache.batch_select_indices(keep)
                    mask, last_pos, next_tok = mask[keep], last_pos[keep], next_tok[keep]
                    active = [active[s] for s in still]
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
                last_pos = last_pos + 1
                logits, cache = self._advance(next_tok, mask, last_pos, cache)
        elapsed = time.perf_counter() - t0
        return [self._completion(row, elapsed) for row in rows]

    def _check_finished(self, row: _Row) -> bool:
        """Update ``row.finish_reason`` after a new token; True when the row is done."""
        sampling = row.prep.request.sampling
        if row.tokens[-1] in self.eos_ids:
            row.finish_reason = "stop"
            return True
        stops = [s for s in sampling.stop if s]
        if stops:
            # The new stop string must end in the newest token: decode a tail long enough for it.
            window = 4 * max(len(s) for s in stops) + 8
            tail = self.tokenizer.decode(row.tokens[-window:], skip_special_tokens=True)
            if any(s in tail for s in stops):
                text = self._decode(row.tokens)
                cut = first_stop(text, stops)
                if cut is not None:
                    row.finish_reason, row.stop_cut = "stop", cut
                    return True
        if len(row.tokens) >= sampling.max_tokens:
            row.finish_reason = "length"
            return True
        return False

    def _decode(self, tokens: list[int]) -> str:
        if tokens and tokens[-1] in self.eos_ids:
            tokens = tokens[:-1]
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _completion(self, row: _Row, elapsed: float) -> Completion:
        text = self._decode(row.tokens)
        finish = row.finish_reason or "length"
        cut = row.stop_cut
        if cut is None and row.prep.request.sampling.stop:  # safety net: a stop the tail missed
            cut = first_stop(text, row.prep.request.sampling.stop)
            if cut is not None:
                finish = "stop"
        if cut is not None:
            text = text[:cut]
        return Completion(
            text=text,
            finish_reason=finish,
            num_tokens=len(row.tokens),
            cumulative_logprob=row.logprob,
            latency_s=elapsed,
        )


# -------------------------------------------------------------------- helpers


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"transformers teacher: device {device!r} requested but CUDA is not available"
        )
    return device


def _resolve_dtype(dtype: str, device: Any) -> Any:
    import torch

    if dtype == "auto":  # float32 everywhere: batch-invariant outputs (see TransformersConfig)
        return torch.float32
    if dtype == "bfloat16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("transformers teacher: bfloat16 is not supported on this GPU; use float16")
    return getattr(torch, dtype)


def _check_local_path(path: str, what: str) -> None:
    """Fail early, naming the path, when it looks local but does not exist."""
    if looks_local(path) and not Path(path).expanduser().exists():
        raise ValueError(f"transformers teacher: {what} path {path!r} does not exist")


def _eos_ids(tokenizer: Any, model: Any) -> set[int]:
    ids: set[int] = set()
    candidates: list[Any] = [tokenizer.eos_token_id]
    gen_cfg = getattr(model, "generation_config", None)
    if gen_cfg is not None:
        candidates.append(gen_cfg.eos_token_id)
    for c in candidates:
        if isinstance(c, int):
            ids.add(c)
        elif isinstance(c, list | tuple):
            ids.update(i for i in c if isinstance(i, int))
    return ids


def _get_cache(out: Any) -> Any:
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _free_cuda(device: Any) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def _error(exc: BaseException) -> Completion:
    return Completion(text="", finish_reason="error", error=f"{type(exc).__name__}: {exc}")
