#!/usr/bin/env bash
# The real-teacher track of the quality benchmark (docs/real-teacher.md): every strategy x seeds
# at equal compute, a real teacher, a real student, GSM8K (in-distribution) and SVAMP / ASDiv
# (out-of-distribution). Stages (all by default; re-running skips what is finished):
#   synth    TEACHER=PATH: the `synthesize` flow writes GSM8K train rationales under the `math`
#            perspectives (SYNTH_CONFIG, default configs/synthesize/gsm8k-vllm.yaml) into
#            $OUT/rationales; HUMAN_VIEW=1 adds GSM8K's human rationales as one more view.
#            TEACHER=ingest: no teacher; ingest the real rationales of the GSM8K *test* questions
#            (human, socratic, four model solutions) instead (the gsm8k eval set is then left out).
#            TEACHER=none: train on DATA as it is.
#   train    distill.train for every STRATEGIES x SEEDS with TRAIN_CONFIG (configs/train/gsm8k-real.yaml)
#   eval     distill.evaluate of every trained student on EVALS (gsm8k svamp asdiv): RUN/eval/SET.json
#            (its last-line JSON) and SET.parquet; a LoRA student (adapter only) is merged into RUN/merged first
#   collect  one table: $OUT/results.md, $OUT/results.jsonl (with each run's compute account);
#            last stdout line: JSON means
#
# Environment (defaults in brackets):
#   TEACHER       local model folder of the teacher, or `ingest`, or `none`            [required]
#   STUDENT       local model folder of the student (e.g. /models/Qwen2.5-0.5B-Instruct) [required for train]
#   OUT           output folder                                                         [runs/real]
#   SEEDS         seeds                                                                 [0 1 2]
#   STEPS         optimizer steps per run (equal for every strategy)                    [the config's]
#   STRATEGIES    [golden all mcc_kd random lowest_loss instant mind]
#   STAGES        [synth train eval collect]
#   SYNTH_CONFIG, TRAIN_CONFIG   the two configs above
#   TEACHER_BACKEND  replace the config's backend (vllm, openai, transformers)          [the config's]
#   TEACHER_URL   base_url of an OpenAI-compatible server (vllm serve)                  []
#   TEACHER_NAME  the `teacher` column                                                  [basename of TEACHER]
#   SYNTH_OVERRIDES  JSON object of SynthesisConfig fields, e.g. '{"num_questions": 500}' []
#   SYNTH_DRY_RUN 1: write and check $OUT/synthesize.yaml, do not run the teacher        [0]
#   HUMAN_VIEW    1: also ingest gsm8k/train.jsonl's human rationales as a view         [0]
#   DATA          training data folder                                                  [$OUT/rationales]
#   GOLDEN_VIEW   the view `golden` trains on, e.g. human@human with HUMAN_VIEW=1        [a fixed random one]
#   TRAIN_ARGS    extra distill.train flags, e.g. "--lora_r 16 --learning_rate 1e-4" or MIND's
#                 "--fusion_beta 0.3 --meta_warmup_steps 50" (every run of the grid)      []
#   EVALS         evaluation sets: gsm8k svamp asdiv svamp150                           [gsm8k svamp asdiv]
#   EVAL_QUESTIONS  first N questions of each set                                       [all]
#   EVAL_MAX_NEW_TOKENS [512]  EVAL_BATCH [64]  EVAL_DTYPE (auto = float32, or bfloat16) [auto]
#   EVAL_ARGS     extra distill.evaluate flags                                          []
#   MIND_SHARED_DATA  the real data folder (GSM8K, SVAMP, mentor-kd files)              [required]
#   MIND_VENV     the virtual environment                                               [.venv]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${MIND_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python
SHARED=${MIND_SHARED_DATA:-}
OUT=${OUT:-runs/real}
TEACHER=${TEACHER:-}
STUDENT=${STUDENT:-}
SEEDS=${SEEDS:-0 1 2}
STEPS=${STEPS:-}
STRATEGIES=${STRATEGIES:-golden all mcc_kd random lowest_loss instant mind}
STAGES=${STAGES:-synth train eval collect}
SYNTH_CONFIG=${SYNTH_CONFIG:-configs/synthesize/gsm8k-vllm.yaml}
TRAIN_CONFIG=${TRAIN_CONFIG:-configs/train/gsm8k-real.yaml}
DATA=${DATA:-$OUT/rationales}
HUMAN_VIEW=${HUMAN_VIEW:-0}
if [ "$TEACHER" = ingest ]; then  # trained on the GSM8K test questions: no gsm8k test evaluation
    EVALS=${EVALS:-svamp asdiv}
else
    EVALS=${EVALS:-gsm8k svamp asdiv}
fi
EVAL_MAX_NEW_TOKENS=${EVAL_MAX_NEW_TOKENS:-512}
EVAL_BATCH=${EVAL_BATCH:-64}
EVAL_DTYPE=${EVAL_DTYPE:-auto}
read -r -a train_args <<< "${TRAIN_ARGS:-}"
export TOKENIZERS_PARALLELISM=${TOKENIZERS_PARALLELISM:-false}

say() { echo "== real-teacher track: $*" >&2; }
die() { echo "real_teacher_track: error: $*" >&2; exit 2; }
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
last_line() { grep -v '^[[:space:]]*$' "$1" | tail -n 1; }

eval_source() {  # evaluation set name -> distill.evaluate --source
    case "$1" in
        gsm8k) echo "gsm8k:$SHARED/gsm8k/test.jsonl" ;;                  # 1,319 questions (ID)
        svamp) echo "svamp:$SHARED/svamp/SVAMP.json" ;;                   # 1,000 questions (OOD)
        asdiv) echo "mentor-kd:$SHARED/mentor_kd/asdiv_test.json" ;;      # 314 questions (OOD)
        svamp150) echo "mentor-kd:$SHARED/mentor_kd/svamp_test.json" ;;   # mentor-kd's 150-question SVAMP test
        *) die "unknown evaluation set '$1' (gsm8k, svamp, asdiv, svamp150)" ;;
    esac
}

[ -n "$SHARED" ] || die "set MIND_SHARED_DATA to the real data folder (GSM8K, SVAMP, mentor-kd files)"
[ -f "$SHARED/README.md" ] || die "real data not found at $SHARED (set MIND_SHARED_DATA)"
for ev in $EVALS; do eval_source "$ev" > /dev/null; done  # an unknown set fails before any work
mkdir -p "$OUT/logs"

# ------------------------------------------------------------------ 1. rationales
if has_stage synth; then
    case "$TEACHER" in
        "") die "set TEACHER to a local model folder (or 'ingest', or 'none' with DATA=...)" ;;
        none) say "no synthesis: training on $DATA" ;;
        ingest)
            say "ingesting the real rationales of the GSM8K test questions into $DATA"
            "$PY" -m pipeline.ingest gsm8k "$SHARED/gsm8k/test.jsonl" --out "$DATA/gsm8k-test-human" --quiet
            "$PY" -m pipeline.ingest gsm8k-socratic "$SHARED/gsm8k/test_socratic.jsonl" \
                --out "$DATA/gsm8k-test-socratic" --quiet
            "$PY" -m pipeline.ingest gsm8k-model-solutions "$SHARED/gsm8k/example_model_solutions.jsonl" \
                --out "$DATA/gsm8k-test-models" --quiet
            ;;
        *)
            cfg="$OUT/synthesize.yaml"
            SYNTH_CONFIG="$SYNTH_CONFIG" TEACHER="$TEACHER" SHARED="$SHARED" "$PY" - "$cfg" <<'PY'
import json, os, sys
from pathlib import Path
import yaml
cfg = yaml.safe_load(Path(os.environ["SYNTH_CONFIG"]).read_text())
first = cfg["teachers"][0]
backend = os.environ.get("TEACHER_BACKEND") or first["backend"]
options = dict(first.get("options") or {}) if backend == first["backend"] else {}
options["model"] = os.environ["TEACHER"]
if os.environ.get("TEACHER_URL"):
    options["base_url"] = os.environ["TEACHER_URL"]
name = os.environ.get("TEACHER_NAME") or Path(os.environ["TEACHER"].rstrip("/")).name
cfg["teachers"] = [{"backend": backend, "name": name, "options": options}]
if cfg.get("source", {}).get("kind") == "gsm8k":
    cfg["source"]["path"] = str(Path(os.environ["SHARED"]) / "gsm8k" / "train.jsonl")
cfg.update(json.loads(os.environ.get("SYNTH_OVERRIDES") or "{}"))
Path(sys.argv[1]).write_text(yaml.safe_dump(cfg, sort_keys=False))
from data_schemas import ContractError
from pipeline.synthesis import load_config
try:  # every field checked before a GPU is touched
    checked = load_config(sys.argv[1])
except ContractError as exc:
    sys.exit(f"real_teacher_track: error: {exc}")
print(f"== real-teacher track: {sys.argv[1]}: run {checked.run_id()}, teacher {checked.teachers[0].teacher_name} "
      f"({checked.teachers[0].backend}), perspectives {', '.join(p.name for p in checked.resolved_perspectives())}",
      file=sys.stderr)
PY
            if [ "${SYNTH_DRY_RUN:-0}" = 1 ]; then
                say "SYNTH_DRY_RUN=1: not running $PY -m flows.synthesize --config $cfg --out $DATA"
            else
                say "synthesizing with $TEACHER ($cfg) into $DATA"
                "$PY" -m flows.synthesize --config "$cfg" --out "$DATA"
            fi
            ;;
    esac
    if [ "$HUMAN_VIEW" = 1 ]; then
        say "adding GSM8K's human train rationales as a view"
        "$PY" -m pipeline.ingest gsm8k "$SHARED/gsm8k/train.jsonl" --out "$DATA/gsm8k-train-human" --quiet
    fi
    if [ -d "$DATA" ]; then "$PY" -m pipeline.browse "$DATA" stats >&2; fi
fi

# ------------------------------------------------------------------ 2. train every strategy x seed
runs=()
for strategy in $STRATEGIES; do
    for seed in $SEEDS; do runs+=("$strategy-seed$seed"); done
done

if has_stage train; then
    [ -n "$STUDENT" ] || die "set STUDENT to a local model folder (e.g. /models/Qwen2.5-0.5B-Instruct)"
    steps=()
    [ -n "$STEPS" ] && steps=(--max_steps "$STEPS")
    for name in "${runs[@]}"; do
        run="$OUT/train/$name"
        if [ -f "$run/train.json" ]; then say "$name: trained already"; continue; fi
        strategy=${name%-seed*}
        seed=${name##*-seed}
        golden=()
        [ "$strategy" = golden ] && [ -n "${GOLDEN_VIEW:-}" ] && golden=(--golden_view "$GOLDEN_VIEW")
        say "training $name"
        if ! "$PY" -m distill.train --config "$TRAIN_CONFIG" --data "$DATA" --student "$STUDENT" \
            --strategy "$strategy" --seed "$seed" --output_dir "$run" \
            ${steps[@]+"${steps[@]}"} ${golden[@]+"${golden[@]}"} ${train_args[@]+"${train_args[@]}"} \
            > "$OUT/logs/$name.train.out" 2> "$OUT/logs/$name.train.log"; then
            tail -n 20 "$OUT/logs/$name.train.log" >&2
            die "training $name failed (log: $OUT/logs/$name.train.log)"
        fi
        last_line "$OUT/logs/$name.train.out" > "$run/train.json"
    done
fi

# ------------------------------------------------------------------ 3. evaluate
# One process per student runs `python -m distill.evaluate` (its main, same flags) on each set,
# logging each command line; a LoRA student (adapter only) is merged into RUN/merged first.
if has_stage eval; then
    for name in "${runs[@]}"; do
        run="$OUT/train/$name"
        [ -f "$run/train.json" ] || die "$run is not trained (run the train stage)"
        todo=()
        for ev in $EVALS; do
            [ -f "$run/eval/$ev.json" ] || todo+=("$ev=$(eval_source "$ev")")
        done
        [ ${#todo[@]} -gt 0 ] || continue
        say "evaluating $name on $(for t in "${todo[@]}"; do printf '%s ' "${t%%=*}"; done)"
        if ! EVAL_QUESTIONS="${EVAL_QUESTIONS:-}" EVAL_MAX_NEW_TOKENS="$EVAL_MAX_NEW_TOKENS" EVAL_BATCH="$EVAL_BATCH" \
            EVAL_DTYPE="$EVAL_DTYPE" EVAL_ARGS="${EVAL_ARGS:-}" "$PY" - "$run" "${todo[@]}" \
            > "$OUT/logs/$name.eval.out" 2> "$OUT/logs/$name.eval.log" <<'PY'
import contextlib, io, os, shlex, sys
from pathlib import Path

run = Path(sys.argv[1])
model = run
if (run / "adapter_config.json").is_file() and not (run / "config.json").is_file():
    model = run / "merged"  # distill.evaluate needs a full model folder
    if not (model / "config.json").is_file():
        import torch
        from peft import AutoPeftModelForCausalLM
        from transformers import AutoTokenizer

        print(f"merging the LoRA adapter of {run} into {model}", file=sys.stderr)
        AutoPeftModelForCausalLM.from_pretrained(run, dtype=torch.float32).merge_and_unload().save_pretrained(model)
        AutoTokenizer.from_pretrained(run).save_pretrained(model)
from distill.evaluate import main

common = ["--max_new_tokens", os.environ["EVAL_MAX_NEW_TOKENS"], "--batch_size", os.environ["EVAL_BATCH"],
          "--dtype", os.environ["EVAL_DTYPE"], "--quiet", *shlex.split(os.environ["EVAL_ARGS"])]
if os.environ["EVAL_QUESTIONS"]:
    common += ["--num-questions", os.environ["EVAL_QUESTIONS"]]
(run / "eval").mkdir(exist_ok=True)
for item in sys.argv[2:]:
    split, source = item.split("=", 1)
    argv = ["--model", str(model), "--split", split, "--source", source,
            "--out", str(run / "eval" / f"{split}.parquet"), *common]
    print("python -m distill.evaluate " + shlex.join(argv), file=sys.stderr, flush=True)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(argv)
    if code:
        sys.exit(code)
    line = [text for text in buf.getvalue().splitlines() if text.strip()][-1]
    (run / "eval" / f"{split}.json").write_text(line + "\n")
    print(line, flush=True)
PY
        then
            tail -n 20 "$OUT/logs/$name.eval.log" >&2
            die "evaluating $name failed (log: $OUT/logs/$name.eval.log)"
        fi
    done
fi

# ------------------------------------------------------------------ 4. one table
if has_stage collect; then
    "$PY" - "$OUT" <<'PY'
import json, statistics, sys
from pathlib import Path

out = Path(sys.argv[1])
rows = []
for train in sorted(out.glob("train/*/train.json")):
    run = train.parent
    t = json.loads(train.read_text())
    row = {"run": run.name, "strategy": t["strategy"], "seed": t["seed"], "steps": t["steps"],
           "train_seconds": t["train_seconds"], "validation": t["accuracy"].get("validation"),
           "compute": t.get("compute"), "in_subset": t.get("in_subset")}  # the trainer's account, per view share
    for ev in sorted((run / "eval").glob("*.json")):
        e = json.loads(ev.read_text())
        row[e["split"]] = e["accuracy"]
        row[f"n_{e['split']}"] = e["n"]
    rows.append(row)
if not rows:
    sys.exit(f"no trained runs under {out}/train")
known = ["gsm8k", "svamp", "asdiv", "svamp150"]
splits = sorted({k[2:] for r in rows for k in r if k.startswith("n_")},
                key=lambda s: (known.index(s) if s in known else 9, s))
cols = [*splits, "validation"]
(out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
order = ["golden", "all", "mcc_kd", "random", "lowest_loss", "instant", "mind"]
strategies = sorted({r["strategy"] for r in rows}, key=lambda s: (order.index(s) if s in order else 9, s))

def pflops(mine):
    values = [r["compute"]["flops"] / 1e15 for r in mine if (r.get("compute") or {}).get("flops") is not None]
    return f"{statistics.fmean(values):.3g}" if values else "–"

def cell(values):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean = 100 * statistics.fmean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.1f} ± {sd:.1f}"

summary = {}
lines = [f"# Real-teacher track: accuracy (%, mean ± std over seeds)", "",
         "| strategy | seeds | " + " | ".join(f"{s} (n={max(r.get('n_' + s, 0) for r in rows)})" for s in splits)
         + " | validation | train s | PFLOPs |", "|---" * (len(cols) + 4) + "|"]
for s in strategies:
    mine = [r for r in rows if r["strategy"] == s]
    summary[s] = {}
    for c in cols:
        values = [r.get(c) for r in mine if r.get(c) is not None]
        summary[s][c] = statistics.fmean(values) if values else None
    lines.append(f"| {s} | {len(mine)} | " + " | ".join(cell([r.get(c) for r in mine]) for c in cols)
                 + f" | {statistics.fmean(r['train_seconds'] for r in mine):.0f} | {pflops(mine)} |")
lines += ["", "## Every run", "", "| run | steps | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
for r in rows:
    lines.append(f"| {r['run']} | {r['steps']} | " + " | ".join(
        "–" if r.get(c) is None else f"{100 * r[c]:.1f}" for c in cols) + " |")
(out / "results.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines), file=sys.stderr)
print(json.dumps({"runs": len(rows), "mean_accuracy": summary}))
PY
fi
