"""End to end on CPU: build sets from examples/data -> tiny random-init Llama with a locally
trained tokenizer -> continued pretraining -> SFT (loss goes down) -> DPO (LoRA) in one
chained config -> resume -> ``meddata eval`` base vs fine-tuned on 20 MedQA-format and 20
PubMedQA items with a report."""

from __future__ import annotations

import json

import pytest
import yaml
from llm_server import LLMServer
from meddata.trainers import scoring
from meddata.trainers.tiny import build_tiny_llama
from testutil import DATA, EXAMPLES, assert_scored_with_intervals, read_jsonl, write_jsonl

from meddata import exams
from meddata.cli import main

EVAL = DATA / "eval"
MEDQUAD = EXAMPLES / "data" / "medquad_sample.jsonl"
SFT_STEPS = 20


def _build(recipe_dict: dict, base_dir, out):
    from meddata import pipeline, recipe

    return pipeline.run(recipe.from_dict(recipe_dict, base_dir=base_dir, source="test-recipe.yaml"), out)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Three meddata builds from examples/data (messages, text, preference) and a tiny base."""
    from meddata import pipeline, recipe

    root = tmp_path_factory.mktemp("pipeline")
    qs = pipeline.run(recipe.load(EXAMPLES / "recipes" / "quickstart.yaml"), root / "qs", limit=40)
    text = _build({"name": "cpt", "inputs": [{"builder": "table", "path": str(MEDQUAD), "source": "medquad",
                                              "columns": {"text": "answer"}}]}, root, root / "text")
    # Preference pairs from real answers: chosen = the NIH answer, rejected = its first
    # sentence cut short, or another question's answer.
    qa = read_jsonl(MEDQUAD)[:24]
    pairs = [{"q": r["question"], "good": r["answer"],
              "bad": " ".join(r["answer"].split()[:8]) if i % 2 else qa[(i + 5) % len(qa)]["answer"]}
             for i, r in enumerate(qa)]
    write_jsonl(root / "pairs.jsonl", pairs)
    pref = _build({"name": "prefs", "inputs": [{"builder": "table", "path": "pairs.jsonl", "source": "medquad-pref",
                                                "columns": {"prompt": "q", "chosen": "good", "rejected": "bad"}}]},
                  root, root / "pref")
    from datasets import load_from_disk

    texts = [m["content"] for row in load_from_disk(str(qs.dataset_dir))["train"] for m in row["messages"]]
    texts += [i.question + " " + " ".join(t for _, t in i.options) for i in exams.load_exam(EVAL / "medqa_sample.jsonl")]
    base = build_tiny_llama(root / "base", texts, vocab_size=1024, max_positions=256, chat_tokens=False)
    return {"root": root, "qs": qs.out_dir, "text": text.out_dir, "pref": pref.out_dir, "base": base}


def _stage(name, type_, path, steps, **kw):
    return {"name": name, "type": type_, "dataset": {"path": str(path)}, "max_steps": steps, "max_length": 128,
            "per_device_batch_size": 4, "gradient_checkpointing": False, "logging_steps": 1, "save_steps": 2,
            "save_total_limit": 3, **kw}


@pytest.fixture(scope="module")
def trained(work):
    root = work["root"]
    config = {
        "name": "tiny-chain",
        "output_dir": str(root / "run"),
        "model": {"name_or_path": str(work["base"]), "chat_template": "chatml"},
        "seed": 0,
        "stages": [
            _stage("cpt", "pretrain", work["text"], 4, learning_rate=3e-3, dataset={"path": str(work["text"]),
                                                                                  "max_rows": 64}),
            _stage("sft", "sft", work["qs"], SFT_STEPS, learning_rate=3e-3, save_steps=10),
            _stage("dpo", "dpo", work["pref"], 4, learning_rate=1e-3, per_device_batch_size=2,
                   peft={"method": "lora", "r": 8, "alpha": 16}),
        ],
    }
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    return {"config": path, "run": root / "run", **work}


def test_stages_chain_and_sft_loss_goes_down(trained):
    run = json.loads((trained["run"] / "run.json").read_text())
    cpt, sft, dpo = run["stages"]
    assert run["base_model"] == str(trained["base"])
    # each stage starts from the previous one's output
    assert cpt["model_dir"] == str(trained["run"] / "cpt" / "model")
    sft_cfg = json.loads((trained["run"] / "sft" / "model" / "config.json").read_text())
    assert sft_cfg["vocab_size"] == json.loads((trained["run"] / "cpt" / "model" / "config.json").read_text())[
        "vocab_size"]
    adapter = json.loads((trained["run"] / "dpo" / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == sft["model_dir"]
    assert run["final_model"] == dpo["adapter_dir"]
    # the chat template added its tokens in the first stage and travels with every output
    tok = json.loads((trained["run"] / "sft" / "model" / "tokenizer_config.json").read_text())
    assert tok["eos_token"] == "<|im_end|>"
    assert (trained["run"] / "dpo" / "adapter" / "chat_template.jinja").is_file()
    # SFT: 20 steps, loss on assistant turns, going down
    curve = [loss for _, loss in sft["metrics"]["loss_curve"]]
    assert sft["metrics"]["global_step"] == SFT_STEPS and len(curve) == SFT_STEPS
    assert sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.2, curve
    assert dpo["metrics"]["global_step"] == 4 and "rewards_accuracies" in dpo["metrics"]
    # every stage reports its speed settings and throughput; on CPU MFU is n/a
    for stage in (cpt, sft, dpo):
        m = stage["metrics"]
        assert m["speed"]["weights"] == "fp32" and m["speed"]["compile"] is False
        assert m["tokens_per_s"] > 0 and m["train_tokens"] > 0 and m["mfu"] is None
    assert cpt["metrics"]["speed"]["padding_free"] is True and dpo["metrics"]["speed"]["padding_free"] is False


def test_sft_loss_is_on_assistant_turns_only(trained):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(trained["run"] / "sft" / "model")
    msgs = [{"role": "user", "content": "What is anemia?"}, {"role": "assistant", "content": "Too few red cells."}]
    out = tok.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
    assert tok.decode(masked) == "Too few red cells.<|im_end|>"


def test_rerun_reuses_finished_stages_and_resumes_from_checkpoint(trained, capsys):
    import shutil

    dpo_dir = trained["run"] / "dpo"
    (dpo_dir / "stage.json").unlink()
    shutil.rmtree(dpo_dir / "checkpoints" / "checkpoint-4")
    kept = (dpo_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["train", str(trained["config"])]) == 0
    out = capsys.readouterr().out
    assert out.count("(reused)") == 2  # cpt and sft
    # DPO continued from checkpoint-2: only steps 3 and 4 were trained (and logged)
    assert sum(1 for line in out.splitlines() if line.startswith("{'loss'")) == 2
    assert (dpo_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns == kept
    assert (dpo_dir / "checkpoints" / "checkpoint-4").is_dir()
    marker = json.loads((dpo_dir / "stage.json").read_text())
    assert marker["result"]["metrics"]["global_step"] == 4


def test_eval_report_base_vs_finetuned(trained, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(["eval", "--run", str(trained["run"]), "--bench", f"medqa={EVAL / 'medqa_sample.jsonl'}",
                 "--bench", f"pubmedqa={EVAL / 'pubmedqa_sample.json'}", "--mode", "loglik", "--mode", "generate",
                 "--batch-size", "16", "--max-new-tokens", "8", "--out", str(out)])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["models"]) == ["base", "tuned"] and report["baseline"] == "base"
    rows = {(r["benchmark"], r["mode"], r["metric"]): r for r in report["rows"]}
    assert set(rows) == {(b, m, k) for b in ("medqa", "pubmedqa") for m, k in
                         (("loglik", "acc"), ("loglik", "acc_norm"), ("generate", "acc"))}
    for row in rows.values():
        assert_scored_with_intervals(row, ("base", "tuned"), 20)
        assert "delta" in row["models"]["tuned"] and "delta" not in row["models"]["base"]
    md = (out / "report.md").read_text()
    assert "| medqa | loglik | acc | 20 |" in md and "| pubmedqa | generate | acc | 20 |" in md
    # predictions: generate-then-parse applied the extractor to what the model wrote
    gen = read_jsonl(out / "predictions" / "tuned" / "medqa.generate.jsonl")
    items = {i.id: i for i in exams.load_exam(EVAL / "medqa_sample.jsonl")}
    assert len(gen) == 20
    for row in gen:
        item = items[row["id"]]
        answer = row["response"].split("\nQuestion:")[0].strip()
        assert row["pred"] == scoring.extract_choice(answer, [lab for lab, _ in item.options], item.options)
        assert row["gold"] == item.answer
    ll = read_jsonl(out / "predictions" / "base" / "pubmedqa.loglik.jsonl")
    assert set(ll[0]["logprobs"]) == {"yes", "no", "maybe"}
    assert "report:" in capsys.readouterr().out


def test_freetext_rouge_and_llm_judge(trained, tmp_path):
    """ROUGE-L on PubMedQA long answers and a pairwise judge served by a local
    OpenAI-protocol server through meddata's LLM client."""
    from meddata.trainers import evaluate, report
    from meddata.trainers.eval_config import from_dict

    server = LLMServer().start()
    try:
        run = json.loads((trained["run"] / "run.json").read_text())
        cfg, base_dir = from_dict({
            "models": {"base": run["base_model"], "tuned": run["final_model"]},
            "benchmarks": [{"name": "pubmedqa-long", "path": str(EVAL / "pubmedqa_sample.json"), "task": "freetext",
                            "limit": 4}],
            "freetext_max_new_tokens": 12,
            "judge": {"llm": {"model": "judge", "base_url": server.url, "cache": False, "max_retries": 0},
                      "mode": "pairwise"},
        })
        result = evaluate.evaluate(cfg, base_dir, tmp_path)
        rep = report.build(result)
    finally:
        server.stop()
    rows = {(r["benchmark"], r["mode"], r["metric"]): r for r in rep["rows"]}
    rouge = rows[("pubmedqa-long", "freetext", "rougeL")]
    assert rouge["models"]["base"]["n"] == 4 and 0 <= rouge["models"]["tuned"]["value"] <= 1
    judged = rows[("pubmedqa-long", "judge_pairwise", "win_rate")]["models"]["tuned"]
    assert judged["n"] == 4 and 0 <= judged["value"] <= 1
    assert rep["judge"]["status"] == "ok" and rep["judge"]["failed"] == 0
    chats = server.chat_log()
    assert len(chats) == 8  # 4 items x both orders
    for entry in chats:
        body = entry["body"]
        assert body["response_format"]["type"] == "json_schema"
        assert "Reference answer" in body["messages"][1]["content"]
