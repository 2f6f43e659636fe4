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

PHASE_KEYS = ("phase", "headline", "equal_flops", "frontier")
CALIBRATION_KEYS = ("calibration_summary", "calibration_gap")


def _worlds(records: list[dict[str, Any]] | None) -> set[str]:
    return {r["world"] for r in records or []}


def _world_of(tuning_run: dict[str, Any]) -> str | None:
    return tuning_run.get("world", tuning_run.get("regime"))  # tuning records name their world as the regime


def _records(prior: dict[str, Any], new: dict[str, Any], key: str, kept: list[str]) -> list[dict[str, Any]]:
    return [r for r in prior.get(key) or [] if r["world"] in kept] + list(new.get(key) or [])


def _per_world(prior: dict[str, Any], new: dict[str, Any], key: str, kept: list[str], order: dict[str, int]) -> dict[str, Any]:
    both = {**{w: v for w, v in (prior.get(key) or {}).items() if w in kept},
            **{w: v for w, v in (new.get(key) or {}).items() if w not in kept}}  # e.g. a gap of None: not run
    return dict(sorted(both.items(), key=lambda item: order.get(item[0], len(order))))


def merge_results(prior: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` plus, for each world ``prior`` reports and ``new`` does not, ``prior``'s account of it. The
    calibration is its own account: an invocation that calibrates a world (every invocation calibrates the
    family's calibration worlds) but runs nothing else there keeps the earlier file's phase diagram of it."""
    if prior.get("config_file") != new.get("config_file") or prior.get("noisy_views") != new.get("noisy_views"):
        raise ValueError(
            f"--merge: the earlier results are of another study (config {prior.get('config_file')!r}, noisy views "
            f"{prior.get('noisy_views')}; this one: {new.get('config_file')!r}, {new.get('noisy_views')})"
        )
    tuning_prior, tuning_new = prior.get("tuning") or {}, new.get("tuning") or {}
    mine = _worlds(new.get("runs"))  # the worlds whose phase diagram (or other runs) this invocation reports
    kept = sorted(_worlds(prior.get("runs")) - mine)
    prior_cal = _worlds(prior.get("calibration")) | {w for w, gap in (prior.get("calibration_gap") or {}).items() if gap is not None}
    kept_cal = sorted(prior_cal - _worlds(new.get("calibration")))
    out = dict(new)
    out["runs"] = _records(prior, new, "runs", kept)
    out["frontier_runs"] = _records(prior, new, "frontier_runs", kept)
    out["calibration"] = _records(prior, new, "calibration", kept_cal)
    order = {w: i for i, w in enumerate(new.get("worlds") or {})}  # the family's order (by flaw rate)
    for key in PHASE_KEYS:
        out[key] = _per_world(prior, new, key, kept, order)
    for key in CALIBRATION_KEYS:
        out[key] = _per_world(prior, new, key, kept_cal, order)
    chosen_prior, chosen_new = tuning_prior.get("chosen") or {}, tuning_new.get("chosen") or {}
    chosen = {w: dict(per) for w, per in chosen_prior.items() if w not in mine}  # calibration tuning adds to it
    for w, per in chosen_new.items():
        chosen[w] = dict(per) if w in mine or w not in chosen else {**chosen[w], **per}
    new_keys = {r.get("key") for r in tuning_new.get("runs") or []} - {None}
    out["tuning"] = {"chosen": chosen,
                     "runs": [r for r in tuning_prior.get("runs") or []
                              if _world_of(r) not in mine and (r.get("key") is None or r.get("key") not in new_keys)]
                     + list(tuning_new.get("runs") or [])}  # fmt: skip
    out["wall_seconds"] = (prior.get("wall_seconds") or 0.0) + (new.get("wall_seconds") or 0.0)
    out["merged"] = [*prior.get("merged", []), {"worlds_kept": sorted(set(kept) | set(kept_cal)), "from_machine": prior.get("machine")}]
    return out
