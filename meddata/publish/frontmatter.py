"""The dataset card's YAML front matter: Hub metadata for a build folder.

``configs`` point at the files of each split so ``datasets.load_dataset(build_dir)`` (and
the Hub's viewer after ``meddata push``) load the right files; ``dataset_info`` documents the
schema and keys ``datasets``' cache; licence, task categories, size and tags come from the
build summary. Used by the card and by ``meddata push``, which rewrites the files block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meddata.publish.buildinfo import BuildInfo, hub_licence, size_category

TASKS = {
    "conversational": ["text-generation", "question-answering"],
    "prompt_completion": ["text-generation", "question-answering"],
    "preference": ["text-generation"],
    "language_modeling": ["text-generation"],
    "exam": ["multiple-choice", "question-answering"],
}
TYPE_TAGS = {"conversational": "sft", "prompt_completion": "sft", "preference": "dpo",
             "language_modeling": "pretraining", "exam": "medical-exam"}


def data_files_for(info: BuildInfo) -> tuple[str, dict[str, str]] | None:
    """(format, split -> path relative to the build folder) for the best loadable format."""
    splits = list(info.split_rows)
    for fmt, pattern in (("parquet", "parquet/{}.parquet"), ("json", "jsonl/{}.jsonl"),
                         ("arrow", "dataset/{}/data-*.arrow")):
        files = {s: pattern.format(s) for s in splits}
        if all(next(iter(info.root.glob(p)), None) is not None for p in files.values()):
            return fmt, files
    return None


def configs_entry(config_name: str, files: Mapping[str, str]) -> dict[str, Any]:
    return {"config_name": config_name,
            "data_files": [{"split": split, "path": path} for split, path in files.items()]}


def dataset_info_entry(info: BuildInfo, config_name: str) -> dict[str, Any] | None:
    """The Hub's ``dataset_info`` block (features, split sizes) for one config.

    Besides documenting the schema it keeps ``load_dataset(folder)`` honest: ``datasets``
    keys its cache for README-configured folders on this metadata, not on the files, so two
    builds in folders of the same name would otherwise share a stale cache. None when the
    splits have different columns (the output drops columns a split never fills).
    """
    from datasets.info import DatasetInfo, DatasetInfosDict
    from datasets.splits import SplitDict, SplitInfo

    parts = list(info.splits.values())
    if not parts or any(p.features != parts[0].features for p in parts[1:]):
        return None
    splits = SplitDict()
    for name, ds in info.splits.items():
        splits.add(SplitInfo(name=name, num_bytes=ds.data.nbytes, num_examples=len(ds)))
    meta = DatasetInfo(features=parts[0].features, splits=splits, config_name=config_name,
                       dataset_size=sum(ds.data.nbytes for ds in parts))
    card_data: dict[str, Any] = {}
    DatasetInfosDict({config_name: meta}).to_dataset_card_data(card_data)
    return card_data["dataset_info"]


def front_matter(info: BuildInfo, configs: list[dict[str, Any]],
                 dataset_info: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    licences = sorted({hub_licence(lic) for lic in info.licences}) or ["unknown"]
    types = [t for t, n in info.type_rows.most_common() if n and t in TASKS]
    tasks = sorted({task for t in types for task in TASKS[t]}) or ["text-generation"]
    tags = ["medical", "meddata", *sorted({TYPE_TAGS[t] for t in types})]
    if info.generators:
        tags.append("synthetic")
    if info.had_raw_input:
        tags += ["clinical"] if info.raw_rows else ["clinical", "deidentified"]
    data: dict[str, Any] = {
        "pretty_name": info.name,
        "license": licences[0] if len(licences) == 1 else licences,
        "language": ["en"],
        "task_categories": tasks,
        "size_categories": [size_category(info.total_rows)],
        "tags": tags,
    }
    if configs:
        data["configs"] = configs
    if dataset_info:
        data["dataset_info"] = dataset_info[0] if len(dataset_info) == 1 else dataset_info
    return data
