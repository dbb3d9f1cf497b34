"""Exam items as prompts: completion-style few-shot prompts for scoring, and the instruction
form (user turn from a template, assistant turn with the answer) that training and
``meddata eval`` share, so a tuned model is asked what it learnt."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from meddata.exams.formats import ExamItem


def format_question(item: ExamItem) -> str:
    """Context (if any), question and lettered options, without the answer line."""
    parts = []
    if item.context:
        parts.append(f"Context: {item.context}")
    parts.append(f"Question: {item.question}")
    if item.options:
        parts.extend(f"{label}. {text}" for label, text in item.options)
    else:
        parts.append("Answer with yes, no or maybe.")
    return "\n".join(parts)


def mcq_prompt(item: ExamItem, shots: Sequence[ExamItem] = ()) -> str:
    """A completion-style prompt: k solved examples, then the item, ending in ``Answer:``.

    The expected continuation is the option label (``" C"``) for MCQs and ``" yes"`` /
    ``" no"`` / ``" maybe"`` for PubMedQA, so an evaluator compares the first token.
    """
    blocks = [f"{format_question(shot)}\nAnswer: {shot.answer}" for shot in shots]
    blocks.append(f"{format_question(item)}\nAnswer:")
    return "\n\n".join(blocks)


# --------------------------------------------------------------------------- instruction form
#
# One prompt for training and evaluation: ``mcq_instruction`` (and the exam builder's
# ``as: instruction``) train on :func:`instruction_turns`, and ``meddata eval`` scores the same
# user turn (:func:`instruction_prompt`) by default, so a tuned model is asked what it learnt.

#: Placeholders: {question}, {options} (one "A. text" line per option), {context}.
MCQ_TEMPLATE = ("Answer the following multiple-choice question with the letter and text of the correct option."
                "\n\n{question}\n\n{options}")
#: Placeholders: {question}, {context} ("Context: ...\n\n", or "" without one).
YES_NO_MAYBE_TEMPLATE = ("Answer the research question based on the context with yes, no or maybe."
                         "\n\n{context}Question: {question}")
TEMPLATE_FIELDS = frozenset({"question", "options", "context"})
#: Kept for callers of the old names: the first line of each template.
MCQ_INSTRUCTION = MCQ_TEMPLATE.split("\n", 1)[0]
YNM_INSTRUCTION = YES_NO_MAYBE_TEMPLATE.split("\n", 1)[0]


@dataclass(frozen=True)
class PromptTemplates:
    """The user-turn templates of exam instructions (what a training set was built with)."""

    mcq: str = MCQ_TEMPLATE
    yes_no_maybe: str = YES_NO_MAYBE_TEMPLATE
    #: A system turn before the question (``mcq_instruction``'s ``system``), or None.
    system: str | None = None

    def __post_init__(self) -> None:
        check_template(self.mcq, "mcq template")
        check_template(self.yes_no_maybe, "yes/no/maybe template")


def check_template(template: str, what: str = "template") -> str:
    """Raise ValueError on a placeholder other than {question}, {options}, {context}."""
    names = set(re.findall(r"(?<!{){([^{}]*)}(?!})", template))
    if names - TEMPLATE_FIELDS:
        raise ValueError(f"{what}: unknown placeholder(s) {sorted(names - TEMPLATE_FIELDS)}; allowed: "
                         f"{', '.join(sorted(TEMPLATE_FIELDS))}")
    if "{question}" not in template:
        raise ValueError(f"{what}: needs the {{question}} placeholder")
    return template


DEFAULT_TEMPLATES = PromptTemplates()


def instruction_prompt(item: ExamItem, templates: PromptTemplates = DEFAULT_TEMPLATES) -> str:
    """The user turn for ``item``: the question (and context) with lettered options."""
    context = f"Context: {item.context}\n\n" if item.context else ""
    if item.options:
        options = "\n".join(f"{label}. {text}" for label, text in item.options)
        return templates.mcq.format(question=item.question, options=options, context=context)
    return templates.yes_no_maybe.format(question=item.question, context=context, options="")


def instruction_answer(item: ExamItem, *, explanation: bool = True) -> str:
    """The assistant turn: ``"C. <option text>"`` or ``"Yes."``, then the explanation if asked."""
    answer = f"{item.answer}. {item.answer_text}" if item.options else f"{item.answer.capitalize()}."
    if explanation and item.long_answer:
        answer = f"{answer}\n\n{item.long_answer}"
    return answer


def instruction_turns(item: ExamItem, *, explanation: bool = True,
                      templates: PromptTemplates = DEFAULT_TEMPLATES) -> tuple[str, str]:
    """(user, assistant) for training on an item: lettered options -> ``"C. <text>"``;
    yes/no/maybe -> ``"Yes."``. The explanation (MedMCQA ``exp``, PubMedQA long answer)
    follows the answer when ``explanation`` is set and the item has one."""
    return instruction_prompt(item, templates), instruction_answer(item, explanation=explanation)
