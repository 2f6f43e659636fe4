"""The student: world tokenizer, tiny Llama, loading (+ LoRA), stage-0 pretraining, default student."""

from __future__ import annotations

import json
import random
import string
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from distill.default_student import default_student_dir, ensure_default_student
from distill.formatting import PLAIN_TEMPLATE, encode_example, encode_prompt
from distill.pretrain import STAGE0_FILE, Stage0Settings, evaluate_retention, main, run_stage0
from distill.student import (
    BOS,
    EOS,
    PAD,
    UNK,
    LoraSettings,
    StudentLoadError,
    TokenizerMismatchError,
    build_student,
    build_world_tokenizer,
    check_tokenizer_matches,
    greedy_generate,
    load_student,
    tiny_llama_config,
)
from pipeline.synthetic import PERSPECTIVES, SPLITS, NoiseConfig, ReferenceTeacher, WorldConfig, iter_problems

REPO_ROOT = Path(__file__).resolve().parents[1]
# a few steps only: these tests check the plumbing, not the accuracy
TINY_STAGE0 = dict(max_steps=6, num_questions=48, per_device_train_batch_size=8, warmup_steps=2,
                   eval_questions=6, eval_batch_size=6, logging_steps=2, num_threads=1)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    return build_world_tokenizer(seed=0)


@pytest.fixture(scope="module")
def saved_student(tmp_path_factory, tokenizer):
    path = tmp_path_factory.mktemp("student")
    model = build_student(tokenizer, "tiny", seed=0)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _roundtrip(tok, text: str) -> None:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.unk_token_id not in ids, text
    assert tok.decode(ids) == text, text


# ---------------------------------------------------------------- tokenizer
def test_tokenizer_is_deterministic_across_processes(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path / "a")
    build_world_tokenizer(seed=0).save_pretrained(tmp_path / "b")
    code = (
        "import sys; from distill.student import build_world_tokenizer; "
        "build_world_tokenizer(seed=0).save_pretrained(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c")], check=True, cwd=REPO_ROOT)
    a = (tmp_path / "a" / "tokenizer.json").read_bytes()
    assert a == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert a == (tmp_path / "c" / "tokenizer.json").read_bytes()
    other = build_world_tokenizer(seed=0, vocab_size=600)
    assert len(other) == 600 and other.backend_tokenizer.to_str() != tokenizer.backend_tokenizer.to_str()


def test_tokenizer_special_tokens_and_plain_style(tokenizer):
    assert [tokenizer.convert_tokens_to_ids(t) for t in (PAD, BOS, EOS, UNK)] == [0, 1, 2, 3]
    assert tokenizer.pad_token == PAD and tokenizer.eos_token == EOS and tokenizer.bos_token == BOS
    assert not tokenizer.chat_template
    assert 512 <= len(tokenizer) <= 1024
    ids = encode_prompt(tokenizer, "What is the largest of 3, 9 and 4?", "plain")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    enc = encode_example(tokenizer, "What is 2 + 3?", "2 + 3 = 5\nThe answer is 5.", "plain")
    assert enc.input_ids[-1] == tokenizer.eos_token_id and enc.input_ids[: enc.prompt_len] == encode_prompt(
        tokenizer, "What is 2 + 3?", "plain"
    )


def test_tokenizer_splits_digits(tokenizer):
    for token in tokenizer.get_vocab():
        if any(c.isdigit() for c in token):
            assert len(token) == 1, f"token {token!r} holds a digit and more"
    ids = tokenizer("12345 + 607 = 12952", add_special_tokens=False)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert [t for t in tokens if t.isdigit()] == list("12345607") + list("12952")


def test_tokenizer_roundtrips_every_split_and_perspective(tokenizer):
    world = WorldConfig()
    teacher = ReferenceTeacher(NoiseConfig(slip_rate=0.3, flaw_rate=0.3))
    for split in SPLITS:
        for i, problem in enumerate(iter_problems(world, split, 0, 40)):
            _roundtrip(tokenizer, problem.question)
            _roundtrip(tokenizer, PLAIN_TEMPLATE.format(question=problem.question))
            for perspective in PERSPECTIVES:
                _roundtrip(tokenizer, teacher.write(problem, perspective, seed=i).text)


def test_tokenizer_roundtrips_any_printable_ascii(tokenizer):
    rng = random.Random(0)
    _roundtrip(tokenizer, string.printable)
    _roundtrip(tokenizer, "  leading spaces, trailing  \n\n\tand tabs\t")
    _roundtrip(tokenizer, "Xylophones zigzag quirkily: {jq} [vw] <kx> ~`^|\\")
    for _ in range(200):
        _roundtrip(tokenizer, "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 60))))
    # with special tokens added, skipping them gives the text back
    text = "Which is the smallest number: 5, 8 or 2?"
    assert tokenizer.decode(tokenizer(text)["input_ids"], skip_special_tokens=True) == text


def test_tokenizer_keeps_world_sequences_short(tokenizer):
    problems = list(iter_problems(WorldConfig(), "train", 0, 50))
    lengths = [len(encode_prompt(tokenizer, p.question, "plain")) for p in problems]
    chars = [len(p.question) for p in problems]
    assert sum(lengths) * 3 < sum(chars)  # > 3 characters per token on average


# ---------------------------------------------------------------- model
def test_config_and_model_are_deterministic(tokenizer):
    cfg = tiny_llama_config(tokenizer, "tiny")
    assert cfg.vocab_size == len(tokenizer) and cfg.tie_word_embeddings
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (128, 4, 4)
    assert cfg.eos_token_id == tokenizer.eos_token_id and cfg.pad_token_id == tokenizer.pad_token_id
    assert tiny_llama_config(tokenizer, "small").hidden_size > cfg.hidden_size
    with pytest.raises(ValueError, match="unknown student size"):
        tiny_llama_config(tokenizer, "huge")
    state = torch.get_rng_state()
    a, b, c = (build_student(tokenizer, "tiny", seed=s) for s in (0, 0, 1))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is untouched
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.get_input_embeddings().weight.data_ptr() == a.get_output_embeddings().weight.data_ptr()


def test_greedy_generate_is_batch_invariant(tokenizer):
    model = build_student(tokenizer, "tiny", seed=3)
    questions = ["What is 2 + 3?", "Which is the largest number: 14, 7 or 22?", "Hi"]
    together = greedy_generate(model, tokenizer, questions, max_new_tokens=8, batch_size=3)
    alone = [greedy_generate(model, tokenizer, [q], max_new_tokens=8)[0] for q in questions]
    assert together == alone and all(isinstance(t, str) for t in together)


# ---------------------------------------------------------------- loading
def test_load_student_roundtrip(saved_student, tokenizer):
    model, tok = load_student(saved_student)
    ref = build_student(tokenizer, "tiny", seed=0).state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in model.state_dict().items())
    assert tok.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert model.dtype == torch.float32
    model16, _ = load_student(saved_student, dtype="bfloat16", device="cpu")
    assert model16.dtype == torch.bfloat16


def test_load_student_with_lora(saved_student):
    model, _ = load_student(saved_student, lora=LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and not any("k_proj" in n for n in trainable)
    ids = torch.tensor([[1, 40, 41, 42]])
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    model_all, _ = load_student(saved_student, lora=LoraSettings())
    names = {n for n, p in model_all.named_parameters() if p.requires_grad}
    assert all("lora_" in n for n in names) and any("mlp" in n for n in names)


def test_load_student_missing_or_not_a_model(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(StudentLoadError, match=str(missing)):
        load_student(missing)
    (tmp_path / "empty").mkdir()
    with pytest.raises(StudentLoadError, match="empty.*config.json"):
        load_student(tmp_path / "empty")


def test_tokenizer_mismatch_is_an_error(tokenizer):
    small = build_student(tokenizer, "tiny", seed=0, vocab_size=300)
    with pytest.raises(TokenizerMismatchError, match="300 rows"):
        check_tokenizer_matches(small, tokenizer)


def test_missing_pad_falls_back_to_eos(saved_student):
    from transformers import AutoTokenizer

    model, _ = load_student(saved_student)
    tok = AutoTokenizer.from_pretrained(saved_student)
    tok.pad_token = None
    with pytest.warns(UserWarning, match="PAD"):
        check_tokenizer_matches(model, tok)
    assert tok.pad_token_id == tok.eos_token_id
    tok2 = AutoTokenizer.from_pretrained(saved_student)
    tok2.eos_token = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_tokenizer_matches(model, tok2)  # takes the model config's EOS
    assert tok2.eos_token_id == model.config.eos_token_id


# ---------------------------------------------------------------- stage 0 and the default student
def test_stage0_writes_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "s0"
    report = run_stage0(Stage0Settings(**TINY_STAGE0), out, progress=False)
    saved = json.loads((out / STAGE0_FILE).read_text())
    assert saved["retention"]["n"] == 6
    assert saved["settings"]["max_steps"] == 6 and saved["world"] == WorldConfig().to_dict()
    assert report["retention_accuracy"] == saved["retention_accuracy"]
    model, tok = load_student(out)
    assert len(tok) == model.config.vocab_size
    assert isinstance(greedy_generate(model, tok, ["What is the largest of 3, 9 and 4?"], max_new_tokens=4)[0], str)
    again = evaluate_retention(model, tok, n=6, batch_size=6)  # the saved weights give the recorded accuracy
    assert again["correct"] == saved["retention"]["correct"] and again["accuracy"] == saved["retention_accuracy"]


def test_stage0_command_line(tmp_path):
    out = tmp_path / "cli"
    args = ["--output_dir", str(out), "--max_steps", "2", "--num_questions", "16", "--seed", "1",
            "--per_device_train_batch_size", "4", "--eval_questions", "2", "--learning_rate", "1e-3",
            "--disable_tqdm", "true"]  # fmt: skip
    assert main(args) == 0
    saved = json.loads((out / STAGE0_FILE).read_text())
    assert saved["settings"]["seed"] == 1 and saved["settings"]["learning_rate"] == 1e-3
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()


def test_ensure_default_student_builds_once(tmp_path, monkeypatch):
    settings = Stage0Settings(**TINY_STAGE0)
    path = ensure_default_student(tmp_path, seed=0, progress=False, settings=settings)
    assert path == default_student_dir(tmp_path, seed=0, settings=settings)
    assert (path / "config.json").is_file() and (path / STAGE0_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    weights = next(path.glob("*.safetensors"))
    mtime = weights.stat().st_mtime_ns

    import distill.default_student

    def fail(*args, **kwargs):
        raise AssertionError("the default student was rebuilt")

    monkeypatch.setattr(distill.default_student, "run_stage0", fail)
    assert ensure_default_student(tmp_path, seed=0, progress=False, settings=settings) == path
    assert weights.stat().st_mtime_ns == mtime
    # anything that changes the student changes the folder
    assert default_student_dir(tmp_path, seed=1, settings=settings) != path
    assert default_student_dir(tmp_path, seed=0, settings=Stage0Settings(**{**TINY_STAGE0, "max_steps": 7})) != path
    assert default_student_dir(tmp_path, seed=0, settings=settings, world=WorldConfig(seed=5)) != path
    # ... and what does not, does not
    assert default_student_dir(tmp_path, seed=0, settings=Stage0Settings(**{**TINY_STAGE0, "num_threads": 2})) == path
