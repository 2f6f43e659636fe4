"""The latent-space analysis: its measures on hand-made points (clustered by view, clustered by
question, mixed), the pooling of real hidden states, the LATENT block of results.md, and the
command end to end at a tiny size (resumable; a finished quality-benchmark run is reused)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from distill.latent import (
    Example,
    bootstrap_ci,
    knn_chance,
    knn_purity,
    measure,
    paired_difference,
    perspective_invariance,
    pooled_states,
)

Q, V, D = 24, 4, 16


def _points(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q questions x V views in D dimensions: centred on their view (``view``), on their question
    (``question``) or on nothing (``mixed``), plus small noise."""
    rng = np.random.default_rng(seed)
    view_c, question_c = rng.normal(size=(V, D)) * 5, rng.normal(size=(Q, D)) * 5
    xs, views, questions = [], [], []
    for q in range(Q):
        for v in range(V):
            centre = {"view": view_c[v], "question": question_c[q], "mixed": np.zeros(D)}[kind]
            xs.append(centre + rng.normal(size=D))
            views.append(f"v{v}")
            questions.append(f"q{q:02d}")
    return np.array(xs), np.array(views), np.array(questions)


def test_measures_on_points_clustered_by_view():
    m = measure(*_points("view")).report(500, 0)
    assert m["silhouette"] > 0.8 and m["silhouette_ci95"][0] > 0.8
    assert m["knn_purity"] == 1.0 and m["knn_chance"] == pytest.approx((Q - 1) / (Q * V - 1))
    inv = m["invariance"]
    assert inv["value"] < -0.5 and inv["ci95"][1] < 0 and inv["same_view"] > inv["same_question"]
    assert m["points"] == Q * V and m["questions"] == Q


def test_measures_on_points_clustered_by_question():
    m = measure(*_points("question")).report(500, 0)
    assert abs(m["silhouette"]) < 0.1 and m["knn_purity"] < m["knn_chance"]  # neighbours: the same question's other views
    assert m["invariance"]["value"] > 0.5 and m["invariance"]["ci95"][0] > 0


def test_measures_on_mixed_points():
    x, views, questions = _points("mixed")
    m = measure(x, views, questions).report(500, 0)
    assert abs(m["silhouette"]) < 0.1
    assert abs(m["knn_purity"] - m["knn_chance"]) < 0.1
    assert abs(m["invariance"]["value"]) < 0.1  # neither the views nor the questions hold points together


def test_knn_purity_excludes_the_point_itself():
    # two tight pairs, each pair of different views: a point's only near neighbour is the other view
    x = np.array([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]])
    views, questions = np.array(["a", "b", "a", "b"]), np.array(["q1", "q1", "q2", "q2"])
    _, per_q = knn_purity(x, views, questions, k=1)
    assert per_q.tolist() == [0.0, 0.0]
    _, per_q = knn_purity(x, np.array(["a", "a", "b", "b"]), questions, k=1)
    assert per_q.tolist() == [1.0, 1.0]
    assert knn_chance(np.array(["a", "a", "b", "b"])) == pytest.approx(1 / 3)


def test_invariance_per_question_by_hand():
    # after centring, q1's two views point the same way and q2's too, opposite to q1: invariance 1 - (-1) = 2
    x = np.array([[2.0, 0.0], [2.0, 0.0], [-2.0, 0.0], [-2.0, 0.0]])
    out = perspective_invariance(x, np.array(["a", "b", "a", "b"]), np.array(["q1", "q1", "q2", "q2"]))
    assert out["questions"].tolist() == ["q1", "q2"]
    assert out["same_question"] == pytest.approx([1.0, 1.0]) and out["same_view"] == pytest.approx([-1.0, -1.0])
    assert out["invariance"] == pytest.approx([2.0, 2.0])


def test_bootstrap_interval_and_paired_difference():
    values = np.random.default_rng(1).normal(0.3, 1.0, size=200)
    lo, hi = bootstrap_ci(values, 1000, seed=0)
    assert lo < values.mean() < hi and hi - lo < 0.5
    assert bootstrap_ci(values, 1000, seed=0) == (lo, hi)  # seeded
    d = paired_difference(values + 1.0, values, 500, 0)
    assert d["value"] == pytest.approx(1.0) and d["ci95"] == pytest.approx([1.0, 1.0])


def test_pooling_covers_the_span_only_and_ignores_padding(tiny_lm_dirs):
    """Each example's vector is the mean of the last layer over [start, end): the same alone or
    padded in a batch with a longer one, and tokens outside the span do not count."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_lm_dirs["plain"]).eval()
    short = Example("q1", "a", [1, 5, 6, 7, 8, 9, 2], 2, 5)
    long = Example("q2", "a", [1, *range(5, 25), 2], 3, 18)
    together = pooled_states(model, [short, long], pad_id=0, batch_size=2)
    alone = pooled_states(model, [short], pad_id=0)
    assert together.shape == (2, model.config.hidden_size)
    assert np.allclose(together[0], alone[0], atol=1e-5)
    with torch.no_grad():
        last = model(input_ids=torch.tensor([short.input_ids]), output_hidden_states=True).hidden_states[-1][0]
    assert np.allclose(alone[0], last[2:5].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(alone[0], last.mean(0).numpy(), atol=1e-4)


def test_heldout_examples_span_is_the_rationale(tiny_lm_dirs, tmp_path):
    """The span starts after the prompt and stops before the canonical answer line; only questions
    with a rationale in every view are kept."""
    from transformers import AutoTokenizer

    from distill.latent import heldout_examples

    tok = AutoTokenizer.from_pretrained(tiny_lm_dirs["plain"])
    data = _tiny_rationales(tmp_path)
    examples = heldout_examples(data, tok)
    assert sorted({e.question_id for e in examples}) == ["q1"]  # q2 lacks the equation view
    assert [e.view for e in examples] == ["equation", "stepwise"]
    for e in examples:
        text = tok.decode(e.input_ids[e.start : e.end])
        assert "Question" not in text and "The answer is" not in text and text.strip()


def _tiny_rationales(tmp_path: Path) -> Path:
    """A rationale run of two questions: q1 in two views, q2 in one (written with the contract's writer)."""
    from data_schemas import RunWriter, rows_to_table
    from tests.conftest import make_rationale_row

    rows = [
        make_rationale_row(question_id="q1", question="Tom has 3 apples and buys 2 more.", gold_answer="5",
                           perspective="stepwise", rationale="3 + 2 = 5.\nThe answer is 5.", predicted_answer="5"),
        make_rationale_row(question_id="q1", question="Tom has 3 apples and buys 2 more.", gold_answer="5",
                           perspective="equation", rationale="x = 3 + 2 = 5\nThe answer is 5.", predicted_answer="5"),
        make_rationale_row(question_id="q2", question="Sara had 10 pencils and gave away 4.", gold_answer="6",
                           perspective="stepwise", rationale="10 - 4 = 6.\nThe answer is 6.", predicted_answer="6"),
    ]  # fmt: skip
    writer = RunWriter(tmp_path / "run", "run-test")
    writer.write_shard("part-000", rows_to_table(rows))
    writer.finalize()
    return tmp_path / "run"


# ---------------------------------------------------------------- the results.md block
def test_latent_block_replaces_only_itself(tmp_path):
    from benchmarks.latent_report import write_markdown

    path = tmp_path / "results.md"
    results = _fake_results()
    history = "<!-- BEGIN HISTORY -->\nold history\n<!-- END HISTORY -->\n"
    path.write_text("# Results\n\nhand-written\n\n" + history)
    write_markdown(results, path, [])
    text = path.read_text()
    assert text.startswith("# Results\n\nhand-written\n\n<!-- BEGIN LATENT -->") and text.endswith(history)
    assert "**are** separated" in text and "these numbers point the way the claim predicts" in text
    assert "Where the separation comes from: the texts' styles" in text
    results["strategies"]["mind"]["invariance"]["value"] = -0.5
    results["comparison"]["mind_minus"]["all"]["invariance"] = {"value": -0.2, "ci95": [-0.3, -0.1]}
    write_markdown(results, path, [])
    again = path.read_text()
    assert again.count("<!-- BEGIN LATENT -->") == 1 and again.endswith(history) and "hand-written" in again
    assert "-0.500" in again and "these numbers are mixed" in again
    plain = tmp_path / "plain.md"
    plain.write_text("# Results\n")
    write_markdown(results, plain, [])
    assert plain.read_text().startswith("# Results\n\n<!-- BEGIN LATENT -->") and plain.read_text().rstrip().endswith("<!-- END LATENT -->")


def _fake_results() -> dict:
    def student(sil: float, inv: float) -> dict:
        return {"silhouette": sil, "silhouette_ci95": [sil - 0.01, sil + 0.01], "knn_purity": 0.5, "knn_purity_ci95": [0.45, 0.55],
                "knn_chance": 0.16, "points": 60, "questions": 10, "validation": 0.4,
                "invariance": {"value": inv, "ci95": [inv - 0.01, inv + 0.01], "same_question": 0.3, "same_view": 0.2}}

    diff = {"invariance": {"value": 0.1, "ci95": [0.05, 0.15]}, "silhouette": {"value": -0.1, "ci95": [-0.15, -0.05]},
            "knn_purity": {"value": -0.1, "ci95": [-0.15, -0.05]}}
    single = {**{k: v for k, v in student(0.4, 0).items() if k != "invariance"}, "controls": {
        "stage0_same_texts": {**student(0.2, 0), "single_view_minus_stage0": {"silhouette": {"value": 0.2, "ci95": [0.1, 0.3]}}},
        "same_texts_by_student": student(0.01, 0) | {"silhouette_ci95": [-0.01, 0.03]}}}
    return {
        "heldout": {"questions": 10, "views": ["a", "b"], "pooling": "mean", "distance": "cosine"},
        "single_view_training": {"regime": "full", "max_steps": 4, "learning_rate": 1e-3},
        "config": {"single_view": {"questions": 5}, "regime": "paper", "seed": 0, "measures": {"knn": 10, "bootstrap": 100}},
        "machine": {"date": "2026-11-27T00:00:00"},
        "single_view": single,
        "reference": {"stage0": student(0.2, 0.0)},
        "strategies": {"golden": student(0.3, 0.0), "all": student(0.3, 0.0), "mind": student(0.2, 0.1)},
        "comparison": {"mind_minus": {"golden": diff, "all": json.loads(json.dumps(diff))}},
    }  # fmt: skip


# ---------------------------------------------------------------- the command end to end
def _configs(tmp_path: Path, student: str) -> Path:
    quality = {
        "world": {"value_range": [1, 9], "factor_range": [2, 3], "max_value": 30, "train_steps": [1, 2]},
        "synthesis": {"num_questions": 40, "samples": 1, "perspectives": ["stepwise", "equation", "shortcut"],
                      "teacher": {"slip_rate": 0.05, "flaw_rate": 0.0}},
        "student": student,
        "validation_questions": 8,
        "regimes": {"paper": {"select": {"target": 12, "seed": 0}, "train": {"max_steps": 2}}, "full": {}},
        "train": {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "max_length": 256,
                  "meta_warmup_steps": 1, "history_every": 1, "eval_questions": 2, "eval_max_new_tokens": 4,
                  "num_threads": 1, "logging_steps": 1},
        "strategies": ["golden", "all", "mind"],
        "seeds": [0],
    }  # fmt: skip
    (tmp_path / "quality.yaml").write_text(yaml.safe_dump(quality))
    latent = {
        "quality": {"config": str(tmp_path / "quality.yaml"), "work": str(tmp_path / "quality" / "main")},
        "regime": "paper", "strategies": ["golden", "all", "mind"], "seed": 0,
        "single_view": {"regime": "full", "questions": 10, "max_steps": 2},
        "measures": {"knn": 3, "bootstrap": 200, "seed": 0}, "tsne": {"perplexity": 5, "seed": 0},
    }  # fmt: skip
    path = tmp_path / "latent.yaml"
    path.write_text(yaml.safe_dump(latent))
    return path


@pytest.mark.slow
def test_latent_analysis_end_to_end(tmp_path, tiny_lm_dirs, capsys):
    """Single-view students and strategy students trained (golden's reused from a finished quality
    run), every measure and plot written, the LATENT block added; a second invocation trains nothing."""
    from benchmarks import latent, quality
    from benchmarks.quality_data import prepare_regimes

    config = _configs(tmp_path, str(tiny_lm_dirs["plain"]))
    # the quality benchmark's final golden run of seed 0 (what `benchmarks.quality` would train): reused, not retrained
    qcfg = quality.load_config(tmp_path / "quality.yaml")
    regimes = prepare_regimes(qcfg, tmp_path / "quality" / "main")
    picked = {"paper": {s: {} for s in qcfg["strategies"]}}
    runs = quality.planned_runs(qcfg, {"paper": regimes["paper"]}, tiny_lm_dirs["plain"], tmp_path / "quality" / "main",
                                ["golden"], picked)  # fmt: skip
    quality.execute(runs[0])
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text("# Results\n\nkept as it is\n")
    argv = ["--config", str(config), "--work", str(tmp_path / "latent"), "--docs", str(docs),
            "--results", str(tmp_path / "latent.json"), "--jobs", "2"]  # fmt: skip
    assert latent.main(argv) == 0
    headline = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(headline) == {"single_view", "golden", "all", "mind", "wall_s"}
    results = json.loads((tmp_path / "latent.json").read_text())
    views = ["equation", "shortcut", "stepwise"]
    assert results["heldout"]["views"] == views and results["heldout"]["questions"] >= 2 and results["missing"] == []
    assert results["students_trained"] == 3 + 2  # one per view, all and mind; golden came from the quality run
    sv = results["single_view"]
    assert -1 <= sv["silhouette"] <= 1 and 0 <= sv["knn_purity"] <= 1 and sv["points"] == 3 * results["heldout"]["questions"]
    assert set(sv["controls"]) == {"stage0_same_texts", "same_texts_by_student"}
    assert set(sv["students"]) == set(views) and all(s["config"]["golden_view"] == v for v, s in sv["students"].items())
    assert all(s["steps"] == 2 and s["source"] == "latent" for s in sv["students"].values())
    strategies = results["strategies"]
    assert set(strategies) == {"golden", "all", "mind"}
    assert strategies["golden"]["source"] == "quality" and strategies["golden"]["folder"].endswith(str(runs[0].folder.name) + "/out")
    assert strategies["mind"]["source"] == "latent" and "curve_flops" not in strategies["mind"]["config"]
    for r in [*strategies.values(), results["reference"]["stage0"]]:
        inv = r["invariance"]
        assert inv["ci95"][0] <= inv["value"] <= inv["ci95"][1]
        assert inv["value"] == pytest.approx(inv["same_question"] - inv["same_view"], abs=1e-3)
        assert r["silhouette_ci95"][0] <= r["silhouette"] <= r["silhouette_ci95"][1]
    assert set(results["comparison"]["mind_minus"]) == {"golden", "all", "stage0"}
    for name in ("single-view", "strategies", "measures"):
        assert (docs / "img" / f"latent-{name}.png").stat().st_size > 5000
    md = (docs / "results.md").read_text()
    assert md.startswith("# Results\n\nkept as it is\n") and md.count("<!-- BEGIN LATENT -->") == 1
    assert "**Internalisation.**" in md and "![latent-single-view](img/latent-single-view.png)" in md
    # each analysed training run has its own latent/ folder (the viewer shows it); the stage-0 student has none
    own = runs[0].folder / "out" / "latent"
    assert json.loads((own / "latent.json").read_text())["measures"]["silhouette"] == pytest.approx(strategies["golden"]["silhouette"])
    assert (own / "tsne.png").stat().st_size > 2000 and not (tiny_lm_dirs["plain"] / "latent").exists()

    # resumable: nothing is trained again, the numbers are the same
    assert latent.main(argv + ["--report-only"]) == 0
    again = json.loads((tmp_path / "latent.json").read_text())
    assert again["students_trained"] == 0 and again["single_view"]["silhouette"] == sv["silhouette"]
    assert again["strategies"]["mind"]["invariance"] == strategies["mind"]["invariance"]
    assert (docs / "results.md").read_text().count("<!-- BEGIN LATENT -->") == 1


def test_latent_config_errors(tmp_path):
    from benchmarks import latent

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"quality": {"config": "x"}, "regime": "paper", "strategies": []}))
    with pytest.raises(SystemExit, match="'config' and 'work'"):
        latent.load_config(bad)
    bad.write_text(yaml.safe_dump({"regime": "paper"}))
    with pytest.raises(SystemExit, match="missing key 'quality'"):
        latent.load_config(bad)
    cfg = latent.load_config(latent.DEFAULT_CONFIG)
    assert cfg["single_view"]["max_steps"] == 400 and cfg["strategies"] == ["golden", "all", "mcc_kd", "mind"]


# ---------------------------------------------------------------- the web viewer
def test_viewer_shows_a_runs_latent_analysis(tmp_path):
    """A training run with a latent/ folder gets a 'Latent space' section (its measures, its plot
    inline as a data: URI); one without has none; a malformed latent.json is a 422 naming it."""
    import base64

    from starlette.testclient import TestClient

    from benchmarks.latent_report import _plt
    from pipeline.viewer import create_app
    from tests.test_viewer import write_trainer_output

    root = tmp_path / "site"
    plain = write_trainer_output(root / "plain", evals=False)
    analysed = write_trainer_output(root / "analysed", evals=False)
    (analysed / "latent").mkdir()
    plt = _plt()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.scatter([0, 1], [1, 0])
    fig.savefig(analysed / "latent" / "tsne.png")
    plt.close(fig)
    measures = {"silhouette": 0.4321, "silhouette_ci95": [0.4, 0.45], "knn_purity": 0.75, "knn_chance": 0.166,
                "points": 60, "questions": 10, "invariance": {"value": -0.1234, "ci95": [-0.2, -0.05],
                                                               "same_question": 0.25, "same_view": 0.37}}  # fmt: skip
    (analysed / "latent" / "latent.json").write_text(json.dumps({"measures": measures, "images": ["tsne.png", "gone.png"]}))
    bad = write_trainer_output(root / "bad", evals=False)
    (bad / "latent").mkdir()
    (bad / "latent" / "latent.json").write_text(json.dumps({"measures": measures, "images": ["../../x.png"]}))
    with TestClient(create_app(root)) as c:
        html = c.get("/train/site/analysed").text
        assert "<h2>Latent space</h2>" in html and 'id="latent"' in html
        assert "0.432 [0.400, 0.450]" in html and "75.0% (16.6%)" in html and "-0.123 [-0.200, -0.050]" in html
        png = base64.b64encode((analysed / "latent" / "tsne.png").read_bytes()).decode()
        assert f'src="data:image/png;base64,{png}"' in html and html.count("<img ") == 1  # the missing file is skipped
        assert "Latent space" not in c.get("/train/site/plain").text
        r = c.get("/train/site/bad")
        assert r.status_code == 422 and "latent.json" in r.text and "is not a PNG file name" in r.text
    assert plain.is_dir()
