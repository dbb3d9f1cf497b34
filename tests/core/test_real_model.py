"""The real local model (SmolLM2-135M-Instruct, fetched by ``python3 tasks.py test`` or
``meddata models fetch``) end to end on a CPU: a generator through the transformers backend
writes schema-valid rows, a few LoRA steps lower the loss, and eval scores base and tuned in
both modes. Skipped, loudly, only when the model is absent outside CI; in CI (``CI`` set) a
missing model fails the run, since the install step must have fetched it."""

from __future__ import annotations

import json
import os

import pytest
import yaml
from testutil import DATA, EXAMPLES, assert_scored_with_intervals, read_jsonl

from meddata.cli import main
from meddata.records import validate_row

MODEL = "smollm2-135m-instruct"
EVAL = DATA / "eval"


def _require_model() -> str:
    from meddata import models

    if not models.is_fetched(MODEL):
        why = (f"{MODEL} is not in {models.cache_dir()}; fetch it with 'meddata models fetch {MODEL}' "
               "(python3 tasks.py test does this)")
        if os.environ.get("CI"):
            pytest.fail(f"CI run without the real model: {why}")
        pytest.skip(f"REAL-MODEL TESTS SKIPPED: {why}")
    pytest.importorskip("gguf")
    return models.resolve_model(MODEL)


@pytest.fixture(scope="module")
def model_dir() -> str:
    return _require_model()


def _stats(out) -> dict:
    return {s["name"]: s for s in json.loads((out / "stats.json").read_text())["steps"]}


def test_generators_write_schema_valid_rows_with_the_real_model(model_dir, tmp_path):
    out = tmp_path / "out"
    # the example recipe's LLM part (its passage and MCQ inputs), smaller answers, uncached
    example = EXAMPLES / "recipes" / "augment_local.yaml"
    recipe = yaml.safe_load(example.read_text(encoding="utf-8"))
    recipe["llms"]["local"]["cache"] = False
    recipe["inputs"] = [{**i, "path": str((example.parent / i["path"]).resolve())} for i in recipe["inputs"]
                        if i.get("source", i.get("format")) in ("openstax-ap2e", "medmcqa")]
    recipe["steps"] = [{"passage_qa": {"llm": "local", "per_passage": 1, "max_tokens": 160}},
                       {"mcq_rationale": {"llm": "local", "max_tokens": 120}}]
    recipe["output"] = {"path": str(out), "formats": ["jsonl"], "card": False}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["build", str(path), "--limit", "2"]) == 0
    stats = _stats(out)
    for step in ("passage_qa", "mcq_rationale"):
        counters = stats[step]["counters"]
        assert counters["llm.requests"] == 2
        assert "llm.invalid_output" not in counters and stats[step]["quarantined"] == 0, stats[step]
    rows = read_jsonl(out / "jsonl" / "train.jsonl")
    made = [r for r in rows if r["meta"].get("generator_model") == MODEL]
    qa = [r for r in made if r["source"] == "openstax-ap2e"]
    assert qa, "passage_qa made no row"
    for row in made:
        validate_row(row)
        user, assistant = row["messages"][-2:]
        assert user["role"] == "user" and assistant["role"] == "assistant"
        assert len(user["content"]) >= 8 and assistant["content"].strip()
    # rationale rows: kept only where the model agreed with the key, and the reply ends with it
    for row in (r for r in made if r["source"] != "openstax-ap2e"):
        assert row["messages"][-1]["content"].rstrip().split("\n")[-1].startswith("Answer: ")


@pytest.fixture(scope="module")
def lora_run(model_dir, tmp_path_factory):
    from meddata import pipeline, recipe

    root = tmp_path_factory.mktemp("real-lora")
    # 4 rows, batch 4: every step sees the same rows, so a falling loss is learning, not luck
    qs = pipeline.run(recipe.load(EXAMPLES / "recipes" / "quickstart.yaml"), root / "qs", limit=2)
    config = {
        "name": "real-lora", "output_dir": str(root / "run"), "seed": 0,
        "model": {"name_or_path": MODEL, "chat_template": "chatml"},
        "stages": [{"name": "sft", "type": "sft", "dataset": {"path": str(qs.out_dir)},
                    "peft": {"method": "lora", "r": 8, "alpha": 16, "target_modules": "all-linear"},
                    "max_steps": 4, "learning_rate": 2e-3, "per_device_batch_size": 4, "max_length": 160,
                    "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 4, "warmup": 0,
                    "lr_scheduler": "constant"}],
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return root / "run"


def test_lora_steps_on_the_real_model_lower_the_loss(lora_run, model_dir):
    run = json.loads((lora_run / "run.json").read_text())
    assert run["base_model"] == model_dir  # the short name resolved to the cached folder
    curve = [loss for _, loss in run["stages"][0]["metrics"]["loss_curve"]]
    assert len(curve) == 4
    assert curve[-1] < curve[0] and curve[-2] < curve[0], curve
    assert (lora_run / "sft" / "adapter" / "adapter_config.json").is_file()


def test_eval_scores_base_and_tuned_in_both_modes(lora_run, tmp_path):
    out = tmp_path / "report"
    code = main(["eval", "--model", f"base={MODEL}", "--model", f"tuned={lora_run / 'sft' / 'adapter'}",
                 "--bench", f"medqa={EVAL / 'medqa_sample.jsonl'}", "--mode", "loglik", "--mode", "generate",
                 "--batch-size", "10", "--max-new-tokens", "6", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["base", "tuned"]
    rows = {(r["mode"], r["metric"]): r for r in report["rows"] if r["benchmark"] == "medqa"}
    assert {("loglik", "acc"), ("generate", "acc")} <= set(rows)
    for row in rows.values():
        assert_scored_with_intervals(row, ("base", "tuned"), 20)
    # a real instruct model answers the MCQs in a parseable way most of the time
    gen = read_jsonl(out / "predictions" / "base" / "medqa.generate.jsonl")
    assert len(gen) == 20 and sum(1 for g in gen if g["pred"]) >= 10
