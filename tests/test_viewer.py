"""pipeline.viewer over HTTP (no browser): pages, filters, escaping, traversal refusal, error pages.

The test data is written with the project's own writers: a hand-made rationale run
(``RunWriter``; one rationale is ``<script>window.__pwned=1</script>``), a synthetic-world run
(``pipeline.synthetic``) and a trainer output folder in the exact format ``distill.trainer``
and ``distill.evaluate`` write (``mind_summary.json``, ``checkpoint-N/trainer_state.json``,
``eval_results.json``, ``eval/<split>.parquet`` through ``write_predictions``).
The browser tests (``test_viewer_browser.py``) reuse :func:`build_viewer_root`.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from starlette.testclient import TestClient

from data_schemas import RunWriter, rows_to_table
from pipeline import browse
from pipeline.viewer import ViewerThread, create_app
from pipeline.viewer.queries import Filters
from tests.conftest import make_rationale_row

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "<script>window.__pwned=1</script>"
EVIL_QUESTION = 'Pears and <img src=x onerror="window.__pwned=2"> plums: how many pears?'
VIEWS = ("stepwise", "socratic", "equation")


# ---------------------------------------------------------------- test data
def _hand_rows() -> list[dict]:
    """3 questions x 3 perspectives (teacher t1) + one t2 row; verdicts and finish reasons mixed."""
    spec = [
        # qid, question, gold, perspective, teacher, correct, predicted, finish, rationale
        (
            "q-01",
            "Tom has 3 apples and buys 2 more. How many apples?",
            "5",
            "stepwise",
            "t1",
            True,
            "5",
            "stop",
            "3 + 2 = 5\nThe answer is 5.",
        ),
        ("q-01", None, "5", "socratic", "t1", False, "6", "length", "Q: how many?\nA: 6\nThe answer is 6."),
        ("q-01", None, "5", "equation", "t1", None, None, "stop", "x = ?"),
        ("q-01", None, "5", "stepwise", "t2", True, "5", "stop", "five: 5"),
        ("q-02", EVIL_QUESTION, "7", "stepwise", "t1", True, "7", "stop", f"{SCRIPT}\n3 + 4 = 7\nThe answer is 7."),
        ("q-02", None, "7", "socratic", "t1", True, "7", "stop", "Q: pears?\nA: 7\nThe answer is 7."),
        ("q-02", None, "7", "equation", "t1", False, "8", "stop", "x = 4 + 4 = 8"),
        (
            "q-03",
            "Sara has 11 magazines and gives 7 away. How many are left?",
            "4",
            "stepwise",
            "t1",
            True,
            "4",
            "stop",
            "11 - 7 = 4\nThe answer is 4.",
        ),
        ("q-03", None, "4", "socratic", "t1", True, "4", "stop", "Q: left?\nA: 4\nThe answer is 4."),
        ("q-03", None, "4", "equation", "t1", True, "4", "stop", "x = 11 - 7 = 4"),
    ]
    questions = {q: text for q, text, *_ in spec if text}
    return [
        make_rationale_row(
            question_id=q,
            question=questions[q],
            gold_answer=gold,
            perspective=p,
            teacher=t,
            is_correct=ok,
            predicted_answer=pred,
            finish_reason=fin,
            rationale=text,
            num_tokens=len(text.split()),
            run_id="run-hand",
        )
        for q, _, gold, p, t, ok, pred, fin, text in spec
    ]


def write_hand_run(run_dir: Path) -> Path:
    writer = RunWriter(
        run_dir,
        "run-hand",
        config={
            "source": "hand-written test rows",
            "teachers": ["t1", "t2"],
            "perspectives": list(VIEWS),
            "sampling": {"temperature": 0.7},
        },
    )
    rows = _hand_rows()
    writer.write_shard("part-000", rows_to_table(rows[:5]))
    writer.write_shard("part-001", rows_to_table(rows[5:]))
    writer.finalize()
    return run_dir


def write_trainer_output(
    out: Path,
    views: tuple[str, ...] = VIEWS,
    steps: int = 30,
    every: int = 5,
    *,
    strategy: str = "mind",
    history_every: int = 10,
    evals: bool = True,
) -> Path:
    """A trainer output_dir as ``distill.train`` leaves it (metrics as ``MindTrainer`` logs them:
    ``mind/*`` per logging step in ``log_history``, averages per ``history_every`` steps in
    ``mind_summary.json``'s history). ``strategy`` ``mind`` has a MetaNet (scores, L_meta, ranking
    agreement) and a consistency term; any other name has neither, like ``golden`` or ``all``."""
    from distill.evaluate import EvalResult, score_predictions, write_predictions

    metanet = strategy == "mind"
    params, tokens = 1_000_000, 40_000

    def point(step: int) -> tuple[dict, dict]:
        """(scalars, per-view dicts) at ``step``, as the trainer would average them."""
        t = step / steps
        raw = [math.exp(-((i - 2 * t) ** 2)) for i in range(len(views))]
        share = [0.4 + 0.6 * r / max(raw) for r in raw]
        scalars: dict = {"subset_size": sum(share), "flops": 6.0 * params * tokens * t}
        per_view: dict = {
            "in_subset": {v: share[i] for i, v in enumerate(views)},
            "alpha": {v: share[i] / sum(share) for i, v in enumerate(views)},
            "L_p": {v: 5.0 + i - 3 * t for i, v in enumerate(views)},
        }
        if metanet:
            scalars |= {"consistency": 0.2 - 0.1 * t, "meta_loss": 0.5 - 0.3 * t, "meta_top1": 0.3 + 0.5 * t,
                        "meta_spearman": -0.1 + 0.8 * t}  # fmt: skip
            per_view["score"] = {v: 0.5 * i - t for i, v in enumerate(views)}
            per_view["grad_share"] = {**{v: 0.99 * share[i] / sum(share) for i, v in enumerate(views)}, "consistency": 0.01}
        return scalars, per_view

    log, history = [], []
    for step in range(every, steps + 1, every):
        t = step / steps
        scalars, per_view = point(step)
        entry: dict = {"epoch": t, "grad_norm": 2.0 - t, "learning_rate": 1e-3 * (1 - t), "loss": 6.0 - 3 * t, "step": step}
        entry |= {f"mind/{k}": v for k, v in scalars.items()}
        for k, by_view in per_view.items():
            entry |= {f"mind/{k}/{v}": x for v, x in by_view.items()}
        log.append(entry)
    for step in range(history_every, steps + 1, history_every):
        scalars, per_view = point(step)
        history.append({"step": step, **scalars, **per_view})
    ckpt = out / f"checkpoint-{steps}"
    ckpt.mkdir(parents=True)
    state = {
        "best_global_step": None,
        "best_metric": None,
        "epoch": 1.0,
        "global_step": steps,
        "log_history": log,
        "logging_steps": every,
        "max_steps": steps,
        "num_train_epochs": 1,
        "save_steps": steps,
        "train_batch_size": 4,
    }
    (ckpt / "trainer_state.json").write_text(json.dumps(state, indent=2))
    (out / "checkpoint-5").mkdir()  # an older checkpoint: the latest one is read
    (out / "checkpoint-5" / "trainer_state.json").write_text(json.dumps(state | {"global_step": 5, "log_history": []}))
    present, kept = 120, [100, 60, 90, 30, 75, 45][: len(views)]
    summary: dict = {
        "strategy": strategy,
        "views": {
            v: {
                "present": present,
                "kept": kept[i],
                "in_subset": kept[i] / present,
                "mean_alpha": 1.0 / len(views) + 0.01 * i,
                "mean_score": 0.5 * i - 1.0 if metanet else None,
                "L_p": 2.0 + i,
                "kept_share": kept[i] / sum(kept),
            }
            for i, v in enumerate(views)
        },
        "compute": {
            "params": params,
            "forward_tokens": 0 if metanet else 5_000,
            "backward_tokens": tokens,
            "trained_tokens": 31_415,
            "flops": 6.0 * params * tokens,
        },
        "history": history,
    }
    if metanet:
        summary["meta_steps"] = steps
    (out / "mind_summary.json").write_text(json.dumps(summary, indent=2))
    if not evals:
        return out
    rows = [
        {
            "question_id": f"t-{i}",
            "question": f"What is {i} + 1?",
            "gold_answer": str(i + 1),
            "task": "arith",
            "split": "test",
            "sample_index": 0,
            "seed": i,
            "prediction": f"{i} + 1 = {i + 1 if i % 3 else i}",
            "num_tokens": 6,
            "finish_reason": "stop",
            "error": None,
        }
        for i in range(12)
    ]
    rows[4]["prediction"] = f"{SCRIPT} 6"  # wrong (gold 5), so on the incorrect page
    result = EvalResult("test", score_predictions(rows), rows)
    write_predictions(result, out / "eval" / "test.parquet")
    (out / "eval_results.json").write_text(json.dumps({"test": result.summary()}, indent=2))
    return out


def build_viewer_root(root: Path) -> dict[str, str]:
    """The hand run, a synthetic-world run and a trainer output under ``root``; returns their keys."""
    from pipeline.synthetic.run import NoiseConfig, SynthesisConfig, synthesize

    write_hand_run(root / "hand")
    synthesize(
        SynthesisConfig(
            out=root / "synth",
            num_questions=40,
            eval_questions=0,
            retention_train_questions=0,
            shard_size=20,
            noise=NoiseConfig(slip_rate=0.1, flaw_rate=0.05),
        )
    )
    write_trainer_output(root / "train" / "mind-out")
    return {
        "hand": f"{root.name}/hand",
        "synth": f"{root.name}/synth/rationales",
        "train": f"{root.name}/train/mind-out",
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("viewer") / "site"
    root.mkdir()
    return root, build_viewer_root(root)


@pytest.fixture(scope="module")
def client(site: tuple[Path, dict[str, str]]) -> Iterator[TestClient]:
    with TestClient(create_app(site[0])) as c:
        yield c


def _link(prefix: str, key: str, **params: str) -> str:
    query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
    return f"/{prefix}/{quote(key)}" + (f"?{query}" if query else "")


def _question_ids(html: str) -> list[str]:
    return re.findall(r'<a href="/question/[^"]*"><code>([^<]+)</code></a>', html)


# ---------------------------------------------------------------- pages
def test_index_lists_runs_and_training(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    r = client.get("/")
    assert r.status_code == 200
    assert (
        "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    )
    html = r.text
    keys = site[1]
    for k in ("hand", "synth", "train"):
        assert f'href="/{"train" if k == "train" else "run"}/{keys[k]}"' in html
    assert "run-hand" in html and "hand-written test rows" in html and "t1, t2" in html
    assert "70.0%" in html and "10.0%" in html  # hand run: 7 of 10 correct, 1 unjudged
    assert "synthetic-questions" in html  # the synthetic run's source names its questions run
    assert html.count('href="/run/') == 2  # the synthetic questions run is not a rationale run
    assert "test 58.3%" in html  # trainer eval accuracy (7 of 12)


def test_run_page_stats_and_charts(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    html = client.get(_link("run", site[1]["hand"])).text
    groups = {(g["perspective"], g["teacher"]): g for g in browse.stats(site[0] / "hand")}
    assert groups[("socratic", "t1")]["finish_reasons"] == {"length": 1, "stop": 2}
    # the table is browse.stats: stepwise t1 3/3 correct, socratic 2/3, equation 1/3 with one unjudged
    assert re.search(r"<td>equation</td><td>t1</td><td class=\"num\">3</td>\s*<td class=\"num\">33.3%</td>", html)
    assert html.count('class="mark bar seg-correct"') == 4  # one accuracy bar per view
    assert html.count('<svg class="chart"') >= 2 + 4  # accuracy, lengths, one histogram per view
    assert "length" in html and "Finish reasons" in html
    assert re.search(r"10 rationales ·\s+3 questions", html)
    synth = client.get(_link("run", site[1]["synth"]))
    assert synth.status_code == 200 and synth.text.count('class="mark bar"') > 20


def test_question_list_filters_and_search(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    key = site[1]["hand"]

    def ids(**params: str) -> list[str]:
        r = client.get(_link("questions", key, **params))
        assert r.status_code == 200
        return _question_ids(r.text)

    assert ids() == ["q-01", "q-02", "q-03"]
    assert ids(verdict="incorrect") == ["q-01", "q-02"]
    assert ids(verdict="unjudged") == ["q-01"]
    assert ids(perspective="equation", verdict="correct") == ["q-03"]
    assert ids(teacher="t2") == ["q-01"]
    assert ids(q="pears") == ["q-02"]
    assert ids(q="APPLES tom") == ["q-01"]  # every word, any case
    assert ids(q="q-03") == ["q-03"]  # an exact question id
    assert ids(q="100%_") == []  # LIKE wildcards are literal
    assert "1 question(s) with a matching rationale" in client.get(_link("questions", key, q="pears")).text
    bad = client.get(_link("questions", key, verdict="maybe"))
    assert bad.status_code == 400 and "verdict must be one of correct, incorrect, unjudged" in bad.text


def test_pagination_and_neighbours(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    data = client.app.state.viewer.run_data(site[1]["synth"])  # type: ignore[attr-defined]
    first, third = data.find_questions(Filters(), 1, page_size=15), data.find_questions(Filters(), 3, page_size=15)
    assert first["total"] == 40 and first["pages"] == 3 and len(first["items"]) == 15 and len(third["items"]) == 10
    assert data.find_questions(Filters(), 9, page_size=15) == {
        "items": [],
        "total": 40,
        "page": 9,
        "pages": 3,
        "page_size": 15,
    }
    every = [it["question_id"] for p in (1, 2, 3) for it in data.find_questions(Filters(), p, 15)["items"]]
    assert every == sorted(every) and len(set(every)) == 40
    assert all(it["rationales"] == 12 for it in first["items"])  # 6 perspectives x 2 samples
    assert data.neighbours(every[0], Filters()) == (None, every[1])
    assert data.neighbours(every[5], Filters()) == (every[4], every[6])
    wrong = [it["question_id"] for it in data.find_questions(Filters(verdict="incorrect"), 1, 50)["items"]]
    assert 0 < len(wrong) < 40
    assert data.neighbours(wrong[0], Filters(verdict="incorrect"))[1] == (wrong[1] if len(wrong) > 1 else None)
    html = client.get(_link("questions", site[1]["synth"])).text
    assert "40 question(s)" in html and 'rel="next"' not in html  # one page of 50


def test_question_page_escapes_and_highlights(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    key = site[1]["hand"]
    r = client.get(_link("question", key, id="q-02"))
    assert r.status_code == 200
    html = r.text
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in html and SCRIPT not in html
    assert "&lt;img src=x onerror=" in html and "<img" not in html
    assert html.count('<article class="card') == 3
    assert '<mark class="answer">8</mark>' in html and "✗ incorrect" in html  # extracted answer highlighted
    assert re.search(r'<code id="gold">7</code>', html)
    assert f'href="{_link("question", key, id="q-01")}"' in html.replace("&amp;", "&")  # previous
    assert f'href="{_link("question", key, id="q-03")}"' in html.replace("&amp;", "&")  # next
    one = client.get(_link("question", key, id="q-02", view="socratic")).text
    assert one.count('<article class="card') == 1 and 'data-perspective="socratic"' in one
    filtered = client.get(_link("question", key, id="q-01", verdict="incorrect")).text
    assert 'id="next"' in filtered and "verdict=incorrect" in filtered and 'class="disabled">← previous' in filtered
    assert filtered.count("card incorrect match") == 1
    missing = client.get(_link("question", key, id="q-99"))
    assert missing.status_code == 404 and "unknown question id &#39;q-99&#39;" in missing.text
    assert client.get(_link("question", key)).status_code == 400


TRAIN_TITLES = {  # chart title -> lines in the fake mind run (3 views)
    "In-subset share per perspective": 3,
    "Mean weight alpha of a kept candidate per perspective": 3,
    "Mean score per perspective": 3,
    "Inertia-filtered loss L_p per perspective": 3,
    "Gradient share per perspective": 4,  # + the consistency term
    "MetaNet meta-loss L_meta": 1,
    "MetaNet ranking agreement": 2,
    "Answer-consistency loss": 1,
    "Subset size (kept candidates per question)": 1,
    "Training loss": 1,
}
METANET_TITLES = ("Mean score per perspective", "Gradient share per perspective", "MetaNet meta-loss L_meta",
                  "MetaNet ranking agreement")  # and the gradient share: the fake mind run measured it


def _figure(html: str, title: str) -> str | None:
    m = re.search(rf"<figure class=\"chart-box\"><figcaption>{re.escape(title)}.*?</figure>", html, re.DOTALL)
    return m.group(0) if m else None


def test_training_page(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    r = client.get(_link("train", site[1]["train"]))
    assert r.status_code == 200
    html = r.text
    assert "strategy <strong>mind</strong>" in html and "30 steps" in html
    assert "checkpoint-30/trainer_state.json" in html  # the latest checkpoint's state
    for title, n in TRAIN_TITLES.items():
        fig = _figure(html, title)
        assert fig is not None and fig.count('class="mark line"') == n, title
    # the history (every 10 steps: 3 points a line) wins over the log (every 5 steps: 6 points) ...
    assert _figure(html, "In-subset share per perspective").count('class="mark point"') == 3 * 3  # type: ignore[union-attr]
    assert _figure(html, "MetaNet ranking agreement").count('class="mark point"') == 2 * 3  # type: ignore[union-attr]
    assert _figure(html, "Training loss").count('class="mark point"') == 6  # type: ignore[union-attr]  # ... log only
    assert "From mind_summary.json&#39;s history and trainer_state.json&#39;s log:" in html
    assert "no data in this run" not in html and 'id="omitted"' not in html
    assert "In the subset over the whole run" in html and html.count('class="mark bar"') >= 3 + 1  # + eval bars
    # per-perspective totals: present, kept, in subset, share of kept, mean alpha, mean score, L_p
    row = re.search(r"<tr><td>socratic</td>(.*?)</tr>", html, re.DOTALL)
    assert row and re.findall(r'<td class="num">([^<]*)</td>', row.group(1)) == [
        "120", "60", "50.0%", "24.0%", "0.343", "-0.500", "3.000"
    ]  # fmt: skip
    compute = re.search(r'<table class="stats" id="compute">(.*?)</table>', html, re.DOTALL)
    assert compute, html
    cells = dict(re.findall(r"<tr><td>([^<]*)</td><td class=\"num\">([^<]*)</td></tr>", compute.group(1)))
    assert cells == {
        "student parameters": "1,000,000",
        "forward-only tokens (no-grad scoring)": "0",
        "trained tokens, forward + backward": "40,000",
        "trained label tokens (kept candidates)": "31,415",
        "estimated FLOPs (6 N x trained + 2 N x forward-only)": "2.4e+11",
        "MetaNet optimizer steps": "30",
    }
    assert "Accuracy per evaluation split" in html and "58.3%" in html and "predictions →" in html
    preds = client.get(_link("eval", site[1]["train"], split="test", verdict="incorrect"))
    assert preds.status_code == 200 and "5 prediction(s)" in preds.text
    assert "&lt;script&gt;" in preds.text and SCRIPT not in preds.text
    assert client.get(_link("eval", site[1]["train"], split="nope")).status_code == 404


def test_training_page_variants(tmp_path: Path) -> None:
    """No MetaNet, only the summary, only the log, odd names, an old-format summary: never a crash."""
    root = tmp_path / "t"
    write_trainer_output(root / "golden", strategy="golden", evals=False)
    summary_only = write_trainer_output(root / "summary-only", evals=False)
    for d in summary_only.glob("checkpoint-*"):
        (d / "trainer_state.json").unlink()
        d.rmdir()
    log_only = write_trainer_output(root / "log-only", evals=False)
    (log_only / "mind_summary.json").unlink()
    evil_view = '<b id="v">view</b>'
    write_trainer_output(root / "evil", views=("stepwise", evil_view), strategy=SCRIPT, evals=False)
    old = write_trainer_output(root / "old", evals=False)
    (old / "mind_summary.json").write_text(json.dumps({
        "strategy": "mind", "feedback": "inertia", "trained_tokens": 10,
        "views": {v: {"picks": 3, "pick_share": 1 / 3, "mean_weight": 1.0, "L_p": 2.0} for v in VIEWS},
        "probes": [{"step": 5, "probe_loss": 3.0, "L_p": {v: 2.0 for v in VIEWS}}],
    }))  # fmt: skip
    old_log = tmp_path / "t" / "old-log" / "checkpoint-4"
    old_log.mkdir(parents=True)
    (old_log / "trainer_state.json").write_text(json.dumps({"global_step": 4, "log_history": [
        {"step": 2, "loss": 3.0, "mind/pick_share/a": 0.5, "mind/ta_reward": 0.1},
        {"step": 4, "loss": 2.5, "mind/pick_share/a": 0.4, "mind/ta_reward": 0.2},
    ]}))  # fmt: skip
    bad_history = write_trainer_output(root / "bad-history", evals=False)
    summary = json.loads((bad_history / "mind_summary.json").read_text())
    summary["history"][1]["in_subset"] = [0.5]
    (bad_history / "mind_summary.json").write_text(json.dumps(summary))
    with TestClient(create_app(root)) as c:
        index = c.get("/")
        assert index.status_code == 200 and "2.4e+11" in index.text and SCRIPT not in index.text
        assert "written by an older MIND trainer (probes, feedback, mean_weight, pick_share, picks" in index.text

        html = c.get("/train/t/golden").text  # no MetaNet, no consistency term: those charts left out
        for title in METANET_TITLES + ("Answer-consistency loss",):
            assert _figure(html, title) is None, title
        assert re.search(r'id="omitted">Not recorded in this run \(strategy golden\): Mean score per perspective, '
                         r"Gradient share per perspective, MetaNet meta-loss L_meta, MetaNet ranking agreement with the target losses, "
                         r"Answer-consistency loss\.", html)  # fmt: skip
        for title in set(TRAIN_TITLES) - set(METANET_TITLES) - {"Answer-consistency loss"}:
            assert 'class="mark line"' in (_figure(html, title) or ""), title
        assert "no data in this run" not in html and "MetaNet optimizer steps" not in html
        row = re.search(r"<tr><td>stepwise</td>(.*?)</tr>", html, re.DOTALL)
        assert row and re.findall(r'<td class="num">([^<]*)</td>', row.group(1))[5] == "–"  # no mean score

        html = c.get("/train/t/summary-only").text  # every chart from the history; no loss without the log
        assert "no trainer_state.json" in html and "From mind_summary.json&#39;s history:" in html
        assert "no data in this run" in (_figure(html, "Training loss") or "")
        for title in set(TRAIN_TITLES) - {"Training loss"}:
            assert 'class="mark line"' in (_figure(html, title) or ""), title

        html = c.get("/train/t/log-only").text  # the log's series instead; no totals or compute without a summary
        assert "no mind_summary.json" in html and "From trainer_state.json&#39;s log:" in html
        assert _figure(html, "In-subset share per perspective").count('class="mark point"') == 3 * 6  # type: ignore[union-attr]
        assert "no data in this run" not in html and 'id="view-totals"' not in html and 'id="compute"' not in html
        assert all('class="mark line"' in (_figure(html, t) or "") for t in TRAIN_TITLES)

        r = c.get("/train/t/evil")  # names from the files are text, never markup
        assert r.status_code == 200 and SCRIPT not in r.text and evil_view not in r.text
        assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in r.text and "&lt;b id=&#34;v&#34;&gt;view&lt;/b&gt;" in r.text

        r = c.get("/train/t/old")
        assert r.status_code == 422 and "mind_summary.json: written by an older MIND trainer" in r.text
        assert "Traceback" not in r.text

        r = c.get("/train/t/old-log")  # an old log alone: the loss still charted, the rest said
        assert r.status_code == 200 and "holds the metrics of an older trainer" in r.text
        assert 'class="mark line"' in (_figure(r.text, "Training loss") or "")

        r = c.get("/train/t/bad-history")
        assert r.status_code == 422 and "history[1].in_subset: expected an object" in r.text


# ---------------------------------------------------------------- safety
@pytest.mark.parametrize(
    "path",
    [
        "/run/..%2F..%2Fetc",
        "/run/../../etc/passwd",
        "/run/%2e%2e/%2e%2e/etc",
        "/train/..%2F..%2F..%2Fetc",
        "/questions/%2Fetc",
        "/static/..%2F..%2Fapp.py",
        "/static/../app.py",
        "/eval/..%2F..?split=test",
    ],
)
def test_traversal_refused(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404, path
    assert "root:" not in r.text and "def create_app" not in r.text


def test_read_only(client: TestClient, site: tuple[Path, dict[str, str]]) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        r = client.request(method, _link("run", site[1]["hand"]))
        assert r.status_code == 405 and "read-only" in r.text
    assert client.post("/static/style.css").status_code == 405
    assert client.head("/").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_host_header_checked(site: tuple[Path, dict[str, str]]) -> None:
    app = create_app(site[0], allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as c:
        assert c.get("/").status_code == 200
        assert c.get("/", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding


def test_symlinks_out_of_root_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_hand_run(outside / "run")
    write_hand_run(root / "inner")
    (root / "link").symlink_to(outside / "run")  # a whole run outside DIR
    (root / "inner-alias").symlink_to(root / "inner")  # a link that stays inside: fine
    shard = root / "inner" / "shards" / "part-001.parquet"
    write_hand_run(root / "leaky")
    leaky = root / "leaky" / "shards" / "part-001.parquet"
    leaky.unlink()
    leaky.symlink_to(outside / "run" / "shards" / "part-001.parquet")  # one shard outside DIR
    assert shard.is_file()
    with TestClient(create_app(root)) as c:
        index = c.get("/")
        assert index.status_code == 200 and "resolves outside the served folder" in index.text
        r = c.get("/run/root/link")
        assert r.status_code == 403 and "resolves outside the served folder" in r.text
        assert c.get("/questions/root/link").status_code == 403
        r = c.get("/run/root/leaky")
        assert r.status_code == 403 and str(leaky) in r.text
        assert c.get("/run/root/inner-alias").status_code == 200


# ---------------------------------------------------------------- bad data: error pages naming the file
def test_error_pages_name_the_file(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    for name in ("ok", "badjson", "corrupt", "missing"):
        write_hand_run(root / name)
    (root / "badjson" / "manifest.json").write_text('{"run_id": "x",')
    corrupt = root / "corrupt" / "shards" / "part-000.parquet"
    corrupt.write_bytes(b"PAR1 this is not parquet")
    missing = root / "missing" / "shards" / "part-001.parquet"
    missing.unlink()
    write_trainer_output(root / "train-bad")
    (root / "train-bad" / "mind_summary.json").write_text("[1, 2")
    write_trainer_output(root / "train-state")
    (root / "train-state" / "checkpoint-30" / "trainer_state.json").write_text('{"log_history": 3}')
    with TestClient(create_app(root)) as c:
        index = c.get("/")
        assert index.status_code == 200  # one bad run does not take the page down
        assert f"{root / 'badjson' / 'manifest.json'}:1: invalid JSON" in index.text
        assert f"{corrupt}: unreadable Parquet file" in index.text
        for key, status, text in (
            ("run/bad/badjson", 422, f"{root / 'badjson' / 'manifest.json'}:1: invalid JSON"),
            ("run/bad/corrupt", 422, f"{corrupt}: unreadable Parquet file"),
            ("question/bad/corrupt?id=q-01", 422, f"{corrupt}: unreadable Parquet file"),
            ("run/bad/missing", 422, f"{missing}: listed in"),
            ("train/bad/train-bad", 422, f"{root / 'train-bad' / 'mind_summary.json'}:1: invalid JSON"),
            ("train/bad/train-state", 422, "trainer_state.json: expected an object with a &#39;log_history&#39; list"),
            ("run/bad/ok", 200, "run-hand"),
            ("run/bad/nope", 404, "no rationale run &#39;bad/nope&#39;"),
        ):
            r = c.get("/" + key)
            assert r.status_code == status, (key, r.text[-500:])
            assert text in r.text, (key, r.text[-800:])
            assert "Traceback" not in r.text
    with pytest.raises(Exception, match="no such directory"):
        create_app(tmp_path / "nowhere")


# ---------------------------------------------------------------- a live server
def test_live_server_thread(site: tuple[Path, dict[str, str]]) -> None:
    viewer = ViewerThread(site[0])
    with viewer as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        r = httpx.get(f"{url}/run/{site[1]['hand']}", timeout=10)
        assert r.status_code == 200 and "run-hand" in r.text
        assert httpx.get(url, headers={"host": "attacker.example"}, timeout=10).status_code == 400
        conn = http.client.HTTPConnection("127.0.0.1", viewer.port, timeout=10)
        for raw in ("/run/../../../../etc/passwd", "/static/../../../../etc/passwd", "/static/%2e%2e/app.py"):
            conn.request("GET", raw)  # sent as is: no client-side normalisation
            resp = conn.getresponse()
            body = resp.read().decode()
            assert resp.status == 404, raw
            assert "root:x:" not in body
        conn.close()
    assert viewer._thread is not None and not viewer._thread.is_alive()  # shut down cleanly
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_serve_cli(site: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert browse.main([str(tmp_path / "missing"), "serve"]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert browse.main([str(site[0]), "--run", "x", "serve"]) == 2
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert browse.main([str(site[0]), "serve", "--port", str(busy.getsockname()[1])]) == 2
        assert "cannot listen on 127.0.0.1:" in capsys.readouterr().err
    finally:
        busy.close()

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.browse", str(site[0]), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert url, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        r = httpx.get(url.group(0), timeout=10)
        print(f"serve: first page {time.perf_counter() - t0:.2f}s after launch")
        assert r.status_code == 200 and "run-hand" in r.text
    finally:
        proc.send_signal(2)  # Ctrl-C: a clean exit
        rc = proc.wait(timeout=15)
    assert rc == 0, proc.stderr.read() if proc.stderr else ""


def test_package_data_declared() -> None:
    """The templates and static files ship with the package (pyproject package-data)."""
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"pipeline.viewer"' in text and "templates/*.html" in text and "static/*" in text
    here = REPO_ROOT / "pipeline" / "viewer"
    assert {p.name for p in (here / "static").iterdir()} >= {"style.css", "viewer.js", "favicon.svg"}
