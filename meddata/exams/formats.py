"""Parsers for the medical exam / evaluation formats: MedQA-USMLE, MedMCQA, PubMedQA, MMLU.

One item type (:class:`ExamItem`) for all four, so exam builders, decontamination and
evaluation read benchmark files the same way. Readers stream (JSONL and CSV line by line;
PubMedQA's ``ori_pqal.json`` is one JSON object and is parsed once) and turn malformed
records into :class:`~meddata.steps.Quarantine` entries with ``file``/``line`` and the
field at fault. Messages name fields, never quote values.

Formats (``fmt``):

* ``medqa`` – MedQA-USMLE JSONL: ``question``, ``options`` (``{"A": ..., "E": ...}``; a list
  of ``{key, value}`` or of strings is accepted too), ``answer_idx`` (letter), ``answer``
  (option text, checked against ``options[answer_idx]``), ``meta_info`` (``step1`` /
  ``step2&3``, kept as ``subject``).
* ``medmcqa`` – MedMCQA JSONL either in the original release layout (``opa``..``opd`` +
  ``cop``, ``subject_name``, ``exp``, ``id``) or the options-dict layout (``options`` +
  ``answer_idx``, ``realidx``). ``cop`` is **1-based** by default (the original release:
  1 = ``opa``); the Hugging Face ``medmcqa`` export is 0-based – pass ``cop_base=0``.
  A letter (``a``..``d``) in ``cop`` is accepted either way; ``cop = -1`` (the unlabelled
  test split) is quarantined.
* ``pubmedqa`` – ``ori_pqal.json``: an object keyed by PMID with ``QUESTION``,
  ``CONTEXTS`` (joined with newlines into ``context``), ``final_decision``
  (yes / no / maybe) and ``LONG_ANSWER``.
* ``mmlu`` – headerless CSV ``question,A,B,C,D,answer``; the subject comes from the file
  name (``clinical_knowledge_test.csv`` -> ``clinical_knowledge``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddata import io
from meddata.steps import Quarantine

FORMATS = ("medqa", "medmcqa", "pubmedqa", "mmlu")
DECISIONS = ("yes", "no", "maybe")
LETTERS = "ABCDEFGHIJ"
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")
#: Files a folder of exam files may hold.
EXAM_PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz", "*.csv", "*.csv.gz")


@dataclass(frozen=True)
class ExamItem:
    """One benchmark item. ``options`` is ``()`` for yes/no/maybe items (PubMedQA)."""

    id: str  # stable: format + file name + locator, or the dataset's own id
    question: str
    options: tuple[tuple[str, str], ...]  # ((label, text), ...)
    answer: str  # option label ("C") or "yes"/"no"/"maybe"
    kind: str  # "mcq" or "yes_no_maybe"
    context: str | None = None  # PubMedQA contexts joined
    long_answer: str | None = None  # PubMedQA LONG_ANSWER, MedMCQA explanation
    subject: str | None = None  # MMLU subject, MedMCQA subject, MedQA meta_info
    locator: str = ""  # "file.jsonl line 3"

    @property
    def answer_text(self) -> str:
        """Text of the correct option (the decision itself for yes/no/maybe items)."""
        for label, text in self.options:
            if label == self.answer:
                return text
        return self.answer


class _Bad(ValueError):
    """A record is malformed; the message names the field."""


# --------------------------------------------------------------------------- detection


def exam_files(path: Path) -> list[Path]:
    """The file itself, or the exam files under a folder (sorted)."""
    return io.files_under(path, EXAM_PATTERNS) if path.is_dir() else [path]


def _first_record(path: Path) -> dict[str, Any] | None:
    """The first JSON object of a JSONL file (or None when it has none in the first lines)."""
    for n, item in enumerate(io.iter_jsonl(path)):
        if not isinstance(item, Quarantine):
            return item[1]
        if n > 20:
            break
    return None


def _format_of_record(rec: Mapping[str, Any]) -> str:
    if "QUESTION" in rec or "final_decision" in rec:
        return "pubmedqa"
    if "cop" in rec or "opa" in rec or "subject_name" in rec or "realidx" in rec:
        return "medmcqa"
    return "medqa"


def detect_format(path: str | Path) -> str:
    """Guess the format of an exam file (or of the first file in a folder).

    File names decide first (``medmcqa``, ``pubmedqa``/``pqal``, ``mmlu``, ``medqa``/
    ``usmle``), then the layout: CSV is MMLU; a JSON object keyed by id is PubMedQA;
    JSONL with ``opa``/``cop``/``realidx``/``subject_name`` is MedMCQA, otherwise MedQA.
    Raises ValueError when the file fits none of them.
    """
    path = Path(path)
    first = exam_files(path)[0]
    name = path.name.lower() if path.is_dir() else first.name.lower()
    for key, fmt in (("medmcqa", "medmcqa"), ("pubmedqa", "pubmedqa"), ("pqal", "pubmedqa"),
                     ("mmlu", "mmlu"), ("medqa", "medqa"), ("usmle", "medqa")):
        if key in name:
            return fmt
    suffix = io.base_suffix(first)
    if suffix == ".csv":
        return "mmlu"
    if suffix == ".json":
        with io.open_binary(first) as fh:
            head = fh.read(4096).lstrip()
        if head.startswith(b"{") and (b'"QUESTION"' in head or b'"final_decision"' in head):
            return "pubmedqa"
        raise ValueError(f"{first}: cannot tell the exam format of this JSON file; "
                         f"set format to one of {', '.join(FORMATS)}")
    if suffix in (".jsonl", ".ndjson"):
        rec = _first_record(first)
        if rec is None:
            raise ValueError(f"{first}: no JSON object in the first lines; cannot tell the exam format")
        return _format_of_record(rec)
    raise ValueError(f"{first}: unknown exam file type {suffix or '(none)'}; "
                     f"expected .jsonl, .json or .csv, or set format to one of {', '.join(FORMATS)}")


# --------------------------------------------------------------------------- field helpers


def _text(rec: Mapping[str, Any], key: str) -> str:
    value = rec.get(key)
    if value is None:
        raise _Bad(f"field '{key}' is missing")
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _Bad(f"field '{key}' must be a string, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise _Bad(f"field '{key}' is empty")
    return text


def _optional(rec: Mapping[str, Any], key: str) -> str | None:
    value = rec.get(key)
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value).strip()
    return text or None


def _options(value: Any, field: str = "options") -> tuple[tuple[str, str], ...]:
    """Options as a dict {label: text}, a list of {key, value} or a list of strings."""
    pairs: list[tuple[str, Any]]
    if isinstance(value, Mapping):
        pairs = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        pairs = []
        for i, opt in enumerate(value):
            if isinstance(opt, Mapping) and ("key" in opt or "label" in opt):
                pairs.append((str(opt.get("key", opt.get("label"))), opt.get("value", opt.get("text"))))
            elif isinstance(opt, str) and i < len(LETTERS):
                pairs.append((LETTERS[i], opt))
            else:
                raise _Bad(f"field '{field}[{i}]' must be a string or an object with key and value")
    elif value is None:
        raise _Bad(f"field '{field}' is missing")
    else:
        raise _Bad(f"field '{field}' must be an object of label -> text, got {type(value).__name__}")
    if len(pairs) < 2:
        raise _Bad(f"field '{field}' needs at least two options, found {len(pairs)}")
    out = []
    for label, text in pairs:
        label = label.strip().upper()
        if not isinstance(text, (str, int, float)) or isinstance(text, bool) or not str(text).strip():
            raise _Bad(f"field '{field}.{label}' is empty or not a string")
        out.append((label, str(text).strip()))
    if len({label for label, _ in out}) != len(out):
        raise _Bad(f"field '{field}' repeats a label")
    return tuple(out)


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


# --------------------------------------------------------------------------- per-format parsers


def _medqa(rec: Mapping[str, Any], loc: str) -> ExamItem:
    question = _text(rec, "question")
    options = _options(rec.get("options"))
    labels = [label for label, _ in options]
    answer_idx = _optional(rec, "answer_idx")
    answer_text = _optional(rec, "answer")
    if answer_idx is not None:
        answer = answer_idx.upper()
        if answer not in labels:
            raise _Bad(f"field 'answer_idx' must be one of the option labels {labels}")
        if answer_text is not None and _norm(answer_text) != _norm(dict(options)[answer]):
            raise _Bad("field 'answer' does not match the option named by 'answer_idx'")
    elif answer_text is not None:
        matches = [label for label, text in options if _norm(text) == _norm(answer_text)]
        if len(matches) != 1:
            raise _Bad("field 'answer_idx' is missing and 'answer' matches no single option")
        answer = matches[0]
    else:
        raise _Bad("field 'answer_idx' is missing (and no 'answer')")
    own_id = _optional(rec, "id")
    return ExamItem(id=f"medqa:{own_id}" if own_id else f"medqa:{loc}", question=question, options=options,
                    answer=answer, kind="mcq", subject=_optional(rec, "meta_info"), locator=loc)


def _medmcqa(rec: Mapping[str, Any], loc: str, cop_base: int) -> ExamItem:
    question = _text(rec, "question")
    if "opa" in rec:
        keys = [k for k in ("opa", "opb", "opc", "opd", "ope") if k in rec]
        options = tuple((LETTERS[i], _text(rec, k)) for i, k in enumerate(keys))
        answer = _cop(rec.get("cop"), len(options), cop_base)
    else:
        options = _options(rec.get("options"))
        labels = [label for label, _ in options]
        if rec.get("answer_idx") is not None:
            answer = str(rec["answer_idx"]).strip().upper()
        elif rec.get("cop") is not None:
            answer = _cop(rec.get("cop"), len(options), cop_base)
        else:
            raise _Bad("field 'answer_idx' (or 'cop') is missing")
        if answer not in labels:
            raise _Bad(f"field 'answer_idx' must be one of the option labels {labels}")
        answer_text = _optional(rec, "answer")
        if answer_text is not None and _norm(answer_text) != _norm(dict(options)[answer]):
            raise _Bad("field 'answer' does not match the option named by 'answer_idx'")
    own_id = _optional(rec, "id") or _optional(rec, "realidx")
    return ExamItem(id=f"medmcqa:{own_id}" if own_id else f"medmcqa:{loc}", question=question,
                    options=options, answer=answer, kind="mcq", long_answer=_optional(rec, "exp"),
                    subject=_optional(rec, "subject_name"), locator=loc)


def _cop(value: Any, n_options: int, cop_base: int) -> str:
    """MedMCQA's correct-option field -> a letter. Integers use ``cop_base`` (0 or 1)."""
    if value is None or value == "":
        raise _Bad("field 'cop' is missing")
    if isinstance(value, str) and value.strip().isalpha() and len(value.strip()) == 1:
        letter = value.strip().upper()
        if letter not in LETTERS[:n_options]:
            raise _Bad(f"field 'cop' must be a letter A..{LETTERS[n_options - 1]}")
        return letter
    try:
        index = int(value) - cop_base
    except (TypeError, ValueError):
        raise _Bad("field 'cop' must be an option number or letter") from None
    if int(value) < 0:
        raise _Bad("field 'cop' is negative: the item has no answer key (unlabelled test split)")
    if not 0 <= index < n_options:
        hint = " (cop_base is 1, the original release; use cop_base=0 for the Hugging Face export)" \
            if cop_base == 1 and int(value) == 0 else ""
        raise _Bad(f"field 'cop' is out of range for {n_options} options with cop_base={cop_base}{hint}")
    return LETTERS[index]


def _pubmedqa(rec: Mapping[str, Any], loc: str, pmid: str | None) -> ExamItem:
    question = _text(rec, "QUESTION")
    decision = _optional(rec, "final_decision")
    if decision is None:
        raise _Bad("field 'final_decision' is missing (unlabelled PubMedQA items cannot be scored)")
    decision = decision.lower()
    if decision not in DECISIONS:
        raise _Bad(f"field 'final_decision' must be one of {DECISIONS}")
    contexts = rec.get("CONTEXTS")
    if contexts is None:
        context = None
    elif isinstance(contexts, list) and all(isinstance(c, str) for c in contexts):
        context = "\n".join(c.strip() for c in contexts if c.strip()) or None
    else:
        raise _Bad("field 'CONTEXTS' must be a list of strings")
    pmid = pmid or _optional(rec, "pubid") or _optional(rec, "PMID")
    return ExamItem(id=f"pubmedqa:{pmid}" if pmid else f"pubmedqa:{loc}", question=question, options=(),
                    answer=decision, kind="yes_no_maybe", context=context,
                    long_answer=_optional(rec, "LONG_ANSWER"), locator=loc)


_MMLU_SPLIT = re.compile(r"_(test|dev|val|validation|train|auxiliary_train)$")


def mmlu_subject(path: str | Path) -> str:
    """``clinical_knowledge_test.csv`` -> ``clinical_knowledge``."""
    name = Path(path).name
    stem = name.split(".", 1)[0]
    return _MMLU_SPLIT.sub("", stem)


def _mmlu(rec: Mapping[str, Any], loc: str, subject: str) -> ExamItem:
    question, *opts, answer = (str(rec[c]).strip() for c in MMLU_COLUMNS)
    if not question:
        raise _Bad("field 'question' (column 1) is empty")
    options = _options(dict(zip("ABCD", opts, strict=True)), "options")
    answer = answer.upper()
    if answer not in "ABCD" or len(answer) != 1:
        raise _Bad("field 'answer' (column 6) must be one of A, B, C, D")
    return ExamItem(id=f"mmlu:{loc}", question=question, options=options, answer=answer, kind="mcq",
                    subject=subject, locator=loc)


# --------------------------------------------------------------------------- readers


def _read_file(path: Path, fmt: str, cop_base: int, encoding: str) -> Iterator[ExamItem | Quarantine]:
    fname = str(path)
    if fmt == "mmlu":
        records = io.iter_csv(path, encoding, delimiter=",", header=False, fieldnames=list(MMLU_COLUMNS))
    elif fmt == "pubmedqa":
        records = io.iter_json_array(path, encoding)
    else:
        records = io.iter_jsonl(path, encoding)
    subject = mmlu_subject(path)
    for item in records:
        if isinstance(item, Quarantine):
            yield item
            continue
        where, rec = item
        pmid = None
        if fmt == "pubmedqa" and where.startswith("key "):
            pmid = where[4:]
            where = f"PMID {pmid}"
            rec = {k: v for k, v in rec.items() if k != "_key"}
        loc = f"{path.name} {where}"
        try:
            if fmt == "medqa":
                yield _medqa(rec, loc)
            elif fmt == "medmcqa":
                yield _medmcqa(rec, loc, cop_base)
            elif fmt == "pubmedqa":
                yield _pubmedqa(rec, loc, pmid)
            else:
                yield _mmlu(rec, loc, subject)
        except _Bad as exc:
            yield Quarantine(f"{fmt}: {exc}", fname, where)


def read_exam(
    path: str | Path, fmt: str | None = None, *, cop_base: int = 1, encoding: str = "utf-8",
) -> Iterator[ExamItem | Quarantine]:
    """Stream the items of an exam file (or a folder of them) in file order.

    Malformed records come out as :class:`Quarantine` (file, ``line N`` / ``PMID N``, the
    field at fault), so a caller can count them; use :func:`load_exam` to fail instead.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown exam format {fmt!r}; use one of {', '.join(FORMATS)}")
    if cop_base not in (0, 1):
        raise ValueError("cop_base must be 0 (Hugging Face medmcqa export) or 1 (original release)")
    for file in exam_files(path):
        yield from _read_file(file, fmt or detect_format(file), cop_base, encoding)


def load_exam(path: str | Path, fmt: str | None = None, *, cop_base: int = 1) -> list[ExamItem]:
    """All items of an exam file; raises ValueError naming ``file:line`` on the first bad record."""
    items: list[ExamItem] = []
    for item in read_exam(path, fmt, cop_base=cop_base):
        if isinstance(item, Quarantine):
            raise ValueError(f"{item.file}:{item.locator}: {item.error}")
        items.append(item)
    return items


def item_from_row(row: Mapping[str, Any], locator: str = "") -> ExamItem:
    """An exam row (``question``, ``options`` [{label, text}], ``answer``; optional
    ``context``/``subject``/``explanation`` columns) back into an :class:`ExamItem`.
    Raises ValueError naming the field when the row is not a complete exam item."""
    question = (row.get("question") or "").strip()
    if not question:
        raise ValueError("field 'question' is missing or empty")
    answer = (row.get("answer") or "").strip()
    if not answer:
        raise ValueError("field 'answer' is missing or empty")
    options = tuple((str(o.get("label") or "").strip(), str(o.get("text") or "").strip())
                    for o in row.get("options") or [])
    if options:
        if any(not label or not text for label, text in options):
            raise ValueError("field 'options' has an entry without label or text")
        if answer not in {label for label, _ in options}:
            raise ValueError("field 'answer' is not one of the option labels")
        kind = "mcq"
    elif answer.lower() in DECISIONS:
        kind, answer = "yes_no_maybe", answer.lower()
    else:
        raise ValueError("field 'options' is empty and 'answer' is not yes, no or maybe")
    return ExamItem(id=str(row.get("id") or ""), question=question, options=options, answer=answer, kind=kind,
                    context=row.get("context") or None, long_answer=row.get("explanation") or None,
                    subject=row.get("subject") or None, locator=locator)
