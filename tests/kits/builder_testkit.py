"""Shared checks for the builder tests (EHR, dialogue, textbook): bad-input generators, build
output readers and the accounting assertion. Imported by tests/builders/test_*.py."""

from __future__ import annotations

import random
from pathlib import Path

import yaml
from testutil import EXAMPLES, read_jsonl

from meddata import recipe

SECRET = "Zebulon Quackenbush"  # a fake patient name planted in bad inputs; it must never reach a log
BAD_KINDS = ["truncated_json", "latin1", "binary", "empty", "long_line"]


def bad_bytes(kind: str, good: bytes) -> bytes:
    """A damaged version of ``good`` (a valid small input containing the word ``pain``)."""
    if kind == "truncated_json":
        return (b'{"note_id": 1, "transcription": "SUBJECTIVE: ' + SECRET.encode()
                + b' has pain", "resourceType": "Bundle", "conversations": [{"from": "hu')
    if kind == "latin1":
        return good.replace(b"pain", b"pain " + SECRET.encode() + b" caf\xe9")  # \xe9: latin-1 e-acute
    if kind == "binary":
        return random.Random(0).randbytes(64 * 1024)
    if kind == "empty":
        return b""
    if kind == "long_line":
        return (SECRET + " ").encode() * (10 * 1024 * 1024 // (len(SECRET) + 1))
    raise ValueError(kind)


def one(builder: str, path: Path | str, **params) -> dict:
    """A recipe dict with a single input."""
    return {"name": "t", "inputs": [{"builder": builder, "path": str(path), **params}], "output": {"card": False}}


def rows_of(result) -> list[dict]:
    path = result.out_dir / "jsonl" / "train.jsonl"
    return read_jsonl(path) if path.exists() else []


def quarantine_of(result) -> list[dict]:
    return read_jsonl(result.out_dir / "quarantine.jsonl")


def drops_of(result) -> list[dict]:
    return [r for f in sorted((result.out_dir / "dropped").glob("*.jsonl")) for r in read_jsonl(f)]


def build_example(build, name: str) -> tuple[object, list[dict]]:
    """Build examples/recipes/<name>.yaml as a user would (without the dataset card, which has its
    own tests): every input's builder yields rows and the file validates as written.
    Returns the build result and its rows."""
    path = EXAMPLES / "recipes" / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["output"]["card"] = False
    result = build(data, base_dir=path.parent)
    rows = rows_of(result)
    assert {r["meta"]["builder"] for r in rows} == {b["builder"] for b in data["inputs"]}
    recipe.load(path)
    return result, rows


def assert_counts_add_up(result) -> None:
    t = result.totals
    assert t["read"] == t["out"] + t["dropped"] + t["quarantined"] - t["created"]


def assert_bad_input_handled(result, folder: Path) -> list[dict]:
    """The build finished, counted everything, quarantined with file:locator, leaked nothing."""
    assert_counts_add_up(result)
    q = quarantine_of(result)
    assert result.totals["quarantined"] == len(q) >= 1
    for entry in q:
        assert Path(entry["file"]).parent == folder and entry["locator"] and entry["error"]
    for log in [result.out_dir / "quarantine.jsonl", result.stats_path, *result.out_dir.glob("dropped/*.jsonl")]:
        assert SECRET not in log.read_text(encoding="utf-8")
    return q


def write_pdf(path: Path, pages: list[list[str]], outline: list[tuple[str, int, int]] | None = None) -> Path:
    """A minimal text PDF written byte by byte (no reportlab): one Helvetica line per string.

    ``outline`` adds bookmarks as ``(title, page index, depth)`` with pypdf, for readers that
    use a PDF's outline to find headings.
    """

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    page_ids = [4 + 2 * i for i in range(len(pages))]
    objs: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: f"<< /Type /Pages /Kids [{' '.join(f'{p} 0 R' for p in page_ids)}] /Count {len(pages)} >>".encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for pid, lines in zip(page_ids, pages):
        data = ("BT /F1 11 Tf 14 TL 72 740 Td " + " ".join(f"({esc(ln)}) Tj T*" for ln in lines) + " ET").encode("latin-1")
        objs[pid] = (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> "
                     f"/Contents {pid + 1} 0 R >>").encode()
        objs[pid + 1] = b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for oid in sorted(objs):
        offsets[oid] = len(out)
        out += b"%d 0 obj\n" % oid + objs[oid] + b"\nendobj\n"
    xref, size = len(out), max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[oid] for oid in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    path = Path(path)
    path.write_bytes(bytes(out))
    if outline:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(str(path)))
        parents: dict[int, object] = {}
        for title, page, depth in outline:
            parents[depth] = writer.add_outline_item(title=title, page_number=page, parent=parents.get(depth - 1))
        with path.open("wb") as fh:
            writer.write(fh)
    return path
