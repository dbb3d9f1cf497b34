"""Medical exam / evaluation sets (MedQA-USMLE, MedMCQA, PubMedQA, MMLU), read one way.

``formats`` parses the four formats into one item type (:class:`ExamItem`) with
quarantine entries for malformed records; ``prompts`` turns items into few-shot completion
prompts and the instruction turns that training and ``meddata eval`` share. The exam
builder, decontamination and evaluation all import from here.
"""

from meddata.exams.formats import (
    DECISIONS,
    EXAM_PATTERNS,
    FORMATS,
    LETTERS,
    MMLU_COLUMNS,
    ExamItem,
    detect_format,
    exam_files,
    item_from_row,
    load_exam,
    mmlu_subject,
    read_exam,
)
from meddata.exams.prompts import (
    DEFAULT_TEMPLATES,
    MCQ_INSTRUCTION,
    MCQ_TEMPLATE,
    TEMPLATE_FIELDS,
    YES_NO_MAYBE_TEMPLATE,
    YNM_INSTRUCTION,
    PromptTemplates,
    check_template,
    format_question,
    instruction_answer,
    instruction_prompt,
    instruction_turns,
    mcq_prompt,
)

__all__ = [
    "DECISIONS", "DEFAULT_TEMPLATES", "EXAM_PATTERNS", "FORMATS", "LETTERS", "MCQ_INSTRUCTION", "MCQ_TEMPLATE",
    "MMLU_COLUMNS", "TEMPLATE_FIELDS", "YES_NO_MAYBE_TEMPLATE", "YNM_INSTRUCTION", "ExamItem", "PromptTemplates",
    "check_template", "detect_format", "exam_files", "format_question", "instruction_answer", "instruction_prompt",
    "instruction_turns", "item_from_row", "load_exam", "mcq_prompt", "mmlu_subject", "read_exam",
]
