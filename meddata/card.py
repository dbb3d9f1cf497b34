"""Dataset card written next to every build (README.md in the build folder).

Minimal version: sources, funnel and PHI status. The publishing issue extends it.
"""

from __future__ import annotations

from meddata.recipe import Recipe


def write_card(result, recipe: Recipe) -> None:
    lines = [f"# {recipe.name}", "", recipe.description or "", "", "## Funnel", "",
             "| # | step | in | out | dropped | quarantined |", "|---|---|---|---|---|---|"]
    for s in result.steps:
        lines.append(f"| {s.index} | {s.name} | {s.rows_in} | {s.rows_out} | {s.n_dropped} | {s.quarantined} |")
    lines += ["", "Not for clinical decision making."]
    (result.out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
