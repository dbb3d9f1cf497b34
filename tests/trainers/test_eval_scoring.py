"""Scoring primitives of ``meddata eval`` on a tiny random-init Llama: log-likelihoods checked
against values computed here token by token, answer extraction, intervals, the report."""

from __future__ import annotations

import math

import pytest
from meddata.trainers import report, scoring, stats
from meddata.trainers.eval_config import BenchmarkSpec, EvalConfig
from meddata.trainers.evaluate import BenchResult, EvalRun, LoadedBenchmark, score_loglik
from meddata.trainers.tiny import build_tiny_llama
from testutil import DATA, EXAMPLES, read_jsonl

from meddata import exams

EVAL = DATA / "eval"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    texts = [r["question"] + " " + r["answer"] for r in read_jsonl(EXAMPLES / "data" / "medquad_sample.jsonl")]
    texts += [i.question + " " + " ".join(t for _, t in i.options) for i in exams.load_exam(EVAL / "medqa_sample.jsonl")]
    path = build_tiny_llama(tmp_path_factory.mktemp("tiny") / "m", texts, vocab_size=1024, max_positions=512)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    return model, AutoTokenizer.from_pretrained(path)


def _reference_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """Sum of log p(token | all previous tokens) over the continuation's tokens, from one
    unbatched, unpadded forward pass over context + continuation."""
    import torch

    whole = tokenizer(context + continuation)["input_ids"]
    n_ctx = len(tokenizer(context)["input_ids"])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), dim=-1)
    return sum(logprobs[pos - 1, whole[pos]].item() for pos in range(n_ctx, len(whole)))


def _answer_text(style: str, label: str, text: str) -> str:
    return f"{label}. {text}" if style == "instruction" else text


@pytest.mark.parametrize("style", ["completion", "instruction"])
@pytest.mark.parametrize("continuation", ["label", "text"])
def test_loglik_matches_hand_computed_values_on_three_items(tiny, continuation, style):
    model, tokenizer = tiny
    items = exams.load_exam(EVAL / "medqa_sample.jsonl")[:3]
    requests, expected = [], []
    for item in items:
        # the training prompt of mcq_instruction, then "Answer:" when there is no chat template
        prompt = exams.mcq_prompt(item) if style == "completion" else (
            "Answer the following multiple-choice question with the letter and text of the correct option.\n\n"
            + item.question + "\n\n" + "\n".join(f"{lab}. {t}" for lab, t in item.options) + "\n\nAnswer:")
        for label, text in item.options:
            cont = " " + (label if continuation == "label" else _answer_text(style, label, text))
            requests.append((prompt, cont))
            expected.append(_reference_logprob(model, tokenizer, prompt, cont))
    # all 12 requests in one padded batch, and again in uneven batches
    for batch_size in (12, 5):
        got = scoring.loglikelihood(model, tokenizer, requests, batch_size=batch_size)
        for g, e in zip(got, expected, strict=True):
            assert g.logprob == pytest.approx(e, abs=2e-4)
    # the evaluator picks the argmax of exactly these values
    cfg = EvalConfig(models={"m": "x"}, benchmarks=[BenchmarkSpec(name="medqa", path="x")], continuation=continuation,
                     prompt=style)
    bench = LoadedBenchmark(BenchmarkSpec(name="medqa", path="x"), items)
    result, preds = score_loglik(model, tokenizer, bench, cfg, chat=False, model_name="m")
    for k, (item, pred) in enumerate(zip(items, preds, strict=True)):
        lps = expected[4 * k:4 * k + 4]
        best = item.options[max(range(4), key=lambda j: lps[j])][0]
        assert pred["pred"] == best
        assert result.scores["acc"][k] == float(best == item.answer)
        lens = [len((" " + (lab if continuation == "label" else _answer_text(style, lab, t))).encode())
                for lab, t in item.options]
        best_norm = item.options[max(range(4), key=lambda j: lps[j] / lens[j])][0]
        assert pred["pred_norm"] == best_norm


def test_trailing_space_of_context_moves_to_the_continuation(tiny):
    _, tokenizer = tiny
    ctx_a, cont_a = scoring.encode_pair(tokenizer, "Answer: ", "B")
    ctx_b, cont_b = scoring.encode_pair(tokenizer, "Answer:", " B")
    assert (ctx_a, cont_a) == (ctx_b, cont_b)


def test_generation_is_greedy_and_batch_independent(tiny):
    model, tokenizer = tiny
    prompts = [exams.mcq_prompt(i) for i in exams.load_exam(EVAL / "medqa_sample.jsonl")[:3]]
    one = [scoring.generate(model, tokenizer, [p], max_new_tokens=6)[0] for p in prompts]
    assert scoring.generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=3) == one


@pytest.mark.parametrize("text, expected", [
    ("The answer is (C).", "C"),
    ("C) Metformin is first line", "C"),
    ("**C**", "C"),
    ("Answer: c", "C"),
    ("c", "C"),
    ("The correct answer is: **D** because ...", "D"),
    ("I would choose option B.", "B"),
    ("(B) is right", "B"),
    ("A 45-year-old man has X. The answer is B.", "B"),
    ("Answer:\n\nD", "D"),
    ("E.", "E"),
    ("**Answer: (A)**", "A"),
    ("the answer is a lack of insulin", None),
    ("A patient with fever", None),
    ("None of the options fit", None),
    ("", None),
])
def test_letter_extraction(text, expected):
    assert scoring.extract_choice(text, list("ABCDE")) == expected


def test_letter_extraction_by_quoted_option_text():
    options = (("A", "Insulin"), ("B", "Metformin"), ("C", "Sulfonylurea"))
    assert scoring.extract_choice("Start metformin at a low dose.", "ABC", options) == "B"
    assert scoring.extract_choice("insulin or metformin", "ABC", options) is None


@pytest.mark.parametrize("text, expected", [
    ("Yes, the data suggest so.", "yes"), ("no.", "no"), ("The answer is maybe", "maybe"),
    ("Answer: No", "no"), ("It is unclear; maybe yes, maybe no.", None), ("Unclear.", None),
])
def test_decision_extraction(text, expected):
    assert scoring.extract_decision(text) == expected


def test_wilson_interval_known_values():
    lo, hi = stats.wilson(5, 20)  # p = 0.25; textbook Wilson 95 % interval
    assert lo == pytest.approx(0.1119, abs=1e-3) and hi == pytest.approx(0.4687, abs=1e-3)
    assert stats.wilson(0, 10)[0] == 0.0 and 0.25 < stats.wilson(0, 10)[1] < 0.35
    assert stats.wilson(10, 10)[1] == 1.0


def test_paired_bootstrap_difference_brackets_the_mean_difference():
    a = [0.0] * 10 + [1.0] * 10
    b = [1.0] * 15 + [0.0] * 5
    diff, lo, hi = stats.paired_bootstrap_diff(a, b, seed=1)
    assert diff == pytest.approx(mean(b) - mean(a))
    assert lo <= diff <= hi and lo < hi


def mean(xs):
    return sum(xs) / len(xs)


def test_rouge_l_against_references():
    got = scoring.rouge_l(["the patient has diabetes", "unrelated words"], ["patient has diabetes", "heart failure"])
    assert got[0] == pytest.approx(2 * 1.0 * 0.75 / 1.75)  # P=3/4, R=3/3
    assert got[1] == 0.0


def test_report_rows_counts_intervals_and_paired_deltas():
    ids = [f"q{i}" for i in range(10)]
    base = BenchResult("medqa", "base", "loglik", ids, [None] * 10, {"acc": [1.0] * 3 + [0.0] * 7})
    tuned = BenchResult("medqa", "tuned", "loglik", ids, [None] * 10, {"acc": [1.0] * 6 + [0.0] * 4})
    cfg = EvalConfig(models={"base": "a", "tuned": "b"}, benchmarks=[BenchmarkSpec(name="medqa", path="x")])
    rep = report.build(EvalRun(cfg, {"base": "a", "tuned": "b"}, [base, tuned], {"status": "not configured"}, None))
    (row,) = rep["rows"]
    assert row["models"]["base"]["n"] == 10 and row["models"]["base"]["correct"] == 3
    assert row["models"]["tuned"]["value"] == pytest.approx(0.6)
    lo, hi = row["models"]["tuned"]["ci95"]
    assert (lo, hi) == pytest.approx(stats.wilson(6, 10))
    assert row["models"]["tuned"]["delta"] == pytest.approx(0.3)
    md = report.markdown(rep)
    assert "| medqa | loglik | acc | 10 | 30.0 [" in md and "(Δ +30.0 [" in md
    assert not math.isnan(row["models"]["tuned"]["delta_ci95"][0])


def test_k_shot_prompts_from_the_file_or_a_dev_file(tmp_path):
    from meddata.trainers.evaluate import load_benchmark

    own = load_benchmark(BenchmarkSpec(name="medqa", path=str(EVAL / "medqa_sample.jsonl"), shots=2), tmp_path)
    all_items = exams.load_exam(EVAL / "medqa_sample.jsonl")
    assert own.shots == all_items[:2] and own.items == all_items[2:]  # shots are never scored
    prompt = exams.mcq_prompt(own.items[0], own.shots)
    assert prompt.count("\nAnswer: ") == 2 and prompt.endswith("Answer:")
    dev = load_benchmark(BenchmarkSpec(name="mmlu", path=str(EVAL / "mmlu"), shots=3,
                                       shots_path=str(EVAL / "mmlu_dev" / "anatomy_dev.csv")), tmp_path)
    assert len(dev.items) == 12 and len(dev.shots) == 3
    assert {i.subject for i in dev.items} == {"anatomy", "clinical_knowledge"}


def test_rubric_judge_through_the_llm_client(tmp_path):
    from llm_server import LLMServer
    from meddata.trainers import judge
    from meddata.trainers.eval_config import JudgeSpec
    from meddata.trainers.evaluate import FreeTextItem

    items = [FreeTextItem(f"q{i}", [{"role": "user", "content": f"Question {i} about anaemia?"}], "Iron deficiency.")
             for i in range(3)]
    server = LLMServer().start()
    try:
        client = judge.make_client(JudgeSpec(llm={"model": "judge", "base_url": server.url, "cache": False}))
        scores = judge.rubric(client, items, ["Low iron.", "Unknown.", "Iron deficiency anaemia."])
        server.add_fault("500", count=None)  # a judge that keeps failing: counted as missing, not as 0
        failed = judge.rubric(judge.make_client(JudgeSpec(llm={"model": "judge", "base_url": server.url,
                                                               "cache": False, "max_retries": 0})),
                              items[:1], ["x"])
    finally:
        server.stop()
    assert len(scores) == 3 and all(1 <= s <= 10 for s in scores)
    assert math.isnan(failed[0])
    bodies = [e["body"] for e in server.chat_log()]
    # the judge filter's rubric (shared with `meddata build`), graded against the reference answer
    assert bodies[0]["response_format"]["json_schema"]["schema"]["required"] == ["scores", "reasons"]
    assert "Reference answer:\nIron deficiency." in bodies[0]["messages"][-1]["content"]


def test_report_marks_judge_skipped_when_not_configured():
    cfg = EvalConfig(models={"base": "a"}, benchmarks=[BenchmarkSpec(name="medqa", path="x")])
    rep = report.build(EvalRun(cfg, {"base": "a"}, [], {"status": "not configured"}, None))
    assert rep["judge"] == {"status": "not configured"} and "LLM judge: not configured" in report.markdown(rep)


# -- one MCQ prompt for training and evaluation (issue 12, item 6) --------------------------------------


def _train_set(build, tmp_path, name: str, **mcq_params):
    """A training set built like a user would: MedQA items -> mcq_instruction."""
    result = build({"name": name, "inputs": [{"builder": "exam", "path": str(EVAL / "medqa_sample.jsonl")}],
                    "steps": [{"mcq_instruction": mcq_params}]}, out=tmp_path / name)
    rows = read_jsonl(result.out_dir / "jsonl" / "train.jsonl")
    assert rows
    return result.out_dir, rows


def _user_turns(msgs):
    return [m for m in msgs if m["role"] != "assistant"]


def test_eval_asks_in_the_words_the_model_was_trained_on(build, tmp_path):
    from meddata.trainers.eval_config import with_training_prompt
    from meddata.trainers.evaluate import exam_messages

    items = exams.load_exam(EVAL / "medqa_sample.jsonl")
    _, rows = _train_set(build, tmp_path, "default")
    cfg = EvalConfig(models={"m": "x"}, benchmarks=[BenchmarkSpec(name="medqa", path="x")])
    for item, row in zip(items, rows, strict=True):
        assert exam_messages(item, (), cfg) == row["messages"][:-1]
    # a training set built with its own template and system turn: eval reads them back from the
    # build (folder, stats.json or the README.md card), and says so in the resolved settings
    custom = "Pick one option.\n{question}\nOptions:\n{options}"
    folder, rows = _train_set(build, tmp_path, "custom", template=custom, system="You are a physician.")
    for ref in (folder, folder / "stats.json", folder / "README.md"):
        resolved = with_training_prompt(cfg.model_copy(update={"prompt_from": str(ref)}), tmp_path)
        assert resolved.mcq_template == custom and resolved.system_prompt == "You are a physician."
        for item, row in zip(items, rows, strict=True):
            assert _user_turns(exam_messages(item, (), resolved)) == _user_turns(row["messages"])


def test_prompt_from_a_set_without_exam_instructions_is_a_clear_error(build, tmp_path):
    from meddata.trainers.eval_config import EvalConfigError, with_training_prompt

    result = build({"name": "qa", "inputs": [{"builder": "table", "path": str(EXAMPLES / "data" / "medquad_sample.jsonl"),
                                               "columns": {"user": "question", "assistant": "answer"}}]},
                   out=tmp_path / "qa")
    cfg = EvalConfig(models={"m": "x"}, benchmarks=[BenchmarkSpec(name="medqa", path="x")],
                     prompt_from=str(result.out_dir))
    with pytest.raises(EvalConfigError, match="has no exam instructions"):
        with_training_prompt(cfg, tmp_path)


def test_base_without_a_chat_template_is_scored_in_the_tuned_models_format(tiny, tmp_path):
    # Same weights, one copy with a chat template (as TRL leaves a tuned model): scored in the
    # same format, both must give identical log-likelihoods. Before, the base was scored as
    # plain text and the tuned model in its chat template.
    import shutil

    from meddata.trainers.chat_templates import template_source
    from meddata.trainers.evaluate import evaluate
    from transformers import AutoTokenizer

    model, tokenizer = tiny
    base = tmp_path / "base"
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)
    tuned = tmp_path / "tuned"
    shutil.copytree(base, tuned)
    tok = AutoTokenizer.from_pretrained(tuned)
    tok.chat_template = template_source("chatml")
    tok.save_pretrained(tuned)
    assert not AutoTokenizer.from_pretrained(base).chat_template
    cfg = EvalConfig(models={"base": str(base), "tuned": str(tuned)},
                     benchmarks=[BenchmarkSpec(name="medqa", path=str(EVAL / "medqa_sample.jsonl"), limit=3)])
    run = evaluate(cfg, tmp_path, tmp_path / "out")
    assert (run.config.chat, run.config.chat_template_from) == ("always", "tuned")
    rep = report.build(run)
    assert rep["settings"]["chat_template_from"] == "tuned" and rep["settings"]["prompt"] == "instruction"
    preds = {m: read_jsonl(tmp_path / "out" / "predictions" / m / "medqa.loglik.jsonl") for m in ("base", "tuned")}
    assert [p["logprobs"] for p in preds["base"]] == [p["logprobs"] for p in preds["tuned"]]
    never = evaluate(cfg.model_copy(update={"chat": "never"}), tmp_path, tmp_path / "never")
    assert never.config.chat_template_from is None
