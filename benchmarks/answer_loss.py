"""The answer line's loss per view, sound against flawed, for trained students.

``--candidate_loss answer`` judges a rationale by how surprising its stated answer is to the student after
reading it (docs/method.md). This diagnostic asks two questions of that signal on trained students: does it
tell a flawed rationale from a sound one, view by view; and is a view's high loss the view's own, or the mark
of a student that was not trained on it (a view MIND dropped keeps a high loss because it is never trained)?

    python -m benchmarks.answer_loss RUN [RUN ...] [--out benchmarks/results/answer-loss.json] [--batch 32]

RUN: a benchmark run folder (``train.yaml`` and the trained student in ``out/``, e.g.
``runs/interference/main/runs/clean-all-s0-<key>``). The student is scored on that run's own training data
(``data`` in ``train.yaml``; a relative path is looked up from the current folder, then from each
folder above the run: the repository root the benchmark ran in), every verified rationale, through the trainer's own forward
(:func:`distill.losses.student_forward`, as ``--candidate_loss answer`` scores candidates). Per view and
the teacher's own noise label (``sound``, ``flawed``, ``unlabelled``): the rationales' count, their mean
answer NLL, and the mean gain over the answer line given the question alone (how much the rationale helps
the student to the answer). Nothing is trained; a run takes seconds on a CPU for the tiny student.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks._common import write_json

LABELS = {0: "sound", 1: "flawed", -1: "unlabelled"}


def _answer_nlls(model: Any, rows: list[tuple[list[int], int, int, int]], pad_id: int, batch: int) -> list[float]:
    """The mean NLL of each row's answer tokens (rows: ``(ids, prompt_len, answer_start, answer_len)``)."""
    import torch

    from distill.data import pad_sequences
    from distill.losses import student_forward

    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(rows), batch):
            chunk = rows[i : i + batch]
            padded = pad_sequences([r[0] for r in chunk], [r[1] for r in chunk], pad_id)
            res = student_forward(model, padded["input_ids"], padded["attention_mask"], padded["labels"],
                                  answer_start=torch.tensor([r[2] for r in chunk]),
                                  answer_len=torch.tensor([r[3] for r in chunk]))  # fmt: skip
            out += res.answer_nll.double().tolist()
    return out


def _rows(questions: list[Any], view_names: list[str], alone: Any) -> tuple[list[tuple[list[int], int, int, int]], list[tuple]]:
    """Every question's answer line alone (``alone(q)``: its encoded example without a rationale), then each of
    its rationales, as ``(ids, prompt_len, answer_start, answer_len)`` rows, with ``(question, view, label)``
    keys (view None for the answer alone)."""
    rows, keys = [], []
    for q in questions:
        ex = alone(q)
        rows.append((ex.input_ids, ex.prompt_len, ex.answer_start, ex.answer_len))
        keys.append((q.question_id, None, None))
        for v in q.views:
            for ids, plen, start, length, flawed in zip(v.samples, v.prompt_lens, v.answer_starts, v.answer_lens, v.flawed, strict=True):
                rows.append((ids, plen, start, length))
                keys.append((q.question_id, view_names[v.view], LABELS[flawed]))
    return rows, keys


def _data_folder(data: str, run: Path) -> Path | None:
    """The run's data folder: as written, else (a relative path) under a folder above the run, the
    repository root the benchmark ran in."""
    path = Path(data)
    if path.is_dir() or path.is_absolute():
        return path if path.is_dir() else None
    return next((up / path for up in run.resolve().parents if (up / path).is_dir()), None)


def score_run(folder: Path, batch: int = 32) -> dict[str, Any]:
    """One run folder's record: per view and noise label, count, mean answer NLL and mean gain."""
    from trl.trainer.utils import add_fused_lm_head

    from distill.data import load_questions_with_candidates
    from distill.formatting import DEFAULT_ANSWER_TEMPLATE, encode_training_example, resolve_style
    from distill.student import load_student

    cfg_file = folder / "train.yaml"
    if not cfg_file.is_file() or not (folder / "out" / "config.json").is_file():
        raise SystemExit(f"error: {folder}: not a finished run folder (needs train.yaml and a student in out/)")
    cfg = yaml.safe_load(cfg_file.read_text())
    if "data" not in cfg:
        raise SystemExit(f"error: {cfg_file}: data: missing")
    data = _data_folder(cfg["data"], folder)
    if data is None:
        raise SystemExit(f"error: {cfg_file}: data: {cfg['data']} not found (from here or any folder above the run)")
    template = cfg.get("answer_template", DEFAULT_ANSWER_TEMPLATE)
    if not template:
        raise SystemExit(f"error: {cfg_file}: answer_template: empty, so the rationales have no answer line")
    model, tok = load_student(folder / "out")
    add_fused_lm_head(model)
    model.eval()
    style = resolve_style(tok, cfg.get("prompt_style", "auto"))
    max_length = cfg.get("max_length")
    questions, view_names, _ = load_questions_with_candidates(str(data), tok, style, max_length=max_length,
                                                              answer_template=template)  # fmt: skip
    rows, keys = _rows(questions, view_names, lambda q: encode_training_example(tok, q.question, "", q.gold_answer,
                                                                                  style, max_length, template))  # fmt: skip
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    nlls = _answer_nlls(model, rows, pad_id, batch)
    alone_nll = {qid: x for (qid, view, _), x in zip(keys, nlls, strict=True) if view is None}
    cells: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for (qid, view, label), x in zip(keys, nlls, strict=True):
        if view is not None:
            cells.setdefault(view, {}).setdefault(label, []).append((x, alone_nll[qid] - x))
    record: dict[str, Any] = {"run": folder.name, "data": cfg["data"], "question_alone": statistics.fmean(alone_nll.values())}
    if (folder / "result.json").is_file():
        result = json.loads((folder / "result.json").read_text())
        record.update({"world": result.get("world", result.get("regime")), "strategy": result.get("strategy"),
                       "seed": result.get("seed")})  # fmt: skip
    record["views"] = {
        view: {label: {"n": len(xs), "answer_nll": statistics.fmean(x for x, _ in xs),
                       "gain": statistics.fmean(g for _, g in xs)} for label, xs in sorted(per.items())}
        for view, per in sorted(cells.items())
    }  # fmt: skip
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders (train.yaml and out/)")
    parser.add_argument("--out", help="write the records to this JSON file")
    parser.add_argument("--batch", type=int, default=32, help="rows per forward (default 32)")
    args = parser.parse_args(argv)
    records = []
    for run in args.runs:
        rec = score_run(Path(run), args.batch)
        records.append(rec)
        print(f"{run}: answer NLL from the question alone {rec['question_alone']:.2f}")
        for view, per in rec["views"].items():
            cells = "; ".join(f"{label} n={c['n']} nll {c['answer_nll']:.2f} gain {c['gain']:+.2f}" for label, c in per.items())
            print(f"  {view}: {cells}")
    if args.out:
        write_json(args.out, {"benchmark": "answer_loss", "runs": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
