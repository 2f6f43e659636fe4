"""Latent-space measures of a student: pooled last-layer states of held-out rationales, and how they
cluster by perspective (the paper's third claim; ``benchmarks.latent`` runs the analysis).

- :func:`heldout_examples`: a fixed set of held-out rationales, every question in every view,
  tokenised exactly as the trainer does (:func:`distill.data.load_questions_with_candidates`);
- :func:`pooled_states`: each one's last-layer hidden state (after the final norm: the LM head's
  input), mean-pooled over the rationale's own tokens (the prompt, the canonical answer line that
  every view of a question shares, EOS and padding are left out);
- the measures, each a mean over questions of a per-question value, so that one bootstrap over
  questions gives every interval (:func:`bootstrap_ci`; paired differences with
  :func:`paired_difference`; approximate: a question's value is measured against all the other
  questions, which a resample does not redraw). Every point set is first centred on its own mean (the common direction
  all pooled states share would otherwise push every cosine towards 1); distances are cosine.

  * **view silhouette** (:func:`view_silhouette`): scikit-learn's silhouette with the view as the
    label, metric cosine: 1 = views perfectly separated, 0 = overlapping, < 0 = mixed;
  * **k-NN view purity** (:func:`knn_purity`): the share of each point's ``k`` nearest neighbours
    (cosine, the point itself excluded) written in its view; chance is (n_view - 1) / (n - 1);
  * **perspective invariance** (:func:`perspective_invariance`): per question, the mean cosine
    similarity between its representations under different views (``same_question``) minus the
    mean similarity between its representation and other questions' under the same view
    (``same_view``). Above 0: a question's content holds its representations together across
    styles (reasoning represented apart from style); below 0: the style dominates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.data import load_questions_with_candidates
from distill.formatting import DEFAULT_ANSWER_TEMPLATE, answer_line_ids, resolve_style


@dataclass(frozen=True)
class Example:
    """One held-out rationale: its tokens and the span ``[start, end)`` of the rationale's own tokens."""

    question_id: str
    view: str
    input_ids: list[int]
    start: int
    end: int


def heldout_examples(data_dir: str | Path, tokenizer: Any, *, prompt_style: str = "auto", max_length: int | None = None,
                     answer_template: str | None = DEFAULT_ANSWER_TEMPLATE, include_incorrect: bool = False,
                     max_questions: int | None = None, seed: int = 0) -> list[Example]:  # fmt: skip
    """The first sample of every view of every question under ``data_dir`` that has a usable
    rationale in *every* view (verified correct unless ``include_incorrect``), ordered by question
    then view; ``max_questions`` keeps that many (a seeded hash order)."""
    style = resolve_style(tokenizer, prompt_style)  # type: ignore[arg-type]
    questions, views, _ = load_questions_with_candidates(
        str(data_dir), tokenizer, style, include_incorrect=include_incorrect, max_length=max_length,
        answer_template=answer_template or None,
    )  # fmt: skip
    complete = [q for q in questions if len(q.views) == len(views)]
    if max_questions is not None:
        complete = sorted(complete, key=lambda q: hashlib.sha256(f"{seed}:latent:{q.question_id}".encode()).hexdigest())
        complete = sorted(complete[:max_questions], key=lambda q: q.question_id)
    out = []
    for q in complete:
        tail = len(answer_line_ids(tokenizer, q.gold_answer, answer_template)[0]) + 1 if answer_template else 1
        for v in sorted(q.views, key=lambda v: views[v.view]):
            ids, start = v.samples[0], v.prompt_lens[0]
            out.append(Example(q.question_id, views[v.view], ids, start, max(start + 1, len(ids) - tail)))
    return out


def load_student(folder: str | Path) -> tuple[Any, Any]:
    """``(model, tokenizer)`` of a saved student (transformers), in eval mode on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    model.eval()
    return model, tokenizer


def pooled_states(model: Any, examples: list[Example], pad_id: int, batch_size: int = 32) -> np.ndarray:
    """``(len(examples), hidden)``: the last layer's hidden states mean-pooled over each rationale span."""
    import torch

    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = examples[i : i + batch_size]
            width = max(len(e.input_ids) for e in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            span = torch.zeros((len(batch), width), dtype=torch.float32)
            for j, e in enumerate(batch):
                ids[j, : len(e.input_ids)] = torch.tensor(e.input_ids)
                attention[j, : len(e.input_ids)] = 1
                span[j, e.start : e.end] = 1.0
            out = model(input_ids=ids.to(device), attention_mask=attention.to(device), output_hidden_states=True)
            last = out.hidden_states[-1].float().cpu()
            rows.append(((last * span[..., None]).sum(1) / span.sum(1, keepdim=True)).numpy())
    return np.concatenate(rows).astype(np.float64)


# ---------------------------------------------------------------- measures
def centred(x: np.ndarray) -> np.ndarray:
    """``x`` minus its mean row."""
    return x - x.mean(axis=0, keepdims=True)


def _unit(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def _per_question(values: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(question ids, mean of values per question)`` in sorted question order."""
    names, inverse = np.unique(questions, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(names))
    return names, sums / np.bincount(inverse, minlength=len(names))


def view_silhouette(x: np.ndarray, views: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per question, the mean cosine silhouette of its points with the view as the label."""
    from sklearn.metrics import silhouette_samples

    return _per_question(silhouette_samples(centred(x), views, metric="cosine"), questions)


def knn_purity(x: np.ndarray, views: np.ndarray, questions: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per question, the mean share of its points' ``k`` nearest neighbours (cosine, itself excluded)
    that are written in the point's own view."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(x) - 1)
    if k < 1:
        raise ValueError("k-NN purity needs at least two points")
    _, idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(centred(x)).kneighbors(centred(x))
    shares = np.empty(len(x))
    for i, row in enumerate(idx):
        others = [j for j in row if j != i][:k]  # the point itself, wherever a tie put it
        shares[i] = np.mean(views[others] == views[i])
    return _per_question(shares, questions)


def knn_chance(views: np.ndarray) -> float:
    """The k-NN purity of labels drawn at random: the mean over points of (n_view - 1) / (n - 1)."""
    _, inverse, counts = np.unique(views, return_inverse=True, return_counts=True)
    return float(np.mean((counts[inverse] - 1) / (len(views) - 1)))


def perspective_invariance(x: np.ndarray, views: np.ndarray, questions: np.ndarray) -> dict[str, np.ndarray]:
    """Per question (sorted ids under ``"questions"``): ``same_question`` (mean cosine similarity of its
    representations across different views), ``same_view`` (mean similarity to other questions'
    representations in the same view) and ``invariance`` = ``same_question - same_view``."""
    z = _unit(centred(x))
    sim = z @ z.T
    same_q = questions[:, None] == questions[None, :]
    same_v = views[:, None] == views[None, :]
    names = np.unique(questions)
    sq, sv = np.full(len(names), np.nan), np.full(len(names), np.nan)
    for i, q in enumerate(names):
        rows = questions == q
        across_views = same_q[rows] & ~same_v[rows]
        across_questions = ~same_q[rows] & same_v[rows]
        if across_views.any():
            sq[i] = sim[rows][across_views].mean()
        if across_questions.any():
            sv[i] = sim[rows][across_questions].mean()
    return {"questions": names, "same_question": sq, "same_view": sv, "invariance": sq - sv}


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the mean of ``values`` (one per question) over ``n_boot`` resamples."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def summary(values: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """``{"value": mean, "ci95": [lo, hi]}`` of per-question values."""
    values = np.asarray(values, dtype=np.float64)
    return {"value": float(np.nanmean(values)), "ci95": list(bootstrap_ci(values, n_boot, seed))}


def paired_difference(a: np.ndarray, b: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Mean of ``a - b`` over the same questions, with its bootstrap interval (resampling questions)."""
    return summary(np.asarray(a) - np.asarray(b), n_boot, seed)


@dataclass
class Measured:
    """A point set's per-question values (sorted question ids) and their summaries."""

    questions: np.ndarray
    per_question: dict[str, np.ndarray]
    knn_chance: float
    points: int

    def report(self, n_boot: int, seed: int) -> dict[str, Any]:
        s = {k: summary(v, n_boot, seed) for k, v in self.per_question.items()}
        out: dict[str, Any] = {
            "silhouette": s["silhouette"]["value"], "silhouette_ci95": s["silhouette"]["ci95"],
            "knn_purity": s["knn_purity"]["value"], "knn_purity_ci95": s["knn_purity"]["ci95"],
            "knn_chance": self.knn_chance, "points": self.points, "questions": len(self.questions),
        }  # fmt: skip
        if "invariance" in s:
            out["invariance"] = {**s["invariance"], "same_question": s["same_question"]["value"],
                                 "same_view": s["same_view"]["value"]}  # fmt: skip
        return out


def measure(x: np.ndarray, labels: np.ndarray, questions: np.ndarray, k: int = 10, invariance: bool = True) -> Measured:
    """Silhouette and k-NN purity by ``labels`` (and, with ``invariance``, perspective invariance with
    ``labels`` as the views) of the points ``x``, per question."""
    labels, questions = np.asarray(labels), np.asarray(questions)
    names, sil = view_silhouette(x, labels, questions)
    _, knn = knn_purity(x, labels, questions, k)
    per = {"silhouette": sil, "knn_purity": knn}
    if invariance:
        inv = perspective_invariance(x, labels, questions)
        per |= {k_: inv[k_] for k_ in ("invariance", "same_question", "same_view")}
    return Measured(names, per, knn_chance(labels), len(x))


def tsne_2d(x: np.ndarray, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """A 2-D t-SNE (scikit-learn, PCA initialisation, fixed ``random_state``) of the centred, unit-length points."""
    from sklearn.manifold import TSNE

    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(_unit(centred(x)))
