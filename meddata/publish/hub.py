"""Publish a build to the Hugging Face Hub: Parquet shards per split plus the dataset card.

The safety rules come first and need no network:

* rows whose ``meta.phi_status`` is still ``raw`` are never pushed unless forced;
* a build that read raw patient data (even if de-identified since) goes to a private repo
  unless the user asks for a public one, and is never pushed into an existing public repo
  by default;
* the token comes from ``HF_TOKEN`` or the saved login and is never printed.

Layout in the repo: ``data/<config>/<split>-NNNNN-of-NNNNN.parquet`` and ``README.md`` whose
``configs`` list those files (other configs already in the repo's card are kept), so
``load_dataset(repo_id, config)`` works. ``stage`` writes exactly these files into a folder,
which is both the dry run and what the real push uploads.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meddata.errors import UserError
from meddata.publish.buildinfo import BuildInfo
from meddata.publish.card import FILES_END, FILES_START, files_section, render_body
from meddata.publish.frontmatter import configs_entry, dataset_info_entry, front_matter

logger = logging.getLogger("meddata")

#: Target Parquet shard size (the Hub's viewer and streaming like shards of a few hundred MB).
SHARD_BYTES = 500 * 1024 * 1024
_CONFIG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class PushError(UserError, ValueError):
    """Pushing is refused or failed; the message says why and what to do."""


@dataclass
class PushPlan:
    info: BuildInfo
    repo_id: str
    config_name: str
    private: bool
    private_reason: str

    @property
    def data_dir(self) -> str:
        return f"data/{self.config_name}"


def plan_push(build_dir: str | Path, repo_id: str, *, private: bool | None = None, config_name: str = "default",
              force: bool = False) -> PushPlan:
    """Check a build can be pushed and decide visibility; raises :class:`PushError` if not."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PushError(f"--repo {repo_id!r} is not a valid repo id ({exc})") from None
    if not _CONFIG_NAME.match(config_name):
        raise PushError(f"--config-name {config_name!r}: use letters, digits, '.', '-' and '_'")
    info = BuildInfo(build_dir)
    if info.raw_rows and not force:
        raise PushError(
            f"refusing to push: {info.raw_rows:,} rows still have meta.phi_status = raw (patient data that was "
            "never de-identified). Add a 'deid' step to the recipe and rebuild, or pass --force if you are "
            "sure these rows hold no patient data."
        )
    if info.total_rows == 0:
        raise PushError(f"{info.root}: the build has no rows to push")
    if private is None:
        private = info.had_raw_input
        reason = ("a source was raw patient data (de-identified since); pass --public to publish it deliberately"
                  if private else "no source held patient data; pass --private to keep it private")
    else:
        reason = "requested"
    return PushPlan(info, repo_id, config_name, private, reason)


def _shards(n_bytes: int) -> int:
    return max(1, math.ceil(n_bytes / SHARD_BYTES))


def pushed_files(plan: PushPlan) -> dict[str, str]:
    """split -> glob of its Parquet shards in the repo (what the card's configs list)."""
    return {split: f"{plan.data_dir}/{split}-*.parquet" for split in plan.info.split_rows}


def _as_list(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, dict):
        return [value]
    return [v for v in value or [] if isinstance(v, dict)]


def card_text(plan: PushPlan, remote: dict[str, Any] | None = None) -> str:
    """The build's card with ``configs``, ``dataset_info`` and the files section rewritten for
    the repo layout; ``remote`` is the repo's current card metadata (its other configs stay)."""
    from huggingface_hub import DatasetCard

    files = pushed_files(plan)
    name = plan.config_name
    configs = [configs_entry(name, files)]
    configs += [c for c in _as_list((remote or {}).get("configs")) if c.get("config_name") != name]
    infos = [e for e in [dataset_info_entry(plan.info, name)] if e]
    infos += [i for i in _as_list((remote or {}).get("dataset_info")) if i.get("config_name", "default") != name]
    section = files_section(files, "Parquet")
    local = plan.info.root / "README.md"
    if not local.is_file():  # the recipe turned the card off: write one now
        import yaml

        data = front_matter(plan.info, configs, infos)
        return "---\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True) + "---\n\n" + \
            render_body(plan.info, "", section)
    card = DatasetCard(local.read_text(encoding="utf-8"))
    card.data.configs = configs
    if infos:
        card.data["dataset_info"] = infos[0] if len(infos) == 1 else infos
    else:
        card.data.pop("dataset_info", None)
    text = card.text
    if FILES_START in text and FILES_END in text:
        head, rest = text.split(FILES_START, 1)
        text = head + section + rest.split(FILES_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    card.text = text
    return str(card.content)


def stage(plan: PushPlan, dest: str | Path, remote: dict[str, Any] | None = None) -> list[Path]:
    """Write exactly the files a push uploads into ``dest`` (which must be empty)."""
    dest = Path(dest)
    if dest.exists() and any(dest.iterdir()):
        raise PushError(f"{dest}: folder is not empty; give a new or empty folder for the staged files")
    written: list[Path] = []
    for split, ds in plan.info.splits.items():
        n = _shards(ds.data.nbytes)
        folder = dest / plan.data_dir
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = folder / f"{split}-{i:05d}-of-{n:05d}.parquet"
            ds.shard(n, i, contiguous=True).to_parquet(str(path))
            written.append(path)
    readme = dest / "README.md"
    readme.write_text(card_text(plan, remote), encoding="utf-8")
    written.append(readme)
    return written


def _remote_card(api, plan: PushPlan, revision: str | None) -> dict[str, Any]:
    """The repo card's metadata, so pushing one config keeps the others it declares."""
    from huggingface_hub import DatasetCard
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        path = api.hf_hub_download(plan.repo_id, "README.md", repo_type="dataset", revision=revision)
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return {}
    return DatasetCard.load(path).data.to_dict()


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of whichever HTTP client huggingface_hub uses."""
    import importlib

    errors: list[type[BaseException]] = [OSError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"),
                         ("requests", "ConnectionError"), ("requests", "Timeout")):
        try:
            errors.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(errors)


def push(plan: PushPlan, *, revision: str | None = None, commit_message: str | None = None) -> str:
    """Upload the staged files; returns the dataset's URL. Raises :class:`PushError`."""
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = get_token()  # HF_TOKEN, then the saved login
    if not token:
        raise PushError("no Hugging Face token: set HF_TOKEN or run 'hf auth login' (needs write access)")
    api = HfApi(token=token)
    try:
        api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private, exist_ok=True)
        if plan.private and not api.repo_info(plan.repo_id, repo_type="dataset").private:
            raise PushError(
                f"{plan.repo_id} exists and is public, but this build comes from patient data and goes to "
                "private repos only. Make the repo private on the Hub, or pass --public to publish deliberately."
            )
        if revision:
            api.create_branch(plan.repo_id, repo_type="dataset", branch=revision, exist_ok=True)
        remote = _remote_card(api, plan, revision)
        with tempfile.TemporaryDirectory(prefix="meddata-push-") as tmp:
            stage(plan, tmp, remote)
            api.upload_folder(
                repo_id=plan.repo_id, repo_type="dataset", folder_path=tmp, revision=revision,
                commit_message=commit_message or f"meddata: {plan.info.name} ({plan.config_name})",
                delete_patterns=[f"{plan.data_dir}/*.parquet"],
            )
    except HfHubHTTPError as exc:
        status = getattr(getattr(exc, "response", None), "status_code", None)
        raise PushError(f"the Hub refused the push of {plan.repo_id} (HTTP {status}): "
                        f"{str(exc).splitlines()[0]}") from None
    except _transport_errors() as exc:
        raise PushError(f"could not reach the Hub to push {plan.repo_id}: {type(exc).__name__}") from None
    return f"https://huggingface.co/datasets/{plan.repo_id}" + (f"/tree/{revision}" if revision else "")
