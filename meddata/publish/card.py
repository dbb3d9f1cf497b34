"""The dataset card (README.md in the build folder), generated from the run.

It says what a reviewer asks before using or publishing medical training data: where every
row came from and under which licence, what each step did (parameters and the funnel of
rows in/out with drop reasons), how patient data was de-identified (the ``deid`` step's
strategy and detection, the PHI it replaced by type, what a later ``phi_scan`` still flagged),
which duplicate clusters were collapsed, how an LLM judge scored the rows, which models
generated synthetic rows with which prompts, and what the data must not be used for.

The YAML front matter is valid Hub metadata: ``configs`` point at the files of each split
so ``datasets.load_dataset(build_dir)`` (and the Hub's viewer after ``meddata push``) load
the right files. The card never shows a row: clinical text, raw or de-identified, stays out.
Parameters are shown with file paths reduced to their names and secrets withheld.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from meddata._version import __version__
from meddata.publish.buildinfo import BuildInfo, hub_licence
from meddata.publish.cautions import build_warnings
from meddata.publish.frontmatter import configs_entry, data_files_for, dataset_info_entry, front_matter

FILES_START = "<!-- meddata:files -->"
FILES_END = "<!-- /meddata:files -->"
_SECRET_KEY = re.compile(r"(^|_)(api_?key|token|secret|password|passwd|credentials?)$", re.I)
_PATH_KEY = re.compile(r"(^|_)(path|paths|file|files|dir|folder|eval_sets|gold)$", re.I)
_LIST_KEY = re.compile(r"names|deny|allow|vault|terms|values|dictionary|words", re.I)


# -- body sections ----------------------------------------------------------------------------
def _n(x: float | int) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.4g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def sanitize_params(params: Any, key: str = "") -> Any:
    """Parameters fit for a public card: file paths cut to their names, secrets withheld,
    long word lists (deny/allow lists may hold real names) summarised, long text cut."""
    if isinstance(params, Mapping):
        return {k: sanitize_params(v, str(k)) for k, v in params.items()}
    if _SECRET_KEY.search(key) and params:
        return "<withheld>"
    if isinstance(params, (list, tuple)):
        if _LIST_KEY.search(key) or len(params) > 20:
            return f"<{len(params)} entries>"
        return [sanitize_params(v, key) for v in params]
    if isinstance(params, str):
        if _PATH_KEY.search(key) or (params.startswith(("/", "~")) and "/" in params[1:]):
            return Path(params).name
        if len(params) > 200:
            return params[:200] + "…"
    return params


def _sources_section(info: BuildInfo) -> list[str]:
    lines = ["## Sources", "",
             "| source | builder | licence | PHI status at input | rows read | rows in this dataset |",
             "|---|---|---|---|---:|---:|"]
    for s in sorted(info.sources.values(), key=lambda s: -s.rows_in_output):
        status = ", ".join(f"{k} {v:,}" for k, v in sorted(s.phi_status_in.items())) or "–"
        builders = ", ".join(sorted(set(s.builders))) or "(generated)"
        lic = "; ".join(sorted(s.licences)) or "not stated"
        lines.append(f"| {_cell(s.name)} | {builders} | {_cell(lic)} | {status} | {s.rows_read:,} | "
                     f"{s.rows_in_output:,} |")
    return [*lines, ""]


def _mixture_section(info: BuildInfo) -> list[str]:
    reports = info.reports("mix")
    if not reports:
        return []
    lines = ["## Mixture", ""]
    for step, rep in reports:
        lines.append(f"Step {step['index']} `{step['name']}` ({rep.get('mode')}, seed {rep.get('seed')}, "
                     f"up-sampling {'on' if rep.get('upsample') else 'off'}); "
                     f"{rep.get('copies_created', 0):,} repeated copies carry ids ending in `#dupN`.")
        if rep.get("splits"):
            lines.append(f"Only the splits {', '.join(rep['splits'])} were mixed; the others pass through.")
        lines.append("")
        staged = rep.get("mode") == "stages"
        lines += [f"| {'stage | ' if staged else ''}source | weight | target count | cap | available | rows | "
                  "unique rows | share |",
                  f"|{'---|' if staged else ''}---|---:|---:|---:|---:|---:|---:|---:|"]
        for stage, srep in (rep.get("stages") or {}).items():
            for src, r in (srep.get("sources") or {}).items():
                cells = [src, r.get("weight"), r.get("count"), r.get("cap"), r.get("available"), r.get("rows"),
                         r.get("unique_rows"), f"{100 * (r.get('share') or 0):.1f}%"]
                text = " | ".join("–" if c is None else (_n(c) if isinstance(c, (int, float)) else _cell(c))
                                  for c in cells)
                lines.append(f"| {stage + ' | ' if staged else ''}{text} |")
        passthrough = rep.get("passthrough") or {}
        if passthrough:
            lines += ["", "Passed through unmixed: " + ", ".join(f"{k} {v:,}" for k, v in passthrough.items()) + "."]
        if staged:
            lines += ["", "Each row's stage is in `meta.annotations` (`stage`). Select one stage with "
                      "`ds.filter(lambda r: json.loads(r['meta']['annotations']).get('stage') == 'NAME')`."]
        lines.append("")
    return lines


def _funnel_section(info: BuildInfo) -> list[str]:
    lines = ["## Processing", "",
             "Every step in order, with rows in and out. Dropped rows are in `dropped/NN-step.jsonl` with their "
             "reason; malformed input is in `quarantine.jsonl` with file, line and error.", "",
             "| # | step | kind | rows in | rows out | dropped (by reason) | quarantined | created | seconds |",
             "|---:|---|---|---:|---:|---|---:|---:|---:|"]
    for s in info.steps:
        drops = ", ".join(f"{r} {n:,}" for r, n in sorted((s.get("dropped") or {}).items(), key=lambda kv: -kv[1]))
        lines.append(f"| {s['index']} | `{s['name']}` | {s.get('kind', '')} | {s.get('rows_in', 0):,} | "
                     f"{s.get('rows_out', 0):,} | {_cell(drops) or '–'} | {s.get('quarantined', 0):,} | "
                     f"{s.get('created', 0):,} | {float(s.get('seconds') or 0):.1f} |")
    totals = info.stats.get("totals") or {}
    if totals:
        lines += ["", f"Rows read {totals.get('read', 0):,} = written {totals.get('out', 0):,} + dropped "
                  f"{totals.get('dropped', 0):,} + quarantined {totals.get('quarantined', 0):,} − created "
                  f"{totals.get('created', 0):,}."]
    lines += ["", "<details><summary>Step parameters</summary>", "", "```yaml"]
    params = [{f"{s['index']:02d} {s['name']}": sanitize_params(s.get("params") or {})} for s in info.steps]
    lines += [yaml.safe_dump(params, sort_keys=False, allow_unicode=True, width=100).rstrip(), "```", "",
              "</details>", ""]
    return lines


_STRATEGIES = {"surrogate": " (realistic stand-ins, dates shifted per patient)",
               "mask": " (type placeholders such as `[NAME]`)", "redact": " (removed)"}
_NER = {"off": "rules and dictionaries only", "on": "rules, dictionaries and spaCy NER",
        "auto": "rules and dictionaries, plus spaCy NER where installed"}
_PSEUDONYMS = "; patient and encounter ids in `meta` were replaced by keyed pseudonyms"


def _deid_method(p: Mapping[str, Any]) -> str:
    """How a de-identification step detected PHI, from its parameters."""
    parts = []
    if p.get("policy"):
        parts.append(f"policy `{p['policy']}`")
    model = p.get("model")
    if model in _NER:
        parts.append(_NER[model])
    elif model is not None:
        parts.append(f"model `{model}`")
    parts += [f"{k} `{p[k]}`" for k in ("method", "backend", "spacy_model", "engine", "detectors")
              if p.get(k) is not None]
    return ", ".join(parts)


def _deid_section(info: BuildInfo) -> list[str]:
    lines = ["## De-identification", ""]
    status_out = ", ".join(f"`{k}` {v:,}" for k, v in sorted(info.phi_status.items())) or "none"
    status_in: dict[str, int] = {}
    for s in info.sources.values():
        for k, v in s.phi_status_in.items():
            status_in[k] = status_in.get(k, 0) + v
    deid_steps = info.steps_named("deid")
    scans = info.steps_named("phi_scan")
    if not info.had_raw_input and not deid_steps:
        lines.append("No source holds patient records (no input row had `phi_status: raw`), so no "
                     "de-identification was needed.")
    for s in deid_steps:
        p = s.get("params") or {}
        strategy = str(p.get("strategy", "default"))
        method = _deid_method(p)
        lines.append(f"Step {s['index']} `{s['name']}` replaced protected health information (HIPAA Safe Harbor "
                     f"identifiers) using strategy `{strategy}`{_STRATEGIES.get(strategy, '')}"
                     f"{'; detection: ' + method if method else ''}"
                     f"{_PSEUDONYMS if p.get('pseudonymize_ids') else ''}; rows marked de-identified after it: "
                     f"{(s.get('phi_status') or {}).get('deidentified', 0):,}.")
    phi = info.phi_counts_by_type("deid")
    if phi:
        lines += ["", "PHI spans found and replaced, by type: "
                  + ", ".join(f"{k} {v:,}" for k, v in phi.items()) + "."]
    for s in scans:
        counters = s.get("counters") or {}
        flagged = sorted(((k[4:], int(v)) for k, v in counters.items() if k.startswith("phi.") and v),
                         key=lambda kv: -kv[1])
        drops = sum((s.get("dropped") or {}).values())
        lines += ["", f"Step {s['index']} `{s['name']}` re-scanned {int(counters.get('phi_scan.rows', 0)):,} rows "
                  f"for PHI-like spans and flagged {int(counters.get('phi_scan.flagged', 0)):,}"
                  + (" (" + ", ".join(f"{k} {v:,}" for k, v in flagged) + ")" if flagged else "")
                  + (f"; it dropped {drops:,} rows." if drops else "; flagged rows were kept, marked in "
                     "`meta.annotations` (`phi_scan`).")]
    if deid_steps:
        # the deid step has no gold to score against; recall is measured apart, on a sample
        lines += ["", "Recall was not measured on this data (no gold annotations were given). Measure it with "
                  "`meddata deid eval --gold GOLD.jsonl` on a sample of these sources before sharing."]
    lines += ["", f"`meta.phi_status` at input: "
              f"{', '.join(f'`{k}` {v:,}' for k, v in sorted(status_in.items())) or 'unknown'}; "
              f"in this dataset: {status_out}."]
    if deid_steps or info.had_raw_input:
        lines += ["", "Automatic de-identification is not perfect: rare identifiers can survive. Treat the data "
                  "as sensitive and keep access controlled unless a person has reviewed a sample."]
    return [*lines, ""]


def _dedup_section(info: BuildInfo) -> list[str]:
    found = info.dedup_clusters()
    if not found:
        return []
    lines = ["## Duplicates", ""]
    for step, sizes in found:
        keep = (step.get("params") or {}).get("keep")
        drops = ", ".join(f"{r} {n:,}" for r, n in sorted((step.get("dropped") or {}).items()))
        if not sizes:
            lines += [f"Step {step['index']} `{step['name']}` found no duplicates.", ""]
            continue
        lines += [f"Step {step['index']} `{step['name']}` found {sum(sizes.values()):,} clusters of duplicates "
                  f"holding {sum(k * v for k, v in sizes.items()):,} rows and kept one row of each"
                  f"{f' (`keep: {keep}`)' if keep else ''}{'; dropped ' + drops if drops else ''}.", "",
                  "| cluster size | clusters |", "|---:|---:|",
                  *[f"| {size:,} | {n:,} |" for size, n in sorted(sizes.items())], ""]
    lines += ["Every dropped duplicate is in the drop log with `meta.annotations.duplicate_of`, the id of the row "
              "kept in its place.", ""]
    return lines


def _judge_section(info: BuildInfo) -> list[str]:
    steps, scores = info.steps_named("judge"), info.judge_scores()
    if not steps and not scores:
        return []
    lines = ["## Judge scores", ""]
    for s in steps:
        p, c = s.get("params") or {}, s.get("counters") or {}
        text = (f"Step {s['index']} `{s['name']}` had an LLM grade {int(c.get('judge.judged', 0)):,} answers 1-5 "
                "on accuracy, safety, helpfulness and completeness")
        if p.get("mode") == "filter":
            safety = f" or a safety score below {p['min_safety']}" if p.get("min_safety") is not None else ""
            text += (f" and dropped {sum((s.get('dropped') or {}).values()):,} rows with an overall "
                     f"({p.get('aggregate', 'mean')}) score below {_n(p.get('min_score', 0))}{safety}")
        elif p.get("mode"):
            text += f" (`mode: {p['mode']}`: every row kept)"
        if c.get("judge.failed"):
            text += f"; {int(c['judge.failed']):,} rows were quarantined for an unusable judge answer"
        lines.append(text + ".")
    if scores:
        lines += ["", "Scores of the rows in this dataset (from `meta.annotations`):", "",
                  "| score | rows | mean | rows per score |", "|---|---:|---:|---|"]
        for key, counts in scores.items():
            n = sum(counts.values())
            mean = sum(k * v for k, v in counts.items()) / n
            integral = len(counts) <= 10 and all(float(k).is_integer() for k in counts)
            dist = (" · ".join(f"{int(k)}: {v:,}" for k, v in sorted(counts.items())) if integral
                    else f"{_n(min(counts))} to {_n(max(counts))}")
            lines.append(f"| {_cell(key)} | {n:,} | {mean:.2f} | {dist} |")
    return [*lines, ""]


def _synthetic_section(info: BuildInfo) -> list[str]:
    gens = info.generators
    if not gens:
        return []
    lines = ["## Synthetic rows", "",
             f"{sum(gens.values()):,} rows were written or rewritten by a language model:", "",
             "| generator model | prompt id | rows |", "|---|---|---:|"]
    for (model, prompt), n in gens.most_common():
        lines.append(f"| {_cell(model)} | {_cell(prompt or '–')} | {n:,} |")
    tokens = {k: v for k, v in info.counters.items() if k.startswith("llm.")}
    if tokens:
        lines += ["", "LLM usage: " + ", ".join(f"{k[4:]} {_n(v)}" for k, v in sorted(tokens.items())) + "."]
    lines += ["", "Generated text can be fluent and wrong. Judge scores, where a judge step ran, are in "
              "`meta.annotations`.", ""]
    return lines


def files_section(files: Mapping[str, str], fmt: str, extra: list[str] | None = None) -> str:
    """The 'Files and splits' section; ``meddata push`` rewrites it for the uploaded layout."""
    lines = [FILES_START, "## Files and splits", "",
             f"`configs` in this card point `datasets` at the {fmt} files below.", "",
             "| split | file |", "|---|---|"]
    lines += [f"| {split} | `{path}` |" for split, path in files.items()]
    lines += [*(extra or []), FILES_END]
    return "\n".join(lines)


def _local_files_extra(info: BuildInfo) -> list[str]:
    root = info.root
    present = [label for label, path in (("Arrow (`datasets.load_from_disk('dataset')`)", "dataset"),
                                          ("Parquet", "parquet"), ("JSON Lines", "jsonl")) if (root / path).exists()]
    out = ["", "Formats in the build folder: " + ", ".join(present) + "."]
    exports = sorted(p.name for p in (root / "exports").glob("*.jsonl")) if (root / "exports").is_dir() else []
    if exports:
        out.append("Exports for other tools: " + ", ".join(f"`exports/{e}`" for e in exports) + ".")
    tools = [p for p in ("dataset_info.json", "tools/axolotl.yaml", "tools/trl_sft.sh") if (root / p).exists()]
    if tools:
        out.append("Training-tool configs: " + ", ".join(f"`{t}`" for t in tools)
                   + " (LLaMA-Factory, axolotl, TRL CLI).")
    return out


def _structure_section(info: BuildInfo) -> list[str]:
    types = ", ".join(f"{t} {n:,}" for t, n in info.type_rows.most_common())
    per_split = ", ".join(f"{s} {n:,}" for s, n in info.split_rows.items())
    lines = ["## Dataset structure", "",
             f"Rows: {info.total_rows:,} ({per_split}). TRL dataset types: {types or 'none'}.", "",
             "Columns: `id` (stable, from source and locator), `source`, the content columns (TRL's "
             "conversational form: lists of `{role, content}`), and `meta` (builder, file, locator, licence, "
             "`phi_status`, generator model and prompt id for synthetic rows, steps applied, and "
             "`annotations`, a JSON string with per-step statistics).", "",
             "| source | " + " | ".join(info.split_rows) + " |", "|---|" + "---:|" * len(info.split_rows)]
    for src, per in sorted(info.source_rows.items(), key=lambda kv: -sum(kv[1].values())):
        lines.append(f"| {_cell(src)} | " + " | ".join(f"{per.get(s, 0):,}" for s in info.split_rows) + " |")
    return [*lines, ""]


def _use_section(info: BuildInfo) -> list[str]:
    lines = ["## Intended use and limitations", "",
             "- Intended for research and development of language models for the medical domain: "
             "instruction tuning, continued pretraining or preference tuning, and their evaluation.",
             "- **Not for clinical decision making.** Models trained on this data are not medical devices and "
             "must not diagnose, treat or triage patients without qualified human oversight.",
             "- Answers from QA sites, forums and generated rows can be outdated, incomplete or wrong; "
             "coverage of specialties, languages and populations reflects the sources, not medicine as a whole.",
             ]
    if info.had_raw_input:
        lines.append("- Rows derived from patient records were de-identified automatically; do not attempt to "
                     "re-identify anyone, and follow the source's data use terms.")
    lines.append("- Check that no row here also appears in the benchmarks you report on (run a "
                 "decontamination step against them).")
    return [*lines, ""]


def _licence_section(info: BuildInfo) -> list[str]:
    lines = ["## Licence", "",
             "Each row keeps its source's licence in `meta.licence`; the dataset as a whole is bound by all "
             "of them:", ""]
    for s in sorted(info.sources.values(), key=lambda s: s.name):
        lics = sorted(s.licences) or ["not stated"]
        lines.append(f"- {s.name}: " + "; ".join(f"{lic} (`{hub_licence(lic)}`)" for lic in lics))
    return [*lines, ""]


def render_body(info: BuildInfo, description: str, files_block: str | None) -> str:
    """The Markdown body; ``files_block`` is the 'Files and splits' section (see :func:`files_section`)."""
    lines = [f"# {info.name}", ""]
    if description:
        lines += [description, ""]
    lines += [f"Built with meddata {info.stats.get('meddata_version', __version__)} on "
              f"{info.stats.get('finished', 'an unknown date')}: {info.total_rows:,} rows, "
              f"{len(info.sources)} sources, {len(info.steps)} steps.", ""]
    warnings = build_warnings(info)
    if warnings:
        lines += ["> [!WARNING]", *[f"> {w.markdown}" for w in warnings], ""]
    lines += _sources_section(info)
    lines += _mixture_section(info)
    lines += _funnel_section(info)
    lines += _deid_section(info)
    lines += _dedup_section(info)
    lines += _judge_section(info)
    lines += _synthetic_section(info)
    lines += _structure_section(info)
    if files_block:
        lines += [files_block, ""]
    lines += _use_section(info)
    lines += _licence_section(info)
    lines += ["## Provenance", "",
              f"Recipe `{info.name}`; the full run record (every step's parameters, counters and reports) is "
              "`stats.json` in the build folder.", ""]
    return "\n".join(lines)


def render_card(info: BuildInfo, description: str = "", config_name: str = "default") -> str:
    """README.md text for a build folder, with configs pointing at its local files."""
    found = data_files_for(info)
    configs = [configs_entry(config_name, found[1])] if found else []
    entry = dataset_info_entry(info, config_name) if found else None
    data = front_matter(info, configs, [entry] if entry else None)
    block = files_section(found[1], found[0], _local_files_extra(info)) if found else None
    body = render_body(info, description, block)
    return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n\n" + body


def write_card(result, recipe) -> Path:
    """Write README.md next to a finished build (called by the pipeline at the end of a run)."""
    info = BuildInfo(result.out_dir)
    path = Path(result.out_dir) / "README.md"
    path.write_text(render_card(info, recipe.description or ""), encoding="utf-8")
    return path

