"""Training data for MIND: rationale shards grouped into questions with candidate views.

A *view* is one (perspective, teacher) pair; a question's *candidates* are its views that have
at least one usable rationale (verified correct by default). When a view has several samples,
one is drawn per epoch (seeded). Shards are read only through ``data_schemas``.

Held-out questions (an optional validation set) are chosen by a hash of the question id, so the
split is stable and they never appear in training.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import torch

from data_schemas import ContractError, read_rationales
from distill.formatting import DEFAULT_ANSWER_TEMPLATE, encode_training_example
from pipeline.ids import stable_hash

logger = logging.getLogger(__name__)


@dataclass
class View:
    """One candidate of a question: its view id and the token ids of each usable sample."""

    view: int
    samples: list[list[int]]  # token ids (prompt + completion + EOS)
    prompt_lens: list[int]
    uid: int = -1  # global candidate id (set by CandidateStore)
    answer_starts: list[int] = field(default_factory=list)  # per sample: first token of the answer span
    answer_lens: list[int] = field(default_factory=list)  # per sample: answer tokens (0 = no span)
    flawed: list[int] = field(default_factory=list)  # per sample: 1 flawed, 0 clean, -1 unknown (rows' metadata "noise")


@dataclass
class QuestionCandidates:
    question_id: str
    question: str
    gold_answer: str
    task: str
    views: list[View] = field(default_factory=list)


@dataclass
class DataReport:
    """What loading kept and dropped (printed by the entry point)."""

    rows: int = 0
    rows_used: int = 0
    rows_incorrect: int = 0
    rows_unfinished: int = 0
    questions: int = 0
    questions_without_candidate: int = 0
    truncated: int = 0
    views: list[str] = field(default_factory=list)
    rows_other_views: int = 0  # rows of views left out by ``views=``

    def lines(self) -> list[str]:
        return [
            f"{self.rows:,} rationale rows, {self.rows_used:,} used "
            f"({self.rows_incorrect:,} not verified correct, {self.rows_unfinished:,} not finished normally dropped)",
            f"{self.questions:,} questions with candidates; {self.questions_without_candidate:,} skipped (no usable "
            f"rationale); {self.truncated:,} sequences truncated to max_length",
            f"views: {', '.join(self.views)}"
            + (f" ({self.rows_other_views:,} rows of other views left out)" if self.rows_other_views else ""),
        ]


def view_name(perspective: str, teacher: str, single_teacher: bool) -> str:
    return perspective if single_teacher else f"{perspective}@{teacher}"


def load_questions_with_candidates(
    data_dir: str,
    tokenizer: Any,
    style: str,
    *,
    include_incorrect: bool = False,
    max_length: int | None = None,
    answer_template: str | None = DEFAULT_ANSWER_TEMPLATE,
    views: Sequence[str] | None = None,
) -> tuple[list[QuestionCandidates], list[str], DataReport]:
    """Read every finished rationale shard under ``data_dir`` and group it into candidates.

    Each training target ends with the canonical answer line (``answer_template``; see
    :func:`distill.formatting.encode_training_example`), whose answer tokens are the span the
    consistency terms compare across a question's views. ``views`` (view names: a perspective, or
    ``perspective@teacher`` with several teachers) keeps only those views' rows; an unknown name is
    an error that lists the data's views."""
    table = read_rationales(data_dir)
    report = DataReport(rows=table.num_rows)
    if table.num_rows == 0:
        raise ContractError(str(data_dir), "the shards hold no rationale rows")
    single_teacher = len(pc.unique(table["teacher"])) == 1
    if views:
        table = select_views(table, views, single_teacher, str(data_dir))
        report.rows_other_views = report.rows - table.num_rows
    finished = pc.equal(table["finish_reason"], "stop")
    report.rows_unfinished = table.num_rows - pc.sum(finished).as_py()
    keep = finished
    if not include_incorrect:
        correct = pc.fill_null(table["is_correct"], False)
        report.rows_incorrect = pc.sum(pc.and_(finished, pc.invert(correct))).as_py()
        keep = pc.and_(keep, correct)
    used = table.filter(keep)
    report.rows_used = used.num_rows
    names = ("question_id", "question", "gold_answer", "task", "perspective", "teacher", "rationale", "sample_index")
    cols = {c: used[c].to_pylist() for c in names}
    cols["flawed"] = [noise_label(m) for m in used["metadata"].to_pylist()] if "metadata" in used.column_names else [-1] * used.num_rows
    all_views = sorted({view_name(p, t, single_teacher) for p, t in zip(table["perspective"].to_pylist(), table["teacher"].to_pylist(), strict=True)})
    view_ids = {v: i for i, v in enumerate(all_views)}
    report.views = all_views

    grouped: dict[str, dict[str, Any]] = {}
    samples: dict[tuple[str, int], list[tuple[int, str, int]]] = defaultdict(list)
    for qid, q, gold, task, persp, teacher, text, k, flawed in zip(*cols.values(), strict=True):
        grouped.setdefault(qid, {"question": q, "gold": gold, "task": task})
        samples[(qid, view_ids[view_name(persp, teacher, single_teacher)])].append((k, text, flawed))
    all_qids = set(table["question_id"].to_pylist())
    report.questions_without_candidate = len(all_qids - set(grouped))
    if not grouped:
        raise ContractError(str(data_dir), "no question has a usable rationale (try --include_incorrect)")

    questions: dict[str, QuestionCandidates] = {}
    for (qid, view), items in sorted(samples.items()):
        info = grouped[qid]
        qc = questions.setdefault(qid, QuestionCandidates(qid, info["question"], info["gold"], info["task"]))
        ids, plens, starts, lens, flaws = [], [], [], [], []
        for _, text, flawed in sorted(items):
            try:
                enc = encode_training_example(
                    tokenizer, info["question"], text, info["gold"], style, max_length, answer_template
                )
            except ValueError as exc:  # e.g. a prompt longer than max_length: name the question
                raise ContractError(f"{data_dir}: question {qid}", f"{exc} (raise --max_length)") from None
            report.truncated += max_length is not None and len(enc.input_ids) == max_length
            ids.append(enc.input_ids)
            plens.append(enc.prompt_len)
            starts.append(enc.answer_start)
            lens.append(enc.answer_len)
            flaws.append(flawed)
        qc.views.append(View(view, ids, plens, answer_starts=starts, answer_lens=lens, flawed=flaws))
    out = [questions[q] for q in sorted(questions)]
    report.questions = len(out)
    return out, all_views, report


def select_views(table: Any, views: Sequence[str], single_teacher: bool, where: str) -> Any:
    """The rows of the named views (``--views``); an unknown name fails naming it and the data's views."""
    names = [view_name(p, t, single_teacher) for p, t in zip(table["perspective"].to_pylist(), table["teacher"].to_pylist(), strict=True)]
    wanted = [v.strip() for v in views if v.strip()]
    if unknown := sorted(set(wanted) - set(names)):
        raise ContractError(f"--views ({where})", f"unknown view(s) {', '.join(unknown)}; the data has {', '.join(sorted(set(names)))}")
    return table.filter(pa.array([n in set(wanted) for n in names], type=pa.bool_()))


def noise_label(metadata: str | None) -> int:
    """1 when a row's metadata says its teacher flawed it (``{"noise": "flaw"}``: a wrong step that the
    verifier cannot catch), 0 when it says it is clean or slipped, -1 when the row does not say."""
    if not metadata:
        return -1
    try:
        noise = json.loads(metadata).get("noise")
    except (ValueError, AttributeError):
        return -1
    return -1 if noise is None else int(noise == "flaw")


def held_out_split(
    questions: Sequence[QuestionCandidates], validation: int, seed: int
) -> tuple[list[QuestionCandidates], list[QuestionCandidates]]:
    """``(train, validation)`` by a seeded hash of the question id (stable, disjoint)."""
    if validation >= len(questions):
        raise ContractError(
            "data", f"{len(questions)} questions cannot give {validation} validation questions and still leave training data"
        )
    order = sorted(questions, key=lambda q: stable_hash(seed, "held-out", q.question_id))
    val_set, train = order[:validation], order[validation:]
    train.sort(key=lambda q: q.question_id)
    return train, val_set


class CandidateStore:
    """All training candidates, with global ids, and the per-epoch choice of sample per view."""

    def __init__(self, questions: Sequence[QuestionCandidates], num_views: int, seed: int):
        # own View objects (sharing the token lists): the uids written below never leak into the caller's
        self.questions = [dataclasses.replace(q, views=[dataclasses.replace(v) for v in q.views]) for q in questions]
        self.num_views = num_views
        self.seed = seed
        uid = 0
        for q in self.questions:
            for v in q.views:
                v.uid = uid
                uid += 1
        self.num_candidates = uid
        self.view_of = torch.tensor([v.view for q in self.questions for v in q.views], dtype=torch.long)
        self.fixed_samples = False  # golden strategy: always the first sample of a view

    def __len__(self) -> int:
        return len(self.questions)

    def sample_index(self, question: QuestionCandidates, view: View, epoch: int) -> int:
        """Which of a view's samples this epoch trains on (seeded, independent of batching)."""
        if len(view.samples) == 1 or self.fixed_samples:
            return 0
        return int(stable_hash(self.seed, "sample", epoch, question.question_id, view.view), 16) % len(view.samples)


def pad_sequences(seqs: Sequence[Sequence[int]], prompt_lens: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt and padding)."""
    width = max(len(s) for s in seqs)
    n = len(seqs)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    for i, (s, p) in enumerate(zip(seqs, prompt_lens, strict=True)):
        t = torch.tensor(s, dtype=torch.long)
        input_ids[i, : len(s)] = t
        attention[i, : len(s)] = 1
        labels[i, p : len(s)] = t[p:]
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


class CandidateCollator:
    """Turns a batch of question indices into every candidate's tokens plus bookkeeping tensors.

    Output keys: ``input_ids``/``attention_mask``/``cand_labels`` for all candidates of the batch
    (right-padded; labels are -100 outside the completion), ``cand_question`` (batch-local
    question index), ``cand_view``, ``cand_uid``, ``cand_answer_start``/``cand_answer_len`` (the
    answer span's token positions), ``cand_flawed`` (1/0/-1: the teacher's own noise label) and ``question_index`` (global). The trainer
    picks among the candidates; there is deliberately no ``labels`` key, so that
    ``Trainer`` does not count tokens for loss scaling (the MIND loss is per question).
    """

    def __init__(self, store: CandidateStore, pad_id: int):
        self.store = store
        self.pad_id = pad_id
        self.epoch = 0  # set by the trainer at the start of each epoch

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        seqs, plens, cq, cv, cu, ast, alen, flaw = [], [], [], [], [], [], [], []
        qidx = []
        for b, feat in enumerate(features):
            i = int(feat["question_index"])
            q = self.store.questions[i]
            qidx.append(i)
            for v in q.views:
                k = self.store.sample_index(q, v, self.epoch)
                seqs.append(v.samples[k])
                plens.append(v.prompt_lens[k])
                cq.append(b)
                cv.append(v.view)
                cu.append(v.uid)
                ast.append(v.answer_starts[k] if v.answer_starts else 0)
                alen.append(v.answer_lens[k] if v.answer_lens else 0)
                flaw.append(v.flawed[k] if v.flawed else -1)
        batch = pad_sequences(seqs, plens, self.pad_id)
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "cand_labels": batch["labels"],
            "cand_question": torch.tensor(cq, dtype=torch.long),
            "cand_view": torch.tensor(cv, dtype=torch.long),
            "cand_uid": torch.tensor(cu, dtype=torch.long),
            "cand_answer_start": torch.tensor(ast, dtype=torch.long),
            "cand_answer_len": torch.tensor(alen, dtype=torch.long),
            "cand_flawed": torch.tensor(flaw, dtype=torch.long),
            "question_index": torch.tensor(qidx, dtype=torch.long),
        }
