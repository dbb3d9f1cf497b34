"""``meddata steps``: list registered steps with their parameters."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("steps", help="list available builders and steps",
                       description="List every registered builder, mapper, filter and global step.")
    p.add_argument("--kind", choices=["builder", "mapper", "filter", "global"], help="only this kind")
    p.add_argument("--params", action="store_true", help="show each step's parameters")
    p.set_defaults(func=cmd_steps)


def cmd_steps(args: argparse.Namespace) -> int:
    from meddata import registry  # loads every step (pydantic, the step base): only when listing
    from meddata.params import describe_params

    steps = registry.all_steps()
    width = max((len(n) for n in steps), default=10)
    for name, cls in steps.items():
        if args.kind and cls.kind != args.kind:
            continue
        print(f"{name:<{width}}  {cls.kind:<7}  {cls.description}")
        if args.params:
            for key, type_text, default in describe_params(cls.Params):
                print(f"{'':<{width}}    {key}: {type_text} ({default})")
    return 0
