"""The dataset card: Hub-valid front matter, every section generated from the run, no PHI."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import yaml
from datasets import load_dataset
from datasets.utils.metadata import MetadataConfigs
from generators_testkit import llms as llm_config
from generators_testkit import passages_input
from huggingface_hub import DatasetCard, DatasetCardData
from llm_server import LLMServer
from publish_testkit import CHATDOCTOR, DEID, MEDQUAD, OPENSTAX, SYNTHEA, synthea_notes, synthea_phi
from testutil import read_jsonl

from meddata.publish.buildinfo import hub_licence, is_non_commercial, size_category
from meddata.publish.card import sanitize_params

HUB_SIZE_CATEGORIES = {"n<1K", "1K<n<10K", "10K<n<100K", "100K<n<1M", "1M<n<10M"}
HUB_TASKS = {"text-generation", "question-answering", "multiple-choice", "summarization"}


def _card(result) -> DatasetCard:
    return DatasetCard.load(result.out_dir / "README.md")


def _validate(card: DatasetCard) -> DatasetCardData:
    """What the Hub checks offline: the YAML parses into DatasetCardData, configs are well
    formed for `datasets`, and the enumerated fields use the Hub's vocabularies."""
    data = DatasetCardData(**card.data.to_dict())
    MetadataConfigs.from_dataset_card_data(data)
    assert set(data.size_categories) <= HUB_SIZE_CATEGORIES
    assert set(data.task_categories) <= HUB_TASKS
    assert data.language == ["en"]
    licences = data.license if isinstance(data.license, list) else [data.license]
    assert all(re.fullmatch(r"[a-z0-9.-]+", lic) for lic in licences)
    return data


@pytest.fixture
def mixed_build(build):
    return build({
        "name": "card-mix", "description": "Consumer-health QA with a textbook glossary.",
        "inputs": [MEDQUAD, CHATDOCTOR, OPENSTAX],
        "steps": ["normalize_text", {"length_filter": {"min_chars": 40}},
                  {"mix": {"weights": {"medquad": 2, "chatdoctor": 1, "openstax": 1}, "total": 80}}],
        "output": {"formats": ["arrow", "parquet", "jsonl"], "exports": ["sharegpt"]},
    })


def test_front_matter_is_hub_metadata_and_configs_load(mixed_build, tmp_path):
    card = _card(mixed_build)
    data = _validate(card)
    assert sorted(data.license) == ["apache-2.0", "cc-by-4.0", "cc-by-nc-sa-4.0"]
    assert data.size_categories == ["n<1K"] and data.pretty_name == "card-mix"
    assert {"medical", "sft"} <= set(data.tags)
    assert data.configs == [{"config_name": "default",
                             "data_files": [{"split": "train", "path": "parquet/train.parquet"}]}]
    loaded = load_dataset(str(mixed_build.out_dir), cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == mixed_build.rows_out == 80
    assert sorted(loaded["train"]["id"]) == sorted(r["id"] for r in read_jsonl(mixed_build.out_dir / "jsonl/train.jsonl"))


def test_body_has_sources_funnel_mixture_use_and_licence_warning(mixed_build):
    text = _card(mixed_build).text
    assert "Consumer-health QA with a textbook glossary." in text
    # sources with licences and counts
    assert re.search(r"\| medquad \| table \| CC-BY-4.0 \| not_applicable 60 \| 60 \| 40 \|", text)
    assert re.search(r"\| openstax \| table \| CC-BY-NC-SA-4.0 \| not_applicable 30 \| 30 \| 20 \|", text)
    # every step with in/out, drops by reason and parameters
    for st in mixed_build.steps:
        assert re.search(rf"\| {st.index} \| `{st.name}` \| {st.kind} \| {st.rows_in:,} \| {st.rows_out:,} \|", text)
    mix = next(s for s in mixed_build.steps if s.name == "mix")
    assert f"mix_downsampled {mix.dropped['mix_downsampled']}" in text
    params = yaml.safe_load(text.split("```yaml\n", 1)[1].split("```", 1)[0])
    assert params[-1] == {"05 mix": {**mix.params, "caps": {}}}
    assert params[0]["00 table"]["path"] == "medquad.jsonl"  # no local folder names
    # mixture from the step report
    assert "## Mixture" in text and re.search(r"\| medquad \| 2 \| – \| – \| 60 \| 40 \| 40 \| 50.0% \|", text)
    # formats, splits, use, licences
    assert "| train | `parquet/train.parquet` |" in text and "`exports/sharegpt-train.jsonl`" in text
    assert "**Not for clinical decision making.**" in text
    assert "**Non-commercial licence:** openstax (CC-BY-NC-SA-4.0)" in text
    assert "No source holds patient records" in text


def test_raw_clinical_build_warns_and_never_shows_content(build):
    result = build({"name": "card-raw", "inputs": [SYNTHEA, MEDQUAD]})
    card = _card(result)
    _validate(card)
    text = str(card.content)
    assert "12 rows are raw patient data" in text
    assert "`raw` 12" in text and "clinical" in card.data.tags
    _assert_no_row_content(text, result)


def test_deidentified_build_states_method_and_counts(build):
    # Safe Harbor's minimum, then a re-scan under the stricter recall policy (ages, states...)
    deid_step = {"deid": {**DEID["deid"], "policy": "safe_harbor"}}
    result = build({"name": "card-deid", "inputs": [SYNTHEA, MEDQUAD],
                    "steps": [deid_step, {"phi_scan": {"model": "off", "policy": "recall"}}]})
    card = _card(result)
    _validate(card)
    text = card.text
    rows = read_jsonl(result.out_dir / "jsonl" / "train.jsonl")
    deid, scan = (next(s for s in result.steps if s.name == n) for n in ("deid", "phi_scan"))
    assert ("Step 2 `deid` replaced protected health information (HIPAA Safe Harbor identifiers) using strategy "
            "`mask` (type placeholders such as `[NAME]`); detection: policy `safe_harbor`, rules and dictionaries only; "
            "patient and encounter ids in `meta` were replaced by keyed pseudonyms; rows marked de-identified "
            "after it: 12.") in text
    # the counts by type are what the rows record, not what the re-scan flagged afterwards
    replaced = Counter()
    for row in rows:
        replaced.update(json.loads(row["meta"]["annotations"]).get("deid", {}).get("phi", {}))
    assert {"NAME", "DATE", "MRN", "SSN", "PHONE", "LOCATION"} <= set(replaced)
    assert replaced == {k[4:]: v for k, v in deid.counters.items() if k.startswith("phi.")}
    by_type = ", ".join(f"{k} {v:,}" for k, v in sorted(replaced.items(), key=lambda kv: -kv[1]))
    assert f"PHI spans found and replaced, by type: {by_type}." in text
    flagged = {k[4:]: v for k, v in scan.counters.items() if k.startswith("phi.")}
    assert flagged and scan.counters["phi_scan.flagged"] > 0
    by_type = ", ".join(f"{k} {v:,}" for k, v in sorted(flagged.items(), key=lambda kv: -kv[1]))
    assert (f"Step 3 `phi_scan` re-scanned 72 rows for PHI-like spans and flagged "
            f"{scan.counters['phi_scan.flagged']} ({by_type}); flagged rows were kept") in text
    # the real step measures no recall: the card says so; on this sample every known PHI value is gone
    assert "Recall was not measured on this data (no gold annotations were given)." in text
    assert "Measured recall" not in text
    output = json.dumps(rows)
    assert [v for v in synthea_phi() if v in output] == []
    # deid touches only raw rows: the 12 notes; public QA stays not_applicable, unmasked
    assert "`deidentified` 12" in text and "`not_applicable` 60" in text
    medquad_rows = [r for r in rows if r["source"] == "medquad"]
    assert len(medquad_rows) == 60 and not any("[NAME]" in json.dumps(r["messages"]) for r in medquad_rows)
    assert "raw patient data" not in text  # nothing left raw
    for value in synthea_phi():
        assert value not in text
    _assert_no_row_content(str(card.content), result)


def _assert_no_row_content(card_text: str, result) -> None:
    """No 30-character run of any row's content (notes, questions, answers) is in the card."""
    rows = read_jsonl(result.out_dir / "jsonl" / "train.jsonl") + synthea_notes()
    for row in rows:
        content = row.get("text") or " ".join(m["content"] for m in row.get("messages") or [])
        for line in content.splitlines():
            line = line.strip()
            if len(line) >= 30:
                assert line[:30] not in card_text


def test_synthetic_rows_list_models_and_prompts(build, tmp_path):
    """Two real generators on two LLM names of the local OpenAI-protocol server: doctor answers
    rewritten by one model, textbook passages turned into QA pairs by another."""
    server = LLMServer().start()
    try:
        llms = {**llm_config(server.url, tmp_path, name="qwen", model="Qwen2.5-7B-Instruct",
                             cache=str(tmp_path / "qwen.sqlite")),
                **llm_config(server.url, tmp_path, name="llama", model="llama-3-8b",
                             cache=str(tmp_path / "llama.sqlite"))}
        result = build({"name": "card-gen", "llms": llms, "inputs": [CHATDOCTOR, passages_input()], "steps": [
            {"rewrite_answer": {"llm": "qwen", "sources": ["chatdoctor"]}},
            {"passage_qa": {"llm": "llama", "per_passage": 2}}]})
    finally:
        server.stop()
    rows = read_jsonl(result.out_dir / "jsonl" / "train.jsonl")
    per_pair = Counter((r["meta"]["generator_model"], r["meta"]["prompt_id"]) for r in rows)
    assert {m for m, _ in per_pair} == {"Qwen2.5-7B-Instruct", "llama-3-8b"}
    assert None not in {p for _, p in per_pair}
    card = _card(result)
    _validate(card)
    for (model, prompt), n in per_pair.items():
        assert f"| {model} | {prompt} | {n} |" in card.text
    # every row in the output came from a model: rewritten chat answers and generated QA pairs
    assert f"{len(rows)} rows were written or rewritten by a language model" in card.text
    tokens = sum(s.counters.get("llm.prompt_tokens", 0) for s in result.steps)
    assert tokens > 0 and f"prompt_tokens {tokens:,}" in card.text
    assert "synthetic" in card.data.tags


@pytest.mark.parametrize("licence, hub, nc", [
    ("CC-BY-4.0", "cc-by-4.0", False), ("CC BY-NC-SA 4.0", "cc-by-nc-sa-4.0", True), ("Apache-2.0", "apache-2.0", False),
    ("Apache-2.0, academic use", "apache-2.0", True), ("MIT", "mit", False), ("CC0", "cc0-1.0", False),
    ("PhysioNet-DUA", "other", False), (None, "unknown", False),
])
def test_licence_mapping(licence, hub, nc):
    assert hub_licence(licence) == hub
    assert is_non_commercial(licence) is nc


def test_size_categories_and_param_sanitizing():
    assert [size_category(n) for n in (0, 999, 1000, 99_999, 2_000_000)] == \
        ["n<1K", "n<1K", "1K<n<10K", "10K<n<100K", "1M<n<10M"]
    clean = sanitize_params({"path": "/home/alice/hospital/notes.csv", "api_key": "sk-123", "key_env": "MY_KEY",
                             "deny_names": ["John Smith"], "template": "x" * 300, "n": 3})
    assert clean == {"path": "notes.csv", "api_key": "<withheld>", "key_env": "MY_KEY",
                     "deny_names": "<1 entries>", "template": "x" * 200 + "…", "n": 3}


# -- one source key for rows read and rows out (issue 12, item 7) --------------------------------------


@pytest.mark.parametrize("name", ["exam", "ehr_notes", "dialogue", "fhir", "templates"])
def test_sources_without_a_source_key_are_listed_once_with_reads_and_rows(build, name):
    # The builders' default source (the exam format, 'meddialog', the file name ...) names the
    # rows; the card keyed reads by the file name instead, so "exam" listed 8 sources, 4 of
    # them "(generated)" with no rows read. No recipe here makes rows with an LLM.
    from testutil import EXAMPLES

    from meddata.publish.buildinfo import BuildInfo

    path = EXAMPLES / "recipes" / f"{name}.yaml"
    result = build(yaml.safe_load(path.read_text(encoding="utf-8")), base_dir=path.parent)
    info = BuildInfo(result.out_dir)
    assert set(info.sources) >= set(info.source_rows)
    for src in info.sources.values():
        assert src.builders, f"{src.name} is listed as generated"
        assert src.rows_read > 0, f"{src.name}: no rows read"
        assert sum(src.phi_status_in.values()) <= src.rows_read
    builders_in = sum(s.rows_in for s in result.steps if s.kind == "builder")
    assert sum(s.rows_read for s in info.sources.values()) == builders_in
    card = (result.out_dir / "README.md").read_text(encoding="utf-8")
    assert "(generated)" not in card
    assert f"{len(info.sources)} sources" in card
