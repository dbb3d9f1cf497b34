"""``meddata push``: publish a build's Parquet shards and dataset card to the Hugging Face Hub."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push", help="upload a build to the Hugging Face Hub (Parquet + dataset card)",
        description="Upload a build's splits as Parquet shards and its dataset card to a Hub dataset repo. "
                    "Refuses rows that are still raw patient data; builds that read patient data go to a "
                    "private repo unless --public. The token comes from HF_TOKEN or 'hf auth login'.",
    )
    p.add_argument("build_dir", metavar="BUILD_DIR", help="a build folder written by 'meddata build'")
    p.add_argument("--repo", required=True, metavar="ID", help="dataset repo id, e.g. my-org/cardiology-sft")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_const", const=True, default=None,
                     help="create the repo private (the default when a source was raw patient data)")
    vis.add_argument("--public", dest="private", action="store_const", const=False,
                     help="create the repo public even though a source was patient data (deliberate choice)")
    p.add_argument("--revision", metavar="REV", help="branch to push to (created if missing; default main)")
    p.add_argument("--config-name", default="default", metavar="NAME",
                   help="dataset config name; files go to data/NAME/, other configs in the repo are kept")
    p.add_argument("--dry-run", metavar="DIR",
                   help="write exactly the files that would be uploaded into DIR (new or empty) and stop")
    p.add_argument("--force", action="store_true",
                   help="push even if rows still have meta.phi_status = raw (only when they hold no PHI)")
    p.add_argument("--message", help="commit message")
    p.set_defaults(func=cmd_push)


def cmd_push(args: argparse.Namespace) -> int:
    from meddata.publish.hub import plan_push, push, stage

    # PushError is a UserError: the CLI prints it as one line
    plan = plan_push(args.build_dir, args.repo, private=args.private, config_name=args.config_name,
                     force=args.force)
    print(f"push {plan.info.name} -> {plan.repo_id} (config {plan.config_name}"
          f"{', revision ' + args.revision if args.revision else ''})")
    print(f"  private: {'yes' if plan.private else 'no'} ({plan.private_reason})")
    print("  rows: " + ", ".join(f"{s} {n:,}" for s, n in plan.info.split_rows.items()))
    if plan.info.raw_rows:
        print(f"  WARNING: forced push of {plan.info.raw_rows:,} rows with phi_status raw")
    if args.dry_run:
        files = stage(plan, args.dry_run)
        print(f"dry run: wrote {len(files)} files to {args.dry_run} (nothing uploaded)")
        for f in files:
            print(f"  {f.relative_to(args.dry_run)}")
        return 0
    url = push(plan, revision=args.revision, commit_message=args.message)
    print(f"pushed: {url}")
    return 0
