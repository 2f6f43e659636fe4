"""Configuration of MIND training: ``MindConfig`` (an ``SFTConfig``) and the script arguments.

Both are dataclasses read by TRL's ``TrlParser`` from flags and/or a YAML ``--config`` file,
TRL-style (``--output_dir``, ``--max_steps``, ``--learning_rate`` ... are SFTConfig's own).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from trl import SFTConfig

STRATEGIES = ("golden", "all", "random", "lowest_loss", "inertia", "mind")
FEEDBACK_MODES = ("inertia", "fresh")


@dataclass
class MindConfig(SFTConfig):
    """SFTConfig plus the MIND method's hyperparameters (DESIGN §5). Defaults are documented in
    docs and were chosen on the synthetic world's validation split."""

    strategy: str = field(
        default="mind",
        metadata={"help": f"which candidates a question trains on: {', '.join(STRATEGIES)}", "choices": STRATEGIES},
    )
    feedback: str = field(
        default="inertia",
        metadata={
            "help": "capability signal: 'inertia' (last seen training losses, cheap) or 'fresh' (an extra no-grad "
            "forward over every candidate of the batch each step, exact, ~2-3x the step cost)",
            "choices": FEEDBACK_MODES,
        },
    )
    beta: float = field(default=0.9, metadata={"help": "EMA momentum of the slow inertia statistics (L, S, L_p)"})
    beta_fast: float = field(default=0.5, metadata={"help": "EMA momentum of the fast per-perspective loss F_p"})
    kappa: float = field(default=1.0, metadata={"help": "capability gate threshold, in spreads above the global loss"})
    gamma: float = field(default=4.0, metadata={"help": "capability gate strength (score penalty per spread beyond kappa)"})
    tau: float = field(default=1.0, metadata={"help": "softmax temperature of the pick policy"})
    picks_per_question: int = field(default=1, metadata={"help": "k: candidates sampled per question per step"})
    ta_hidden: int = field(default=32, metadata={"help": "hidden width of the Teaching Assistant MLP"})
    ta_embedding_dim: int = field(default=8, metadata={"help": "size of the learned perspective embedding"})
    ta_learning_rate: float = field(default=1e-2, metadata={"help": "Adam learning rate of the TA"})
    ta_entropy_coef: float = field(default=0.01, metadata={"help": "entropy bonus of the TA's REINFORCE update"})
    ta_baseline_beta: float = field(default=0.8, metadata={"help": "EMA momentum of the REINFORCE reward baseline"})
    probe_every: int = field(default=10, metadata={"help": "optimizer steps between probes (TA feedback); 0 = never"})
    probe_questions: int = field(
        default=16,
        metadata={"help": "held-out probe questions (each scored on every view); 16 x 5 views every 10 steps costs ~0.2x a step"},
    )
    probe_batch_size: int | None = field(
        default=None,
        metadata={"help": "sequences per no-grad scoring forward (probe, fresh feedback); default: the training batch size"},
    )
    validation_questions: int = field(
        default=0, metadata={"help": "further held-out questions (never trained on) for tuning; 0 = none"}
    )
    include_incorrect: bool = field(
        default=False, metadata={"help": "also train on rationales the verifier marked wrong or could not judge"}
    )
    prompt_style: str = field(
        default="auto", metadata={"help": "student prompt format: auto, plain or chat", "choices": ("auto", "plain", "chat")}
    )
    golden_view: str | None = field(
        default=None,
        metadata={"help": "strategy 'golden': the perspective used as the single rationale (default: a fixed random "
                  "correct candidate per question)"},
    )

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        if self.feedback not in FEEDBACK_MODES:
            raise ValueError(f"feedback must be one of {FEEDBACK_MODES}, got {self.feedback!r}")
        for name in ("beta", "beta_fast", "ta_baseline_beta"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.tau <= 0 or self.gamma < 0 or self.picks_per_question < 1:
            raise ValueError("need tau > 0, gamma >= 0 and picks_per_question >= 1")
        # our collator carries extra columns and builds labels itself; packing/padding-free would drop them
        self.remove_unused_columns = False
        self.dataset_kwargs = {**(self.dataset_kwargs or {}), "skip_prepare_dataset": True}
        if self.bf16 is None and (self.use_cpu or not torch.cuda.is_available()):
            # TRL defaults to bf16 autocast; on a CPU that is slower and makes results depend on batch shapes
            self.bf16 = False
        if self.packing or self.padding_free:
            raise ValueError("packing and padding_free are not supported by the MIND trainer (they drop columns)")
        super().__post_init__()


@dataclass
class MindScriptArguments:
    """Arguments of ``python -m distill.train`` that are not training hyperparameters."""

    data: str | None = field(default=None, metadata={"help": "folder of rationale shards (any run dirs under it)"})
    student: str | None = field(
        default=None,
        metadata={"help": "student: a local HF causal LM folder, 'scratch' (untrained tiny student), or empty for "
                  "the embedded default (the stage-0 tiny student, built on first use)"},
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
