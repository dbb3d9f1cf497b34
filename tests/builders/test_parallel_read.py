"""Builders that read their files independently read them split across tasks: contiguous
slices of the sorted file list, one shard each. A build with two processes must equal the
one-task read byte for byte (rows, ids, drop log, quarantine file, counters) and really use
several shards; ``--limit`` and builders whose files depend on each other read in one task.

Inputs are real samples (tests/data) split into several files, each test with a broken file
among them."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pytest
from testutil import DATA, EXAMPLES

from meddata import pipeline, recipe

# -- inputs: real samples split into several files ------------------------------------------------


def _note_folder(root: Path) -> dict:
    notes = [n for n in map(json.loads, (DATA / "ehr" / "mtsamples_sample.jsonl").open()) if n.get("transcription")][:12]
    for i, note in enumerate(notes):
        path = root / "notes" / f"p{i % 3}" / f"n{i:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(note["transcription"].replace(",  ", "\n"))
    (root / "notes" / "p1" / "n05b.txt").write_bytes(b"")  # empty: quarantined
    (root / "notes" / "p2" / "n07b.txt").write_bytes(b"\x00\x01binary\x02")  # binary: quarantined
    return {"builder": "note_folder", "path": "notes", "phi_status": "deidentified",
            "id_pattern": r"(?P<patient_id>p\d+)/"}


def _mtsamples(root: Path) -> dict:
    """The MTSamples sample table in parts of 8 notes, plus a part with another table's header."""
    lines = (DATA / "ehr" / "mtsamples_sample.jsonl").read_text().splitlines()
    folder = root / "tables"
    folder.mkdir()
    for k in range(0, len(lines), 8):
        (folder / f"notes_{k:03d}.jsonl").write_text("\n".join(lines[k:k + 8]) + "\n")
    (folder / "notes_001x.jsonl").write_text('{"note": "no transcription column"}\n')
    return {"builder": "mtsamples", "path": "tables", "phi_status": "deidentified"}


def _fhir(root: Path) -> dict:
    """The sample bundle split into bundles of two notes each (every part keeps the patient's
    record), plus a truncated bundle."""
    (src,) = (DATA / "ehr" / "fhir").glob("*.json")
    bundle = json.loads(src.read_text())
    docs = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"]
    rest = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "DocumentReference"]
    folder = root / "bundles"  # not the builder's default source name ("fhir")
    folder.mkdir()
    for k in range(0, len(docs), 2):
        part = {**bundle, "entry": rest + docs[k:k + 2]}
        (folder / f"patient_{k:03d}.json").write_text(json.dumps(part, indent=1))
    (folder / "patient_005x.json").write_text('{"resourceType": "Bundle",\n "entry": [\n  {"resource": ')
    return {"builder": "fhir_bundles", "path": "bundles", "phi_status": "deidentified"}


def _textbook_jsonl(root: Path) -> dict:
    folder = root / "book"
    folder.mkdir()
    for k, line in enumerate((DATA / "textbook" / "openstax_ap2e_sections_sample.jsonl").read_text().splitlines()):
        (folder / f"sections_{k}.jsonl").write_text(line + "\n")
    (folder / "sections_2b.jsonl").write_text('{"text": "# Intro\\n\\nfine"}\n{"text": broken\n')
    return {"builder": "textbook_jsonl", "path": "book"}


def _textbook(root: Path) -> dict:
    folder = root / "books"
    folder.mkdir()
    for src in [DATA / "textbook" / "pharmacology_notes.txt",
                *(p for p in (EXAMPLES / "data" / "textbook").iterdir() if p.suffix in (".md", ".html"))]:
        shutil.copy(src, folder / src.name)
    (folder / "empty_notes.txt").write_bytes(b"")
    return {"builder": "textbook", "path": "books"}


def _transcripts(root: Path) -> dict:
    with (DATA / "dialogue" / "mts_dialog_sample.csv").open(newline="") as fh:
        header, *rows = list(csv.reader(fh))
    folder = root / "mts"
    folder.mkdir()
    for k in range(0, len(rows), 8):
        buf = io.StringIO()
        csv.writer(buf).writerows([header, *rows[k:k + 8]])
        (folder / f"mts_part{k:03d}.csv").write_text(buf.getvalue())
    (folder / "mts_part001x.csv").write_text("speaker,words\nDoctor,hello\n")  # no dialogue column
    return {"builder": "dialogue_transcripts", "path": "mts", "phi_status": "deidentified"}


def _meddialog(root: Path) -> dict:
    text = (DATA / "dialogue" / "meddialog_sample.txt").read_text()
    records = ["id=" + r for r in text.split("\nid=")]
    records[0] = records[0].removeprefix("id=")
    folder = root / "medd"
    folder.mkdir()
    for k, rec in enumerate(records):
        (folder / f"dialogues_{k}.txt").write_text(rec.rstrip("\n") + "\n")
    (folder / "dialogues_1b.txt").write_text("stray text before any record\n")
    return {"builder": "meddialog", "path": "medd", "phi_status": "deidentified"}


def _sharegpt(root: Path) -> dict:
    items = json.loads((DATA / "dialogue" / "sharegpt_sample.json").read_text())
    folder = root / "sharegpt"
    folder.mkdir()
    for k, item in enumerate(items):
        (folder / f"chats_{k}.json").write_text(json.dumps([item], indent=1))
    (folder / "chats_0b.json").write_text('[{"id": "x", "conversations": [\n  {"from": "human", ')
    return {"builder": "sharegpt", "path": "sharegpt", "phi_status": "deidentified"}


INPUTS = {"note_folder": _note_folder, "mtsamples": _mtsamples, "fhir_bundles": _fhir, "textbook_jsonl": _textbook_jsonl,
          "textbook": _textbook, "dialogue_transcripts": _transcripts, "meddialog": _meddialog,
          "sharegpt": _sharegpt}


# -- one build, everything it wrote -------------------------------------------------------------


def _build(root: Path, spec: dict, name: str, num_proc: int, limit: int | None = None, **kwargs) -> dict:
    data = {"name": "parallel-read", "inputs": [spec], "output": {"card": False, "keep_checkpoints": "all"}}
    out = root / name
    result = pipeline.run(recipe.from_dict(data, base_dir=root, source="r.yaml"), out, num_proc=num_proc,
                          limit=limit, strict=False, **kwargs)
    (checkpoint,) = (out / ".work").glob("00-*")
    shards = sorted((checkpoint / "data").glob("shard-*.arrow"))
    rows = []
    for shard in shards:
        with pa.OSFile(str(shard)) as fh:
            rows += pa.ipc.open_stream(fh).read_all().to_pylist()
    logs = {str(p.relative_to(out)): p.read_bytes()
            for p in sorted([*out.glob("dropped/*"), *out.glob("jsonl/*"), out / "quarantine.jsonl"]) if p.is_file()}
    (step,) = result.steps
    return {"shards": len(shards), "rows": rows, "logs": logs, "totals": result.totals,
            "step": (step.rows_in, step.rows_out, step.dropped, step.quarantined, step.counters, step.phi_status)}


def _same(one: dict, other: dict) -> None:
    assert other["rows"] == one["rows"]
    assert other["logs"] == one["logs"]
    assert other["step"] == one["step"] and other["totals"] == one["totals"]


@pytest.mark.parametrize("builder", sorted(INPUTS))
def test_a_split_read_equals_the_one_task_read(tmp_path, monkeypatch, builder):
    monkeypatch.chdir(tmp_path)  # meta.file: paths relative to the working folder
    spec = INPUTS[builder](tmp_path)
    one = _build(tmp_path, spec, "one", num_proc=1)
    two = _build(tmp_path, spec, "two", num_proc=2)
    assert one["shards"] == 1 and two["shards"] > 1
    _same(one, two)
    assert len({r["id"] for r in two["rows"]}) == len(two["rows"]) > 0
    # the broken file is one quarantine entry naming the file and the line (or "file")
    entries = [json.loads(line) for line in two["logs"]["quarantine.jsonl"].splitlines()]
    assert entries and all(e["file"] and e["locator"] for e in entries)
    assert any(("b." in e["file"] or "x." in e["file"] or "empty" in e["file"]) for e in entries)
    # with a limit, the first rows in file order: one task
    limited = _build(tmp_path, spec, "limited", num_proc=2, limit=3)
    assert limited["shards"] == 1 and limited["rows"] == _build(tmp_path, spec, "limited1", num_proc=1, limit=3)["rows"]


def test_files_that_may_share_ids_are_read_in_one_task(tmp_path, monkeypatch):
    """Ids taken from the data (note_id from the path, or two files with one name) may repeat
    across files; only one read renames the later ones the same way, so the read stays whole."""
    monkeypatch.chdir(tmp_path)
    spec = {**_note_folder(tmp_path), "id_pattern": r"(?P<patient_id>p\d+)/n(?P<note_id>\d)"}
    one, two = _build(tmp_path, spec, "one", num_proc=1), _build(tmp_path, spec, "two", num_proc=2)
    assert two["shards"] == 1 and two["step"][4]["ids.repeated_source_id"] > 0
    _same(one, two)
    (tmp_path / "a").mkdir()
    nested = _fhir(tmp_path / "a")
    shutil.copytree(tmp_path / "a" / "bundles", tmp_path / "a" / "bundles" / "copy")  # the same names, twice
    spec = {**nested, "path": "a/bundles"}
    one, two = _build(tmp_path, spec, "one-fhir", num_proc=1), _build(tmp_path, spec, "two-fhir", num_proc=2)
    assert two["shards"] == 1 and two["step"][4]["ids.repeated_source_id"] > 0
    _same(one, two)


def test_the_ray_engine_reads_the_same_slices(tmp_path, tmp_path_factory, monkeypatch):
    """On the two-node test cluster the file slices run as Ray tasks: the same checkpoint."""
    pytest.importorskip("ray")
    from ray_cluster import two_node_cluster

    monkeypatch.chdir(tmp_path)
    spec = _fhir(tmp_path)
    local = _build(tmp_path, spec, "local", num_proc=2)
    with two_node_cluster(tmp_path_factory.mktemp("ray")) as address:
        on_ray = _build(tmp_path, spec, "ray", num_proc=2, engine="ray", engine_options={"address": address})
    assert on_ray["shards"] == local["shards"] > 1
    _same(local, on_ray)
