"""Exam question banks -> evaluation items or instruction rows.

Reads MedQA-USMLE, MedMCQA, PubMedQA and MMLU files (or folders of them) through
:mod:`meddata.exams`, the same parser decontamination and evaluation use, so an item has
the same id wherever it appears.

``as: eval`` keeps the item: ``question``, ``options`` ([{label, text}]; none for
PubMedQA), ``answer`` (label or yes/no/maybe), plus ``context``, ``subject`` and
``explanation`` columns. ``as: instruction`` writes TRL ``messages``: the question with
lettered options -> ``"C. <option text>"`` (and the explanation, if any).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from datasets import Value
from meddata.builders import source_io
from meddata.builders.rows_out import checked_rows
from pydantic import ConfigDict, Field, field_validator

from meddata import exams
from meddata.records import messages, new_meta, new_row
from meddata.registry import register
from meddata.steps import Builder, Drop, Quarantine, StepContext, StepParams

EXAM_FEATURES = {"context": Value("string"), "subject": Value("string"), "explanation": Value("string")}


class ExamPromptParams(StepParams):
    """The user-turn templates of exam instruction rows ({question}, {options}, {context}); the
    defaults are meddata.exams' one MCQ prompt, which `meddata eval` scores with too (or reads
    back from the build's stats.json: prompt_from). Shared by `exam` and `mcq_instruction`."""

    template: str = exams.MCQ_TEMPLATE
    yes_no_maybe_template: str = exams.YES_NO_MAYBE_TEMPLATE

    @field_validator("template", "yes_no_maybe_template")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        return exams.check_template(v)

    def templates(self) -> exams.PromptTemplates:
        return exams.PromptTemplates(mcq=self.template, yes_no_maybe=self.yes_no_maybe_template)


class ExamParams(ExamPromptParams, source_io.SourceParams):
    """``source`` default: the format name; ``glob`` default: meddata.exams' exam file patterns."""

    model_config = ConfigDict(populate_by_name=True)  # `as` in recipes, `as_` in Python

    format: Literal["medqa", "medmcqa", "pubmedqa", "mmlu"] | None = None  # None: detect per file
    as_: Literal["eval", "instruction"] = Field("eval", alias="as")
    #: Follow the answer with MedMCQA's explanation / PubMedQA's long answer (instruction rows).
    explanation: bool = True
    #: MedMCQA ``cop``: 1 for the original release (1 = opa), 0 for the Hugging Face export.
    cop_base: Literal[0, 1] = 1
    subjects: list[str] | None = None  # keep only these subjects (MMLU / MedMCQA), others dropped


@register
class ExamBuilder(Builder):
    name = "exam"
    description = "MedQA / MedMCQA / PubMedQA / MMLU files -> exam items (eval) or lettered-option instructions."
    Params = ExamParams
    extra_features = EXAM_FEATURES
    output_columns = ("question", "options", "answer", "context", "subject", "explanation", "messages")

    @checked_rows
    def read(self, ctx: StepContext) -> Iterator[dict | Drop | Quarantine]:
        p: ExamParams = self.params
        for path in source_io.input_files(p, exams.EXAM_PATTERNS):
            file = ctx.display_path(path)
            if (q := source_io.empty_file(path, file)) is not None:
                yield q
                continue
            try:
                fmt = p.format or exams.detect_format(path)
            except ValueError as exc:
                yield Quarantine(str(exc).removeprefix(f"{path}: "), file, "file")
                continue
            self.stat_update(f"format.{fmt}")
            for item in exams.read_exam(path, fmt, cop_base=p.cop_base, encoding=p.encoding):
                if isinstance(item, Quarantine):
                    yield Quarantine(item.error, file, item.locator)
                else:
                    yield self._row(item, fmt, file, item.locator.removeprefix(f"{path.name} "))

    def _row(self, item: exams.ExamItem, fmt: str, file: str, locator: str) -> dict | Drop:
        p: ExamParams = self.params
        meta = new_meta(builder=self.name, file=file, locator=locator, licence=p.licence)
        source = p.source or fmt
        if p.subjects is not None and item.subject not in p.subjects:
            return Drop({"id": item.id, "source": source, "meta": meta, "question": item.question}, "other_subject")
        if p.as_ == "instruction":
            user, assistant = exams.instruction_turns(item, explanation=p.explanation, templates=p.templates())
            return new_row(source=source, meta=meta, id=item.id, messages=messages(("user", user), ("assistant", assistant)))
        row = new_row(source=source, meta=meta, id=item.id, question=item.question, answer=item.answer,
                      options=[{"label": label, "text": text} for label, text in item.options] or None)
        row.update(context=item.context, subject=item.subject, explanation=item.long_answer)
        return row
