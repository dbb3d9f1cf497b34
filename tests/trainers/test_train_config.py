"""``meddata train`` config validation: every stage, dataset type, hardware need and TRL
argument is checked before any model is loaded, with errors naming config, stage and field."""

from __future__ import annotations

import pytest
import yaml
from meddata.trainers import chat_templates, distributed
from meddata.trainers import config as train_config
from meddata.trainers.config import TrainConfigError
from meddata.trainers.hardware import Hardware
from meddata.trainers.validate import validate
from testutil import EXAMPLES, ROOT, write_jsonl

from meddata.cli import main

CPU = Hardware(cuda=False, gpus=0, bf16=False, bitsandbytes=False, device_name="cpu")
QS_LIMIT = 15


@pytest.fixture(scope="module")
def qs_build(tmp_path_factory):
    """The quickstart recipe (conversational rows from real MedQuAD / ChatDoctor samples)."""
    from meddata import pipeline, recipe

    out = tmp_path_factory.mktemp("qs") / "out"
    pipeline.run(recipe.load(EXAMPLES / "recipes" / "quickstart.yaml"), out, limit=QS_LIMIT)
    return out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A model folder for validation: config + tokenizer (no weights are needed to validate)."""
    from meddata.trainers.tiny import train_tokenizer
    from transformers import LlamaConfig

    path = tmp_path_factory.mktemp("model") / "tiny"
    tok = train_tokenizer(["the patient has a fever and a cough"] * 20, vocab_size=300, chat_tokens=False)
    tok.save_pretrained(path)
    LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2).save_pretrained(path)
    return path


def cfg(model, *stages, **top) -> dict:
    return {"name": "t", "model": {"name_or_path": str(model), "chat_template": "chatml"}, "stages": list(stages),
            **top}


def stage(name: str, type_: str, path, **kw) -> dict:
    return {"name": name, "type": type_, "dataset": {"path": str(path)}, **kw}


def check(data: dict, tmp_path, hw: Hardware = CPU):
    return validate(train_config.from_dict(data, source="run.yaml", base_dir=tmp_path), hw)


def test_valid_multi_stage_plan_reads_types_and_drops_meddata_columns(qs_build, tiny_model, tmp_path):
    plan = check(cfg(tiny_model, stage("sft1", "sft", qs_build), stage("sft2", "sft", qs_build / "dataset")), tmp_path)
    assert [s.kind for s in plan.stages] == ["conversational", "conversational"]
    assert plan.stages[0].train.column_names == ["messages"]  # id, source, meta dropped for TRL
    assert plan.precision == "fp32" and plan.template.name == "chatml"


def test_dpo_on_messages_rows_names_stage_and_dataset(qs_build, tmp_path):
    # The model is a Hub id that is never fetched: the dataset check fails first.
    data = cfg("someone/model", stage("sft", "sft", qs_build), stage("prefs", "dpo", qs_build))
    with pytest.raises(TrainConfigError) as err:
        check(data, tmp_path)
    msg = str(err.value)
    assert "stage 1 'prefs' (dpo)" in msg and str(qs_build) in msg
    assert "needs preference rows (prompt/chosen/rejected)" in msg and "conversational rows (messages)" in msg


def test_pretrain_needs_text_rows(qs_build, tiny_model, tmp_path):
    with pytest.raises(TrainConfigError, match=r"stage 0 'cpt' \(pretrain\).*needs text rows"):
        check(cfg(tiny_model, stage("cpt", "pretrain", qs_build)), tmp_path)


def test_mixed_row_types_are_refused(tiny_model, tmp_path):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
        {"text": "a textbook paragraph"},
        {"text": "another paragraph"},
    ])
    with pytest.raises(TrainConfigError, match=r"mixes row types \(1 conversational rows \(messages\), 2 text rows\)"):
        check(cfg(tiny_model, stage("sft", "sft", path)), tmp_path)


def test_bad_message_names_row_and_field_not_content(tiny_model, tmp_path):
    secret = "Patient John Q Sample, MRN 99812"
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 3
    rows.append({"messages": [{"role": "doctor", "content": secret}, {"role": "assistant", "content": "a"}]})
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(TrainConfigError) as err:
        check(cfg(tiny_model, stage("sft", "sft", path)), tmp_path)
    assert "row 3: field 'messages': a message role must be one of" in str(err.value)
    assert "John" not in str(err.value) and "99812" not in str(err.value)


def test_qlora_without_gpu_is_a_clear_error(qs_build, tiny_model, tmp_path):
    data = cfg(tiny_model, stage("sft", "sft", qs_build, peft={"method": "qlora"}))
    with pytest.raises(TrainConfigError, match=r"stage 0 'sft' \(sft\): field 'peft.method': .*needs a CUDA GPU"):
        check(data, tmp_path)
    gpu_no_bnb = Hardware(cuda=True, gpus=1, bf16=True, bitsandbytes=False, device_name="gpu")
    with pytest.raises(TrainConfigError, match=r"bitsandbytes is not installed; pip install \"meddata\[gpu\]\""):
        check(data, tmp_path, gpu_no_bnb)


def test_precision_checked_against_hardware(qs_build, tiny_model, tmp_path):
    with pytest.raises(TrainConfigError, match="precision fp16 needs a CUDA GPU"):
        check(cfg(tiny_model, stage("sft", "sft", qs_build), precision="fp16"), tmp_path)
    old_gpu = Hardware(cuda=True, gpus=1, bf16=False, bitsandbytes=True, device_name="Tesla V100")
    with pytest.raises(TrainConfigError, match="bf16 is not supported by Tesla V100"):
        check(cfg(tiny_model, stage("sft", "sft", qs_build), precision="bf16"), tmp_path, old_gpu)
    assert check(cfg(tiny_model, stage("sft", "sft", qs_build)), tmp_path, old_gpu).precision == "fp16"


def test_trl_args_are_checked(qs_build, tiny_model, tmp_path):
    with pytest.raises(TrainConfigError, match=r"trl_args \['not_a_field'\] are not SFTConfig fields"):
        check(cfg(tiny_model, stage("sft", "sft", qs_build, trl_args={"not_a_field": 1})), tmp_path)
    with pytest.raises(TrainConfigError, match=r"trl_args \['learning_rate'\] are set from the stage"):
        check(cfg(tiny_model, stage("sft", "sft", qs_build, trl_args={"learning_rate": 1})), tmp_path)
    plan = check(cfg(tiny_model, stage("sft", "sft", qs_build, trl_args={"neftune_noise_alpha": 5})), tmp_path)
    assert plan.stages[0].spec.trl_args == {"neftune_noise_alpha": 5}


def test_schema_errors_name_the_stage_and_field(tmp_path):
    data = cfg("m", stage("a", "sft", "x"), stage("b", "sft", "x", peft={"method": "dora"}))
    with pytest.raises(TrainConfigError, match=r"run.yaml: field 'stages\[1\] 'b'.peft.method': Input should be"):
        train_config.from_dict(data, source="run.yaml")
    with pytest.raises(TrainConfigError, match="stage name 'a' is used twice"):
        train_config.from_dict(cfg("m", stage("a", "sft", "x"), stage("a", "dpo", "y")), source="run.yaml")
    with pytest.raises(TrainConfigError, match="packing is not available for dpo"):
        train_config.from_dict(cfg("m", stage("d", "dpo", "x", packing=True)))


def test_splits_are_checked(qs_build, tiny_model, tmp_path):
    with pytest.raises(TrainConfigError, match=r"no split 'test'; the dataset has \['train'\]"):
        check(cfg(tiny_model, {"name": "s", "type": "sft", "dataset": {"path": str(qs_build), "split": "test"}}),
              tmp_path)
    with pytest.raises(TrainConfigError, match="no eval split 'validation'"):
        check(cfg(tiny_model, {"name": "s", "type": "sft",
                               "dataset": {"path": str(qs_build), "eval_split": "validation"}}), tmp_path)
    plan = check(cfg(tiny_model, {"name": "s", "type": "sft",
                                  "dataset": {"path": str(qs_build), "max_rows": 20, "eval_fraction": 0.25}}), tmp_path)
    assert (len(plan.stages[0].train), len(plan.stages[0].eval)) == (15, 5)


def test_conversational_data_needs_a_chat_template(qs_build, tiny_model, tmp_path):
    data = cfg(tiny_model, stage("sft", "sft", qs_build))
    data["model"].pop("chat_template")
    with pytest.raises(TrainConfigError, match="the tokenizer has no chat template; set model.chat_template"):
        check(data, tmp_path)
    data["model"]["chat_template"] = "nonexistent"
    with pytest.raises(TrainConfigError, match="unknown chat template 'nonexistent'"):
        check(data, tmp_path)


def test_named_template_grows_a_tokenizer_without_chat_tokens(tiny_model):
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = LlamaForCausalLM(AutoConfig.from_pretrained(tiny_model))
    n = len(tok)
    for name in chat_templates.NAMES:
        tpl = chat_templates.resolve(name)
        t = AutoTokenizer.from_pretrained(tiny_model)
        added = chat_templates.fit_tokenizer(t, tpl)
        assert added == [x for x in tpl.special_tokens if x not in tok.get_vocab()] and len(t) == n + len(added)
        assert t.eos_token == tpl.end_of_turn
        assert is_chat_template_stop_token_trained(t)  # the end-of-turn token is in the loss mask
        msgs = [{"role": "user", "content": "fever?"}, {"role": "assistant", "content": "rest and fluids"}]
        out = t.apply_chat_template(msgs, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        masked = [i for i, m in zip(out["input_ids"], out["assistant_masks"], strict=True) if m]
        assert t.decode(masked).startswith("rest and fluids") and masked[-1] == t.eos_token_id
    ids = chat_templates.fit_model(model, t, added)
    assert model.get_input_embeddings().weight.shape[0] == len(t) and ids == t.convert_tokens_to_ids(added)
    assert model.generation_config.eos_token_id[0] == t.eos_token_id


def test_accelerate_configs_load_with_accelerate(qs_build, tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    base = cfg("m", stage("sft", "sft", qs_build))
    for dist, expected in (
        ({"strategy": "fsdp", "num_processes": 8}, "FSDP"),
        ({"strategy": "fsdp", "num_processes": 4, "fsdp": {"version": 1, "sharding": "hybrid_shard"}}, "FSDP"),
        ({"strategy": "deepspeed", "num_processes": 2, "deepspeed": {"zero_stage": 3}}, "DEEPSPEED"),
        ({"strategy": "ddp", "num_processes": 2}, "MULTI_GPU"),
    ):
        loaded = train_config.from_dict({**base, "distributed": dist})
        path = distributed.write_accelerate_config(loaded.config, tmp_path / f"{expected}.yaml")
        acc = load_config_from_file(str(path))
        assert acc.distributed_type.value == expected and acc.num_processes == dist["num_processes"]
        assert acc.mixed_precision == "bf16"
    ds = load_config_from_file(str(tmp_path / "DEEPSPEED.yaml"))
    assert ds.deepspeed_config["zero_stage"] == 3 and ds.deepspeed_config["zero3_save_16bit_model"] is True
    v1 = yaml.safe_load((tmp_path / "FSDP.yaml").read_text())
    assert v1["fsdp_config"]["fsdp_sharding_strategy"] == "HYBRID_SHARD"


def test_cli_check_and_accelerate_config(qs_build, tiny_model, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg(tiny_model, stage("sft", "sft", qs_build)) | {
        "distributed": {"strategy": "deepspeed", "num_processes": 4}}))
    assert main(["train", str(path), "--check"]) == 0
    out = capsys.readouterr().out
    from datasets import load_from_disk

    rows = len(load_from_disk(str(qs_build / "dataset"))["train"])
    assert "ok — 1 stage(s), precision fp32" in out and f"sft on {rows} conversational rows" in out
    assert main(["train", str(path), "--accelerate-config", str(tmp_path / "acc.yaml")]) == 0
    out = capsys.readouterr().out
    assert f"accelerate launch --config_file {tmp_path / 'acc.yaml'} -m meddata.cli train {path}" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg(tiny_model, stage("p", "dpo", qs_build))))
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("meddata train: error: ") and "needs preference rows" in err


def test_cli_check_prints_each_speed_setting_and_why(qs_build, tiny_model, tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg(tiny_model, stage("sft", "sft", qs_build, packing=True))))
    assert main(["train", str(path), "--check"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:] if line.startswith("      ")}
    assert set(lines) == {"weights", "attention", "optimizer", "liger", "compile", "padding_free",
                          "dataloader_workers"}
    assert lines["weights"].split()[1] == "fp32" and "CPU" in lines["weights"]
    assert lines["compile"].split()[1] == "off" and lines["padding_free"].split()[1] == "on"
    # a setting this machine cannot run is refused at --check, naming the stage
    path.write_text(yaml.safe_dump(cfg(tiny_model, stage("sft", "sft", qs_build), speed={"liger": "on"})))
    assert main(["train", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "stage 0 'sft' (sft): speed.liger on needs a CUDA GPU" in err


def test_shipped_example_configs_parse():
    files = sorted((ROOT / "examples" / "train").glob("*.yaml"))
    assert files
    for f in files:
        raw = yaml.safe_load(f.read_text())
        if "models" in raw:  # an eval config
            from meddata.trainers import eval_config

            eval_config.load(f)
        else:
            train_config.load(f)


def test_hub_push_needs_a_token_before_training(qs_build, tiny_model, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    data = cfg(tiny_model, stage("sft", "sft", qs_build), hub={"repo_id": "my-org/med-model"})
    with pytest.raises(TrainConfigError, match="pushing to my-org/med-model needs a Hub token"):
        check(data, tmp_path)


def test_model_card_lists_stages_and_no_rows(qs_build, tiny_model, tmp_path):
    from meddata.trainers.common import StageResult
    from meddata.trainers.publish import model_card
    from meddata.trainers.stages import RunResult

    loaded = train_config.from_dict(cfg(tiny_model, stage("sft", "sft", qs_build, peft={"method": "lora"})))
    plan = validate(loaded, CPU)
    run = RunResult(tmp_path, str(tiny_model), [StageResult("sft", "sft", None, str(tmp_path / "adapter"),
                                                            {"global_step": 20, "first_loss": 6.9, "last_loss": 6.1})])
    card = model_card(plan, run, "adapter")
    assert "library_name: peft" in card and f"base_model: {tiny_model}" in card
    assert f"| sft | sft | `{qs_build}` | lora | 20 | 6.9000 | 6.1000 |" in card
    from datasets import load_from_disk

    first = load_from_disk(str(qs_build / "dataset"))["train"][0]["messages"][1]["content"]
    assert first[:40] not in card
