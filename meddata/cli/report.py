"""``meddata report``: a self-contained HTML report of a build."""

from __future__ import annotations

import argparse

from meddata.cli._extras import needs_extras


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write a self-contained HTML report of a build",
        description="Explain a build in one HTML file with embedded charts: the funnel per step, length "
                    "distributions per source and type, the source mix, PHI counts by type, duplicate "
                    "clusters, judge scores and sample rows (never rows still marked phi_status raw).",
    )
    p.add_argument("build_dir", metavar="BUILD_DIR", help="a build folder written by 'meddata build'")
    p.add_argument("--out", metavar="FILE", help="where to write the HTML (default BUILD_DIR/report.html)")
    p.add_argument("--seed", type=int, default=0, help="seed for the rows sampled for charts and examples")
    p.set_defaults(func=cmd_report)


@needs_extras
def cmd_report(args: argparse.Namespace) -> int:
    from meddata.publish.report import write_report

    path = write_report(args.build_dir, args.out, seed=args.seed)
    print(f"report: {path}")
    return 0
