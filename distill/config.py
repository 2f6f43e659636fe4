"""Configuration of MIND training: ``MindConfig`` (an ``SFTConfig``) and the script arguments.

Both are dataclasses read by TRL's ``TrlParser`` from flags and/or a YAML ``--config`` file,
TRL-style (``--output_dir``, ``--max_steps``, ``--learning_rate`` ... are SFTConfig's own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from trl import SFTConfig, TrlParser

from distill.strategies import CONSISTENT, SCORING, STRATEGIES

SCORING_MODES = ("shared", "separate")
CANDIDATE_LOSSES = ("auto", "completion", "answer")
META_TARGETS = ("instant", "inertia")
WARMUP_STUDENT = ("frozen", "uniform")
TARGET_BASELINES = ("none", "view")
FEATURE_SETS = ("no_target", "full")


@dataclass
class MindConfig(SFTConfig):
    """SFTConfig plus the method's hyperparameters (every flag and default in docs/method.md).

    Defaults are provisional: chosen by reasoning and small validation runs, to be tuned on
    validation in the quality benchmark."""

    # TRL's base config defaults the deprecated `gradient_checkpointing` alias to True, which makes
    # transformers 5.x warn on every config; the new name carries that default instead
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "deprecated alias of --activation_checkpointing (transformers 5.x)"}
    )
    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "recompute activations in the backward pass (trades ~20% speed for memory); default true, "
                  "as TRL's gradient_checkpointing"},
    )
    strategy: str = field(
        default="mind",
        metadata={"help": f"how each question's candidate rationales are used: {', '.join(STRATEGIES)}", "choices": STRATEGIES},
    )
    # ---- data
    include_incorrect: bool = field(
        default=False, metadata={"help": "also train on rationales the verifier marked wrong or could not judge"}
    )
    views: str = field(
        default="",
        metadata={"help": "train on these views only (comma-separated perspective names, or perspective@teacher with "
                  "several teachers); empty = every view of the data. An unknown name fails, listing the data's views"},
    )
    prompt_style: str = field(
        default="auto", metadata={"help": "student prompt format: auto, plain or chat", "choices": ("auto", "plain", "chat")}
    )
    answer_template: str = field(
        default="The answer is {answer}.",
        metadata={"help": "canonical final line of every training target ({answer} = the gold answer); its answer "
                  "tokens are the span the consistency terms compare. Empty: targets as written, no consistency"},
    )
    validation_questions: int = field(
        default=0, metadata={"help": "held-out questions (never trained on) evaluated after training, for tuning; 0 = none"}
    )
    # ---- baselines
    golden_view: str | None = field(
        default=None,
        metadata={"help": "strategy golden: the perspective used as the single rationale (default: a fixed random "
                  "correct candidate per question)"},
    )
    picks_per_question: int = field(default=1, metadata={"help": "strategies random, lowest_loss: candidates per question"})
    mcc_diverse_k: int = field(
        default=3, metadata={"help": "strategy mcc_kd: per question keep the k most diverse rationales (n-gram Jaccard)"}
    )
    mcc_ngram: int = field(default=3, metadata={"help": "strategy mcc_kd: n of the token n-grams of the Jaccard similarity"})
    # ---- scoring every candidate (lowest_loss, instant, mind)
    scoring: str = field(
        default="shared",
        metadata={"help": "how every candidate's loss is measured: 'shared' (one forward with grad over every candidate; "
                  "unselected ones get weight 0: step cost = all's) or 'separate' (a no-grad forward over every "
                  "candidate, then forward+backward over the selected ones only: cheaper when the subset is small)",
                  "choices": SCORING_MODES},
    )
    candidate_loss: str = field(
        default="auto",
        metadata={"help": "the loss a candidate is judged by (scores, the inertia record, the MetaNet's target): "
                  "'completion' (mean token CE of the whole rationale) or 'answer' (mean token CE of the canonical "
                  "answer line given the rationale: how well the rationale leads the student to the right answer, "
                  "whatever its length or style) [ours]; 'auto': answer for --strategy mind (with an "
                  "--answer_template), completion for the other strategies, as their papers judge. The student always "
                  "trains on the whole completion",
                  "choices": CANDIDATE_LOSSES},
    )
    scoring_batch_size: int | None = field(
        default=None, metadata={"help": "rows per no-grad scoring forward (scoring=separate); default: the training batch size"}
    )
    inertia_beta: float = field(
        default=0.9, metadata={"help": "EMA momentum of the inertia statistics (per candidate and per view losses)"}
    )
    # ---- dynamic fusion and the student loss (mind, instant)
    fusion: bool = field(default=True, metadata={"help": "keep the subset I_dyn (false: top-1 only, the paper's w/o fusion)"})
    fusion_beta: float = field(
        default=0.5,
        metadata={"help": "subset rule: keep k with softmax(s/tau_student)_k >= fusion_beta * max; in (0, 1], 1 = ties of the top only"},
    )
    meta_explore: float = field(
        default=0.0,
        metadata={"help": "mind, instant: probability that a candidate the fusion rule leaves out is trained anyway "
                  "this step, at its own softmax weight (so a dropped view's loss can fall and it can come back) [ours]; "
                  "0 = off"},
    )
    tau_student: float = field(default=1.0, metadata={"help": "temperature of the weights alpha = softmax(s/tau_student) over I_dyn"})
    consistency_weight: float = field(
        default=0.1,
        metadata={"help": "lambda: weight of the answer-consistency term (mind/instant: alpha-weighted pairwise JSD; "
                  "mcc_kd: bidirectional KL of its pair); 0 = off"},
    )
    # ---- the MetaNet (mind)
    meta_attention: bool = field(default=True, metadata={"help": "self-attention across a question's candidates in the MetaNet"})
    meta_hidden: int = field(default=64, metadata={"help": "MetaNet width"})
    meta_heads: int = field(default=4, metadata={"help": "attention heads of the MetaNet (must divide meta_hidden)"})
    meta_encoder: str | None = field(
        default=None,
        metadata={"help": "rationale representation: empty = the student's pooled last hidden state over the rationale "
                  "(detached); or a local folder of a sentence-transformers model (frozen; needs the [encoder] extra)"},
    )
    meta_target: str = field(
        default="instant",
        metadata={"help": "L_real of the meta-loss: 'instant' (this step's CE; the default, measured best in "
                  "docs/results.md) or 'inertia' (each candidate's EMA CE, the paper's reading)",
                  "choices": META_TARGETS},
    )
    meta_tau: float = field(default=1.0, metadata={"help": "temperature of both softmaxes of the ListNet meta-loss"})
    meta_target_baseline: str = field(
        default="none",
        metadata={"help": "what a candidate's L_real is judged against in the meta-loss: 'none' (its loss as it is) "
                  "or 'view' (minus its view's long-term loss L_p: a rationale is scored by how much harder it is "
                  "than its own view's usual ones, not against shorter or longer views) [ours]",
                  "choices": TARGET_BASELINES},
    )
    meta_features: str = field(
        default="no_target",
        metadata={"help": "the MetaNet's loss features: 'no_target' (every feature but the candidate's own EMA loss, "
                  "which is almost the inertia target itself) or 'full' (all 7, the earlier default; an ablation)",
                  "choices": FEATURE_SETS},
    )
    meta_learning_rate: float | None = field(
        default=None,
        metadata={"help": "the MetaNet's own Adam learning rate; default: --meta_lr_ratio x the student's --learning_rate"},
    )
    meta_lr_ratio: float = field(
        default=0.5,
        metadata={"help": "the MetaNet's learning rate as a share of the student's when --meta_learning_rate is not "
                  "set (the paper's inertia: smaller than the student's)"},
    )
    meta_accumulation_steps: int = field(
        default=4, metadata={"help": "student optimizer steps whose meta-gradients one MetaNet step accumulates"}
    )
    meta_warmup_epochs: float = field(
        default=3.0,
        metadata={"help": "epochs of training data at the start in which the MetaNet learns before it weights the "
                  "student's loss (the paper: a few epochs); rounded to optimizer steps; 0 = no warm-up (an ablation)"},
    )
    meta_warmup_steps: int | None = field(
        default=None, metadata={"help": "the warm-up in optimizer steps instead of --meta_warmup_epochs (when set)"}
    )
    meta_warmup_student: str = field(
        default="uniform",
        metadata={"help": "the student during warm-up: 'uniform' (trained on every candidate, equal weights, so the "
                  "MetaNet judges views the student has begun to learn) or 'frozen' (not updated)",
                  "choices": WARMUP_STUDENT},
    )
    lr_schedule_after_meta_warmup: bool = field(
        default=False,
        metadata={"help": "with a frozen student during the MetaNet warm-up: start the student's learning-rate schedule "
                  "(--warmup_steps, then the decay over the remaining steps) at its first update, with a learning rate "
                  "of 0 before; by default the schedule starts at step 0 and the frozen steps use up its warm-up"},
    )

    history_every: int = field(
        default=10, metadata={"help": "optimizer steps averaged into one entry of mind_summary.json's history"}
    )
    grad_share_every: int = field(
        default=0,
        metadata={"help": "every N optimizer steps, measure each view's (and the consistency term's) share of the "
                  "student's gradient on that step's micro-batches (distill/grad_share.py; one extra backward per "
                  "view there; logged as mind/grad_share/<view> and in the history); 0: never"},
    )

    def __post_init__(self) -> None:
        checks = [
            ("strategy", self.strategy in STRATEGIES, f"one of {', '.join(STRATEGIES)}"),
            ("scoring", self.scoring in SCORING_MODES, f"one of {', '.join(SCORING_MODES)}"),
            ("candidate_loss", self.candidate_loss in CANDIDATE_LOSSES, f"one of {', '.join(CANDIDATE_LOSSES)}"),
            ("meta_target", self.meta_target in META_TARGETS, f"one of {', '.join(META_TARGETS)}"),
            ("meta_warmup_student", self.meta_warmup_student in WARMUP_STUDENT, f"one of {', '.join(WARMUP_STUDENT)}"),
            ("fusion_beta", 0.0 < self.fusion_beta <= 1.0, "in (0, 1]"),
            ("tau_student", self.tau_student > 0, "> 0"),
            ("meta_explore", 0.0 <= self.meta_explore <= 1.0, "in [0, 1]"),
            ("meta_tau", self.meta_tau > 0, "> 0"),
            ("consistency_weight", self.consistency_weight >= 0, ">= 0"),
            ("meta_learning_rate", self.meta_learning_rate is None or self.meta_learning_rate > 0, "> 0"),
            ("meta_lr_ratio", self.meta_lr_ratio > 0, "> 0"),
            ("meta_warmup_epochs", self.meta_warmup_epochs >= 0, ">= 0"),
            ("meta_accumulation_steps", self.meta_accumulation_steps >= 1, ">= 1"),
            ("meta_warmup_steps", self.meta_warmup_steps is None or self.meta_warmup_steps >= 0, ">= 0"),
            ("meta_target_baseline", self.meta_target_baseline in TARGET_BASELINES, f"one of {', '.join(TARGET_BASELINES)}"),
            ("meta_features", self.meta_features in FEATURE_SETS, f"one of {', '.join(FEATURE_SETS)}"),
            ("meta_hidden", self.meta_hidden >= 1 and self.meta_heads >= 1 and self.meta_hidden % self.meta_heads == 0,
             "positive and divisible by --meta_heads"),
            ("inertia_beta", 0.0 <= self.inertia_beta < 1.0, "in [0, 1)"),
            ("picks_per_question", self.picks_per_question >= 1, ">= 1"),
            ("mcc_diverse_k", self.mcc_diverse_k >= 2, ">= 2 (MCC-KD trains on a pair)"),
            ("mcc_ngram", self.mcc_ngram >= 1, ">= 1"),
            ("history_every", self.history_every >= 1, ">= 1"),
            ("grad_share_every", self.grad_share_every >= 0, ">= 0"),
            ("answer_template", not self.answer_template or "{answer}" in self.answer_template, "empty or containing {answer}"),
        ]  # fmt: skip
        for flag, ok, want in checks:
            if not ok:
                raise ValueError(f"--{flag} must be {want}, got {getattr(self, flag)!r}")
        if self.golden_view and self.view_list and self.golden_view not in self.view_list:
            raise ValueError(f"--golden_view {self.golden_view!r} is not among --views {self.views!r}")
        if self.meta_encoder and self.strategy != "mind":
            raise ValueError(f"--meta_encoder is only used by --strategy mind (got --strategy {self.strategy})")
        if self.lr_schedule_after_meta_warmup and self.strategy != "mind":
            raise ValueError(
                f"--lr_schedule_after_meta_warmup is only used by --strategy mind (got --strategy {self.strategy})"
            )
        if self.lr_schedule_after_meta_warmup and self.meta_warmup_student != "frozen":
            raise ValueError("--lr_schedule_after_meta_warmup shifts the schedule past a frozen warm-up: it needs "
                             f"--meta_warmup_student frozen (got {self.meta_warmup_student})")
        if self.candidate_loss == "auto":
            self.candidate_loss = "answer" if self.strategy == "mind" and self.answer_template else "completion"
        if self.candidate_loss == "answer" and self.strategy not in SCORING:
            raise ValueError(f"--candidate_loss is only used by --strategy {', '.join(SCORING)} (got --strategy {self.strategy})")
        if not self.answer_template and self.candidate_loss == "answer":
            raise ValueError("--candidate_loss answer needs an answer span: set --answer_template")
        if not self.answer_template and (self.consistency_weight > 0 and self.strategy in CONSISTENT):
            raise ValueError("--consistency_weight > 0 needs an answer span: set --answer_template (or --consistency_weight 0)")
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True
        # our collator carries extra columns and builds labels itself; packing/padding-free would drop them
        self.remove_unused_columns = False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        if self.use_cpu or not torch.cuda.is_available():
            self.dataloader_pin_memory = False  # nothing to pin for: torch warns on every CPU run otherwise
        if self.bf16 is None and (self.use_cpu or not torch.cuda.is_available()):
            # TRL defaults to bf16 autocast; on a CPU that is slower and makes results depend on batch shapes
            self.bf16 = False
        if self.packing or self.padding_free:
            raise ValueError("packing and padding_free are not supported by the MIND trainer (they drop columns)")
        super().__post_init__()

    @property
    def effective_meta_learning_rate(self) -> float:
        """The MetaNet's learning rate: ``--meta_learning_rate``, else ``--meta_lr_ratio`` x the student's."""
        return self.meta_learning_rate if self.meta_learning_rate is not None else self.meta_lr_ratio * self.learning_rate

    def meta_warmup_steps_for(self, questions: int) -> int:
        """The warm-up in optimizer steps: ``--meta_warmup_steps``, else ``--meta_warmup_epochs`` epochs of
        ``questions`` training questions (an epoch = the optimizer steps the trainer takes to see each once)."""
        if self.meta_warmup_steps is not None:
            return self.meta_warmup_steps
        per_step = self.per_device_train_batch_size * max(self.world_size, 1)
        steps_per_epoch = math.ceil(math.ceil(questions / per_step) / max(self.gradient_accumulation_steps, 1))
        return round(self.meta_warmup_epochs * steps_per_epoch)

    @property
    def view_list(self) -> list[str]:
        """``--views`` as a list (empty: every view)."""
        return [v.strip() for v in self.views.split(",") if v.strip()]


@dataclass
class MindScriptArguments:
    """Arguments of ``python -m distill.train`` that are not training hyperparameters."""

    data: str | None = field(default=None, metadata={"help": "folder of rationale shards (any run dirs under it)"})
    model_name_or_path: str | None = field(
        default=None,
        metadata={"aliases": ["--student"],
                  "help": "the student: a Hugging Face hub id (e.g. Qwen/Qwen2.5-1.5B-Instruct; the local cache first, "
                  "no download with HF_HUB_OFFLINE=1) or a local causal LM folder, 'scratch' (untrained tiny student), "
                  "or empty for the embedded default (the stage-0 tiny student, built on first use). --student and a "
                  "YAML 'student' key are aliases"},
    )
    model_revision: str | None = field(
        default=None, metadata={"help": "the student's hub revision: a branch, tag or commit (default: main)"}
    )
    student_root: str = field(
        default="runs/students", metadata={"help": "where the embedded default student is built and cached"}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank (0 = full fine-tuning); needs the [peft] extra"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch intra-op CPU threads (default: torch's). 1 suits the tiny student and avoids OpenMP "
                  "stalls when another process shares the CPU"},
    )
    keep_freed_memory: bool = field(
        default=True,
        metadata={"help": "when training on the CPU, keep memory torch frees inside the process (glibc malloc: no "
                  "mmap, no trimming) instead of returning it to the OS each step: 7-13%% faster training for the tiny "
                  "student (benchmarks/cpu_memory.py), identical weights, a 1.3-1.6x higher peak resident memory"},
    )
    eval_splits: str = field(
        default="test,ood_steps,ood_template,retention",
        metadata={"help": "synthetic-world splits evaluated after training (comma-separated; empty = none)"},
    )
    eval_questions: int = field(default=100, metadata={"help": "questions per evaluation split"})
    eval_max_new_tokens: int = field(default=160, metadata={"help": "generation budget at evaluation"})
    world_seed: int | None = field(
        default=None,
        metadata={"help": "seed of the synthetic world the evaluation splits come from (default: the world that "
                  "wrote --data, read from its manifests; else the default world)"},
    )
    validation_data: str | None = field(
        default=None,
        metadata={"help": "folder of rationale shards whose questions are the validation set (default: hold out "
                  "--validation_questions of --data's questions). Questions of --data that are also here are not "
                  "trained on"},
    )
    curve_flops: str = field(
        default="",
        metadata={"help": "learning curve on a FLOP grid: comma-separated training-FLOP values; the student is "
                  "evaluated on --curve_splits when its FLOPs first reach each (curve.json in output_dir)"},
    )
    curve_splits: str = field(
        default="test,ood_steps", metadata={"help": "synthetic-world splits of the FLOP-grid curve (comma-separated)"}
    )
    curve_questions: int = field(default=200, metadata={"help": "questions per split at each curve point"})


#: YAML keys of a ``--config`` file read as another field: the counterparts of the flags' aliases
YAML_ALIASES = {"student": "model_name_or_path"}


class MindParser(TrlParser):
    """TRL's parser of flags and a YAML ``--config`` (``python -m distill.train``), which also reads the
    YAML aliases of renamed fields (``student:`` for ``model_name_or_path:``)."""

    def set_defaults_with_config(self, **kwargs):
        for alias, name in YAML_ALIASES.items():
            if alias in kwargs:
                if name in kwargs:
                    raise ValueError(f"config file: {alias!r} and {name!r} name the same setting; keep one")
                kwargs[name] = kwargs.pop(alias)
        return super().set_defaults_with_config(**kwargs)
