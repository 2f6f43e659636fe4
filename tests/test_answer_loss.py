"""benchmarks/answer_loss.py: the answer line's loss per view and noise label of a trained student, through
the trainer's forward, checked against a plain forward computed here."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from benchmarks import answer_loss
from tests.trainer_fixtures import MAX_LENGTH, trainer_assets  # noqa: F401


def _answer_nll_by_hand(model_dir, question: str, rationale: str, gold: str) -> float:
    """Mean NLL of the answer tokens from the plain model's logits (no fused head, no padding)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.formatting import encode_training_example

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ex = encode_training_example(tok, question, rationale, gold, "plain", MAX_LENGTH)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ex.input_ids])).logits[0].float(), dim=-1)
    span = range(ex.answer_start, ex.answer_start + ex.answer_len)
    return -sum(float(logp[t - 1, ex.input_ids[t]]) for t in span) / ex.answer_len


def test_answer_loss_per_view_and_label_matches_a_plain_forward(trainer_assets, tmp_path):  # noqa: F811
    from data_schemas import read_rationales
    from distill.data import noise_label

    run = tmp_path / "runs" / "clean-all-s0-abc"
    shutil.copytree(trainer_assets.model_dir, run / "out")
    (run / "train.yaml").write_text(yaml.safe_dump({"data": str(trainer_assets.data_dir), "max_length": MAX_LENGTH}))
    (run / "result.json").write_text(json.dumps({"regime": "clean", "strategy": "all", "seed": 0}))
    out = tmp_path / "answer-loss.json"
    assert answer_loss.main([str(run), "--out", str(out), "--batch", "7"]) == 0
    rec = json.loads(out.read_text())["runs"][0]
    assert (rec["world"], rec["strategy"], rec["seed"]) == ("clean", "all", 0)

    table = read_rationales(trainer_assets.data_dir).to_pylist()
    used = [r for r in table if r["is_correct"] and r["finish_reason"] == "stop"]
    counts: dict[tuple[str, str], int] = {}
    for r in used:
        key = (r["perspective"], answer_loss.LABELS[noise_label(r.get("metadata"))])
        counts[key] = counts.get(key, 0) + 1
    assert {(v, label): c["n"] for v, per in rec["views"].items() for label, c in per.items()} == counts

    # the smallest cell (view, label), every rationale of it computed by hand and averaged
    view, label = min(counts, key=lambda k: (counts[k], k))
    rows = [r for r in used if (r["perspective"], answer_loss.LABELS[noise_label(r.get("metadata"))]) == (view, label)]
    by_hand = [_answer_nll_by_hand(trainer_assets.model_dir, r["question"], r["rationale"], r["gold_answer"]) for r in rows]
    assert rec["views"][view][label]["answer_nll"] == pytest.approx(sum(by_hand) / len(by_hand), rel=1e-4)


def test_a_folder_that_is_not_a_run_fails_naming_it(tmp_path):
    with pytest.raises(SystemExit) as err:
        answer_loss.main([str(tmp_path)])
    assert str(tmp_path) in str(err.value) and "train.yaml" in str(err.value)


def test_a_missing_data_folder_fails_naming_the_field(trainer_assets, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(trainer_assets.model_dir, run / "out")
    (run / "train.yaml").write_text(yaml.safe_dump({"data": "runs/nowhere"}))
    with pytest.raises(SystemExit) as err:
        answer_loss.main([str(run)])
    assert f"{run / 'train.yaml'}: data: runs/nowhere not found" in str(err.value)
