"""QA websites and forums -> TRL ``messages`` (user question, assistant answer).

Three source layouts (the generic JSON/JSONL/CSV case is the ``table`` builder):

* ``medquad_xml`` – raw MedQuAD XML, every collection (``Document`` > ``Focus`` >
  ``QAPairs/QAPair`` > ``Question qid qtype`` + ``Answer``). Answers removed for copyright
  (the MedlinePlus collections 10-12 ship empty ``<Answer>``) are dropped as ``answer_removed``.
* ``stackexchange`` – a StackExchange data-dump ``Posts.xml``: questions joined with their
  accepted answer or their top-scored one, MedAlpaca style (``min_score``), HTML cleaned.
* ``alpaca_qa`` – HealthCareMagic / iCliniq / ChatDoctor Alpaca JSON (``instruction``,
  ``input``, ``output``), a JSON array streamed item by item, or JSONL.

Site boilerplate (greetings, "thanks for your query", "hope this helps", sign-offs, site
names) is removed from answers while reading (``strip_boilerplate: true``, the default) by
:mod:`meddata.text`'s engine with its shipped pattern list: the same answers as the
``strip_boilerplate`` cleaning step gives, which is the one to use for rows from other
builders (``table``). Files, ``source``, ``licence`` and ``glob`` work as in every
file-reading builder (:mod:`meddata.builders.source_io`).
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET
from xml.parsers import expat

from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows

from meddata import io, text
from meddata.records import messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext

CHUNK = 1 << 16
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


def _tidy(text: str | None) -> str:
    """XML text nodes keep the source's indentation; collapse it, keep paragraph breaks."""
    if not text:
        return ""
    lines = [_SPACES.sub(" ", line).strip() for line in html.unescape(text).split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


# --------------------------------------------------------------------------- streaming XML


def iter_xml(path: Path, tags: set[str], starts: set[str] = frozenset()) -> Iterator[tuple | Quarantine]:
    """Stream an XML file with expat, keeping line numbers.

    Yields ``("start", tag, attrs, line)`` for tags in ``starts`` and ``("element", elem,
    line)`` for each complete element whose tag is in ``tags`` (its subtree built, nothing
    else kept, so memory stays flat on multi-GB dumps). Malformed XML ends the file with one
    Quarantine naming the line; items before it were already yielded.
    """
    fname = str(path)
    events: list[tuple] = []
    stack: list[tuple[ET.Element, int]] = []
    parser = expat.ParserCreate()

    def start(tag: str, attrs: dict[str, str]) -> None:
        line = parser.CurrentLineNumber
        if tag in starts:
            events.append(("start", tag, attrs, line))
        if stack or tag in tags:
            el = ET.Element(tag, attrs)
            if stack:
                stack[-1][0].append(el)
            stack.append((el, line))

    def end(tag: str) -> None:
        if stack:
            el, line = stack.pop()
            if not stack:
                events.append(("element", el, line))

    def data(text: str) -> None:
        if stack:
            el = stack[-1][0]
            if len(el):
                el[-1].tail = (el[-1].tail or "") + text
            else:
                el.text = (el.text or "") + text

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.buffer_text = True
    try:
        fh = io.open_binary(path)
    except OSError as exc:
        raise FileNotFoundError(f"{fname}: cannot open ({exc.strerror})") from None
    with fh:
        first = fh.read(CHUNK)
        head = first.lstrip(b"\xef\xbb\xbf \t\r\n")
        if not head:
            yield Quarantine("the file is empty", fname, "line 1")
            return
        if not head.startswith(b"<"):
            yield Quarantine("not an XML file (it does not start with '<')", fname, "line 1")
            return
        try:
            chunk = first
            while True:
                parser.Parse(chunk, not chunk)
                yield from events
                events.clear()
                if not chunk:
                    break
                chunk = fh.read(CHUNK)
        except expat.ExpatError as exc:
            yield from events
            yield Quarantine(f"malformed XML ({expat.ErrorString(exc.code)}); the rest of the file was skipped",
                             fname, f"line {exc.lineno}")


# --------------------------------------------------------------------------- MedQuAD XML


def _boilerplate(enabled: bool) -> text.BoilerplatePatterns | None:
    """The one boilerplate engine (:mod:`meddata.text`) with the shipped list, or None."""
    return text.load_patterns([text.DEFAULT_BOILERPLATE]) if enabled else None


def _xml_files(builder: Builder, ctx: StepContext, patterns: tuple[str, ...]) -> Iterator[tuple[Path, str] | Quarantine]:
    """``(path, display name)`` of the XML files to read; an empty one is a quarantine entry."""
    for path in source_io.input_files(builder.params, patterns):
        file = ctx.display_path(path)
        if (q := source_io.empty_file(path, file)) is not None:
            yield q
        else:
            yield path, file


class MedquadParams(source_io.SourceParams):
    source: str | None = "medquad"
    licence: str | None = "CC-BY-4.0"
    #: MedQuAD questions read "What is (are) X ?"; tidy the space before the "?".
    fix_question_spacing: bool = True


@register
class MedquadXml(Builder):
    name = "medquad_xml"
    description = "Raw MedQuAD XML (all 12 collections) -> question/answer messages with focus and qtype."
    Params = MedquadParams
    output_columns = ("messages",)

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        for item in _xml_files(self, ctx, ("*.xml",)):
            yield from [item] if isinstance(item, Quarantine) else self._file(*item)

    def _file(self, path: Path, file: str) -> Iterator[dict | Drop | Quarantine]:
        p: MedquadParams = self.params
        doc: dict[str, str] = {}
        focus = ""
        for ev in iter_xml(path, {"Focus", "QAPair"}, starts={"Document"}):
            if isinstance(ev, Quarantine):
                yield Quarantine(ev.error, file, ev.locator)
            elif ev[0] == "start":
                doc = ev[2]
            elif ev[1].tag == "Focus":
                focus = _tidy(ev[1].text)
            else:
                yield self._pair(ev[1], ev[2], doc, focus, file, p)

    def _pair(self, el: ET.Element, line: int, doc: dict, focus: str, file: str, p: MedquadParams):
        q_el, a_el = el.find("Question"), el.find("Answer")
        locator = f"line {line}"
        qid = q_el.get("qid") if q_el is not None else None
        meta = new_meta(builder=self.name, file=file, locator=locator, licence=p.licence,
                        annotations={"collection": doc.get("source"), "url": doc.get("url"), "focus": focus,
                                     "qtype": q_el.get("qtype") if q_el is not None else None})
        row_id = f"{p.source}:{doc.get('source') or Path(file).stem}:{qid}" if qid else None
        if q_el is None or not _tidy(q_el.text):
            return Quarantine("QAPair has no <Question> text", file, locator)
        question = _tidy(q_el.text)
        if p.fix_question_spacing:
            question = re.sub(r"\s+([?.!,])", r"\1", question)
        answer = _tidy(a_el.text if a_el is not None else None)
        if not answer:
            self.stat_update("medquad.answer_removed")
            return Drop({"id": row_id, "source": p.source, "meta": meta, "question": question}, "answer_removed")
        return new_row(source=p.source, meta=meta, id=row_id,
                       messages=messages(("user", question), ("assistant", answer)))


# --------------------------------------------------------------------------- StackExchange


class StackExchangeParams(source_io.SourceParams):
    """``path``: Posts.xml (optionally .gz), or a folder holding one per site. ``licence``
    default: each post's ContentLicense (CC BY-SA 2.5 / 3.0 / 4.0)."""

    source: str | None = "stackexchange"
    #: Which answer pairs with a question: the accepted one, the top-scored one, or the
    #: accepted one falling back to the top-scored one.
    answer: Literal["accepted", "top", "accepted_or_top"] = "accepted_or_top"
    #: Minimum score of the chosen answer (MedAlpaca kept answers with at least 5 votes).
    min_score: int = 0
    min_question_score: int | None = None
    include_title: bool = True
    strip_boilerplate: bool = True
    tags: list[str] | None = None  # keep only questions carrying one of these tags


_SCHEMA = """
CREATE TABLE q (id INTEGER PRIMARY KEY, line INTEGER, score INTEGER, accepted INTEGER,
                title TEXT, body TEXT, tags TEXT, licence TEXT);
CREATE TABLE a (id INTEGER PRIMARY KEY, parent INTEGER, line INTEGER, score INTEGER, body TEXT);
"""


@register
class StackExchangePosts(Builder):
    name = "stackexchange"
    description = "StackExchange Posts.xml -> question + accepted/top answer messages, min_score, HTML cleaned."
    Params = StackExchangeParams
    output_columns = ("messages",)

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        for item in _xml_files(self, ctx, ("Posts.xml", "Posts.xml.gz", "*.xml")):
            yield from [item] if isinstance(item, Quarantine) else self._file(*item, ctx)

    def _file(self, path: Path, file: str, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        """Questions and answers are joined through an on-disk SQLite table in the step's
        scratch folder: a dump lists answers anywhere relative to their question, and
        holding a site's posts in RAM would not stay flat."""
        ctx.step_dir.mkdir(parents=True, exist_ok=True)
        db_path = ctx.step_dir / f"posts-{uuid.uuid4().hex}.sqlite"
        db = sqlite3.connect(db_path)
        try:
            db.executescript(_SCHEMA)
            yield from self._load(db, path, file)
            yield from self._join(db, file)
        finally:
            db.close()
            db_path.unlink(missing_ok=True)

    def _load(self, db: sqlite3.Connection, path: Path, file: str) -> Iterator[Quarantine]:
        batch_q: list[tuple] = []
        batch_a: list[tuple] = []
        for ev in iter_xml(path, {"row"}):
            if isinstance(ev, Quarantine):
                yield Quarantine(ev.error, file, ev.locator)
                continue
            _, el, line = ev
            attrs = el.attrib
            kind = attrs.get("PostTypeId")
            try:
                post_id = int(attrs["Id"])
                score = int(attrs.get("Score") or 0)
            except (KeyError, ValueError):
                yield Quarantine("row needs an integer 'Id' and 'Score'", file, f"line {line}")
                continue
            if kind == "1":
                accepted = attrs.get("AcceptedAnswerId")
                batch_q.append((post_id, line, score, int(accepted) if accepted and accepted.isdigit() else None,
                                attrs.get("Title") or "", attrs.get("Body") or "", attrs.get("Tags") or "",
                                attrs.get("ContentLicense")))
            elif kind == "2":
                parent = attrs.get("ParentId")
                if not (parent and parent.isdigit()):
                    yield Quarantine("answer row needs an integer 'ParentId'", file, f"line {line}")
                    continue
                batch_a.append((post_id, int(parent), line, score, attrs.get("Body") or ""))
                self.stat_update("stackexchange.answers")
            else:
                self.stat_update(f"stackexchange.skipped_post_type_{kind}")
            if len(batch_q) + len(batch_a) >= 5000:
                self._flush(db, batch_q, batch_a)
        self._flush(db, batch_q, batch_a)
        db.execute("CREATE INDEX a_parent ON a(parent, score)")

    @staticmethod
    def _flush(db: sqlite3.Connection, batch_q: list, batch_a: list) -> None:
        db.executemany("INSERT OR IGNORE INTO q VALUES (?,?,?,?,?,?,?,?)", batch_q)
        db.executemany("INSERT OR IGNORE INTO a VALUES (?,?,?,?,?)", batch_a)
        db.commit()
        batch_q.clear()
        batch_a.clear()

    def _join(self, db: sqlite3.Connection, file: str) -> Iterator[dict | Drop]:
        p: StackExchangeParams = self.params
        wanted_tags = {t.lower() for t in p.tags} if p.tags is not None else None
        boiler = _boilerplate(p.strip_boilerplate)
        for qid, line, qscore, accepted, title, body, tags, licence in db.execute(
                "SELECT id, line, score, accepted, title, body, tags, licence FROM q ORDER BY line"):
            tag_list = [t for t in re.split(r"[<>|]+", tags) if t]
            meta = new_meta(builder=self.name, file=file, locator=f"line {line}", licence=p.licence or licence,
                            annotations={"post_id": qid, "question_score": qscore, "tags": tag_list})
            stub = {"id": f"{p.source}:{qid}", "source": p.source, "meta": meta}
            if wanted_tags is not None and not wanted_tags & {t.lower() for t in tag_list}:
                yield Drop(stub, "other_tag")
                continue
            if p.min_question_score is not None and qscore < p.min_question_score:
                yield Drop(stub, "question_below_min_score")
                continue
            ans = self._answer(db, qid, accepted)
            if ans is None:
                yield Drop(stub, "no_answer")
                continue
            aid, ascore, abody = ans
            if ascore < p.min_score:
                yield Drop(stub, "below_min_score")
                continue
            question = text.tidy_whitespace(text.html_to_text(body))
            if p.include_title and title:
                question = f"{html.unescape(title).strip()}\n\n{question}".strip()
            answer = text.tidy_whitespace(text.html_to_text(abody))
            if boiler:
                answer = boiler.strip(answer)[0]
            if not question or not answer:
                yield Drop(stub, "empty_question" if not question else "empty_answer")
                continue
            meta["annotations"] = json.dumps({**json.loads(meta["annotations"]), "answer_id": aid,
                                              "answer_score": ascore, "accepted": aid == accepted}, sort_keys=True)
            yield new_row(source=p.source, meta=meta, id=stub["id"],
                          messages=messages(("user", question), ("assistant", answer)))

    def _answer(self, db: sqlite3.Connection, qid: int, accepted: int | None) -> tuple | None:
        mode = self.params.answer
        if mode in ("accepted", "accepted_or_top") and accepted is not None:
            found = db.execute("SELECT id, score, body FROM a WHERE id = ? AND parent = ?", (accepted, qid)).fetchone()
            if found or mode == "accepted":
                return found
        if mode == "accepted":
            return None
        return db.execute("SELECT id, score, body FROM a WHERE parent = ? ORDER BY score DESC, id LIMIT 1",
                          (qid,)).fetchone()


# --------------------------------------------------------------------------- Alpaca QA JSON


class AlpacaQaParams(source_io.SourceParams):
    #: The Alpaca ``instruction`` ("If you are a doctor, please answer ...") as a system
    #: turn, prepended to the user's text, or dropped.
    instruction: Literal["system", "prepend", "drop"] = "system"
    strip_boilerplate: bool = True
    format: Literal["json", "jsonl"] | None = None  # default: from the suffix
    phi_status: Literal["raw", "deidentified", "not_applicable"] = "not_applicable"


@register
class AlpacaQa(Builder):
    name = "alpaca_qa"
    description = "HealthCareMagic / iCliniq / ChatDoctor Alpaca JSON (instruction, input, output) -> messages."
    Params = AlpacaQaParams
    output_columns = ("messages",)

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: AlpacaQaParams = self.params
        boiler = _boilerplate(p.strip_boilerplate)
        for path in source_io.input_files(p, ("*.json*",)):
            file = ctx.display_path(path)
            if (q := source_io.empty_file(path, file)) is not None:
                yield q
                continue
            source = source_io.file_source(p, path)
            for item in self._items(path, file):
                if isinstance(item, Quarantine):
                    yield Quarantine(item.error, file, item.locator)
                    continue
                locator, rec = item
                yield self._row(rec, source, file, locator, boiler)

    def _items(self, path: Path, file: str) -> Iterator[tuple[str, Any] | Quarantine]:
        """``(line N, item)``: JSON Lines, or a JSON array streamed item by item."""
        p: AlpacaQaParams = self.params
        fmt = p.format or ("jsonl" if io.base_suffix(path) in (".jsonl", ".ndjson") else "json")
        if fmt == "jsonl":
            yield from io.iter_jsonl(path, p.encoding)
            return
        for item in io.iter_json_values(path, p.encoding, display=file):
            yield item if isinstance(item, Quarantine) else (f"line {item.line}", item.value)

    def _row(self, rec: Any, source: str, file: str, locator: str,
             boiler: text.BoilerplatePatterns | None) -> dict | Drop | Quarantine:
        p: AlpacaQaParams = self.params
        if not isinstance(rec, dict):
            return Quarantine(f"expected a JSON object, got {type(rec).__name__}", file, locator)
        bad = [k for k in ("instruction", "input", "output") if rec.get(k) is not None and not isinstance(rec[k], str)]
        if bad:
            return Quarantine(f"field '{bad[0]}' must be a string", file, locator)
        if "output" not in rec or ("input" not in rec and "instruction" not in rec):
            missing = "output" if "output" not in rec else "input"
            return Quarantine(f"field '{missing}' is missing (expected instruction, input, output)", file, locator)
        instruction = (rec.get("instruction") or "").strip()
        user = (rec.get("input") or "").strip()
        answer = (rec.get("output") or "").strip()
        if boiler:
            answer = boiler.strip(answer)[0]
        meta = new_meta(builder=self.name, file=file, locator=locator, licence=p.licence, phi_status=p.phi_status)
        turns: list[tuple[str, str]] = []
        if not user:
            user, instruction = instruction, ""
        elif instruction and p.instruction == "system":
            turns.append(("system", instruction))
        elif instruction and p.instruction == "prepend":
            user = f"{instruction}\n\n{user}"
        if not user or not answer:
            reason = "empty_question" if not user else "empty_answer"
            return Drop({"id": None, "source": source, "meta": meta}, reason)
        return new_row(source=source, meta=meta, messages=messages(*turns, ("user", user), ("assistant", answer)))
