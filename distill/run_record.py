"""The trainer's own record of a run (docs/method.md): the inertia statistics, per-view totals (how often
each view was a candidate, kept, its weights and scores, the teacher's flaw labels among them), the compute
account, and the history (per-view averages every ``--history_every`` steps). The trainer hands it each
optimizer step's micro-batch records; it is saved with every checkpoint and written as the run's summary
(``mind_summary.json``)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from distill.config import MindConfig
from distill.inertia import InertiaStats

#: per-view logs of a step: the trainer's TRL metric lists, ``name -> values``
Log = dict[str, list[float]]


class MindState:
    """The trainer's own record (statistics, per-view totals, compute account, history); saved with
    every checkpoint together with the strategy's state."""

    def __init__(self, args: MindConfig, views: list[str], num_candidates: int, num_params: int):
        self.views = views
        self.stats = InertiaStats(len(views), num_candidates, args.inertia_beta)
        self.num_params = num_params
        self.totals: dict[str, Any] = {
            "present": [0] * len(views),  # questions in which the view was a candidate
            "kept": [0] * len(views),  # ... and was kept (in the subset)
            "alpha": [0.0] * len(views),  # sum of its weight when kept
            "score": [0.0] * len(views),  # sum of its score when scored
            "scored": [0] * len(views),
            # the teacher's own noise labels, where the rows carry them (synthetic world): how many of the
            # view's candidates were labelled / flawed, and the same among the kept ones
            "labelled": [0] * len(views),
            "flawed": [0] * len(views),
            "labelled_kept": [0] * len(views),
            "flawed_kept": [0] * len(views),
        }
        self.compute = {"forward_tokens": 0, "backward_tokens": 0, "trained_tokens": 0}
        self.window: dict[str, Any] = {}  # per-view and step sums since the last history entry
        self.history: list[dict[str, Any]] = []

    @property
    def flops(self) -> float:
        """Estimated training FLOPs: 6 x params x backward tokens + 2 x params x forward-only tokens."""
        return 6.0 * self.num_params * self.compute["backward_tokens"] + 2.0 * self.num_params * self.compute["forward_tokens"]

    def state_dict(self) -> dict[str, Any]:
        return {"views": self.views, "stats": self.stats.state_dict(), "totals": self.totals, "compute": self.compute,
                "window": self.window, "history": self.history}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["views"] != self.views:
            raise ValueError(f"checkpoint views {state['views']} differ from the data's {self.views}")
        self.stats.load_state_dict(state["stats"])
        self.totals = {**{k: [0] * len(self.views) for k in self.totals}, **state["totals"]}
        self.compute = state["compute"]
        self.window, self.history = state["window"], state["history"]

    def tally(self, pending: list[dict[str, Any]], log: Log) -> Counter:
        """Per-view counts of the step into the run totals and the logs; returns the step's sums."""
        m = self
        sums: Counter = Counter()
        present, kept = Counter(), Counter()
        alpha, score, scored = defaultdict(float), defaultdict(float), Counter()
        labelled, flawed, labelled_kept, flawed_kept = Counter(), Counter(), Counter(), Counter()
        for p in pending:
            for key in ("questions", "forward_tokens", "backward_tokens", "trained_tokens", "consistency"):
                sums[key] += p[key]
            sums["kept"] += int(p["keep"].sum())
            for i, (v, noise) in enumerate(zip(p["all_views"].tolist(), p["flawed"].tolist(), strict=True)):
                present[v] += 1
                labelled[v] += noise >= 0
                flawed[v] += noise == 1
                if p["keep"][i]:
                    kept[v] += 1
                    alpha[v] += float(p["alpha"][i])
                    labelled_kept[v] += noise >= 0
                    flawed_kept[v] += noise == 1
                if p["scores"] is not None:
                    score[v] += float(p["scores"][i])
                    scored[v] += 1
        step = {"present": present, "kept": kept, "alpha": alpha, "score": score, "scored": scored,
                "labelled": labelled, "flawed": flawed, "labelled_kept": labelled_kept, "flawed_kept": flawed_kept}
        for v, name in enumerate(m.views):
            w = m.window.setdefault(name, {})
            for key, counts in step.items():
                m.totals[key][v] += counts[v]
                w[key] = w.get(key, 0) + counts[v]
            if present[v]:
                log[f"mind/in_subset/{name}"].append(kept[v] / present[v])
            if kept[v]:
                log[f"mind/alpha/{name}"].append(alpha[v] / kept[v])
            if scored[v]:
                log[f"mind/score/{name}"].append(score[v] / scored[v])
        return sums

    def tally_grad_share(self, shares: list[dict[str, float]], log: Log) -> None:
        """The step's measured gradient shares (mean over its micro-batches; a view absent from one has
        share 0 there) into the logs and the history window."""
        if not shares:
            return
        names = [n for n in (*self.views, "consistency") if any(n in s for s in shares)]
        w = self.window.setdefault("_grad_share", {"steps": 0, "sums": {}})
        w["steps"] += 1
        for name in names:
            mean = sum(s.get(name, 0.0) for s in shares) / len(shares)
            log[f"mind/grad_share/{name}"].append(mean)
            w["sums"][name] = w["sums"].get(name, 0.0) + mean

    def window_add(self, metrics: dict[str, float], global_step: int, every: int, max_steps: int) -> None:
        """Averages over ``every`` steps (and at the last, ``max_steps``) into ``history`` (the run's summary,
        the viewer)."""
        w = self.window.setdefault("_steps", {"n": 0})
        w["n"] += 1
        for k, val in metrics.items():
            if "/" not in k:
                w[k] = w.get(k, 0.0) + val
        every = max(int(every), 1)
        if global_step % every and global_step < max_steps:
            return
        m, steps = self, w.pop("n")
        entry: dict[str, Any] = {"step": global_step}
        entry.update({k: round(v / steps, 6) for k, v in w.items()})
        views = {name: m.window.get(name, {}) for name in m.views}
        entry["in_subset"] = {n: round(d["kept"] / d["present"], 6) for n, d in views.items() if d.get("present")}
        entry["alpha"] = {n: round(d["alpha"] / d["kept"], 6) for n, d in views.items() if d.get("kept")}
        entry["score"] = {n: round(d["score"] / d["scored"], 6) for n, d in views.items() if d.get("scored")}
        if flawed := {n: round(d["flawed_kept"] / d["labelled_kept"], 6) for n, d in views.items() if d.get("labelled_kept")}:
            entry["flawed_share_kept"] = flawed
        entry["L_p"] = {n: round(m.stats.view_loss(v), 6) for v, n in enumerate(m.views) if m.stats.view_slow[v].ready}
        if (share := m.window.get("_grad_share")) is not None:
            entry["grad_share"] = {n: round(val / share["steps"], 6) for n, val in share["sums"].items()}
        entry["flops"] = m.flops
        m.history.append(entry)
        m.window = {}

    def summary(self, strategy: str, meta_steps: int | None = None) -> dict[str, Any]:
        """Per-view totals, the compute account and the history (written as mind_summary.json)."""
        m, t = self, self.totals
        views = {}
        for v, name in enumerate(m.views):
            views[name] = {
                "present": t["present"][v], "kept": t["kept"][v],
                "in_subset": t["kept"][v] / t["present"][v] if t["present"][v] else 0.0,
                "mean_alpha": t["alpha"][v] / t["kept"][v] if t["kept"][v] else 0.0,
                "mean_score": t["score"][v] / t["scored"][v] if t["scored"][v] else None,
                "L_p": m.stats.view_loss(v) if m.stats.view_slow[v].ready else None,
                # share of flawed rationales among the view's candidates, and among those kept (None: unlabelled)
                "flawed_share": t["flawed"][v] / t["labelled"][v] if t["labelled"][v] else None,
                "flawed_share_kept": t["flawed_kept"][v] / t["labelled_kept"][v] if t["labelled_kept"][v] else None,
            }  # fmt: skip
        kept = sum(t["kept"])
        for name in views:
            views[name]["kept_share"] = views[name]["kept"] / kept if kept else 0.0
        compute = {"params": m.num_params, **m.compute, "flops": m.flops}
        out = {"strategy": strategy, "views": views, "compute": compute, "history": m.history}
        if meta_steps is not None:
            out["meta_steps"] = meta_steps
        return out
