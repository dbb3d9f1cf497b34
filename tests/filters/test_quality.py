"""Quality filters on real text: a keep case and a drop case each, and annotate mode."""

from __future__ import annotations

import json

import pytest
from meddata.filters.quality import (
    CharRatioFilter,
    EchoFilter,
    LanguageFilter,
    LengthFilter,
    MedicalDensityFilter,
    RepetitionFilter,
    WordLengthFilter,
    echo_overlap,
)
from testutil import DATA, EXAMPLES, read_jsonl, write_jsonl

from meddata.recipe import RecipeError
from meddata.records import annotations, messages, new_row
from meddata.steps import Drop, StepContext

SAMPLES = {r["id"]: r for r in read_jsonl(DATA / "quality" / "samples.jsonl")}
# Written for these tests (no non-English medical text in the shared data).
FOREIGN = {
    "es": "El paciente presenta dolor abdominal desde hace tres días y fiebre alta. Se recomienda una "
          "ecografía del abdomen y un análisis de sangre completo antes de iniciar el tratamiento.",
    "fr": "Le patient présente une douleur thoracique depuis deux jours avec une fièvre. Il faut faire un "
          "électrocardiogramme et une prise de sang avant de commencer le traitement.",
    "de": "Der Patient klagt seit zwei Tagen über Brustschmerzen und hat Fieber. Vor der Behandlung werden "
          "ein EKG und eine Blutuntersuchung durchgeführt.",
    "zh": "患者胸痛两天，伴有发热。建议在治疗前进行心电图和血液检查。",
    "ru": "Пациент жалуется на боль в груди в течение двух дней и на повышенную температуру.",
}


def row_of(sample_id: str) -> dict:
    s = SAMPLES[sample_id]
    content = ({"text": s["text"]} if "text" in s
               else {"messages": messages(("user", s["question"]), ("assistant", s["answer"]))})
    return new_row(source=s["source"], id=sample_id, meta={"builder": "test", "licence": s["licence"]}, **content)


def verdict(step, row: dict):
    step.ensure_setup(CTX)
    out = step.process(row, CTX)
    return out.reason if isinstance(out, Drop) else "keep"


CTX = StepContext(step_dir=__import__("pathlib").Path("."))
MEDICAL = [k for k in SAMPLES if k.startswith(("medquad", "chatdoctor", "mts-allergy"))]
GENERAL = [k for k in SAMPLES if k.startswith("presidio-general")]


def test_length_filter_chars_words_and_a_local_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [SAMPLES[k].get("answer") or SAMPLES[k]["text"] for k in MEDICAL]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"]))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path / "tok")

    row = row_of("medquad-1")
    words = len((row["messages"][0]["content"] + "\n\n" + row["messages"][1]["content"]).split())
    step = LengthFilter(mode="annotate", tokenizer=str(tmp_path / "tok"))
    assert verdict(step, row) == "keep"
    stats = annotations(row)["length_filter"]
    assert stats["words"] == words and stats["tokens"] > words  # a 300-piece BPE splits words
    assert verdict(LengthFilter(max_tokens=stats["tokens"] - 1, tokenizer=str(tmp_path / "tok")),
                   row_of("medquad-1")) == "too_many_tokens"
    assert verdict(LengthFilter(min_chars=80), row_of("medquad-1")) == "keep"
    assert verdict(LengthFilter(min_chars=80), row_of("presidio-liftoff")) == "too_short"
    assert verdict(LengthFilter(min_words=20), row_of("presidio-url")) == "too_few_words"
    assert verdict(LengthFilter(max_words=100), row_of("mts-allergy")) == "too_many_words"
    with pytest.raises(ValueError, match="not available locally"):
        LengthFilter(min_tokens=1, tokenizer=str(tmp_path / "missing")).ensure_setup(CTX)


def test_length_filter_needs_a_bound_in_filter_mode_only():
    with pytest.raises(ValueError, match="set at least one"):
        LengthFilter()
    LengthFilter(mode="annotate")


@pytest.mark.parametrize("sample,expected", [
    ("medquad-2", "keep"), ("mts-allergy", "keep"), ("synthea-note", "keep"),
    ("presidio-url", "words_too_long"), ("medmcqa-ig", "words_too_short"),
])
def test_word_length_filter(sample, expected):
    assert verdict(WordLengthFilter(), row_of(sample)) == expected


@pytest.mark.parametrize("sample,expected", [
    ("medquad-3", "keep"), ("mts-allergy", "keep"), ("synthea-note", "keep"), ("chatdoctor-1", "keep"),
    ("presidio-template", "too_many_symbols"), ("presidio-liftoff", "too_many_symbols"),
    ("medmcqa-wbc", "too_many_digits"),
])
def test_char_ratio_filter(sample, expected):
    assert verdict(CharRatioFilter(), row_of(sample)) == expected


def test_char_ratio_alpha_words_rule():
    step = CharRatioFilter(max_symbol_ratio=None, max_hash_ellipsis_ratio=None)
    assert verdict(step, row_of("presidio-liftoff")) == "too_few_alpha_words"
    assert verdict(step, row_of("mts-allergy")) == "keep"


@pytest.mark.parametrize("sample,expected", [
    ("medquad-4", "keep"), ("mts-allergy", "keep"), ("chatdoctor-2", "keep"),
    ("mts-duplex", "repeated_ngrams"), ("mts-copy-forward", "repeated_lines"),
])
def test_repetition_filter(sample, expected):
    assert verdict(RepetitionFilter(), row_of(sample)) == expected


def test_repetition_ngram_rules_skip_short_texts():
    row = row_of("presidio-general-1")
    text = row["text"]
    row["text"] = f"{text} {text}"  # one sentence said twice: 100% repeated, but short
    assert verdict(RepetitionFilter(), dict(row)) == "keep"
    assert verdict(RepetitionFilter(ngram_min_words=0), dict(row)) == "repeated_ngrams"


def test_language_filter_real_english_kept_and_others_dropped():
    for k in (*MEDICAL, "synthea-note"):
        assert verdict(LanguageFilter(), row_of(k)) == "keep", k
    for lang, text in FOREIGN.items():
        row = new_row(source="t", id=lang, meta={"builder": "t"}, text=text)
        step = LanguageFilter(mode="annotate")
        assert verdict(step, row) == "keep"
        assert annotations(row)["language_filter"]["language"] == lang
        assert verdict(LanguageFilter(), dict(row)) == "wrong_language"
        assert verdict(LanguageFilter(languages=["en", lang]), dict(row)) == "keep"
    shorthand = new_row(source="t", id="s", meta={"builder": "t"}, text="Pt c/o CP x2d. Denies SOB. HR 88, BP 130/85.")
    assert verdict(LanguageFilter(), shorthand) == "keep"
    assert verdict(LanguageFilter(keep_unknown=False), shorthand) == "unknown_language"
    with pytest.raises(ValueError, match="unsupported language"):
        LanguageFilter(languages=["xx"])


def test_echo_filter_on_real_questions():
    for k in ("medquad-1", "medquad-5", "chatdoctor-1", "chatdoctor-3"):
        assert verdict(EchoFilter(), row_of(k)) == "keep", k
    q = SAMPLES["chatdoctor-1"]["question"]  # "Doctor, I have been experiencing sudden and frequent panic ..."
    echo = new_row(source="t", id="e", meta={"builder": "t"}, messages=messages(
        ("user", q), ("assistant", "So you have been experiencing sudden and frequent panic attacks "
                                   "and you don't know what to do.")))
    assert verdict(EchoFilter(), echo) == "echoes_question"
    mq = SAMPLES["medquad-3"]["question"]
    pc = new_row(source="t", id="p", meta={"builder": "t"}, prompt=messages(("user", mq)),
                 completion=messages(("assistant", mq.rstrip("?") + ".")))
    assert verdict(EchoFilter(), pc) == "echoes_question"
    assert echo_overlap(q, SAMPLES["chatdoctor-1"]["answer"])[0] < 0.3
    # an exam answer picks one of the listed options: all in the prompt, but not an echo
    mcq = new_row(source="t", id="m", meta={"builder": "t"}, messages=messages(
        ("user", SAMPLES["medmcqa-wbc"]["text"]), ("assistant", SAMPLES["medmcqa-wbc"]["text"].split("\n")[1])))
    assert verdict(EchoFilter(min_answer_words=1), mcq) == "keep"
    short = new_row(source="t", id="s", meta={"builder": "t"},
                    messages=messages(("user", mq), ("assistant", "Yes.")))
    step = EchoFilter()
    assert verdict(step, short) == "keep" and verdict(step, row_of("mts-allergy")) == "keep"
    assert step.take_stats()["echo_filter.not_applicable"] == 2


def test_medical_density_filter_keeps_medical_and_drops_general_text():
    for k in (*MEDICAL, "synthea-note", "mts-duplex"):
        assert verdict(MedicalDensityFilter(), row_of(k)) == "keep", k
    reasons = [verdict(MedicalDensityFilter(), row_of(k)) for k in GENERAL]
    assert reasons == ["few_medical_terms"] * len(GENERAL)
    row = row_of("medquad-2")
    assert verdict(MedicalDensityFilter(mode="annotate"), row) == "keep"
    stats = annotations(row)["medical_density_filter"]
    assert stats["medical_terms"] >= 5 and 0.05 < stats["medical_density"] <= 1
    # the density threshold applies on its own too
    assert verdict(MedicalDensityFilter(min_count=None, min_density=0.99), row_of("medquad-2")) == "low_medical_density"


def test_medical_density_extra_vocabulary(tmp_path):
    vocab = tmp_path / "zoo.txt"
    vocab.write_text("# animal care terms\nhusbandry\nlemurs\nantelope\ncamels\n", encoding="utf-8")
    row = row_of("presidio-general-1")
    assert "husbandry" in row["text"]
    assert verdict(MedicalDensityFilter(), dict(row)) == "few_medical_terms"
    assert verdict(MedicalDensityFilter(vocabulary=[str(vocab)], use_default_vocabulary=False), row) == "keep"


def test_vocabulary_licence_note_ships_with_the_terms():
    from meddata.filters.medvocab import DEFAULT_TERMS, load_vocabulary

    sources = (DEFAULT_TERMS.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert "CC BY 4.0" in sources and "Apache-2.0" in sources and "NC-SA" in sources
    vocab = load_vocabulary((str(DEFAULT_TERMS),))
    assert len(vocab) > 5000
    assert vocab.match("Type 2 diabetes mellitus with chronic kidney disease")[0] >= 2
    assert vocab.match("the type of the day")[0] == 0


def test_annotate_mode_in_a_build_keeps_every_row_and_records_stats(build, tmp_path):
    rows = [{"id": k, "text": SAMPLES[k].get("text") or SAMPLES[k]["answer"]} for k in SAMPLES]
    src = write_jsonl(tmp_path / "samples.jsonl", rows)
    steps = ["length_filter", "word_length_filter", "char_ratio_filter", "repetition_filter",
             "language_filter", "echo_filter", "medical_density_filter"]
    res = build({
        "name": "quality-annotate",
        "inputs": [{"builder": "table", "path": str(src), "columns": {"id": "id", "text": "text"}}],
        "steps": [{s: {"mode": "annotate"}} for s in steps],
        "output": {"formats": ["jsonl"]},
    })
    assert res.totals["out"] == len(rows) and res.totals["dropped"] == 0
    out = read_jsonl(res.out_dir / "jsonl" / "train.jsonl")
    for r in out:
        ann = json.loads(r["meta"]["annotations"])
        assert set(steps) - {"echo_filter"} <= set(ann), r["id"]
    by_id = {r["id"].split(":", 1)[1]: json.loads(r["meta"]["annotations"]) for r in out}
    assert by_id["presidio-general-1"]["medical_density_filter"]["would_drop"] == "few_medical_terms"
    assert by_id["medquad-1"]["medical_density_filter"]["would_drop"] is None
    density = res.steps[-1].counters
    assert density["medical_density_filter.would_drop.few_medical_terms"] >= len(GENERAL)
    # filter mode on the same data drops with reasons in the drop log
    res2 = build({
        "name": "quality-filter",
        "inputs": [{"builder": "table", "path": str(src), "columns": {"id": "id", "text": "text"}}],
        "steps": ["medical_density_filter"],
    }, out=tmp_path / "out2")
    assert res2.steps[-1].dropped["few_medical_terms"] >= len(GENERAL)
    logged = read_jsonl(res2.out_dir / "dropped" / "01-medical_density_filter.jsonl")
    assert {d["reason"] for d in logged} <= {"few_medical_terms", "low_medical_density"}


def test_bad_parameters_name_the_step(build, tmp_path):
    src = write_jsonl(tmp_path / "x.jsonl", [{"t": "hello"}])
    with pytest.raises(RecipeError) as err:
        build({"name": "bad", "inputs": [{"builder": "table", "path": str(src), "columns": {"text": "t"}}],
               "steps": [{"repetition_filter": {"mode": "drop"}}]})
    assert "steps[0] 'repetition_filter'" in str(err.value) and "mode" in str(err.value)


def _reference_repetition_stats(step: RepetitionFilter, row: dict):
    """The per-row measurement as it was before the batched one (tuples, sets, Counter)."""
    from meddata.filters.quality import duplicate_ngram_chars, top_ngram_chars, words_of

    text = step.text(row).strip()
    if not text:
        return None
    stats = step._line_stats(text)
    words = [w.lower() for w in words_of(text)]
    word_chars = sum(map(len, words)) or 1
    stats["words"] = len(words)
    for n in sorted(step.params.top_ngram_max):
        stats[f"top_{n}gram_char_fraction"] = top_ngram_chars(words, n) / word_chars
    for n in sorted(step.params.dup_ngram_max):
        stats[f"dup_{n}gram_char_fraction"] = duplicate_ngram_chars(words, n) / word_chars
    return stats


def _real_texts(limit: int) -> list[str]:
    """Real QA answers and clinical notes bundled with the repository."""
    import csv

    texts = [r["answer"] for r in read_jsonl(EXAMPLES / "data" / "medquad_sample.jsonl")[:limit]]
    with (EXAMPLES / "data" / "ehr" / "NOTEEVENTS_sample.csv").open(encoding="utf-8", newline="") as fh:
        texts += [r.get("TEXT") or "" for r in csv.DictReader(fh)][:limit]
    texts += [r["output"] for r in json.loads((DATA / "qa" / "chatdoctor5k_sample.json").read_text())]
    texts += [s.get("text") or s.get("answer") for s in SAMPLES.values()]
    return texts


def test_batched_repetition_stats_equal_the_per_row_reference():
    """The vectorised n-gram statistics give the same numbers and decisions as the per-row
    code on real text, including texts made repetitive (copy-forward, pasted twice)."""
    real = [t for t in _real_texts(1500) if t.strip()]
    pasted = [f"{t}\n{t}" for t in real[:200]]                                      # a note pasted twice
    looping = [" ".join(t.split()[: len(t.split()) // 2] * 3) for t in real[-200:]]  # a looping generation
    texts = real + pasted + looping
    texts += ["", "   ", "word", "a b a b a b a b"]
    rows = [new_row(source="t", id=str(k), meta={"builder": "t"}, text=t) for k, t in enumerate(texts)]
    for params in ({}, {"ngram_min_words": 0, "top_ngram_max": {1: 0.3, 2: 0.2, 11: 0.05}}):
        step = RepetitionFilter(**params)
        step.ensure_setup(CTX)
        batched = step.measure_batch(rows, CTX)
        reference = [_reference_repetition_stats(step, r) for r in rows]
        assert batched == reference
        decisions = [step.judge(s) if s else None for s in batched]
        assert decisions == [step.judge(s) if s else None for s in reference]
        assert all(decisions[len(real):len(real) + len(pasted)])  # every pasted-twice text is caught
        assert sum(d is None for d in decisions[:len(real)]) > 0.8 * len(real)  # most real text is kept
