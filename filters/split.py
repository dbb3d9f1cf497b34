"""Patient-aware train/validation/test split.

Rows are grouped by a key (``meta.patient_id`` by default) and whole groups go to one split,
so no patient's notes land on two sides of an evaluation. Rows without the key are grouped by
``fallback`` (their own ``id``: each such row is a group of one). Groups are assigned largest
first to the split furthest below its target *row* count, so the row shares follow the ratios
even when one patient has a hundred notes and another has four; the seed shuffles groups of
equal size. The step writes the internal ``__split__`` column, which the output stage turns
into a DatasetDict.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from datasets import Dataset, Value
from pydantic import Field, field_validator

from meddata.records import META_FEATURES, SPLIT_COLUMN
from meddata.registry import register
from meddata.steps import GlobalResult, GlobalStep, StepContext, StepParams

SPLIT_NAMES_ORDER = ("train", "validation", "test")


class SplitParams(StepParams):
    #: A meta field (patient_id, encounter_id, or meta.<field>) or a top-level column (source).
    by: str = "patient_id"
    #: Key for rows where ``by`` is empty: "id" makes each such row its own group.
    fallback: str = "id"
    ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    #: Default: the recipe's seed.
    seed: int | None = None

    @field_validator("ratios")
    @classmethod
    def _ratios(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("give at least one split, e.g. {train: 0.9, test: 0.1}")
        for name, r in v.items():
            if not name or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"split name {name!r} must be letters, digits, '-' or '_'")
            if r < 0:
                raise ValueError(f"ratio of {name!r} must not be negative")
        total = sum(v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"ratios must add up to 1, they add up to {total:g}")
        return v


def _getter(key: str, columns: list[str]):
    """A function row -> key value, for a meta field, ``meta.<field>`` or a column."""
    field = key.removeprefix("meta.")
    if key.startswith("meta.") or (key in META_FEATURES and key not in columns):
        if field not in META_FEATURES:
            raise ValueError(f"split: 'meta.{field}' is not a meta field; meta has {', '.join(META_FEATURES)}")
        return ["meta"], lambda row: (row.get("meta") or {}).get(field)
    if key not in columns:
        raise ValueError(f"split: the dataset has no column {key!r} (columns: {', '.join(columns)})")
    return [key], lambda row: row.get(key)


def assign_groups(sizes: Mapping[str, int], ratios: Mapping[str, float], seed: int) -> dict[str, str]:
    """Map each group to a split: largest groups first, each to the split with the largest
    deficit against its target row count."""
    total = sum(sizes.values())
    targets = {name: r * total for name, r in ratios.items() if r > 0}
    assigned = dict.fromkeys(targets, 0)
    order = sorted(sizes)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda g: -sizes[g])  # stable: equal sizes keep the seeded order
    out = {}
    for group in order:
        name = max(targets, key=lambda s: (targets[s] - assigned[s], targets[s]))
        out[group] = name
        assigned[name] += sizes[group]
    return out


@register
class Split(GlobalStep):
    name = "split"
    description = ("Patient-aware train/validation/test split: whole groups (meta.patient_id, else the row "
                   "id) per split, seeded, row shares close to the ratios.")
    Params = SplitParams
    extra_features = {SPLIT_COLUMN: Value("string")}

    def apply(self, dataset: Dataset, ctx: StepContext) -> GlobalResult:
        p: SplitParams = self.params
        columns = list(dataset.column_names)
        key_cols, key_of = _getter(p.by, columns)
        fb_cols, fallback_of = _getter(p.fallback, columns)
        keys: list[str] = []
        without = 0
        for batch in dataset.select_columns(sorted({*key_cols, *fb_cols})).iter(batch_size=2000):
            names = list(batch)
            for values in zip(*batch.values()):
                row = dict(zip(names, values))
                value = key_of(row)
                if value is None or str(value).strip() == "":
                    without += 1
                    value = fallback_of(row)
                    if value is None or str(value).strip() == "":
                        raise ValueError(f"split: a row has neither {p.by!r} nor {p.fallback!r}")
                    keys.append(f"{p.fallback}\x1f{value}")
                else:
                    keys.append(f"{p.by}\x1f{value}")
        sizes = Counter(keys)
        seed = ctx.seed if p.seed is None else p.seed
        groups = assign_groups(sizes, p.ratios, seed)
        labels = [groups[k] for k in keys]
        self.stat_update("split.groups", len(sizes))
        self.stat_update("split.rows_without_key", without)
        return GlobalResult(source=dataset, new_columns={SPLIT_COLUMN: labels},
                            report=self._report(keys, groups, without, seed))

    def _report(self, keys: list[str], groups: Mapping[str, str], without: int, seed: int) -> dict[str, Any]:
        """Counts only: group keys may be patient identifiers and never leave the step."""
        p: SplitParams = self.params
        rows = Counter(groups[k] for k in keys)
        n_groups = Counter(groups.values())
        total = len(keys) or 1
        names = sorted(p.ratios, key=lambda s: (SPLIT_NAMES_ORDER.index(s) if s in SPLIT_NAMES_ORDER else 9, s))
        return {
            "by": p.by,
            "seed": seed,
            "groups": len(groups),
            "rows_without_key": without,
            "splits": {
                name: {"rows": rows.get(name, 0), "groups": n_groups.get(name, 0),
                       "share": round(rows.get(name, 0) / total, 4), "target": p.ratios[name]}
                for name in names
            },
        }
