"""Template task makers: rows -> instruction ``messages`` with fixed templates, no LLM.

So a build yields training data without any endpoint:

* ``section_summary`` – a note section -> another section (HPI -> assessment and plan,
  findings -> impression, brief hospital course -> discharge diagnosis), from the
  ``sections`` column the EHR builders fill.
* ``dialogue_note`` – a doctor-patient dialogue (``messages``) + its paired note section
  (``sections``) -> "Write the <section> section of the clinical note for this encounter"
  (MTS-Dialog's task; one row per paired section). Read the dialogues with
  ``dialogue_shape: as_is``: rows a builder shaped for chat are counted as ``transcript_shaped``.
* ``qa_messages`` – a free-text ``question``/``answer`` pair -> messages.
* ``mcq_instruction`` – an exam item (``question``, ``options``, ``answer``) -> lettered
  options -> "C. <option text>" (+ explanation), the format of the ``exam`` builder.
* ``glossary_qa`` – a glossary term (``question``) and its definition (``answer``), e.g. the
  OpenStax glossary read with ``table`` -> "What is <term>?" -> "<Term>: <definition>."

A row that lacks what its task needs is dropped with a reason (``no_section``,
``no_question`` ...), never passed on silently; ``passthrough: true`` keeps rows that
already hold training content (messages or prompt/completion) unchanged instead, for
recipes that mix sources. Source content the task consumed (``text``, ``sections``, the exam
columns) is cleared, so raw note text does not ride along next to the instruction.
"""

from __future__ import annotations

import random
import re
from typing import Any, ClassVar

from meddata.builders.exam import ExamPromptParams
from meddata.builders.sections import canonical_title, find_section
from pydantic import Field, field_validator

from meddata import exams
from meddata.records import annotations, detect_type, messages
from meddata.registry import register
from meddata.steps import Drop, Mapper, Quarantine, StepContext, StepParams

CONSUMED = ("text", "sections", "question", "options", "answer", "context", "subject", "explanation")


class TaskParams(StepParams):
    #: Apply the task only to rows whose ``source`` is listed; other rows pass unchanged.
    sources: list[str] | None = None
    #: Keep rows that already hold messages or prompt/completion but lack this task's inputs.
    passthrough: bool = False
    system: str | None = None  # an optional system turn for every produced row


class TemplateTask(Mapper):
    """Shared plumbing: the produced row, passthrough, and drops with reasons."""

    prompt_version: ClassVar[str] = "v1"
    output_columns = ("messages",)

    def process(self, row: dict, ctx: StepContext) -> dict | list[dict] | Drop | Quarantine:
        if self.params.sources is not None and row.get("source") not in self.params.sources:
            self.stat_update("other_source")
            return row
        return self.make(row)

    def make(self, row: dict) -> dict | list[dict] | Drop | Quarantine:
        """The task itself: the produced row(s), or a Drop naming what the row lacks."""
        raise NotImplementedError

    def skip(self, row: dict, reason: str) -> dict | Drop:
        if self.params.passthrough and detect_type(row) in ("conversational", "prompt_completion", "preference"):
            self.stat_update("passthrough")
            return row
        return Drop(row, reason)

    def produce(self, row: dict, user: str, assistant: str, *, variant: str = "", row_id: str | None = None) -> dict:
        out = dict(row)
        for col in CONSUMED:
            if col in out:
                out[col] = None
        turns = [("system", self.params.system)] if self.params.system else []
        out["messages"] = messages(*turns, ("user", user), ("assistant", assistant))
        meta = dict(out["meta"])
        meta["prompt_id"] = f"{self.name}:{self.prompt_version}{':' + variant if variant else ''}"
        out["meta"] = meta
        if row_id:
            out["id"] = row_id
        return out


def check_template(template: str, allowed: set[str]) -> str:
    """Fail at recipe load, not mid-build, on a placeholder the task cannot fill."""
    names = {m for m in re.findall(r"{([^{}]*)}", template)}
    if names - allowed:
        raise ValueError(f"unknown placeholder(s) {sorted(names - allowed)}; allowed: {', '.join(sorted(allowed))}")
    return template


def readable_title(title: str) -> str:
    """``GENHX`` -> ``history of present illness``; ``Brief Hospital Course`` -> lower case."""
    return canonical_title(title) or " ".join(title.split()).strip(" :").lower()


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "section"


# --------------------------------------------------------------------------- section -> summary


class SectionSummaryParams(TaskParams):
    #: Source section, first found wins (titles or aliases: "HPI", "history of present illness").
    input_sections: list[str] = Field(default_factory=lambda: ["history of present illness"], min_length=1)
    #: Target section, first found wins.
    target_sections: list[str] = Field(
        default_factory=lambda: ["assessment and plan", "assessment", "impression"], min_length=1)
    instruction: str = "Summarize the {input} below into the {target} section of the clinical note."
    min_target_chars: int = Field(20, ge=1)

    @field_validator("instruction")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return check_template(v, {"input", "target"})


@register
class SectionSummary(TemplateTask):
    name = "section_summary"
    description = "Note section -> another section (HPI -> assessment and plan, findings -> impression); no LLM."
    Params = SectionSummaryParams
    input_columns = ("sections",)

    def make(self, row: dict) -> dict | Drop:
        p: SectionSummaryParams = self.params
        if not row.get("sections"):
            return self.skip(row, "no_section")
        source = find_section(row["sections"], *p.input_sections)
        target = find_section(row["sections"], *p.target_sections)
        if source is None or not (source.get("text") or "").strip():
            return self.skip(row, "no_input_section")
        if target is None or not (target.get("text") or "").strip():
            return self.skip(row, "no_target_section")
        if len(target["text"].strip()) < p.min_target_chars:
            return self.skip(row, "target_too_short")
        instruction = p.instruction.format(input=readable_title(source["title"]),
                                           target=readable_title(target["title"]))
        return self.produce(row, f"{instruction}\n\n{source['text'].strip()}", target["text"].strip())


# --------------------------------------------------------------------------- dialogue -> note


class DialogueNoteParams(TaskParams):
    #: Which paired sections to write (titles or aliases); None: every section of the row.
    sections: list[str] | None = None
    instruction: str = "Write the {section} section of the clinical note for this encounter."
    #: How the transcript names each role in the prompt.
    speaker_names: dict[str, str] = Field(default_factory=lambda: {"user": "Patient", "assistant": "Doctor"})

    @field_validator("instruction")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return check_template(v, {"section"})


@register
class DialogueNote(TemplateTask):
    name = "dialogue_note"
    description = "Dialogue + paired note section -> 'Write the <section> section of the clinical note' (MTS-Dialog)."
    Params = DialogueNoteParams
    input_columns = ("messages", "sections")
    creates_rows = True

    def make(self, row: dict) -> dict | list[dict] | Drop:
        p: DialogueNoteParams = self.params
        turns = [m for m in row.get("messages") or [] if m["role"] != "system" and (m["content"] or "").strip()]
        if not turns:
            return Drop(row, "no_dialogue")
        sections = [s for s in row.get("sections") or [] if (s.get("text") or "").strip()]
        if p.sections is not None:
            sections = [s for s in sections if find_section([s], *p.sections)]
        if not sections:
            return Drop(row, "no_section")
        if "shaped" in annotations(row):  # the builder's dialogue_shape moved or trimmed turns
            self.stat_update("transcript_shaped")
        transcript = "\n".join(f"{p.speaker_names.get(m['role'], m['role'].capitalize())}: {m['content'].strip()}"
                               for m in turns)
        out = []
        for title, text in self.by_title(sections).items():
            user = f"{p.instruction.format(section=title)}\n\n{transcript}"
            out.append(self.produce(row, user, text, variant=_slug(title), row_id=f"{row['id']}:{_slug(title)}"))
        return out

    def by_title(self, sections: list[dict]) -> dict[str, str]:
        """Section text per readable title, in note order. Sections that share a title (a
        "Labs:" line inside RESULTS is a second "pertinent results") are merged: one prompt
        asks for that section, so it gets one answer, and the row id stays unique."""
        merged: dict[str, list[str]] = {}
        for s in sections:
            merged.setdefault(readable_title(s["title"] or "note"), []).append(s["text"].strip())
        for parts in merged.values():
            if len(parts) > 1:
                self.stat_update("merged_same_title_sections", len(parts) - 1)
        return {title: "\n\n".join(parts) for title, parts in merged.items()}


# --------------------------------------------------------------------------- QA pair -> messages


class QaMessagesParams(TaskParams):
    pass


@register
class QaMessages(TemplateTask):
    name = "qa_messages"
    description = "Free-text question/answer columns -> user/assistant messages."
    Params = QaMessagesParams
    input_columns = ("question", "answer")

    def make(self, row: dict) -> dict | Drop:
        question, answer = (row.get("question") or "").strip(), (row.get("answer") or "").strip()
        if row.get("options"):
            return self.skip(row, "is_mcq")  # lettered options: use mcq_instruction
        if not question:
            return self.skip(row, "no_question")
        if not answer:
            return self.skip(row, "no_answer")
        return self.produce(row, question, answer)


# --------------------------------------------------------------------------- MCQ -> instruction


class McqInstructionParams(TaskParams, ExamPromptParams):
    #: Follow the answer with the item's explanation / long answer when it has one.
    explanation: bool = True


@register
class McqInstruction(TemplateTask):
    name = "mcq_instruction"
    description = "Exam items (question, options, answer) -> lettered-option prompt -> 'C. <text>' messages."
    Params = McqInstructionParams
    input_columns = ("question", "options", "answer", "context", "explanation")

    def make(self, row: dict) -> dict | Drop | Quarantine:
        if not (row.get("question") or "").strip():
            return self.skip(row, "no_question")
        if not (row.get("answer") or "").strip():
            return self.skip(row, "no_answer")
        meta = row.get("meta") or {}
        try:
            item = exams.item_from_row(row)
        except ValueError as exc:  # a malformed exam row, not a missing input
            return Quarantine(f"{self.name}: {exc}", meta.get("file"), meta.get("locator"), row=row)
        user, assistant = exams.instruction_turns(item, explanation=self.params.explanation,
                                                  templates=self.params.templates())
        return self.produce(row, user, assistant, variant=item.kind)


# --------------------------------------------------------------------------- glossary -> QA


class GlossaryQaParams(TaskParams):
    #: Question paraphrases ({term}); one is picked per term, deterministically from the seed.
    questions: list[str] = Field(default_factory=lambda: [
        "What is {term}?", "Define {term}.", 'What does the term "{term}" mean?',
        "What is meant by {term}?"], min_length=1)
    #: {term}, {Term} (capitalised), {definition}; a final period is added when missing.
    answer: str = "{Term}: {definition}"
    seed: int = 0

    @field_validator("questions")
    @classmethod
    def _question_placeholders(cls, v: list[str]) -> list[str]:
        return [check_template(q, {"term", "Term"}) for q in v]

    @field_validator("answer")
    @classmethod
    def _answer_placeholders(cls, v: str) -> str:
        return check_template(v, {"term", "Term", "definition"})


@register
class GlossaryQa(TemplateTask):
    name = "glossary_qa"
    description = "Glossary term (question) + definition (answer) -> 'What is <term>?' QA messages."
    Params = GlossaryQaParams
    input_columns = ("question", "answer")

    def make(self, row: dict) -> dict | Drop:
        p: GlossaryQaParams = self.params
        term, definition = (row.get("question") or "").strip(), (row.get("answer") or "").strip()
        if not term:
            return self.skip(row, "no_term")
        if not definition:
            return self.skip(row, "no_definition")
        k = random.Random(f"{p.seed}\x1f{term.casefold()}").randrange(len(p.questions))
        values: dict[str, Any] = {"term": term, "Term": term[0].upper() + term[1:], "definition": definition}
        answer = p.answer.format(**values)
        if answer[-1] not in ".!?":
            answer += "."
        return self.produce(row, p.questions[k].format(**values), answer, variant=str(k))
