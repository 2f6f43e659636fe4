#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment and install the toolkit into it.
#
# Idempotent: a second run with an unchanged pyproject.toml installs nothing.
# PyTorch is installed first and explicitly: the CUDA build only where an NVIDIA GPU is
# visible, otherwise the CPU build (a local wheel if pip's find-links has one, else the
# PyTorch CPU index), so a CPU machine never downloads CUDA packages.
#
# Environment: PYTHON (interpreter for the venv, default python3), MIND_VENV (default .venv),
# MIND_EXTRAS (pip extras, default dev), MIND_TORCH_INDEX_URL (override the CPU torch index).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=${PYTHON:-python3}
VENV=${MIND_VENV:-.venv}
EXTRAS=${MIND_EXTRAS:-dev}
TORCH_VERSION=2.13.0
CPU_INDEX=${MIND_TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}

"$PYTHON" - <<'PY' || { echo "setup: Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating virtual environment $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        echo "setup: NVIDIA GPU found: installing torch==$TORCH_VERSION (CUDA build)"
        "${PIP[@]}" install "torch==$TORCH_VERSION"
    else
        echo "setup: no GPU: installing the CPU build of torch==$TORCH_VERSION"
        # a CPU wheel already reachable through pip's find-links (offline machines) first;
        # then its dependencies from the usual index (torch itself is then satisfied)
        if "${PIP[@]}" install -q --no-index --no-deps "torch==$TORCH_VERSION" >/dev/null 2>&1; then
            "${PIP[@]}" install -q "torch==$TORCH_VERSION"
        else
            "${PIP[@]}" install "torch==$TORCH_VERSION" --index-url "$CPU_INDEX"
        fi
    fi
fi

stamp="$VENV/.mind-install-stamp"
want="$(cat pyproject.toml | sha256sum | cut -d' ' -f1) extras=$EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "setup: installing mind-distill[$EXTRAS] (editable)"
    log="$VENV/.mind-install.log"
    if ! "${PIP[@]}" install -e ".[$EXTRAS]" >"$log" 2>&1; then
        grep -v "is ignored: it is neither" "$log" | tail -n 30 >&2
        echo "setup: pip install failed (full log: $log)" >&2
        exit 1
    fi
    "$PY" -c "import torch, transformers, trl, prefect, data_schemas, pipeline" \
        || { echo "setup: installation failed" >&2; exit 1; }
    echo "$want" > "$stamp"
fi

# The web viewer's browser tests (tests/test_viewer_browser.py) drive Debian's chromium with
# Playwright (dev extra). Install it with apt-get when it is missing and we are root; never with
# `playwright install` (that downloads a browser build). Otherwise the tests skip, saying why.
# MIND_SKIP_BROWSER=1 skips this step.
case ",$EXTRAS," in
    *,dev,*)
        if [ -z "${MIND_SKIP_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1 \
            && ! command -v chromium-browser >/dev/null 2>&1; then
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "setup: installing chromium (apt-get) for the viewer's browser tests"
                log="$VENV/.chromium-install.log"
                if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
                    echo "setup: could not install chromium (log: $log); the browser tests will be skipped" >&2
                fi
            else
                echo "setup: chromium not found (needs root and apt-get to install it): the viewer's browser tests will be skipped" >&2
            fi
        fi
        ;;
esac
