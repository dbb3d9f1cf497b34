"""MCQ -> rationale: an exam item gains an explanation of why the key is right and the other
options wrong, as a conversation (question with options -> rationale and answer).

The model answers without seeing the key; when its answer differs from the key the item is
dropped (``model_disagrees_with_key``) rather than trained on a rationale for an answer the
model does not believe, the usual filter in rationale bootstrapping.
"""

from __future__ import annotations

import re
from typing import Any

from meddata.llm import ChatResponse
from meddata.llm.generator import GeneratorParams, LLMGenerator
from meddata.records import annotate, detect_type, messages
from meddata.registry import register
from meddata.steps import Drop, Outcome, Quarantine


def format_question(question: str, options: list[dict]) -> str:
    lines = [question.strip(), ""]
    lines += [f"{o['label']}. {o['text']}" for o in options]
    return "\n".join(lines)


def normalize_label(value: str) -> str:
    """'(b)', 'B.', ' b ' -> 'B'."""
    return re.sub(r"[\s().:\]\[]", "", str(value)).upper()


@register
class MCQRationale(LLMGenerator):
    name = "mcq_rationale"
    description = "LLM: explain why an exam item's key is right and the others wrong; drop items the model gets wrong."
    Params = GeneratorParams
    template_file = "mcq_rationale.jinja"
    input_columns = ("question", "options", "answer")
    output_columns = ("messages",)

    def applies_to(self, row: dict) -> bool:
        """Multiple-choice exam items not yet turned into conversations (PubMedQA-style
        yes/no items have no options and pass by)."""
        return detect_type(row) == "exam" and bool(row.get("options"))

    def prepare(self, row: dict) -> dict[str, Any] | Drop | Quarantine:
        question = (row.get("question") or "").strip()
        options = [o for o in row.get("options") or [] if o and o.get("label") and o.get("text")]
        if not question:
            return Drop(row, "no_question")
        if len(options) < 2:
            return Drop(row, "no_options")
        labels = [normalize_label(o["label"]) for o in options]
        if normalize_label(row.get("answer") or "") not in labels:
            return Quarantine(f"{self.name}: field 'answer' is not one of the option labels {labels}", row=row)
        options = [{"label": lab, "text": o["text"].strip()} for lab, o in zip(labels, options)]
        return {"question": question, "options": options, "labels": labels}

    def schema(self, row: dict, variables: dict[str, Any]) -> dict:
        return {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": variables["labels"]},
                           "rationale": {"type": "string", "minLength": 20}},
            "required": ["answer", "rationale"],
        }

    def build(self, row: dict, responses: list[ChatResponse], variables: dict[str, Any]) -> Outcome:
        resp = responses[0]
        said = normalize_label(resp.parsed["answer"])
        key = normalize_label(row["answer"])
        annotate(row, "mcq_rationale.model_answer", said)
        if said != key:
            self.stat_update("mcq_rationale.disagreements")
            return Drop(self.mark_generated(row, resp.model), "model_disagrees_with_key")
        text = next(o["text"] for o in variables["options"] if o["label"] == key)
        reply = f"{resp.parsed['rationale'].strip()}\n\nAnswer: {key}. {text}"
        row["messages"] = messages(("user", format_question(variables["question"], variables["options"])),
                                   ("assistant", reply))
        return self.mark_generated(row, resp.model)
