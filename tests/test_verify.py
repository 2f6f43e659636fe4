"""Answer extraction and verification (pipeline.verify): unit cases and real-data agreement."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pipeline.verify as verify_mod
from pipeline.verify import Verdict, extract_answer, judge, normalize_gold, register_task, task_kind, verify

# --------------------------------------------------------------------------- task registry


@pytest.mark.parametrize(
    ("task", "kind"),
    [
        ("arith", "numeric"),
        ("gsm8k", "numeric"),
        ("svamp", "numeric"),
        ("asdiv", "numeric"),
        ("math", "numeric"),
        ("strategyqa", "yesno"),
        ("date_understanding", "choice"),
        ("commonsense_qa", "choice"),
        ("last_letter", "string"),
    ],
)
def test_task_kind_builtin(task: str, kind: str) -> None:
    assert task_kind(task) == kind


def test_unknown_task_names_it() -> None:
    with pytest.raises(ValueError, match=r"unknown task 'nope'.*gsm8k"):
        task_kind("nope")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        verify("The answer is 4.", "4", "nope")
    with pytest.raises(ValueError, match="unknown task 'nope'"):
        normalize_gold("4", "nope")


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_mod, "_TASKS", dict(verify_mod._TASKS))


@pytest.mark.usefixtures("scratch_registry")
def test_register_task() -> None:
    register_task("multiarith", "numeric")
    register_task("multiarith", "numeric")  # idempotent
    assert task_kind("multiarith") == "numeric"
    assert verify("#### 7", "7", "multiarith") == Verdict("7", True)
    with pytest.raises(ValueError, match="already registered as 'numeric'"):
        register_task("multiarith", "yesno")
    with pytest.raises(ValueError, match="unknown answer kind 'text'"):
        register_task("other", "text")
    with pytest.raises(ValueError, match="non-empty"):
        register_task(" ", "string")


# --------------------------------------------------------------------------- gold normalisation


@pytest.mark.parametrize(
    ("gold", "task", "expected"),
    [
        ("18", "gsm8k", "18"),
        ("51.0", "gsm8k", "51"),
        (51.0, "svamp", "51"),
        (18, "gsm8k", "18"),
        (0.1, "svamp", "0.1"),
        (" 2,125 ", "gsm8k", "2125"),
        ("1,234.50", "gsm8k", "1234.5"),
        ("$5", "gsm8k", "5"),
        ("42%", "gsm8k", "42"),
        ("3/4", "gsm8k", "0.75"),
        ("\\frac{1}{3}", "math", "1/3"),
        ("\\boxed{\\dfrac{3}{4}}", "math", "0.75"),
        ("\\frac{\\sqrt{3}}{2}", "math", "\\frac{\\sqrt{3}}{2}"),
        ("$x^2+1$", "math", "x^2+1"),
        ("-3", "arith", "-3"),
        ("−3", "arith", "-3"),
        ("0.50", "asdiv", "0.5"),
        (".5", "asdiv", "0.5"),
        ("#### 42", "gsm8k", "42"),
        ("1e-7", "gsm8k", "0.0000001"),
        ("12 apples", "gsm8k", "12"),
        ("Yes", "strategyqa", "yes"),
        ("no.", "strategyqa", "no"),
        (True, "strategyqa", "yes"),
        ("false", "strategyqa", "no"),
        ("F", "date_understanding", "F"),
        ("(b)", "commonsense_qa", "B"),
        ("C)", "commonsense_qa", "C"),
        ("ky", "last_letter", "ky"),
        ("OEH E", "last_letter", "oehe"),
    ],
)
def test_normalize_gold(gold: object, task: str, expected: str) -> None:
    assert normalize_gold(gold, task) == expected


@pytest.mark.parametrize(
    ("gold", "task", "message"),
    [
        ("abc", "gsm8k", "gold answer 'abc' is not a number (task 'gsm8k')"),
        ("", "gsm8k", "is not a number"),
        ("1/0", "gsm8k", "is not a number"),
        ("2 3", "svamp", "is not a number"),
        ("\\sqrt{2}", "gsm8k", "is not a number"),  # only `math` keeps symbolic golds
        (True, "gsm8k", "is not a number"),
        (None, "gsm8k", "not a number or text"),
        (float("nan"), "gsm8k", "not a finite number"),
        (float("inf"), "svamp", "not a finite number"),
        ("maybe", "strategyqa", "is not yes/no"),
        ("Z", "commonsense_qa", "not an option letter"),
        ("AB", "date_understanding", "not an option letter"),
        (3, "commonsense_qa", "is not text"),
        ("!!", "last_letter", "no letters or digits"),
    ],
)
def test_normalize_gold_errors(gold: object, task: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        normalize_gold(gold, task)
    assert message in str(info.value)


def test_judge_rejects_invalid_gold() -> None:
    with pytest.raises(ValueError, match="gold answer 'abc' is not a number"):
        judge("3", "abc", "gsm8k")
    with pytest.raises(ValueError, match="gold answer 'abc' is not a number"):
        verify("The answer is 3", "abc", "gsm8k")


# --------------------------------------------------------------------------- numeric extraction


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # explicit markers
        ("Some steps 3 + 4 = 7\n#### 42", "42"),
        ("#### 1,234", "1234"),
        ("We get 7 things. The answer is 42.", "42"),
        ("The final answer is: 42", "42"),
        ("So the answer is **42** apples.", "42"),
        ("The answer is:\n\n42", "42"),
        ("The answer is 20 - 2 = 18 apples.", "18"),
        ("Q: how many?\nA: 42", "42"),
        ("She makes 9 * 2 = $<<9*2=18>>18 every day\nA: 18", "18"),
        ("A: -1.8 billion", "-1.8"),
        ("Answer: 12", "12"),
        ("**Final Answer:** 12 cookies", "12"),
        ("Thus $\\boxed{42}$.", "42"),
        ("\\boxed{\\frac{3}{4}}", "0.75"),
        ("\\boxed{-\\frac{3}{4}}", "-0.75"),
        ("\\boxed{18 \\text{ dollars}}", "18"),
        ("\\boxed{\\$1{,}234.50}", "1234.5"),
        ("the answer must be 22", "22"),
        ("hence the answer to this problem is 1 small barrel", "1"),
        # number formats
        ("The total is $1,234.50.", "1234.5"),
        ("She got 42% of the votes.", "42"),
        ("The answer is 42%.", "42"),
        ("It is 3/4 of the cake.", "0.75"),
        ("It is \\frac{3}{4} of the cake.", "0.75"),
        ("It is 1/3 of the cake.", "1/3"),
        ("He has 42 apples.", "42"),
        ("It costs 42 dollars.", "42"),
        ("The rope is 42 cm long.", "42"),
        ("The temperature is -3 degrees.", "-3"),
        ("The temperature is −3 degrees.", "-3"),
        ("x = -3", "-3"),
        ("16-3=13", "13"),
        ("It weighs 0.50 kg", "0.5"),
        ("It costs $.5", "0.5"),
        ("A million is 1,000,000", "1000000"),
        ("It is 51.0", "51"),
        ("We had 5 and then 1/0", "5"),  # a zero denominator is no number
        ("Born 5 years ago, on 04/21/2021", "5"),  # a date is no number
        # fallback: the number the concluding sentence states
        ("First 3, then 5, finally 7 cakes", "7"),
        ("$128 - $38 = $90\n\nTherefore, Olivia has $90 left after spending $38.", "90"),
        ("2 + 8 + 7 = 17\nSo the total is 17.", "17"),
        ("x = 39\n\nTherefore, the smallest is 39.\n\nTo check our answer: 39 + 41 + 43 = 123.", "39"),
        ("Therefore, in 2 hours he earns 30 dollars.", "30"),
        # the concluding statement wins over a later stray number
        ("There are a total of 10 peaches in each basket (7 red + 3 green).", "10"),
        ("The clown now has 60 balloons. This is found by adding 47 and 13 (47+13=60).", "60"),
        ("Faye would have a total of nineteen (19) books after buying 12.", "19"),
        ("Therefore, each group will have 2 eggs.\nNote: The 6 marbles are not relevant.", "2"),
        ("So there are 4 more green peaches. It's also worth mentioning that there are 66 in total.", "4"),
        ("Dan spent $13.\n\nTo see why, add the prices: 7 + 6 = 13.\nHe only had $4 to start with.", "13"),
        ("David did 58 push-ups.\n\nHere's the breakdown:\nDavid = 19 + 39 = 58\nJohn = 58 - 13 = 45", "58"),
        ("Mary needs 7 cups.\n\nTo see why, 9 - 2 = 7.\nSo she needs 7 cups.\n\n7 - 6 = 1\nShe needs 1 more.", "1"),
        ("Melissa played 3 games, scoring 12 points in each game.", "3"),
        ("She played 3 games in this situation, as 7 + 7 + 7 = 21.", "3"),
        ("8 customers left, which is 5 more than the 3 customers who stayed.", "5"),
        ("Kelly will have 42 games left after giving away 64 games.", "42"),
        ("Jenny has 14 days, but since 3 days are left, she has spent 11 days.", "11"),
        ("Emily can make 2 necklaces.\n\nIn general, with 24 beads she could make 3 necklaces.", "2"),
        # a caveat that only speculates about numbers already read (no new number, a hedge)
        ("Each pen now costs $2.\nSo $8 buys 4 pens.\nHowever, it is possible that the price was meant to be $8.", "4"),
        ("Each pen costs $2. So $8 buys 4 pens. But perhaps the $2 price is a typo.", "4"),
        ("So $8 buys 4 pens. However, the answer restated is 4.", "4"),
        ("So $8 buys 4 pens. However, it may be that 8 / 3 = 2 pens were bought.", "2"),  # a new number: kept
        ("He sold 3. However, the total is 9. So 9 - 3 = 6 remain. But maybe 3 more were sold.", "6"),
        ("She bought 9 chairs in all: 3 and 6. However, in this case the total was 9.", "9"),  # no hedge
        # a gapped conjunct parallel to the sentence's lead is a second quantity, not the answer
        ("Sam would have 12 apples left after selling 3 apples, and 2 pears left after selling 5 pears.", "12"),
        ("Sam has 12 red apples, 4 green apples, and 2 pink apples.", "2"),  # a list, no gapping
        ("Sam has 12 apples in total, and 2 of them are red.", "2"),  # not parallel
        # the size of a group the sentence distributes over is not the answer
        ("So each guest had 4 cookies. Therefore, each of the absent 3 guests got none.", "4"),
        ("Therefore, each of the 5 friends ate 1 cracker.", "1"),
        ("That means Tom gave each of his friends 2 crackers.", "2"),  # "friends" is the group
        # scientific notation
        ("The answer is 1e3.", "1000"),
        ("It weighs 1.5e-3 kg", "0.0015"),
        ("#### 2.5E+4", "25000"),
        # priority: markers beat later numbers
        ("#### 42\nI used 7 steps.", "42"),
        ("The answer is 5. Later I mention 7.", "5"),
        ("\\boxed{3} and then 10 more", "3"),
        ("Answer: 12\nThat took 3 tries", "12"),
        # nothing to find
        ("I don't know.", None),
        ("The answer is twelve.", None),
        ("", None),
    ],
)
def test_extract_numeric(text: str, expected: str | None) -> None:
    assert extract_answer(text, "gsm8k") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is $\\boxed{\\frac{\\sqrt{3}}{2}}$.", "\\frac{\\sqrt{3}}{2}"),
        ("so \\boxed{(1, 2)}", "(1, 2)"),
        ("so \\boxed{\\dfrac{1}{2}}", "0.5"),
        ("The answer is $2^{10}$.", "2^{10}"),
        ("so $\\boxed{10,\\!080}$.", "10080"),
        ("so $\\boxed{11,\\! 111,\\! 111,\\! 100}$.", "11111111100"),
        ("The area is $\\boxed{15\\mbox{ cm}^2}$.", "15"),
        ("It is $\\boxed{864 \\text{ inches}^2}$.", "864"),
        (
            "so $\\boxed{\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}}.$",
            "\\begin{pmatrix} -2 \\\\ -14 \\\\ -7 \\end{pmatrix}",
        ),
    ],
)
def test_extract_symbolic(text: str, expected: str) -> None:
    assert extract_answer(text, "math") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is yes.", "yes"),
        ("Answer: No", "no"),
        ("#### yes", "yes"),
        ("The answer is true.", "yes"),
        ("No, Steven Spielberg could not send emails as a child.", "no"),
        ("It was built in 1990. Therefore, yes, it is older.", "yes"),
        ("1. Yes, the word has a meaning in Sanskrit.", "yes"),
        ("There is no evidence that he was a glutton.", None),
        ("No one knows.", None),
        ("Answer yes or no about it", None),
        ("The statement is false.", None),  # not an explicit yes/no: cannot judge
        ("", None),
    ],
)
def test_extract_yesno(text: str, expected: str | None) -> None:
    assert extract_answer(text, "strategyqa") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is (B).", "B"),
        ("So the answer is (b).", "B"),
        ("The correct answer choice is (F) 04/21/2021.", "F"),
        ("The correct option is D.", "D"),
        ("Answer: C", "C"),
        ("#### A", "A"),
        ("A: (E)", "E"),
        ("7. Choice (F) 01/06/2019 is true.", "F"),
        ("(A) is wrong, (B) is wrong, so it must be option C", "C"),
        ("The answer is April 20, 2021.", None),
        ("The answer is a date in May.", None),
        ("no letters here", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_answer(text, "date_understanding") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1. Lucky - y\n2. Mireya - a\n\nPutting them all together, we get: yajc", "yajc"),
        ('Concatenating the last letters gives us "enya"', "enya"),
        ('So, the letters of the words "Davis Jules" is "ssa e".', "ssae"),
        ("Manolo - O\nBobbie - E\n\nConcatenating the last letters, we get: OEH E", "oehe"),
        ("Now, let's concatenate them:\n\nreel", "reel"),
        ('Each word in "Russell Mitchell Bee Faith" is LLEH.', "lleh"),
        ('Therefore, the result is "eyae" from "Joyce Leroy Alyssa Maggie".', "eyae"),
        ("d + a + e + n = daen", "daen"),
        ("Putting them all together, we get: eneo\n\nLet me know if you need further help!", "eneo"),
        ("The answer is ky.", "ky"),
        ("#### ky", "ky"),
        ("Let me know if you need further assistance with anything else", None),
        ("", None),
    ],
)
def test_extract_string(text: str, expected: str | None) -> None:
    assert extract_answer(text, "last_letter") == expected


# --------------------------------------------------------------------------- judging


_VECTOR = "\\begin{pmatrix} 1/5 \\\\ -18/5 \\end{pmatrix}"


@pytest.mark.parametrize(
    ("predicted", "gold", "task", "expected"),
    [
        ("18", "18", "gsm8k", True),
        ("18", "18.0", "gsm8k", True),
        ("17", "18", "gsm8k", False),
        ("0.3333333", "1/3", "gsm8k", True),  # relative 1e-6
        ("0.33", "1/3", "gsm8k", False),
        ("100.00001", "100", "gsm8k", True),
        ("100.001", "100", "gsm8k", False),
        ("0.0000000001", "0", "gsm8k", True),  # absolute 1e-9
        ("0.000001", "0", "gsm8k", False),
        ("1234.5", "1,234.50", "gsm8k", True),
        ("42", "42%", "gsm8k", True),  # a percent sign is a unit: 42% is 42
        ("0.42", "42%", "gsm8k", False),
        ("$1,234.50", "1234.5", "gsm8k", True),  # raw (unnormalised) predictions are read too
        ("3 \\times 4", "12", "gsm8k", True),  # symbolic fallback
        ("\\sqrt{2}", "18", "gsm8k", False),
        ("2\\sqrt{3}", "\\sqrt{12}", "math", True),
        ("x^2+1", "1+x^2", "math", True),
        ("x^2+2", "1+x^2", "math", False),
        ("1e3", "1000", "gsm8k", True),
        ("1000", "1e3", "gsm8k", True),
        ("1.5e-3", "0.0015", "gsm8k", True),
        ("10080", "10,\\!080", "math", True),
        ("32348", "\\$32,\\!348", "math", True),
        (_VECTOR, _VECTOR, "math", True),
        (_VECTOR, _VECTOR.replace("-18", "18"), "math", False),
        (None, "18", "gsm8k", None),
        ("Yes", "yes", "strategyqa", True),
        ("no", "Yes", "strategyqa", False),
        ("maybe", "yes", "strategyqa", None),
        ("(b)", "B", "commonsense_qa", True),
        ("C", "B", "commonsense_qa", False),
        ("Z", "B", "commonsense_qa", None),
        ("K Y", "ky", "last_letter", True),
        ("kz", "ky", "last_letter", False),
        ("--", "ky", "last_letter", None),
        (None, "ky", "last_letter", None),
    ],
)
def test_judge(predicted: str | None, gold: str, task: str, expected: bool | None) -> None:
    assert judge(predicted, gold, task) is expected


def test_verify_returns_verdict() -> None:
    verdict = verify("3 + 2 = 5\nThe answer is 5.", "5", "arith")
    assert verdict == Verdict(predicted_answer="5", is_correct=True)
    assert verdict.predicted_answer == "5" and verdict.is_correct is True
    assert verify("no idea", "5", "arith") == Verdict(None, None)
    assert verify("The answer is 6.", "5", "arith") == Verdict("6", False)
    assert verify("The answer is (C).", "(c)", "commonsense_qa") == Verdict("C", True)


def test_symbolic_path_in_worker_threads() -> None:
    """math-verify's signal-based timeout only works in the main thread: workers must still work."""
    cases = [("so \\boxed{2\\sqrt{3}}", "\\sqrt{12}", True), ("so \\boxed{x^2+2}", "x^2+1", False)] * 4
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda c: verify(c[0], c[1], "math").is_correct, cases))
    assert results == [expected for _, _, expected in cases]
    assert threading.current_thread() is threading.main_thread()


# --------------------------------------------------------------------------- real data


def _gsm8k_solutions(shared_data: Path) -> list[tuple[int, str, bool, str, str]]:
    """(question index, key, OpenAI label, solution, gold) for all 5,276 example solutions."""
    items = []
    path = shared_data / "gsm8k" / "example_model_solutions.jsonl"
    with path.open(encoding="utf-8") as f:
        for index, line in enumerate(f):
            row = json.loads(line)
            gold = row["ground_truth"].rsplit("A:", 1)[1].strip()
            for key in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification"):
                items.append((index, key, row[key]["is_correct"], row[key]["solution"], gold))
    return items


def test_gsm8k_agreement_with_openai_labels(shared_data: Path) -> None:
    """Our verdicts must agree with OpenAI's is_correct labels on >= 99.5% (None = disagreement)."""
    items = _gsm8k_solutions(shared_data)
    assert len(items) == 5276
    disagreements = []
    for index, key, label, solution, gold in items:
        verdict = verify(solution, gold, "gsm8k")
        if verdict.is_correct is not label:
            disagreements.append(
                f"q{index} {key}: label={label} extracted={verdict.predicted_answer!r} gold={gold!r} "
                f"tail={solution[-120:]!r}"
            )
    agreement = 1 - len(disagreements) / len(items)
    print(f"\ngsm8k agreement with OpenAI labels: {agreement:.4%} ({len(disagreements)} disagreements)")
    assert agreement >= 0.995, "disagreements:\n" + "\n".join(disagreements)


def test_gsm8k_reference_rationales_without_marker(shared_data: Path) -> None:
    """The fallback alone: GSM8K test rationales with their '#### N' line removed still verify.

    Measured 99.3%; the misses are rationales whose last sentence restates no answer (a
    percentage computed then rounded, "118 000" written with a space, a unit conversion).
    """
    path = shared_data / "gsm8k" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 1319
    with_marker = without_marker = 0
    for row in rows:
        body, gold = row["answer"].rsplit("####", 1)
        with_marker += verify(row["answer"], gold.strip(), "gsm8k").is_correct is True
        without_marker += verify(body, gold.strip(), "gsm8k").is_correct is True
    n = len(rows)
    print(f"\ngsm8k test rationales: {with_marker / n:.2%} with '####', {without_marker / n:.2%} without")
    assert with_marker == n
    assert without_marker / n >= 0.99


def test_verify_throughput(shared_data: Path) -> None:
    """verify() must be far faster than the pipeline's 5,000 rationales/s target (cheap path)."""
    items = [(solution, gold) for _, _, _, solution, gold in _gsm8k_solutions(shared_data)]
    verify(*items[0], "gsm8k")  # warm the caches' code paths
    start = time.perf_counter()
    for solution, gold in items:
        verify(solution, gold, "gsm8k")
    rate = len(items) / (time.perf_counter() - start)
    print(f"\nverify() throughput on gsm8k example solutions: {rate:,.0f} rationales/s")
    assert rate > 5000  # measured ~25,000-50,000/s on a shared 2-core machine


def _mentor_kd(shared_data: Path, name: str) -> list[dict]:
    return json.loads((shared_data / "mentor_kd" / f"{name}_3_train.json").read_text(encoding="utf-8"))


def _rates(rows: list[dict], task: str, golds: list[str] | None = None) -> dict[str, float]:
    golds = golds or [row["answer"] for row in rows]
    verdicts = [verify(row["chain"], gold, task).is_correct for row, gold in zip(rows, golds, strict=True)]
    n = len(verdicts)
    judged = [v for v in verdicts if v is not None]
    return {
        "true": sum(v is True for v in verdicts) / n,
        "none": (n - len(judged)) / n,
        "agree_judged": sum(judged) / len(judged) if judged else 0.0,
    }


def _shifted_golds(rows: list[dict]) -> list[str]:
    """Each row gets the gold of the question three rows on (rows come in threes per question)."""
    return [rows[(i + 3) % len(rows)]["answer"] for i in range(len(rows))]


@pytest.mark.parametrize(
    ("name", "task", "min_true", "max_none", "max_true_shifted"),
    [
        # measured: true 84.8% (82.5% with the old last-number fallback), none 0%, vs another gold 2.9%
        ("svamp", "svamp", 0.80, 0.001, 0.08),
        # measured: true 82.7% (81.5% with the old last-number fallback), none 0%
        ("asdiv", "asdiv", 0.79, 0.001, 0.08),
        # measured: true 98.0%, none 0.9% (chains that name no option)
        ("date_understanding", "date_understanding", 0.97, 0.02, 0.35),
        # measured: true 99.6%, none 0%
        ("last_letter_concatenation", "last_letter", 0.99, 0.001, 0.01),
    ],
)
def test_mentor_kd_agreement(
    shared_data: Path, name: str, task: str, min_true: float, max_none: float, max_true_shifted: float
) -> None:
    """Teacher chains whose file answer is gold: most verify True; against another gold, few do."""
    rows = _mentor_kd(shared_data, name)
    rates = _rates(rows, task)
    shifted = _rates(rows, task, _shifted_golds(rows))
    print(f"\nmentor-kd {name}: {rates} (vs another question's gold: {shifted['true']:.2%} true)")
    assert rates["true"] >= min_true
    assert rates["none"] <= max_none
    assert shifted["true"] <= max_true_shifted  # extraction discriminates, it does not echo the gold


def test_mentor_kd_svamp_not_true_share(shared_data: Path) -> None:
    """Share of SVAMP teacher chains not verified True although the file's answer is gold.

    Measured 15.2% (17.5% before the fallback preferred the concluding statement over stray later
    numbers, 15.3% before caveats, gapped conjuncts and group sizes): on inspection mostly wrong chains (a different quantity concluded, an unsolvable
    reading, an arithmetic slip); every chain yields a number.
    """
    rows = _mentor_kd(shared_data, "svamp")
    assert len(rows) == 1953
    not_true = sum(verify(row["chain"], row["answer"], "svamp").is_correct is not True for row in rows)
    share = not_true / len(rows)
    print(f"\nmentor-kd svamp: {not_true}/{len(rows)} = {share:.2%} chains not verified True")
    assert 0.10 <= share <= 0.20


def test_mentor_kd_strategyqa(shared_data: Path) -> None:
    """Yes/no chains: most never say yes or no (cannot judge); those that do agree with the gold."""
    rows = _mentor_kd(shared_data, "strategy_qa")
    rates = _rates(rows, "strategyqa")
    shifted = _rates(rows, "strategyqa", [{"Yes": "No", "No": "Yes"}[row["answer"]] for row in rows])
    print(f"\nmentor-kd strategy_qa: {rates}")
    # measured: 17.4% judged, 97.3% of them agree with the gold
    assert 1 - rates["none"] >= 0.15
    assert rates["agree_judged"] >= 0.95
    assert shifted["agree_judged"] <= 0.05


def test_math500_gold_solutions() -> None:
    """MATH500's own gold solutions must verify against their gold answers (>= 99.5%).

    Before the LaTeX fixes 488/500: ``\\\\`` row breaks of ``pmatrix`` answers lost, ``\\!`` thin
    spaces in ``10,\\!080`` read as sentence ends, ``\\mbox{ cm}^2`` units. Against another
    problem's gold few verify, so the symbolic path does not echo the gold.
    """
    from tests.conftest import SHARED_DATA

    path = SHARED_DATA / "math500" / "test.jsonl"
    if not path.exists():
        pytest.skip(f"MATH500 not found at {path} (set MIND_SHARED_DATA)")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 500
    failures = []
    for row in rows:
        verdict = verify(row["solution"], row["answer"], "math")
        if verdict.is_correct is not True:
            failures.append(f"{row['unique_id']}: gold={row['answer']!r} got={verdict.predicted_answer!r}")
    shifted = sum(
        verify(row["solution"], rows[(i + 1) % len(rows)]["answer"], "math").is_correct is True
        for i, row in enumerate(rows)
    )
    print(f"\nMATH500 gold solutions: {500 - len(failures)}/500 verified; vs the next one's gold: {shifted}/500")
    assert len(failures) <= 2, "failures:\n" + "\n".join(failures)  # measured 500/500
    assert shifted <= 25  # measured 3 (answers that repeat across problems)


def test_mentor_kd_svamp_hand_checked_sample(shared_data: Path) -> None:
    """100 SVAMP teacher chains (fixed seed) whose verdicts were checked by hand (tests/data).

    ``expected`` is a person's reading of each chain: does the chain's own final answer equal the
    gold? The last-number fallback of old disagreed on 8 of them (stray numbers after the answer:
    parentheses, notes, an answer stated before its explanation, "after growing 18 more inches");
    the concluding-statement fallback left 3 (see the fixture's notes): a caveat that speculates
    about the premises after the answer ("it is possible that ... $1 per pack"), a gapped second
    conjunct ("139 cakes left ..., and 1 pastry left ..."), a last sentence whose only number sizes
    a group ("each of the absent 9 guests didn't receive any"). Now none remain.
    """
    fixture = Path(__file__).parent / "data" / "svamp_verdicts_sample.json"
    sample = json.loads(fixture.read_text(encoding="utf-8"))
    rows = _mentor_kd(shared_data, "svamp")
    wrong = []
    for item in sample["items"]:
        row = rows[item["row"]]
        assert row["input"].strip().startswith(item["question"])
        verdict = verify(row["chain"], row["answer"], "svamp")
        if verdict.is_correct is not item["expected"]:
            wrong.append(f"row {item['row']}: expected {item['expected']}, got {verdict} {item.get('note', '')}")
    print(f"\nhand-checked SVAMP sample: {len(wrong)}/100 verdicts differ from the hand judgement")
    assert len(sample["items"]) == 100
    assert len(wrong) <= 1, "\n".join(wrong)  # measured 0 (issue target <= 1; 8, then 3 before)
