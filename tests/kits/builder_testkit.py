"""Build helpers for the builder tests: one-input recipes, output readers and the example
builds. Bad inputs and the checks on them live in ``badinput`` (the one bad-input kit)."""

from __future__ import annotations

from pathlib import Path

import yaml
from testutil import EXAMPLES, read_jsonl

from meddata import recipe


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
