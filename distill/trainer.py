"""The MIND trainer: an ``SFTTrainer`` that picks and weights perspectives online (DESIGN §5).

Per optimizer step, for a batch of questions each with several candidate rationales (views):

1. **inertia statistics** (``InertiaStats``) come from losses the training computes anyway
   (plus the probe); they are updated once per optimizer step with every micro-batch's and every
   rank's losses, so GA=k equals GA=1 and two processes equal one;
2. **features** per candidate from those statistics (``ta.build_features``);
3. **scores**: the TA (``mind``), ``-z`` (``inertia``), or none (baselines); the **capability
   gate** ``-gamma * relu(z - kappa)``; the policy ``softmax(score / tau)`` per question;
4. **pick and weight**: ``k`` candidates per question from the policy (counter-based
   randomness), weights = policy renormalised over the picks, detached;
5. **student loss** ``sum_q sum_picks w_c * l_c / |B|`` where ``l_c`` is the mean token NLL of
   the candidate's completion, from TRL's fused LM head (no full-vocabulary logits), with
   ``|B|`` the number of questions of the whole accumulation window on all ranks;
6. **feedback**: every ``probe_every`` steps, a fixed held-out probe set (every view) is scored
   without grad; its per-view losses refresh ``L_p``; the TA's reward is the relative decrease
   of the smoothed probe loss over all views; REINFORCE over the picks since the last probe,
   with a reward baseline and an entropy bonus, on the TA's own Adam optimizer.

Strategies (one flag): ``golden``, ``all``, ``random``, ``lowest_loss``, ``inertia``, ``mind``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from transformers import TrainerCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from distill.config import MindConfig
from distill.data import CandidateCollator, CandidateStore, QuestionCandidates, pad_sequences
from distill.inertia import Ema, InertiaStats
from distill.ta import (
    TeachingAssistant,
    build_features,
    entropy_per_group,
    gate,
    grouped_log_softmax,
    pick_uniform,
    sample_picks,
)
from pipeline.ids import stable_hash

logger = logging.getLogger(__name__)

MIND_STATE = "mind_state.pt"
USES_STATS = ("lowest_loss", "inertia", "mind")


def sequence_nll(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean token NLL of each row's labelled tokens, via TRL's fused LM head (no full logits)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, fused_lm_head=True, use_cache=False)
    counts = out.label_mask.sum(dim=1).clamp(min=1)
    return -(out.log_probs.sum(dim=1)) / counts


def _trim(inputs: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Rows of a right-padded batch, cut to their longest sequence."""
    mask = inputs["attention_mask"][rows]
    width = int(mask.sum(dim=1).max())
    return {
        "input_ids": inputs["input_ids"][rows, :width],
        "attention_mask": mask[:, :width],
        "labels": inputs["cand_labels"][rows, :width],
    }


class MindState:
    """Everything the method adds to a training run; saved with every checkpoint."""

    def __init__(self, args: MindConfig, views: list[str], num_candidates: int):
        self.views = views
        self.stats = InertiaStats(len(views), num_candidates, args.beta, args.beta_fast)
        self.ta = TeachingAssistant(len(views), args.ta_hidden, args.ta_embedding_dim, seed=args.seed)
        self.ta_optimizer = torch.optim.Adam(self.ta.parameters(), lr=args.ta_learning_rate)
        self.baseline = Ema(args.ta_baseline_beta)
        self.reward_var = Ema(args.ta_baseline_beta)
        self.probe_loss = Ema(args.beta_fast)
        self.last_probe: float | None = None
        self.records: list[dict[str, torch.Tensor]] = []  # picks since the last probe (REINFORCE)
        self.picks = Counter()  # cumulative picks per view
        self.weights = defaultdict(float)  # cumulative weight per view
        self.trained_tokens = 0  # completion tokens of the candidates trained on (all ranks)
        self.history: list[dict[str, Any]] = []  # per-probe log: reward, entropy, L_p

    def state_dict(self) -> dict[str, Any]:
        return {
            "views": self.views, "stats": self.stats.state_dict(), "ta": self.ta.state_dict(),
            "ta_optimizer": self.ta_optimizer.state_dict(),
            "emas": {k: [getattr(self, k).value, getattr(self, k).weight] for k in ("baseline", "reward_var", "probe_loss")},
            "last_probe": self.last_probe, "records": self.records, "picks": dict(self.picks),
            "weights": dict(self.weights), "history": self.history, "trained_tokens": self.trained_tokens,
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["views"] != self.views:
            raise ValueError(f"checkpoint views {state['views']} differ from the data's {self.views}")
        self.stats.load_state_dict(state["stats"])
        self.ta.load_state_dict(state["ta"])
        self.ta_optimizer.load_state_dict(state["ta_optimizer"])
        for k, (value, weight) in state["emas"].items():
            getattr(self, k).value, getattr(self, k).weight = value, weight
        self.last_probe = state["last_probe"]
        self.records = state["records"]
        self.picks = Counter(state["picks"])
        self.weights = defaultdict(float, state["weights"])
        self.history = state["history"]
        self.trained_tokens = int(state.get("trained_tokens", 0))  # absent in checkpoints before it existed


class _MindCallback(TrainerCallback):
    """Epoch-aware sample draws and the once-per-optimizer-step work (stats, probe, TA)."""

    def __init__(self, trainer: MindTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.trainer.collator.epoch = int(state.epoch or 0)

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.end_of_step(state.global_step)


class MindTrainer(SFTTrainer):
    """SFTTrainer whose loss picks and weights each question's candidate rationales."""

    args: MindConfig

    def __init__(
        self,
        model: Any,
        args: MindConfig,
        store: CandidateStore,
        views: list[str],
        probe: list[QuestionCandidates] | None = None,
        processing_class: Any = None,
        callbacks: list[TrainerCallback] | None = None,
        **kwargs: Any,
    ):
        if processing_class is None or processing_class.pad_token_id is None:
            raise ValueError("the student's tokenizer needs a pad token (set pad_token = eos_token)")
        if args.strategy == "golden":
            store.fixed_samples = True
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
        self.add_callback(_MindCallback(self))
        # the loss is normalised by the questions of the whole accumulation window (our own count)
        self.model_accepts_loss_kwargs = True
        self.loss_is_scaled_for_ga = True
        self.mind = MindState(args, views, store.num_candidates)
        self.probe = self._probe_sequences(probe or [])
        self._pending: list[dict[str, torch.Tensor]] = []
        self._pending_records: list[dict[str, torch.Tensor]] = []
        self._log_picks: Counter = Counter()  # since the last log line
        self._log_weights: defaultdict[int, float] = defaultdict(float)
        self._step_sums: Counter = Counter()  # this optimizer step's policy/pick sums (this rank)
        self._golden = self._golden_views() if args.strategy == "golden" else None

    # ------------------------------------------------------------ set-up helpers
    def _golden_views(self) -> dict[int, int]:
        """Question index -> the uid of its single fixed candidate."""
        wanted = self.args.golden_view
        out = {}
        for i, q in enumerate(self.store.questions):
            names = [self.mind.views[v.view] for v in q.views]
            if wanted is not None and wanted in names:
                out[i] = q.views[names.index(wanted)].uid
            else:
                j = int(stable_hash(self.args.seed, "golden", q.question_id), 16) % len(q.views)
                out[i] = q.views[j].uid
        return out

    def _probe_sequences(self, probe: list[QuestionCandidates]) -> dict[str, Any] | None:
        if not probe or self.args.strategy not in USES_STATS or self.args.probe_every <= 0:
            return None
        seqs, plens, views = [], [], []
        for q in probe:
            for v in q.views:
                seqs.append(v.samples[0])
                plens.append(v.prompt_lens[0])
                views.append(v.view)
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths share a forward
        return {"seqs": [seqs[i] for i in order], "plens": [plens[i] for i in order], "views": torch.tensor([views[i] for i in order])}

    # ------------------------------------------------------------ loss scaling across GA and ranks
    def _get_num_items_in_batch(self, batch_samples: list, device: torch.device) -> torch.Tensor | None:
        """Questions in the accumulation window (on every rank): the denominator of the MIND loss."""
        if not batch_samples:
            return None
        n = torch.tensor(sum(int(b["question_index"].numel()) for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            n = self.accelerator.gather(n).sum()
        return n

    # ------------------------------------------------------------ choosing candidates
    def _choose(self, model: Any, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(picked mask, weights, fresh losses or None)`` for every candidate of the batch."""
        args, stats, step = self.args, self.mind.stats, self.state.global_step
        groups = inputs["cand_question"].cpu()
        views = inputs["cand_view"].cpu()
        uids = inputs["cand_uid"].cpu()
        qidx = inputs["question_index"].cpu()
        nq = int(qidx.numel())
        keys = [self.store.questions[int(i)].question_id for i in qidx]
        sizes = torch.bincount(groups, minlength=nq).to(torch.float64)
        strategy = args.strategy
        fresh = None

        if strategy == "all":
            return torch.ones_like(groups, dtype=torch.bool), 1.0 / sizes[groups], None
        if strategy == "golden":
            wanted = torch.tensor([self._golden[int(i)] for i in qidx])
            picked = uids == wanted[groups]
            return picked, torch.ones(groups.shape[0], dtype=torch.float64), None
        if strategy == "random":
            picked = pick_uniform(groups, nq, keys, args.seed, step, args.picks_per_question)
            return picked, self._renormalise(picked, torch.ones(groups.shape[0], dtype=torch.float64), groups, nq), None

        lengths = (inputs["cand_labels"] != -100).sum(dim=1).cpu()
        if args.feedback == "fresh":
            with torch.no_grad():
                fresh = self._score_rows(model, inputs).cpu().to(torch.float64)
            lhat, seen, age = fresh, torch.ones_like(groups, dtype=torch.bool), torch.zeros(groups.shape[0], dtype=torch.float64)
        else:
            lhat, seen = stats.candidate_loss(uids, views)
            age = stats.age(uids, step)
        if stats.ready:
            L, S = stats.L, stats.S  # noqa: N806
        elif fresh is not None:  # first step, fresh losses: centre each question on its own candidates
            # (per question, not per micro-batch: a question never spans micro-batches, so GA=k equals GA=1)
            mean = torch.zeros(nq, dtype=torch.float64).index_add(0, groups, fresh) / sizes
            var = torch.zeros(nq, dtype=torch.float64).index_add(0, groups, (fresh - mean[groups]) ** 2) / sizes
            L, S = mean[groups], var.sqrt()[groups] + 1e-6  # noqa: N806 - per-candidate tensors
        else:  # nothing measured yet: every candidate looks alike (z = 0)
            L, S = 0.0, 1.0  # noqa: N806
        lhat = torch.where(torch.isnan(lhat), torch.as_tensor(L, dtype=torch.float64), lhat)
        if stats.ready:
            view_loss = torch.tensor([stats.view_loss(int(v)) for v in views], dtype=torch.float64)
        else:
            view_loss = torch.as_tensor(L, dtype=torch.float64).expand(groups.shape[0]).clone()
        trend = torch.tensor([stats.view_trend(int(v)) if stats.ready else 0.0 for v in views], dtype=torch.float64)
        progress = step / max(self.state.max_steps, 1)
        feats = build_features(lhat, seen, age, view_loss, trend, lengths, L, S, progress)

        if strategy == "lowest_loss":
            picked = torch.zeros_like(groups, dtype=torch.bool)
            for g in range(nq):
                idx = (groups == g).nonzero().flatten()
                best = idx[torch.argsort(lhat[idx], stable=True)[: args.picks_per_question]]
                picked[best] = True
            return picked, self._renormalise(picked, torch.ones(groups.shape[0], dtype=torch.float64), groups, nq), fresh

        offset = gate(feats.z, args.gamma, args.kappa)
        with torch.no_grad():
            scores = self.mind.ta(feats.x, views) if strategy == "mind" else -feats.z
        log_pi = grouped_log_softmax((scores + offset).to(torch.float64) / args.tau, groups, nq)
        picked = sample_picks(log_pi, groups, nq, args.picks_per_question, keys, args.seed, step)
        weights = self._renormalise(picked, log_pi.exp(), groups, nq)
        if strategy == "mind":
            self._pending_records.append({"x": feats.x, "views": views, "groups": groups, "offset": offset, "picked": picked})
        ent = entropy_per_group(log_pi, groups, nq)
        sums = self._step_sums  # logged per optimizer step over all ranks (end_of_step)
        sums["entropy"] += float(ent.sum())
        sums["questions"] += nq
        sums["gated"] += float((offset < -1e-6).sum())
        sums["candidates"] += int(groups.shape[0])
        return picked, weights, fresh

    @staticmethod
    def _renormalise(picked: torch.Tensor, probs: torch.Tensor, groups: torch.Tensor, nq: int) -> torch.Tensor:
        p = torch.where(picked, probs.to(torch.float64), torch.zeros_like(probs, dtype=torch.float64))
        totals = torch.zeros(nq, dtype=torch.float64).index_add(0, groups, p)
        return torch.where(picked, p / totals[groups].clamp(min=1e-12), torch.zeros_like(p))

    @property
    def scoring_batch_size(self) -> int:
        """Rows per no-grad scoring forward: ``probe_batch_size``, else the training batch size,
        so that scoring never needs more activation memory than a training step."""
        return self.args.probe_batch_size or self.args.per_device_train_batch_size

    def _score_rows(self, model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """No-grad mean NLL of every candidate row, sorted by length and chunked (little padding)."""
        lengths = inputs["attention_mask"].sum(dim=1)
        order = torch.argsort(lengths, stable=True)
        out = torch.empty(order.numel(), dtype=torch.float32, device=order.device)
        bs = self.scoring_batch_size
        for start in range(0, order.numel(), bs):
            rows = order[start : start + bs]
            out[rows] = sequence_nll(model, **_trim(inputs, rows)).float()
        return out

    # ------------------------------------------------------------ the loss
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        picked, weights, fresh = self._choose(model, inputs)
        rows = picked.nonzero().flatten().to(inputs["input_ids"].device)
        losses = sequence_nll(model, **_trim(inputs, rows))
        w = weights[picked.cpu()].to(device=losses.device, dtype=losses.dtype)
        denom = num_items_in_batch if num_items_in_batch is not None else inputs["question_index"].numel()
        loss = (w * losses).sum() / torch.as_tensor(denom, device=losses.device, dtype=losses.dtype)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None and self.args.world_size > 1:
            loss = loss * self.accelerator.num_processes  # DDP averages the gradients over ranks
        if not torch.isfinite(loss):
            last = get_last_checkpoint(self.args.output_dir) if os.path.isdir(self.args.output_dir) else None
            raise FloatingPointError(
                f"non-finite loss ({float(loss.detach())}) in optimizer step {self.state.global_step + 1} (after {self.state.global_step} "
                f"completed); stopping before the "
                f"update. Last good checkpoint: {last or 'none saved yet'}. Lower the learning rate or check the data."
            )
        uids, views = inputs["cand_uid"].cpu(), inputs["cand_view"].cpu()
        sel = picked.cpu()
        if fresh is not None:
            entry = {"uids": uids, "views": views, "losses": fresh}
        else:
            entry = {"uids": uids[sel], "views": views[sel], "losses": losses.detach().cpu().to(torch.float64)}
        # pick counts are tallied in end_of_step from every rank's picks (identical on all ranks)
        tokens = int((inputs["cand_labels"][rows] != -100).sum())
        entry.update(pick_views=views[sel], pick_weights=weights[sel].cpu().to(torch.float64), tokens=tokens)
        self._pending.append(entry)
        return (loss, None) if return_outputs else loss

    # ------------------------------------------------------------ once per optimizer step
    def end_of_step(self, global_step: int) -> None:
        """Update the statistics with the step's losses (all ranks), then probe and update the TA."""
        pending, self._pending = self._pending, []
        records, self._pending_records = self._pending_records, []
        sums, self._step_sums = self._step_sums, Counter()
        if self.args.world_size > 1:  # rank order = the order of the global batch's questions
            parts = gather_object([(pending, records, dict(sums))])
            pending = [p for part in parts for p in part[0]]
            records = [r for part in parts for r in part[1]]
            sums = Counter()
            for part in parts:
                for k, v in part[2].items():
                    sums[k] += v
        if pending:
            cat = {k: torch.cat([p[k] for p in pending]) for k in ("uids", "views", "losses")}
            self.mind.stats.update(cat["uids"], cat["views"], cat["losses"], global_step - 1)
        self.mind.records.extend(records)
        for p in pending:
            self.mind.trained_tokens += p["tokens"]
            for v, wt in zip(p["pick_views"].tolist(), p["pick_weights"].tolist(), strict=True):
                self.mind.picks[v] += 1
                self.mind.weights[v] += wt
                self._log_picks[v] += 1
                self._log_weights[v] += wt
        self._metrics["train"]["mind/candidates_trained"].append(float(sum(len(p["pick_views"]) for p in pending)))
        if sums["questions"]:
            self._metrics["train"]["mind/policy_entropy"].append(sums["entropy"] / sums["questions"])
            self._metrics["train"]["mind/gated_share"].append(sums["gated"] / max(sums["candidates"], 1))
        stats = self.mind.stats
        for v, name in enumerate(self.mind.views):
            if stats.view_slow[v].ready:
                self._metrics["train"][f"mind/L_p/{name}"].append(stats.view_loss(v))
        if stats.ready:
            self._metrics["train"]["mind/L"].append(stats.L)
            self._metrics["train"]["mind/S"].append(stats.S)
        if self.probe is not None and global_step % self.args.probe_every == 0:
            self._run_probe(global_step)

    def _run_probe(self, global_step: int) -> None:
        seqs, plens, views = self.probe["seqs"], self.probe["plens"], self.probe["views"]
        rank, world = self.args.process_index, self.args.world_size
        mine = list(range(rank, len(seqs), world))
        model = self.model
        was_training = model.training
        model.eval()
        losses = []
        device = self.args.device
        with torch.no_grad():
            for start in range(0, len(mine), self.scoring_batch_size):
                idx = mine[start : start + self.scoring_batch_size]
                batch = pad_sequences([seqs[i] for i in idx], [plens[i] for i in idx], self.collator.pad_id)
                batch = {k: v.to(device) for k, v in batch.items()}
                losses.append(sequence_nll(model, **batch).cpu().to(torch.float64))
        model.train(was_training)
        local = torch.cat(losses) if losses else torch.zeros(0, dtype=torch.float64)
        parts = [(mine, local)]
        if world > 1:
            parts = gather_object(parts)
        all_losses = torch.zeros(len(seqs), dtype=torch.float64)
        for idx, vals in parts:
            all_losses[idx] = vals
        stats = self.mind.stats
        stats.update_views(views, all_losses)  # unbiased capability for rarely picked views
        per_view = torch.stack([all_losses[views == v].mean() for v in torch.unique(views)])
        self.mind.probe_loss.update(float(per_view.mean()))
        current = self.mind.probe_loss.get()
        entry: dict[str, Any] = {"step": global_step, "probe_loss": float(per_view.mean()), "probe_ema": current}
        if self.mind.last_probe is not None and self.args.strategy == "mind":
            reward = (self.mind.last_probe - current) / max(abs(self.mind.last_probe), 1e-8)
            entry.update(self._update_ta(reward))
        self.mind.last_probe = current
        self.mind.records = []  # the next reward is credited to the picks made from now on
        entry["L_p"] = {name: stats.view_loss(v) for v, name in enumerate(self.mind.views)}
        # cumulative picks and weight sums per view (differences between probes: shares over time)
        entry["picks"] = {name: self.mind.picks[v] for v, name in enumerate(self.mind.views)}
        entry["weight_sums"] = {name: float(self.mind.weights[v]) for v, name in enumerate(self.mind.views)}
        self.mind.history.append(entry)
        self._metrics["train"]["mind/probe_loss"].append(entry["probe_loss"])
        for key in ("ta_reward", "ta_advantage", "ta_entropy"):
            if key in entry:
                self._metrics["train"][f"mind/{key}"].append(entry[key])

    def _update_ta(self, reward: float) -> dict[str, float]:
        """REINFORCE over the picks since the last probe (identical on every rank)."""
        m = self.mind
        baseline = m.baseline.get(default=reward)
        spread = math.sqrt(m.reward_var.get(default=0.0)) + 1e-8
        advantage = (reward - baseline) / spread if m.reward_var.ready and spread > 1e-6 else 0.0
        m.baseline.update(reward)
        m.reward_var.update((reward - baseline) ** 2)
        records = m.records
        if not records:
            return {"ta_reward": reward, "ta_advantage": advantage}
        logp_terms, ent_terms, questions = [], [], 0
        for r in records:
            nq = int(r["groups"].max()) + 1
            scores = m.ta(r["x"], r["views"])
            log_pi = grouped_log_softmax((scores.to(torch.float64) + r["offset"]) / self.args.tau, r["groups"], nq)
            logp_terms.append(log_pi[r["picked"]].sum())
            ent_terms.append(entropy_per_group(log_pi, r["groups"], nq).sum())
            questions += nq
        logp = torch.stack(logp_terms).sum() / questions
        entropy = torch.stack(ent_terms).sum() / questions
        loss = -(advantage * logp) - self.args.ta_entropy_coef * entropy
        m.ta_optimizer.zero_grad()
        loss.backward()
        m.ta_optimizer.step()
        return {"ta_reward": reward, "ta_advantage": advantage, "ta_entropy": float(entropy.detach())}

    # ------------------------------------------------------------ logging and checkpoints
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        picks = sum(self._log_picks.values())
        if picks and self.model.training:  # shares since the previous log line
            for v, name in enumerate(self.mind.views):
                n = self._log_picks[v]
                logs[f"mind/pick_share/{name}"] = n / picks
                logs[f"mind/mean_weight/{name}"] = self._log_weights[v] / n if n else 0.0
            self._log_picks.clear()
            self._log_weights.clear()
        super().log(logs, start_time)

    def summary(self) -> dict[str, Any]:
        """Per-view totals: picks, share, mean weight, final L_p."""
        m, total = self.mind, max(sum(self.mind.picks.values()), 1)
        return {
            "strategy": self.args.strategy,
            "feedback": self.args.feedback,
            "views": {
                name: {
                    "picks": m.picks[v], "pick_share": m.picks[v] / total,
                    "mean_weight": m.weights[v] / m.picks[v] if m.picks[v] else 0.0,
                    "L_p": m.stats.view_loss(v) if m.stats.ready else None,
                }
                for v, name in enumerate(m.views)
            },  # fmt: skip
            "trained_tokens": m.trained_tokens,
            "probes": m.history,
        }

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            torch.save(self.mind.state_dict(), folder / MIND_STATE)

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        if resume_from_checkpoint:
            path = get_last_checkpoint(self.args.output_dir) if resume_from_checkpoint is True else resume_from_checkpoint
            if path is None:
                raise ValueError(f"no checkpoint found in {self.args.output_dir} to resume from")
            state_file = Path(path) / MIND_STATE
            if not state_file.exists():
                raise ValueError(f"{path} has no {MIND_STATE}: not a MIND checkpoint")
            self.mind.load_state_dict(torch.load(state_file, weights_only=False))
            resume_from_checkpoint = path
        result = super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)
        if self.args.should_save:
            Path(self.args.output_dir).mkdir(parents=True, exist_ok=True)
            with open(Path(self.args.output_dir) / "mind_summary.json", "w") as fh:
                json.dump(self.summary(), fh, indent=2)
        return result
