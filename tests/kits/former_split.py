"""The ``split`` step as it was before the compact rewrite, verbatim: the oracle of
``tests/filters/test_split_compact.py`` (the rewrite must assign every row the same split) and
the named baseline of ``benchmarks/split_memory.py`` (one key string per row, a ``Counter``,
a dict of groups and a list of labels)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

from datasets import Dataset

from meddata.records import META_FEATURES

SPLIT_NAMES_ORDER = ("train", "validation", "test")


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


def old_assign_groups(sizes: Mapping[str, int], ratios: Mapping[str, float], seed: int) -> dict[str, str]:
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


def old_apply(dataset: Dataset, by: str = "patient_id", fallback: str = "id",
              ratios: dict | None = None, seed: int = 0) -> tuple[list[str], dict[str, Any]]:
    ratios = ratios or {"train": 0.8, "validation": 0.1, "test": 0.1}
    columns = list(dataset.column_names)
    key_cols, key_of = _getter(by, columns)
    fb_cols, fallback_of = _getter(fallback, columns)
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
                    raise ValueError(f"split: a row has neither {by!r} nor {fallback!r}")
                keys.append(f"{fallback}\x1f{value}")
            else:
                keys.append(f"{by}\x1f{value}")
    sizes = Counter(keys)
    groups = old_assign_groups(sizes, ratios, seed)
    labels = [groups[k] for k in keys]
    rows = Counter(groups[k] for k in keys)
    n_groups = Counter(groups.values())
    total = len(keys) or 1
    names = sorted(ratios, key=lambda s: (SPLIT_NAMES_ORDER.index(s) if s in SPLIT_NAMES_ORDER else 9, s))
    report = {
        "by": by, "seed": seed, "groups": len(groups), "rows_without_key": without,
        "splits": {name: {"rows": rows.get(name, 0), "groups": n_groups.get(name, 0),
                          "share": round(rows.get(name, 0) / total, 4), "target": ratios[name]}
                   for name in names},
    }
    return labels, report
