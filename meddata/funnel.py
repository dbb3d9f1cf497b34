"""The funnel table printed at the end of a build (Data-Juicer/datatrove style)."""

from __future__ import annotations

from collections.abc import Sequence


def _top_counters(counters: dict[str, float], prefix: str, n: int = 6) -> str:
    items = [(k[len(prefix):], v) for k, v in counters.items() if k.startswith(prefix)]
    items.sort(key=lambda kv: -kv[1])
    return " ".join(f"{k} {int(v):,}" for k, v in items[:n])


def format_funnel(steps: Sequence, totals: dict[str, int]) -> str:
    rows = []
    for s in steps:
        notes = []
        if s.dropped:
            notes.append("dropped " + ", ".join(f"{r} {n:,}" for r, n in sorted(s.dropped.items(), key=lambda kv: -kv[1])))
        if s.quarantined:
            notes.append(f"quarantined {s.quarantined:,}")
        if s.created:
            notes.append(f"created {s.created:,}")
        phi = _top_counters(s.counters, "phi.")
        if phi:
            notes.append(f"PHI: {phi}")
        if s.reused:
            notes.append("reused")
        rows.append((f"{s.index:>2} {s.name}", f"{s.rows_in:,}", f"{s.rows_out:,}", f"{s.seconds:.1f}s", "; ".join(notes)))
    w0 = max([len(r[0]) for r in rows] + [4])
    w1 = max([len(r[1]) for r in rows] + [7])
    w2 = max([len(r[2]) for r in rows] + [8])
    lines = [f"{'step':<{w0}}  {'rows in':>{w1}} -> {'rows out':>{w2}}  {'time':>7}  notes"]
    for r in rows:
        lines.append(f"{r[0]:<{w0}}  {r[1]:>{w1}} -> {r[2]:>{w2}}  {r[3]:>7}  {r[4]}")
    lines.append(
        f"read {totals['read']:,} = out {totals['out']:,} + dropped {totals['dropped']:,} "
        f"+ quarantined {totals['quarantined']:,} - created {totals['created']:,}"
    )
    return "\n".join(lines)
