"""The MIND trainer: an ``SFTTrainer`` whose loss is built per question from its candidate
rationales by a strategy (docs/method.md; ``distill.strategies``). This file is the glue; the method's
parts live in ``metanet.py`` (the Teaching Assistant), ``inertia.py`` (long-term loss record),
``fusion.py`` (subset and weights), ``losses.py`` (forward pass, consistency, meta-loss),
``strategies/`` (one small class per strategy) and ``run_record.py`` (the run's totals, compute account,
history and summary).

Per micro-batch (a batch of questions, each with its candidates):

1. **score** (strategies that need it: ``lowest_loss``, ``instant``, ``mind``): every candidate's
   cross-entropy ``CE_k`` and pooled last hidden state, either from the training forward itself
   (``--scoring shared``: one forward with grad over every candidate) or from a no-grad forward
   (``--scoring separate``: then only the kept candidates get a forward + backward);
2. **plan**: the strategy says which candidates are kept, with weights ``alpha`` (and records what
   its once-per-step learning needs);
3. **loss** ``sum_q [ sum_k alpha_k CE_k + lambda * consistency_q ] / |B|``, with ``|B|`` the number
   of questions of the whole accumulation window on all ranks (GA=k equals GA=1, two processes
   equal one); ``consistency_q`` is the alpha-weighted pairwise JSD of the answer distributions
   (``mind``, ``instant``) or MCC-KD's bidirectional KL (``mcc_kd``).

Once per optimizer step (``end_of_step``, every micro-batch's and every rank's records gathered):
the inertia statistics take the step's losses; the strategy learns (``mind``: the MetaNet's
meta-loss and its own optimizer, with inertia); per-view logs and the compute account are updated.
During the MetaNet's warm-up with ``--meta_warmup_student frozen`` the student is not updated.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from torch.optim.lr_scheduler import LambdaLR
from transformers import TrainerCallback
from transformers.optimization import get_scheduler
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from data_schemas.run_files import MIND_STATE, MIND_SUMMARY
from distill.config import MindConfig
from distill.console import use_compact_logs
from distill.data import CandidateCollator, CandidateStore
from distill.grad_share import gradient_shares
from distill.losses import RowOutputs, answer_consistency, causal_lm, student_forward
from distill.run_record import MindState
from distill.sharding import refuse_sharding
from distill.strategies import CONSISTENT, Plan, Scored, StepBatch, build_strategy

logger = logging.getLogger(__name__)



def _rows(inputs: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows of a right-padded batch, cut to their longest sequence."""
    mask = inputs["attention_mask"][rows]
    width = int(mask.sum(dim=1).max())
    return {
        "input_ids": inputs["input_ids"][rows, :width],
        "attention_mask": mask[:, :width],
        "labels": inputs["cand_labels"][rows, :width],
    }


class _MindCallback(TrainerCallback):
    """Epoch-aware sample draws and the once-per-optimizer-step work."""

    def __init__(self, trainer: MindTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.collator.epoch = int(state.epoch or 0)

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.end_of_step(state.global_step)


class MindTrainer(SFTTrainer):
    """SFTTrainer whose loss is planned per question by a strategy (``--strategy``)."""

    args: MindConfig

    def __init__(
        self,
        model: Any,
        args: MindConfig,
        store: CandidateStore,
        views: list[str],
        processing_class: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        encoder_reps: torch.Tensor | None = None,
        **kwargs: Any,
    ):
        if processing_class is None or processing_class.pad_token_id is None:
            raise ValueError("the student's tokenizer needs a pad token (set pad_token = eos_token)")
        self.store = store
        self.collator = CandidateCollator(store, processing_class.pad_token_id)
        train_dataset = Dataset.from_dict({"question_index": list(range(len(store)))})
        super().__init__(
            model=model,
            args=args,
            data_collator=self.collator,
            train_dataset=train_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        refuse_sharding(self.accelerator)  # before any step: FSDP/DeepSpeed are not supported (distill/sharding.py)
        self.add_callback(_MindCallback(self))
        use_compact_logs(self)  # one line per logging step, not a dict of ~40 metrics (distill/console.py)
        # the loss is normalised by the questions of the whole accumulation window (our own count)
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        lm = causal_lm(self.model)
        rep_dim = encoder_reps.shape[1] if encoder_reps is not None else lm.config.get_text_config().hidden_size
        self.strategy = build_strategy(args, store, views, rep_dim=rep_dim, encoder_reps=encoder_reps)
        self.mind = MindState(args, views, store.num_candidates, sum(p.numel() for p in lm.parameters()))
        self._pending: list[dict[str, Any]] = []
        self._pending_records: list[dict[str, Any]] = []

    # ------------------------------------------------------------ the student's learning-rate schedule
    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The usual schedule, or with ``--lr_schedule_after_meta_warmup`` the same schedule shifted to
        start at the student's first update (learning rate 0 while the student is frozen)."""
        offset = self.strategy.frozen_steps if self.args.lr_schedule_after_meta_warmup else 0
        if offset == 0 or self.lr_scheduler is not None:
            return super().create_scheduler(num_training_steps, optimizer)
        if offset >= num_training_steps:
            raise ValueError(
                f"--lr_schedule_after_meta_warmup: the MetaNet warm-up ({offset} steps: --meta_warmup_epochs or "
                f"--meta_warmup_steps) leaves no "
                f"student step of {num_training_steps}"
            )
        optimizer = self.optimizer if optimizer is None else optimizer
        inner = get_scheduler(
            self.args.lr_scheduler_type, optimizer=optimizer,
            num_warmup_steps=self.args.get_warmup_steps(num_training_steps - offset),
            num_training_steps=num_training_steps - offset, scheduler_specific_kwargs=self.args.lr_scheduler_kwargs,
        )  # fmt: skip
        if not isinstance(inner, LambdaLR):
            raise ValueError(
                f"--lr_schedule_after_meta_warmup needs a step-indexed schedule; --lr_scheduler_type "
                f"{self.args.lr_scheduler_type} is not one"
            )
        for group, base in zip(optimizer.param_groups, inner.base_lrs, strict=True):
            group["lr"] = base  # undo the inner schedule's first step; the shifted one takes its place
        shifted = [lambda step, f=f: 0.0 if step < offset else f(step - offset) for f in inner.lr_lambdas]
        self.lr_scheduler = LambdaLR(optimizer, shifted)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------ loss scaling across GA and ranks
    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Questions in the accumulation window (on every rank): the denominator of the loss."""
        if not batch_samples:
            return None
        n = torch.tensor(sum(int(b["question_index"].numel()) for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            n = self.accelerator.gather(n).sum()
        return n

    # ------------------------------------------------------------ forward passes
    @property
    def scoring_batch_size(self) -> int:
        """Rows per no-grad scoring forward: never more activation memory than a training step."""
        return self.args.scoring_batch_size or self.args.per_device_train_batch_size

    def _forward(self, model: Any, inputs: dict[str, torch.Tensor], rows: torch.Tensor, *, reps: bool, answers: bool) -> RowOutputs:
        kw = {}
        if answers:
            kw = {"answer_start": inputs["cand_answer_start"][rows], "answer_len": inputs["cand_answer_len"][rows]}
        return student_forward(model, **_rows(inputs, rows), reps=reps, **kw)

    @property
    def _judge_answers(self) -> bool:
        """Candidates are judged by their answer line's loss (``--candidate_loss answer``)."""
        return self.args.candidate_loss == "answer"

    def _candidate_loss(self, out: RowOutputs) -> torch.Tensor:
        """The loss a candidate is judged by: its whole completion's CE, or its answer line's."""
        return out.answer_nll if self._judge_answers else out.nll

    def _score(self, model: Any, inputs: dict[str, torch.Tensor], reps: bool) -> Scored:
        """No-grad CE (and representation) of every candidate, sorted by length and chunked."""
        lengths = inputs["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        n = order.numel()
        ce = torch.empty(n, dtype=torch.float64)
        rep = None
        with torch.no_grad():
            for start in range(0, n, self.scoring_batch_size):
                rows = order[start : start + self.scoring_batch_size]
                out = self._forward(model, inputs, rows, reps=reps, answers=self._judge_answers)
                ce[rows.cpu()] = self._candidate_loss(out).detach().cpu().to(torch.float64)
                if reps:
                    if rep is None:
                        rep = torch.empty(n, out.reps.shape[1], dtype=torch.float32)
                    rep[rows.cpu()] = out.reps.cpu()
        return Scored(ce, rep)

    def _step_batch(self, inputs: dict[str, torch.Tensor]) -> StepBatch:
        qidx = inputs["question_index"].cpu()
        return StepBatch(
            groups=inputs["cand_question"].cpu(),
            views=inputs["cand_view"].cpu(),
            uids=inputs["cand_uid"].cpu(),
            lengths=(inputs["cand_labels"] != -100).sum(dim=1).cpu(),
            question_index=qidx,
            keys=[self.store.questions[int(i)].question_id for i in qidx],
            step=self.state.global_step,
            max_steps=self.state.max_steps,
        )

    # ------------------------------------------------------------ the loss
    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.strategy.student_frozen(self.state.global_step):
            # MetaNet warm-up: score and record, but no backward, so the optimizer leaves the student as it is
            model.train()
            inputs = self._prepare_inputs(inputs)
            with torch.no_grad():
                return self.compute_loss(model, inputs, num_items_in_batch=num_items_in_batch).detach()
        return super().training_step(model, inputs, num_items_in_batch)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        args, strategy = self.args, self.strategy
        batch = self._step_batch(inputs)
        frozen = strategy.student_frozen(batch.step)
        tokens = inputs["attention_mask"].sum(dim=1).cpu()
        answers = args.consistency_weight > 0 and args.strategy in CONSISTENT and bool(args.answer_template)
        forward_tokens = backward_tokens = 0
        scored, shared = None, None
        if strategy.needs_scores:
            if args.scoring == "shared" and not frozen:
                all_rows = torch.arange(batch.n, device=inputs["input_ids"].device)
                shared = self._forward(model, inputs, all_rows, reps=strategy.needs_reps, answers=answers or self._judge_answers)
                reps = shared.reps.cpu() if shared.reps is not None else None
                scored = Scored(self._candidate_loss(shared).detach().cpu().to(torch.float64), reps)
                backward_tokens += int(tokens.sum())
            else:
                scored = self._score(model, inputs, reps=strategy.needs_reps)
                forward_tokens += int(tokens.sum())
        if scored is not None:  # a diverged student: stop before a plan built on NaN hides it
            self._check_finite(scored.ce.sum())
        plan = strategy.plan(batch, scored, self.mind.stats)
        keep = plan.keep
        dev = inputs["input_ids"].device
        denom = num_items_in_batch if num_items_in_batch is not None else batch.nq
        cons_sum = torch.zeros((), device=dev)
        share = None
        if frozen:
            loss = torch.zeros((), device=dev)
            nll_kept = scored.ce[keep] if scored is not None else torch.zeros(0, dtype=torch.float64)
        else:
            if shared is not None:
                out, sel = shared, keep.to(dev)
            else:
                rows = keep.nonzero().flatten().to(dev)
                out = self._forward(model, inputs, rows, reps=False, answers=answers and plan.consistency != "none")
                sel = torch.ones(rows.numel(), dtype=torch.bool, device=dev)
                backward_tokens += int(tokens[keep].sum())
            nll = out.nll[sel]
            alpha = plan.alpha[keep].to(device=dev, dtype=nll.dtype)
            weighted = alpha * nll
            loss = weighted.sum()
            cons_term = None
            if plan.consistency != "none" and answers and out.answer_logp is not None:
                pw = plan.pair_weights if plan.pair_weights is not None else plan.alpha
                cons_sum = answer_consistency(
                    out.answer_logp[sel], out.answer_mask[sel], batch.groups[keep], pw[keep], plan.consistency
                )
                cons_term = args.consistency_weight * cons_sum
                loss = loss + cons_term
            if self._measures_grad_share(batch.step):
                share = self._grad_share(model, batch.views[keep], weighted, cons_term)
            loss = loss / torch.as_tensor(denom, device=dev, dtype=loss.dtype)
            if args.average_tokens_across_devices and num_items_in_batch is not None and args.world_size > 1:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients over ranks
            self._check_finite(loss)
            nll_kept = nll.detach().cpu().to(torch.float64)
        self._record(batch, plan, scored, nll_kept, float(cons_sum.detach()), inputs, forward_tokens, backward_tokens, frozen)
        self._pending[-1]["grad_share"] = share
        return (loss, None) if return_outputs else loss

    def _measures_grad_share(self, step: int) -> bool:
        every = self.args.grad_share_every
        return every > 0 and step % every == 0 and torch.is_grad_enabled()

    def _grad_share(self, model: Any, kept_views: torch.Tensor, weighted: torch.Tensor,
                    cons_term: torch.Tensor | None) -> dict[str, float]:  # fmt: skip
        """Each view's (and the consistency term's) share of this micro-batch's gradient (``grad_share.py``)."""
        kept_views = kept_views.to(weighted.device)
        terms = {self.mind.views[v]: weighted[kept_views == v].sum() for v in kept_views.unique().tolist()}
        if cons_term is not None:
            terms["consistency"] = cons_term
        return gradient_shares(terms, [p for p in model.parameters() if p.requires_grad])

    def _check_finite(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss):
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            raise FloatingPointError(
                f"non-finite loss ({float(loss.detach())}) in optimizer step {self.state.global_step + 1} (after "
                f"{self.state.global_step} completed); stopping before the update. Last good checkpoint: "
                f"{last or 'none saved yet'}. Lower the learning rate or check the data."
            )

    def _record(self, batch: StepBatch, plan: Plan, scored: Scored | None, nll_kept: torch.Tensor, cons: float,
                inputs: dict[str, torch.Tensor], forward_tokens: int, backward_tokens: int, frozen: bool) -> None:  # fmt: skip
        """What end_of_step needs from this micro-batch (gathered over ranks there)."""
        keep = plan.keep
        if scored is not None:  # every candidate's loss this step
            uids, views, losses = batch.uids, batch.views, scored.ce
        else:
            uids, views, losses = batch.uids[keep], batch.views[keep], nll_kept
        trained = 0 if frozen else int((inputs["cand_labels"][keep.to(inputs["cand_labels"].device)] != -100).sum())
        self._pending.append({
            "uids": uids, "views": views, "losses": losses,
            "all_views": batch.views, "keep": keep, "alpha": plan.alpha, "flawed": inputs["cand_flawed"].cpu(),
            "scores": None if plan.scores is None else plan.scores.detach().cpu().to(torch.float64),
            "questions": batch.nq, "consistency": cons,
            "forward_tokens": forward_tokens, "backward_tokens": backward_tokens, "trained_tokens": trained,
        })  # fmt: skip
        if plan.record is not None:
            self._pending_records.append(plan.record)

    # ------------------------------------------------------------ once per optimizer step
    def end_of_step(self, global_step: int) -> None:
        """Statistics, the strategy's learning, per-view totals and logs, from every rank's micro-batches."""
        pending, self._pending = self._pending, []
        records, self._pending_records = self._pending_records, []
        if self.args.world_size > 1:  # rank order = the order of the global batch's questions
            parts = gather_object([(pending, records)])
            pending = [p for part in parts for p in part[0]]
            records = [r for part in parts for r in part[1]]
        m, step = self.mind, global_step - 1
        if pending:
            cat = {k: torch.cat([p[k] for p in pending]) for k in ("uids", "views", "losses")}
            m.stats.update(cat["uids"], cat["views"], cat["losses"], step)
        metrics = self.strategy.end_of_step(records, step)
        log = self._metrics["train"]
        step_sums = m.tally(pending, log)
        m.tally_grad_share([p["grad_share"] for p in pending if p.get("grad_share") is not None], log)
        questions = max(step_sums["questions"], 1)
        metrics["subset_size"] = step_sums["kept"] / questions
        if any(p["consistency"] for p in pending) or self.args.strategy in CONSISTENT:
            metrics["consistency"] = step_sums["consistency"] / questions
        for k in ("forward_tokens", "backward_tokens", "trained_tokens"):
            m.compute[k] += step_sums[k]
        for v, name in enumerate(m.views):
            if m.stats.view_slow[v].ready:
                metrics[f"L_p/{name}"] = m.stats.view_loss(v)
        for k, val in metrics.items():
            log[f"mind/{k}"].append(val)
        log["mind/flops"] = [m.flops]
        m.window_add(metrics, global_step, self.args.history_every, self.state.max_steps)

    # ------------------------------------------------------------ summary and checkpoints
    def summary(self) -> dict[str, Any]:
        """Per-view totals, the compute account and the history (written as mind_summary.json)."""
        return self.mind.summary(self.args.strategy, getattr(self.strategy, "meta_steps", None))

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            torch.save({"mind": self.mind.state_dict(), "strategy": self.strategy.state_dict()}, folder / MIND_STATE)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        if resume_from_checkpoint:
            path = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            if path is None:
                raise ValueError(f"no checkpoint found in {self.args.output_dir} to resume from")
            state_file = Path(path) / MIND_STATE
            if not state_file.exists():
                raise ValueError(f"{path} has no {MIND_STATE}: not a MIND checkpoint")
            state = torch.load(state_file, weights_only=False)
            self.mind.load_state_dict(state["mind"])
            self.strategy.load_state_dict(state["strategy"])
            resume_from_checkpoint = path
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.args.should_save:
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(self.args.output_dir) / MIND_SUMMARY, "w") as fh:
                json.dump(self.summary(), fh, indent=2)
        return result
