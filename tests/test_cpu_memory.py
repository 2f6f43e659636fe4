"""distill.cpu_memory: freed memory stays in the process (fewer page faults), the flag, and its benchmark."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import cpu_memory as bench
from distill.config import MindScriptArguments

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
MALLINFO2 = GLIBC and tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2]) >= (2, 33)

# allocate a 64 MiB tensor (above glibc's largest mmap threshold), free it; glibc's own account
# (mallinfo2, glibc >= 2.33) of mmapped bytes while it lives and of the heap's growth once it is freed
_HEAP_ACCOUNT = """
import ctypes, json, sys, torch
from distill.cpu_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "keep" else False
before = mallinfo2()
x = torch.ones(16 * 2**20)
mmapped_live = mallinfo2().hblkhd - before.hblkhd
del x
print(json.dumps({"applied": applied, "mmapped_live": mmapped_live, "heap_growth": mallinfo2().arena - before.arena}))
"""
MIB = 2**20


def _heap_account(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _HEAP_ACCOUNT, mode], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not MALLINFO2, reason="glibc >= 2.33's malloc only (mallinfo2)")
def test_keep_freed_memory_keeps_large_blocks_on_the_heap() -> None:
    kept, returned = _heap_account("keep"), _heap_account("default")
    assert kept["applied"] is True and returned["applied"] is False
    # by default the 64 MiB block is mmapped (and unmapped when freed: fresh pages next time) ...
    assert returned["mmapped_live"] >= 64 * MIB and returned["heap_growth"] < 64 * MIB, returned
    # ... kept: it comes from the heap, which is not trimmed when it is freed, so the next step reuses it
    assert kept["mmapped_live"] == 0 and kept["heap_growth"] >= 64 * MIB, kept


def test_flag_defaults_on_and_parses_off() -> None:
    from trl import TrlParser

    assert MindScriptArguments().keep_freed_memory is True
    (script,) = TrlParser((MindScriptArguments,)).parse_args_and_config(["--no_keep_freed_memory"])
    assert script.keep_freed_memory is False


def test_headline_ratios() -> None:
    def measures(wall: float, faults: int, rss: float) -> dict:
        return {"wall_s": wall, "train_s": wall - 5, "user_s": wall - 10, "sys_s": 10, "minor_faults": faults,
                "peak_rss_mb": rss}  # fmt: skip

    rounds = [{"first": "kept", "identical_weights": True,
               "modes": {"kept": measures(100, 1000, 1500), "returned": measures(120, 9000, 1000)}}]  # fmt: skip
    head = bench.headline_of({"rounds": {"mind": rounds}})["mind"]
    assert head["wall_returned_over_kept"] == pytest.approx(1.2)
    assert head["faults_returned_over_kept"] == pytest.approx(9.0)
    assert head["peak_rss_kept_over_returned"] == pytest.approx(1.5)
    assert head["identical_weights"] is True


@pytest.mark.slow  # two distill.train processes side by side (about 40 s)
@pytest.mark.skipif(not GLIBC, reason="glibc's malloc only")
def test_benchmark_pair_runs_and_matches(tmp_path: Path) -> None:
    size = {"questions": 16, "steps": 2, "strategies": ("all",), "repeats": 1}
    results = bench.run_benchmark(size, tmp_path, lambda what: None)
    (pair,) = results["rounds"]["all"]
    assert pair["identical_weights"] is True  # the allocator changes no weight
    for mode in bench.MODES:
        m = pair["modes"][mode]
        assert m["wall_s"] > 0 and m["user_s"] > 0 and m["minor_faults"] > 0 and m["peak_rss_mb"] > 0
    assert bench.MODES["returned"] == ["--no_keep_freed_memory"]
