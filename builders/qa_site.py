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
names) is removed from answers while reading (``strip_boilerplate: true``, the default) with
the pattern list in ``data/qa_boilerplate.txt``. For rows from other builders (``table``),
use the ``strip_boilerplate`` cleaning step.
"""

from __future__ import annotations

import html
import json
import re
import sqlite3
import uuid
from collections.abc import Iterator
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from xml.etree import ElementTree as ET
from xml.parsers import expat

from meddata.builders.rows_out import checked_rows

from meddata import io
from meddata.params import InputPath
from meddata.records import messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext, StepParams

DATA_DIR = Path(__file__).parent / "data"
BOILERPLATE_FILE = DATA_DIR / "qa_boilerplate.txt"
CHUNK = 1 << 16

# --------------------------------------------------------------------------- text helpers


@lru_cache(maxsize=8)
def load_boilerplate(path: str | Path = BOILERPLATE_FILE) -> tuple[re.Pattern[str], ...]:
    """Compile a pattern file (one regex per line, ``#`` comments); errors name the line."""
    patterns = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            patterns.append(re.compile(line.strip(), re.IGNORECASE))
        except re.error as exc:
            raise ValueError(f"{path}:{n}: invalid regular expression ({exc})") from None
    return tuple(patterns)


_LEAD_PUNCT = re.compile(r"\A[\s,.;:!-]+")
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n\s*\n\s*(?:\n\s*)+")


#: Boilerplate sits at the edges of an answer (greeting, thanks, sign-off, referral link):
#: long answers are cleaned in their first and last EDGE characters only, so the cost per
#: row stays flat however long the answer (and the middle of a text is never touched).
EDGE = 600


def strip_boilerplate(text: str, patterns: tuple[re.Pattern[str], ...] | None = None) -> str:
    """Delete every boilerplate match (repeatedly: removing a sign-off can expose a closer)."""
    patterns = load_boilerplate() if patterns is None else patterns
    if len(text) > 3 * EDGE:
        cut_head = text.rfind(" ", 0, EDGE) + 1 or EDGE  # cut at spaces, never inside a word
        cut_tail = text.find(" ", len(text) - EDGE)
        cut_tail = cut_tail if cut_tail > 0 else len(text) - EDGE
        head = _strip_all(text[:cut_head], [p for p in patterns if r"\Z" not in p.pattern])
        tail = _strip_all(text[cut_tail:], [p for p in patterns if not p.pattern.startswith(r"\A")])
        text = f"{head} {text[cut_head:cut_tail].strip()} {tail}"
    else:
        text = _strip_all(text, patterns)
    text = _SPACES.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    return _LEAD_PUNCT.sub("", _BLANKS.sub("\n\n", text)).strip()


def _strip_all(text: str, patterns) -> str:
    text = text.strip()
    for _ in range(4):
        before = text
        for pat in patterns:
            text = pat.sub(" ", text).strip()
        if text == before:
            break
    return text


class _HtmlText(HTMLParser):
    """HTML -> plain text keeping paragraph and list structure; code and links keep their text."""

    BLOCK = {"p", "div", "br", "ul", "ol", "pre", "blockquote", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "li":
            self.parts.append("\n- ")
        elif tag in self.BLOCK:
            self.parts.append("\n\n" if tag != "br" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCK and tag != "br":
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(markup: str) -> str:
    """StackExchange bodies are HTML: paragraphs and list items become lines, tags go."""
    if "<" not in markup and "&" not in markup:
        return markup.strip()
    parser = _HtmlText()
    parser.feed(markup)
    parser.close()
    text = _SPACES.sub(" ", "".join(parser.parts))
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = re.sub(r"\n{2,}(?=- )", "\n", re.sub(r"\n{3,}", "\n\n", text))  # list items stay together
    return text.strip()


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


class MedquadParams(StepParams):
    path: InputPath
    source: str = "medquad"
    licence: str | None = "CC-BY-4.0"
    glob: str = "*.xml"
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
        p: MedquadParams = self.params
        root = Path(p.path)
        for path in io.files_under(root, (p.glob,)):
            yield from self._file(path, ctx.display_path(path))

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


class StackExchangeParams(StepParams):
    path: InputPath  # Posts.xml (optionally .gz), or a folder holding one per site
    source: str = "stackexchange"
    licence: str | None = None  # default: each post's ContentLicense (CC BY-SA 2.5 / 3.0 / 4.0)
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
        root = Path(self.params.path)
        for path in io.files_under(root, ("Posts.xml", "Posts.xml.gz", "*.xml")):
            yield from self._file(path, ctx.display_path(path), ctx)

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
        boiler = load_boilerplate() if p.strip_boilerplate else ()
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
            question = html_to_text(body)
            if p.include_title and title:
                question = f"{html.unescape(title).strip()}\n\n{question}".strip()
            answer = html_to_text(abody)
            if boiler:
                answer = strip_boilerplate(answer, boiler)
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


def iter_json_stream(path: Path, encoding: str = "utf-8") -> Iterator[tuple[str, Any] | Quarantine]:
    """Items of a top-level JSON array, decoded one at a time (HealthCareMagic-100k is a
    140 MB array; this never holds more than one item plus a read buffer). Locators are the
    line where each item starts. A syntax error ends the file with one Quarantine."""
    fname = str(path)
    decoder = json.JSONDecoder()
    with io.open_binary(path) as fh:
        reader = _Chunks(fh, encoding, fname)
        try:
            reader.skip_ws()
            if reader.at_end():
                yield Quarantine("the file is empty (expected a JSON array)", fname, "line 1")
                return
            if reader.peek() != "[":
                yield Quarantine("expected a JSON array of objects ('[' at the start)", fname, f"line {reader.line}")
                return
            reader.advance(1)
            index = 0
            while True:
                reader.skip_ws()
                if reader.peek() == "]":
                    return
                if index:
                    if reader.peek() != ",":
                        raise _StreamError("expected ',' or ']' between items", reader.line)
                    reader.advance(1)
                    reader.skip_ws()
                start_line = reader.line
                obj, size = reader.decode(decoder)
                index += 1
                if size > _Chunks.MAX_ITEM:
                    yield Quarantine(f"item is {size:,} characters, over the {_Chunks.MAX_ITEM:,} limit",
                                     fname, f"line {start_line}")
                    continue
                yield f"line {start_line}", obj
        except _StreamError as exc:
            yield Quarantine(f"{exc.args[0]}; the rest of the file was skipped", fname, f"line {exc.line}")


class _StreamError(ValueError):
    def __init__(self, msg: str, line: int):
        super().__init__(msg)
        self.line = line


class _Chunks:
    """A sliding text buffer over a binary file for incremental JSON decoding."""

    MAX_ITEM = io.MAX_LINE_BYTES

    def __init__(self, fh, encoding: str, fname: str):
        import codecs

        self.fh, self.fname = fh, fname
        self.decoder = codecs.getincrementaldecoder(encoding)()
        self.encoding = encoding
        self.buf, self.pos, self.line, self.eof = "", 0, 1, False

    def _fill(self, size: int = CHUNK) -> bool:
        if self.eof:
            return False
        raw = self.fh.read(size)
        try:
            text = self.decoder.decode(raw, final=not raw)
        except UnicodeDecodeError:
            raise _StreamError(f"not valid {self.encoding}; {io.ENCODING_HINT}", self.line) from None
        if not raw:
            self.eof = True
        self.buf = self.buf[self.pos:] + text
        self.pos = 0
        return bool(raw) or bool(text)

    def skip_ws(self) -> None:
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in " \t\r\n":
                if self.buf[self.pos] == "\n":
                    self.line += 1
                self.pos += 1
            if self.pos < len(self.buf) or not self._fill():
                return

    def at_end(self) -> bool:
        return self.pos >= len(self.buf) and self.eof

    def peek(self) -> str:
        if self.pos >= len(self.buf) and not self._fill():
            raise _StreamError("unexpected end of file (truncated JSON)", self.line)
        return self.buf[self.pos]

    def advance(self, n: int) -> None:
        self.pos += n

    def decode(self, decoder: json.JSONDecoder) -> tuple[Any, int]:
        """The next JSON value and its length in characters."""
        while True:
            try:
                obj, end = decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # an item cut by the buffer edge: read more, unless the file is over
                pending = len(self.buf) - self.pos
                if not self.eof and pending < self.MAX_ITEM:
                    self._fill(max(CHUNK, pending))  # geometric growth: each retry re-scans the item
                    continue
                if not self.eof:
                    raise _StreamError(f"an item is larger than {self.MAX_ITEM:,} bytes", self.line) from None
                lineno = self.line + self.buf.count("\n", self.pos, exc.pos)
                raise _StreamError(f"invalid or truncated JSON ({exc.msg})", lineno) from None
            self.line += self.buf.count("\n", self.pos, end)
            size, self.pos = end - self.pos, end
            return obj, size


class AlpacaQaParams(StepParams):
    path: InputPath
    source: str | None = None
    licence: str | None = None
    #: The Alpaca ``instruction`` ("If you are a doctor, please answer ...") as a system
    #: turn, prepended to the user's text, or dropped.
    instruction: Literal["system", "prepend", "drop"] = "system"
    strip_boilerplate: bool = True
    format: Literal["json", "jsonl"] | None = None  # default: from the suffix
    encoding: str = "utf-8"
    glob: str = "*.json*"
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
        root = Path(p.path)
        boiler = load_boilerplate() if p.strip_boilerplate else ()
        for path in io.files_under(root, (p.glob,)):
            file = ctx.display_path(path)
            if path.stat().st_size == 0:
                yield Quarantine("the file is empty", file, "file")
                continue
            fmt = p.format or ("jsonl" if io.base_suffix(path) in (".jsonl", ".ndjson") else "json")
            items = io.iter_jsonl(path, p.encoding) if fmt == "jsonl" else iter_json_stream(path, p.encoding)
            source = p.source or path.name.split(".")[0]
            for item in items:
                if isinstance(item, Quarantine):
                    yield Quarantine(item.error, file, item.locator)
                    continue
                locator, rec = item
                yield self._row(rec, source, file, locator, boiler)

    def _row(self, rec: Any, source: str, file: str, locator: str, boiler: tuple) -> dict | Drop | Quarantine:
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
            answer = strip_boilerplate(answer, boiler)
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
