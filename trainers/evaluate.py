"""Evaluate models on medical benchmarks: MCQ accuracy (MedQA, MedMCQA, PubMedQA, MMLU
medical) by option log-likelihood or generate-then-parse, and free text by ROUGE-L and an
optional LLM judge.

Exam files are read only through :mod:`meddata.exams` (one parser for builders,
decontamination and evaluation). All benchmarks are loaded and checked before the first
model is; models are evaluated one at a time so only one is in memory.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meddata.trainers import scoring
from meddata.trainers.eval_config import BenchmarkSpec, EvalConfig, EvalConfigError, with_training_prompt
from meddata.trainers.scoring import BenchResult

from meddata import exams

log = logging.getLogger("meddata.trainers")


@dataclass
class FreeTextItem:
    id: str
    messages: list[dict[str, str]]  # the conversation up to the answer
    reference: str
    phi_status: str = "not_applicable"


@dataclass
class LoadedBenchmark:
    spec: BenchmarkSpec
    items: list[Any]  # ExamItem or FreeTextItem
    shots: list[exams.ExamItem] = field(default_factory=list)
    public: bool = True  # responses may be written to the predictions files


# --------------------------------------------------------------------------- loading benchmarks


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def load_benchmark(spec: BenchmarkSpec, base_dir: Path) -> LoadedBenchmark:
    """Items (and k-shot examples) of one benchmark; errors name the file and record."""
    path = _resolve(spec.path, base_dir)
    if spec.task == "freetext" and not _is_exam_file(path, spec):
        return _load_freetext_dataset(spec, path, base_dir)
    try:
        items = exams.load_exam(path, spec.exam_format, cop_base=spec.cop_base)
    except (ValueError, FileNotFoundError) as exc:
        raise EvalConfigError(f"benchmark {spec.name!r}: {exc}") from None
    shots: list[exams.ExamItem] = []
    if spec.task == "mcq" and spec.shots:
        if spec.shots_path:
            try:
                pool = exams.load_exam(_resolve(spec.shots_path, base_dir), spec.exam_format, cop_base=spec.cop_base)
            except (ValueError, FileNotFoundError) as exc:
                raise EvalConfigError(f"benchmark {spec.name!r} shots: {exc}") from None
            shots = _shots_for(pool, spec.shots)
        else:
            shots, items = items[:spec.shots], items[spec.shots:]
    if spec.task == "freetext":
        items = [FreeTextItem(i.id, [{"role": "user", "content": _freetext_question(i)}], i.long_answer)
                 for i in items if i.long_answer]
        if not items:
            raise EvalConfigError(f"benchmark {spec.name!r}: task freetext needs items with long answers "
                                  "(PubMedQA LONG_ANSWER, MedMCQA explanations); this file has none")
    if spec.limit:
        items = items[:spec.limit]
    if not items:
        raise EvalConfigError(f"benchmark {spec.name!r}: no items to score in {path}")
    return LoadedBenchmark(spec, items, shots)


def _shots_for(pool: list[exams.ExamItem], k: int) -> list[exams.ExamItem]:
    if len(pool) < k:
        raise EvalConfigError(f"{k}-shot prompts need {k} examples; the shots file has {len(pool)}")
    return pool[:k]


def _is_exam_file(path: Path, spec: BenchmarkSpec) -> bool:
    if spec.exam_format:
        return True
    if path.is_dir():
        return not ((path / "dataset").is_dir() or (path / "dataset_dict.json").exists())
    try:
        exams.detect_format(path)
    except ValueError:
        return False
    return True


def _freetext_question(item: exams.ExamItem) -> str:
    parts = [f"Context: {item.context}"] if item.context else []
    parts.append(f"Question: {item.question}")
    if item.options:
        parts.extend(f"{label}. {text}" for label, text in item.options)
    return "\n".join(parts)


def _load_freetext_dataset(spec: BenchmarkSpec, path: Path, base_dir: Path) -> LoadedBenchmark:
    """Rows of a meddata build / saved dataset / JSONL: the last assistant turn (or the
    completion) is the reference, everything before it the prompt."""
    from meddata.trainers import data

    try:
        dsd = data.open_dataset(str(path), base_dir)
    except data.DatasetError as exc:
        raise EvalConfigError(f"benchmark {spec.name!r}: {exc}") from None
    split = spec.split if spec.split in dsd else next(iter(dsd))
    ds = dsd[split]
    items: list[FreeTextItem] = []
    for n, row in enumerate(ds):
        msgs = row.get("messages")
        if msgs is None and row.get("prompt") is not None and row.get("completion") is not None:
            msgs = list(row["prompt"]) + list(row["completion"])
        if not msgs or msgs[-1]["role"] != "assistant" or len(msgs) < 2:
            raise EvalConfigError(f"benchmark {spec.name!r}: {path} split {split!r} row {n}: free-text items need "
                                  "messages ending in an assistant turn (or prompt+completion)")
        meta = row.get("meta") or {}
        items.append(FreeTextItem(str(row.get("id") or n), [dict(m) for m in msgs[:-1]], msgs[-1]["content"],
                                  meta.get("phi_status") or "not_applicable"))
        if spec.limit and len(items) >= spec.limit:
            break
    return LoadedBenchmark(spec, items, public=False)


# --------------------------------------------------------------------------- prompts


def plan_chat(cfg: EvalConfig, chat_templates: dict[str, str | None]) -> EvalConfig:
    """``cfg`` with the prompt format fixed for every model: ``chat`` always or never, and
    ``chat_template_from`` when models without a template borrow one. With ``chat: auto`` a base
    model without a template and a tuned model with one (TRL gives it one) are both scored
    with the tuned model's template, not each in its own format."""
    if cfg.chat == "never":
        return cfg
    if cfg.chat_template_from is not None:
        if not chat_templates.get(cfg.chat_template_from):
            raise EvalConfigError(f"chat_template_from: model {cfg.chat_template_from!r} has no chat template")
        return cfg.model_copy(update={"chat": "always"})
    missing = [name for name, tmpl in chat_templates.items() if not tmpl]
    if not missing:
        return cfg.model_copy(update={"chat": "always"})
    if cfg.chat == "always":
        raise EvalConfigError(f"chat: always, but model(s) {', '.join(repr(m) for m in missing)} have no chat "
                              "template; set chat_template_from to score them with another model's template")
    have = [name for name, tmpl in chat_templates.items() if tmpl]
    if not have:
        return cfg.model_copy(update={"chat": "never"})
    log.warning("model(s) %s have no chat template: every model is scored with %s's, so all are asked in the "
                "same format (chat: never scores all without one)", ", ".join(missing), have[0])
    return cfg.model_copy(update={"chat": "always", "chat_template_from": have[0]})


def prompt_format(cfg: EvalConfig) -> str:
    """One line for the report: how MCQ items were put to every model."""
    if cfg.prompt == "completion":
        prompt = "completion prompt (Question: ... Answer:)"
    elif cfg.prompt_from:
        prompt = f"instruction prompt of the training set {cfg.prompt_from}"
    elif cfg.mcq_template or cfg.yes_no_maybe_template:
        prompt = "instruction prompt from the config's templates"
    else:
        prompt = "meddata's instruction prompt (the mcq_instruction default)"
    if cfg.chat == "never":
        return f"{prompt}, without a chat template, for every model"
    source = f"{cfg.chat_template_from}'s chat template" if cfg.chat_template_from else "each model's chat template"
    return f"{prompt}, in {source}, for every model"


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], chat: bool) -> tuple[str, bool]:
    """(prompt text, add_special_tokens). Chat prompts carry their own special tokens."""
    if chat:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text, False
    if len(messages) == 1:
        return messages[0]["content"], True
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(lines) + "\n\nAssistant:", True


def exam_messages(item: exams.ExamItem, shots: Sequence[exams.ExamItem], cfg: EvalConfig) -> list[dict[str, str]]:
    """The conversation that asks ``item``: solved shots as earlier turns (instruction prompt)."""
    if cfg.prompt == "completion":
        return [{"role": "user", "content": exams.mcq_prompt(item, shots)}]
    templates = cfg.templates()
    msgs = [{"role": "system", "content": templates.system}] if templates.system else []
    for shot in shots:
        msgs += [{"role": "user", "content": exams.instruction_prompt(shot, templates)},
                 {"role": "assistant", "content": exams.instruction_answer(shot, explanation=False)}]
    msgs.append({"role": "user", "content": exams.instruction_prompt(item, templates)})
    return msgs


def exam_prompt(tokenizer: Any, item: exams.ExamItem, shots: Sequence[exams.ExamItem], cfg: EvalConfig,
                chat: bool) -> tuple[str, bool]:
    """(prompt text, add_special_tokens) for one exam item. Without a chat template the
    instruction prompt is followed by ``Answer:``, each solved shot by its answer."""
    msgs = exam_messages(item, shots, cfg)
    if chat or cfg.prompt == "completion":
        return render_prompt(tokenizer, msgs, chat)
    parts: list[str] = []
    for m in msgs:
        if m["role"] == "assistant":
            parts[-1] += " " + m["content"]
        else:
            parts.append(m["content"] + ("\n\nAnswer:" if m["role"] == "user" else ""))
    return "\n\n".join(parts), True


def choices(item: exams.ExamItem, continuation: str, prompt: str = "completion") -> list[tuple[str, str]]:
    """(label, continuation text) per option; yes/no/maybe items use the decision words. After
    the instruction prompt an answer reads as trained: ``"C"`` / ``"C. <text>"``, ``"Yes"``."""
    if item.kind == "yes_no_maybe":
        return [(d, d.capitalize() if prompt == "instruction" else d) for d in exams.DECISIONS]
    if continuation == "text":
        return [(label, f"{label}. {text}" if prompt == "instruction" else text) for label, text in item.options]
    return [(label, label) for label, _ in item.options]


# --------------------------------------------------------------------------- scoring one model


def score_loglik(model: Any, tokenizer: Any, bench: LoadedBenchmark, cfg: EvalConfig, chat: bool,
                 model_name: str) -> tuple[BenchResult, list[dict[str, Any]]]:
    requests: list[tuple[str, str]] = []
    spans: list[tuple[int, int]] = []
    add_special = True
    for item in bench.items:
        prompt, add_special = exam_prompt(tokenizer, item, bench.shots, cfg, chat)
        opts = choices(item, cfg.continuation, cfg.prompt)
        spans.append((len(requests), len(opts)))
        sep = "" if chat else " "
        requests.extend((prompt, sep + cont) for _, cont in opts)
    results = scoring.loglikelihood(model, tokenizer, requests, batch_size=cfg.batch_size,
                                    max_length=cfg.max_length, add_special_tokens=add_special)
    acc, acc_norm, preds = [], [], []
    for item, (start, n) in zip(bench.items, spans, strict=True):
        opts = choices(item, cfg.continuation, cfg.prompt)
        lps = [r.logprob for r in results[start:start + n]]
        norm = [lp / max(1, len(requests[start + j][1].encode("utf-8"))) for j, lp in enumerate(lps)]
        pick = opts[max(range(n), key=lambda j: lps[j])][0]
        pick_norm = opts[max(range(n), key=lambda j: norm[j])][0]
        acc.append(float(pick == item.answer))
        acc_norm.append(float(pick_norm == item.answer))
        preds.append({"id": item.id, "gold": item.answer, "pred": pick, "pred_norm": pick_norm,
                      "logprobs": {label: round(lp, 5) for (label, _), lp in zip(opts, lps, strict=True)}})
    result = BenchResult(bench.spec.name, model_name, "loglik", [i.id for i in bench.items],
                         [i.subject for i in bench.items], {"acc": acc, "acc_norm": acc_norm})
    return result, preds


def score_generate(model: Any, tokenizer: Any, bench: LoadedBenchmark, cfg: EvalConfig, chat: bool,
                   model_name: str) -> tuple[BenchResult, list[dict[str, Any]]]:
    prompts, add_special = [], True
    for item in bench.items:
        prompt, add_special = exam_prompt(tokenizer, item, bench.shots, cfg, chat)
        prompts.append(prompt)
    outputs = scoring.generate(model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens,
                               batch_size=cfg.batch_size, add_special_tokens=add_special)
    acc, preds, unparsed = [], [], 0
    stops = _instruction_stops(cfg)
    for item, text in zip(bench.items, outputs, strict=True):
        if item.kind == "yes_no_maybe":
            pick = scoring.extract_decision(_first_answer(text, stops))
        else:
            pick = scoring.extract_choice(_first_answer(text, stops), [label for label, _ in item.options],
                                          item.options)
        unparsed += pick is None
        acc.append(float(pick == item.answer))
        preds.append({"id": item.id, "gold": item.answer, "pred": pick, "response": text})
    result = BenchResult(bench.spec.name, model_name, "generate", [i.id for i in bench.items],
                         [i.subject for i in bench.items], {"acc": acc}, {"unparsed": unparsed})
    return result, preds


def _instruction_stops(cfg: EvalConfig) -> tuple[str, ...]:
    """Where a model that keeps writing starts the next instruction prompt."""
    if cfg.prompt != "instruction":
        return ()
    t = cfg.templates()
    return tuple("\n" + first for first in {t.mcq.split("{", 1)[0].strip(), t.yes_no_maybe.split("{", 1)[0].strip()}
                 if first)


def _first_answer(text: str, stops: tuple[str, ...] = ()) -> str:
    """A completion-style model keeps writing the next question; score only its answer."""
    for stop in ("\n\nQuestion:", "\nQuestion:", "\n\nContext:", *stops):
        if stop in text:
            text = text.split(stop, 1)[0]
    return text.strip()


def score_freetext(model: Any, tokenizer: Any, bench: LoadedBenchmark, cfg: EvalConfig, chat: bool,
                   model_name: str) -> tuple[BenchResult, list[dict[str, Any]], list[str]]:
    prompts, add_special = [], True
    for item in bench.items:
        prompt, add_special = render_prompt(tokenizer, item.messages, chat)
        prompts.append(prompt)
    outputs = scoring.generate(model, tokenizer, prompts, max_new_tokens=cfg.freetext_max_new_tokens,
                               batch_size=cfg.batch_size, add_special_tokens=add_special)
    outputs = [_first_answer(o) for o in outputs]
    rouge = scoring.rouge_l(outputs, [i.reference for i in bench.items])
    preds = [{"id": i.id, "rougeL": round(r, 5), **({"response": o} if bench.public else {})}
             for i, o, r in zip(bench.items, outputs, rouge, strict=True)]
    result = BenchResult(bench.spec.name, model_name, "freetext", [i.id for i in bench.items],
                         [None] * len(bench.items), {"rougeL": rouge})
    return result, preds, outputs


# --------------------------------------------------------------------------- the run


@dataclass
class EvalRun:
    config: EvalConfig
    models: dict[str, str]
    results: list[BenchResult]
    judge: dict[str, Any]
    predictions_dir: Path | None


def chat_templates(model_paths: dict[str, str]) -> dict[str, str | None]:
    """Each model's chat template (None when it has none), read from its tokenizer alone."""
    from transformers import AutoTokenizer

    return {name: AutoTokenizer.from_pretrained(path).chat_template or None for name, path in model_paths.items()}


def evaluate(cfg: EvalConfig, base_dir: Path, out_dir: Path | None = None) -> EvalRun:
    """Score every model on every benchmark; writes predictions under ``out_dir``."""
    from meddata.trainers import judge, models

    model_paths = {name: models.resolve_model_path(p, base_dir) for name, p in cfg.models.items()}
    for name, path in model_paths.items():
        if not Path(path).exists() and (path.startswith((".", "/", "~")) or path.count("/") != 1):
            raise EvalConfigError(f"model {name!r}: {path} does not exist")
    benches = [load_benchmark(spec, base_dir) for spec in cfg.benchmarks]
    cfg = with_training_prompt(cfg, base_dir)
    templates = chat_templates(model_paths) if cfg.chat != "never" else {}
    cfg = plan_chat(cfg, templates)
    log.info("prompt format: %s", prompt_format(cfg))
    chat = cfg.chat == "always"
    judge_client = judge.make_client(cfg.judge) if cfg.judge else None
    results: list[BenchResult] = []
    answers: dict[str, dict[str, list[str]]] = {}  # benchmark -> model -> free-text outputs
    pred_dir = out_dir / "predictions" if out_dir else None
    for name, path in model_paths.items():
        log.info("evaluating %s (%s)", name, path)
        model, tokenizer = models.load_for_inference(path)
        if cfg.chat_template_from is not None:
            tokenizer.chat_template = templates[cfg.chat_template_from]
        for bench in benches:
            if bench.spec.task == "freetext":
                res, preds, outputs = score_freetext(model, tokenizer, bench, cfg, chat, name)
                answers.setdefault(bench.spec.name, {})[name] = outputs
                _write_preds(pred_dir, name, bench.spec.name, "freetext", preds)
                results.append(res)
                continue
            for mode in cfg.modes:
                scorer = score_loglik if mode == "loglik" else score_generate
                res, preds = scorer(model, tokenizer, bench, cfg, chat, name)
                _write_preds(pred_dir, name, bench.spec.name, mode, preds)
                results.append(res)
        del model
        _free_memory()
    judged: dict[str, Any] = {}
    if cfg.judge is None:
        judged["status"] = "not configured"
    elif judge_client is None:
        judged["status"] = "skipped: the LLM client is not available"
    else:
        judged = judge.run(judge_client, cfg.judge, benches, answers, list(model_paths))
        results.extend(judged.pop("results", []))
    return EvalRun(cfg, model_paths, results, judged, pred_dir)


def _write_preds(pred_dir: Path | None, model: str, bench: str, mode: str, rows: Sequence[dict[str, Any]]) -> None:
    if pred_dir is None:
        return
    folder = pred_dir / model
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{bench}.{mode}.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
