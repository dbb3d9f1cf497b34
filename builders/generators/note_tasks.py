"""De-identified clinical note -> instruction tasks: a clinician summary, a problem list, a
medication list and plain-language discharge instructions (one conversation per task:
the task instruction with the note, then the model's answer).

Notes are PHI. Every request carries the note's ``meta.phi_status``; the LLM client's PHI
guard refuses, before any connection opens, to send a note whose status is not
``deidentified``/``not_applicable`` to an endpoint off this machine (run ``deid`` first, or
use a local server). Rows made from a note inherit its status, patient and encounter ids.

Medication lists are checked against the note: a medication whose name does not occur in
the note is an invention, and the whole list is rejected
(``note_tasks.rejected.ungrounded_medication``). When every task of a note is rejected,
the note is dropped as ``no_usable_note_tasks``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field

from meddata.llm import ChatRequest, ChatResponse
from meddata.llm.generator import LLMGenerator
from meddata.llm.scope import ScopedParams, in_scope
from meddata.records import annotate, detect_type, messages
from meddata.registry import register
from meddata.steps import Drop, Outcome

Task = Literal["summary", "problem_list", "medication_list", "discharge_instructions"]
ALL_TASKS: tuple[str, ...] = ("summary", "problem_list", "medication_list", "discharge_instructions")

#: The user turn of each training example (the note follows it).
INSTRUCTIONS: dict[str, str] = {
    "summary": "Summarize this clinical note in a short paragraph for the clinician taking over the patient's care.",
    "problem_list": "List the patient's medical problems documented in this clinical note, with the status of each.",
    "medication_list": "List every medication in this clinical note with its dose, route and frequency where stated.",
    "discharge_instructions": "Write plain-language discharge instructions for the patient based on this clinical note.",
}
_STR = {"type": "string"}


def _obj(required: list[str], **props: dict) -> dict:
    return {"type": "object", "required": required, "properties": props}


def _list_of(item: dict) -> dict:
    return {"type": "array", "items": item}


SCHEMAS: dict[str, dict] = {
    "summary": _obj(["summary"], summary={"type": "string", "minLength": 20}),
    "problem_list": _obj(["problems"], problems=_list_of(_obj(
        ["problem", "status"], problem={"type": "string", "minLength": 2},
        status={"type": "string", "enum": ["active", "chronic", "resolved", "suspected"]}))),
    "medication_list": _obj(["medications"], medications=_list_of(_obj(
        ["name", "dose", "route", "frequency"], name={"type": "string", "minLength": 2},
        dose=_STR, route=_STR, frequency=_STR))),
    "discharge_instructions": _obj(["instructions"], instructions={"type": "string", "minLength": 20}),
}
NO_PROBLEMS = "No medical problems are documented in this note."
NO_MEDICATIONS = "No medications are documented in this note."


class NoteTasksParams(ScopedParams):
    tasks: list[Task] = Field(default_factory=lambda: list(ALL_TASKS), min_length=1)
    min_chars: int = Field(default=100, ge=1, description="shorter notes are dropped (note_too_short)")
    max_chars: int = Field(default=20000, ge=100, description="longer notes are dropped (note_too_long)")
    keep_source: bool = Field(default=False, description="also keep the note row itself")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def grounded(name: str, note_words: set[str]) -> bool:
    """A medication name occurs in the note when its first alphabetic word does."""
    words = re.findall(r"[a-z][a-z0-9-]+", name.lower())
    return bool(words) and all(part in note_words for part in words[0].split("-"))


def format_answer(task: str, parsed: dict[str, Any]) -> str:
    """The assistant turn for one task's structured answer."""
    if task == "summary":
        return str(parsed["summary"]).strip()
    if task == "discharge_instructions":
        return str(parsed["instructions"]).strip()
    if task == "problem_list":
        items = [f"- {str(p['problem']).strip()} ({p['status']})" for p in parsed["problems"] if str(p["problem"]).strip()]
        return "\n".join(items) or NO_PROBLEMS
    lines = []
    for med in parsed["medications"]:
        parts = [str(med.get(k) or "").strip() for k in ("name", "dose", "route", "frequency")]
        if parts[0]:
            lines.append("- " + parts[0] + (": " + ", ".join(x for x in parts[1:] if x) if any(parts[1:]) else ""))
    return "\n".join(lines) or NO_MEDICATIONS


@register
class NoteTasks(LLMGenerator):
    name = "note_tasks"
    description = "LLM: de-identified note -> summary, problem list, medication list, discharge instructions."
    Params = NoteTasksParams
    template_file = "note_tasks.jinja"
    input_columns = ("text",)
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        return in_scope(self.params, row) and detect_type(row) == "language_modeling"

    def prepare(self, row: dict) -> dict[str, Any] | Drop:
        p: NoteTasksParams = self.params
        note = (row.get("text") or "").strip()
        if len(note) < p.min_chars:
            return Drop(row, "note_too_short")
        if len(note) > p.max_chars:
            return Drop(row, "note_too_long")
        tasks = list(dict.fromkeys(p.tasks))
        return {"note": note, "tasks": tasks, "task": tasks[0]}

    def requests(self, row: dict, messages: list[dict], variables: dict[str, Any]) -> list[ChatRequest]:
        return [self.request(row, self.prompt.render({**variables, "task": t}), SCHEMAS[t]) for t in variables["tasks"]]

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        p: NoteTasksParams = self.params
        note = variables["note"]
        note_words = _words(note)
        made = []
        for task, resp in zip(variables["tasks"], responses):
            if task == "medication_list" and not all(grounded(str(m["name"]), note_words)
                                                     for m in resp.parsed["medications"]):
                self.stat_update("note_tasks.rejected.ungrounded_medication")
                continue
            answer = format_answer(task, resp.parsed)
            if not answer:
                self.stat_update("note_tasks.rejected.empty")
                continue
            new = self.derived_row(row, ALL_TASKS.index(task), resp.model,
                                   messages=messages(("user", f"{INSTRUCTIONS[task]}\n\n{note}"), ("assistant", answer)))
            made.append(annotate(new, "note_tasks.task", task))
            self.stat_update(f"note_tasks.{task}")
        if not made:
            return [row] if p.keep_source else Drop(self.mark_generated(row, responses[0].model), "no_usable_note_tasks")
        return [row, *made] if p.keep_source else made
