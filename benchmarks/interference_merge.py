"""One interference report from several invocations (``python -m benchmarks.interference --merge FILE``).

Worlds are independent: each has its own data, tuning, runs and paired comparisons. An invocation that
ran some worlds (``--worlds``, perhaps on another machine, or after the run folders of the others were
lost) reports those; ``--merge`` keeps, for every other world, what an earlier results file says about
it: its runs and calibration records, its tuning, and its phase, equal-FLOP, frontier and calibration
summaries (computed when that world's runs were reported, paired intervals included). A world present
in both is taken from the new report only, never mixed.
"""

from __future__ import annotations

from typing import Any

PER_WORLD = ("phase", "headline", "equal_flops", "frontier", "calibration_summary", "calibration_gap")
RECORDS = ("runs", "calibration")


def reported_worlds(results: dict[str, Any]) -> set[str]:
    """The worlds a results file reports anything about (runs, calibration or tuning)."""
    worlds = {r["world"] for key in RECORDS for r in results.get(key) or []}
    chosen = (results.get("tuning") or {}).get("chosen") or {}
    return worlds | {w for w, per in chosen.items() if any(per.values())}


def merge_results(prior: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus, for each world ``prior`` reports and ``new`` does not, ``prior``'s account of it."""
    if prior.get("config_file") != new.get("config_file") or prior.get("noisy_views") != new.get("noisy_views"):
        raise ValueError(
            f"--merge: the earlier results are of another study (config {prior.get('config_file')!r}, noisy views "
            f"{prior.get('noisy_views')}; this one: {new.get('config_file')!r}, {new.get('noisy_views')})"
        )
    mine = reported_worlds(new)
    kept = sorted(reported_worlds(prior) - mine)
    out = dict(new)
    for key in RECORDS:
        out[key] = [r for r in prior.get(key) or [] if r["world"] in kept] + list(new.get(key) or [])
    order = {w: i for i, w in enumerate(new.get("worlds") or {})}  # the family's order (by flaw rate)
    for key in PER_WORLD:
        both = {**{w: v for w, v in (prior.get(key) or {}).items() if w in kept},
                **{w: v for w, v in (new.get(key) or {}).items() if w not in kept}}  # e.g. a gap of None: not run
        out[key] = dict(sorted(both.items(), key=lambda item: order.get(item[0], len(order))))
    tuning_prior, tuning_new = prior.get("tuning") or {}, new.get("tuning") or {}
    chosen = {w: v for w, v in (tuning_prior.get("chosen") or {}).items() if w in kept}
    chosen |= {w: v for w, v in (tuning_new.get("chosen") or {}).items() if w in mine or w not in chosen}
    out["tuning"] = {"chosen": chosen,
                     "runs": [r for r in tuning_prior.get("runs") or [] if r.get("world") in kept]
                     + list(tuning_new.get("runs") or [])}  # fmt: skip
    out["wall_seconds"] = (prior.get("wall_seconds") or 0.0) + (new.get("wall_seconds") or 0.0)
    out["merged"] = [*prior.get("merged", []), {"worlds_kept": kept, "from_machine": prior.get("machine")}]
    return out
