"""A third-party package adds a step, an engine, an export, an LLM backend and a trainer stage
runner through entry points alone: a real distribution (dist-info with entry_points.txt) on
sys.path, found by importlib.metadata as pip would install it."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest
from meddata.trainers.stages import RUNNERS
from testutil import EXAMPLES

from meddata import recipe, registry
from meddata.engine.base import ENGINES
from meddata.formats import EXPORTERS
from meddata.llm.backends import BACKENDS

KINDS = {"meddata.steps": registry.STEPS, "meddata.engines": ENGINES, "meddata.exporters": EXPORTERS,
         "meddata.llm_backends": BACKENDS, "meddata.trainer_stages": RUNNERS}

PLUGIN = '''
from meddata.engine.local import LocalEngine
from meddata.formats import write_jsonl
from meddata.registry import register
from meddata.steps import Mapper


@register
class Shout(Mapper):
    name = "plugin_shout"
    description = "Upper-case the assistant turns (a third-party step)."
    input_columns = ("messages",)

    def process(self, row, ctx):
        row["messages"] = [{**m, "content": m["content"].upper()} if m["role"] == "assistant" else m
                           for m in row["messages"]]
        return row


class SerialEngine(LocalEngine):
    name = "plugin_serial"


def ids_only(ds, path):
    return write_jsonl(({"id": row["id"]} for row in ds), path)


class EchoBackend:
    def __init__(self, name, config):
        self.name, self.config = name, config


def run_stage(plan, stage, start, resume_from):
    return "ran"
'''

ENTRY_POINTS = '''
[meddata.steps]
plugin = thirdparty_meddata_plugin

[meddata.engines]
plugin_serial = thirdparty_meddata_plugin:SerialEngine

[meddata.exporters]
ids_only = thirdparty_meddata_plugin:ids_only

[meddata.llm_backends]
echo = thirdparty_meddata_plugin:EchoBackend

[meddata.trainer_stages]
orpo = thirdparty_meddata_plugin:run_stage
'''


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    for r in KINDS.values():
        r.load_plugins()  # meddata's own first, so the snapshot below holds them
    saved = {group: (dict(r._items), dict(r._lazy)) for group, r in KINDS.items()}
    (tmp_path / "thirdparty_meddata_plugin.py").write_text(textwrap.dedent(PLUGIN), encoding="utf-8")
    info = tmp_path / "thirdparty_meddata_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: thirdparty-meddata-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    for r in KINDS.values():
        r.refresh()
    yield
    for group, r in KINDS.items():  # leave the registries as the other tests know them
        r._items, r._lazy = saved[group]
    sys.modules.pop("thirdparty_meddata_plugin", None)


def test_every_kind_finds_a_third_party_entry_point(plugin):
    assert "plugin_shout" in registry.all_steps()
    assert ENGINES.get("plugin_serial").__name__ == "SerialEngine"
    assert "ids_only" in EXPORTERS and "ids_only" in EXPORTERS.names()
    assert BACKENDS.get("echo").__name__ == "EchoBackend"
    assert RUNNERS["orpo"](None, None, None, None) == "ran"
    # built-ins are still there, beside the plugin's
    assert {"local", "ray"} <= set(ENGINES.names()) and {"openai", "transformers"} <= set(BACKENDS.names())


def test_a_recipe_builds_with_the_plugins_step_engine_and_export(plugin, build):
    data = {"name": "plugin", "inputs": [{"builder": "table", "path": str(EXAMPLES / "data" / "medquad_sample.jsonl"),
                                          "source": "medquad", "columns": {"user": "question", "assistant": "answer"}}],
            "steps": ["plugin_shout"], "engine": {"name": "plugin_serial"}, "output": {"exports": ["ids_only"]}}
    result = build(data)
    assert result.rows_out > 0
    exported = (result.out_dir / "exports" / "ids_only-train.jsonl").read_text().splitlines()
    assert len(exported) == result.rows_out
    out = (result.out_dir / "jsonl" / "train.jsonl").read_text()
    import json

    first = json.loads(out.splitlines()[0])
    answer = next(m["content"] for m in first["messages"] if m["role"] == "assistant")
    assert answer == answer.upper() and any(c.isalpha() for c in answer)


def test_without_the_plugin_its_names_are_unknown_and_say_what_exists():
    with pytest.raises(recipe.RecipeError, match="unknown step 'plugin_shout'"):
        registry.get("plugin_shout")
    with pytest.raises(recipe.RecipeError, match=r"unknown engine .plugin_serial. \(choose from: local, ray\)"):
        ENGINES.get("plugin_serial")
