"""The ``speed:`` section: what ``auto`` resolves to on CPU and on a GPU, explicit settings and
the errors for settings a machine cannot run; the fp32-master AdamW; static batch shapes;
real-token counting and MFU."""

from __future__ import annotations

import pytest
import torch
from meddata.trainers import config as train_config
from meddata.trainers import fastpath, speed, throughput
from meddata.trainers.config import TrainConfigError
from meddata.trainers.hardware import Hardware
from meddata.trainers.optim import MasterWeightAdamW

CPU = Hardware(cuda=False, gpus=0, bf16=False, bitsandbytes=False, device_name="cpu", cpus=2)
H200 = Hardware(cuda=True, gpus=1, bf16=True, bitsandbytes=True, device_name="NVIDIA H200", capability=(9, 0),
                memory_gib=139.8, cpus=16, triton=True)
V100 = Hardware(cuda=True, gpus=1, bf16=False, bitsandbytes=True, device_name="Tesla V100-SXM2-32GB",
                capability=(7, 0), memory_gib=32, cpus=8, triton=True)


def resolve(hw: Hardware, stage: dict | None = None, precision: str | None = None, **top) -> speed.StageSpeed:
    data = {"name": "t", "model": {"name_or_path": "m"}, **top,
            "stages": [{"name": "s", "type": "sft", "dataset": {"path": "d"}, **(stage or {})}]}
    cfg = train_config.from_dict(data, source="run.yaml").config
    from meddata.trainers.hardware import resolve_precision

    return speed.resolve(cfg, cfg.stages[0], hw, precision or resolve_precision(cfg.precision, hw))


def values(s: speed.StageSpeed) -> dict:
    return s.to_json()


def test_auto_on_cpu_is_plain_fp32_eager():
    s = resolve(CPU, {"packing": True})
    assert values(s) == {"weights": "fp32", "attention": "sdpa", "optimizer": "adamw_torch", "liger": False,
                         "compile": False, "padding_free": True, "dataloader_workers": 0}
    assert all(c.why for _, c in s.items())
    assert s.compile.why.startswith("CPU") and not s.static_shapes


def test_auto_on_a_bf16_gpu_picks_the_fast_path():
    s = resolve(H200, {"packing": True})
    assert s.weights.value == "bf16" and s.optimizer.value == speed.MASTER_ADAMW and s.fused
    # no flash-attention package here: packed rows get flex_attention, not a dense SDPA mask
    assert s.attention.value == "flex_attention" and "dense mask" in s.attention.why
    assert s.compile.value is True and s.static_shapes
    assert s.liger.value is False  # not installed here (and compile covers its kernels)
    assert s.dataloader_workers.value == 4
    unpacked = resolve(H200, {"packing": False})
    assert unpacked.attention.value == "sdpa" and unpacked.padding_free.value is False


def test_a_gpu_without_triton_or_a_c_compiler_skips_compiled_kernels():
    import dataclasses

    bare = dataclasses.replace(H200, triton=False)
    s = resolve(bare, {"packing": True})
    assert s.attention.value == "sdpa" and "C compiler" in s.attention.why
    assert s.compile.value is False and s.weights.value == "bf16" and s.fused
    with pytest.raises(TrainConfigError, match="flex_attention needs Triton"):
        resolve(bare, speed={"attention": "flex_attention"})


def test_auto_follows_stage_kind_and_older_gpus():
    lora = resolve(H200, {"packing": True, "peft": {"method": "lora"}})
    assert lora.weights.value == "bf16" and "frozen" in lora.weights.why
    assert lora.optimizer.value == "adamw_torch_fused"  # adapters are fp32 already: no master copy needed
    qlora = resolve(H200, {"peft": {"method": "qlora"}})
    assert qlora.weights.value == "4bit" and qlora.compile.value is False
    dpo = resolve(H200, {"type": "dpo"})
    assert dpo.compile.value is False and dpo.attention.value == "sdpa" and dpo.padding_free.value is False
    v100 = resolve(V100, {"packing": True})  # no bf16: fp16 autocast over fp32 weights
    assert v100.weights.value == "fp32" and v100.optimizer.value == "adamw_torch_fused"
    fsdp = resolve(H200, {"packing": True}, distributed={"strategy": "fsdp", "num_processes": 8})
    assert fsdp.weights.value == "fp32" and fsdp.compile.value is False  # FSDP's own mixed precision


def test_explicit_settings_win_over_auto():
    s = resolve(H200, {"packing": True, "optim": "adafactor"}, speed={"compile": "off", "weights": "fp32",
                                                                      "attention": "sdpa", "dataloader_workers": 1})
    assert values(s) == {"weights": "fp32", "attention": "sdpa", "optimizer": "adafactor", "liger": False,
                         "compile": False, "padding_free": True, "dataloader_workers": 1}
    pinned = resolve(H200, model={"name_or_path": "m", "dtype": "float32", "attn_implementation": "eager"})
    assert pinned.weights.why == "model.dtype is set" and pinned.attention.value == "eager"
    flash = resolve(H200, {"packing": True}, model={"name_or_path": "m", "attn_implementation": "flash_attention_2"})
    assert flash.compile.value is False and "varlen" in flash.compile.why
    # the same config on CPU with compile forced on still compiles (it runs, just slowly)
    assert resolve(CPU, speed={"compile": "on"}).compile.value is True


@pytest.mark.parametrize("spec, hw, message", [
    ({"liger": "on"}, CPU, "speed.liger on needs a CUDA GPU"),
    ({"liger": "on"}, H200, 'pip install "meddata[gpu]"'),
    ({"attention": "flash_attention_2"}, CPU, "needs a CUDA GPU"),
    ({"attention": "flash_attention_2"}, H200, "flash_attn package"),
    ({"attention": "flex_attention"}, CPU, "no CPU backward"),
])
def test_settings_the_machine_cannot_run_fail_before_loading(spec, hw, message):
    import re

    with pytest.raises(TrainConfigError, match=re.escape(message)):
        resolve(hw, speed=spec)


def test_bf16_weights_with_fp16_precision_is_refused():
    with pytest.raises(TrainConfigError, match="precision fp16"):
        resolve(V100, speed={"weights": "bf16"}, precision="fp16")


@pytest.mark.parametrize("spec, field", [({"weights": "bf32"}, "speed.weights"), ({"compile": "yes"}, "speed.compile"),
                                         ({"dataloader_workers": -1}, "speed.dataloader_workers"),
                                         ({"turbo": True}, "speed.turbo")])
def test_bad_speed_fields_name_the_field(spec, field):
    with pytest.raises(TrainConfigError, match=field.replace(".", r"\.")):
        train_config.from_dict({"name": "t", "model": {"name_or_path": "m"}, "speed": spec,
                                "stages": [{"name": "s", "type": "sft", "dataset": {"path": "d"}}]}, source="run.yaml")


def test_describe_prints_value_and_reason_per_field():
    lines = speed.describe(resolve(CPU))
    assert len(lines) == 7 and lines[0].split()[:2] == ["weights", "fp32"] and "CPU" in lines[0]


# --------------------------------------------------------------------------- optimizer


def _adamw_pair(dtype, **kw):
    torch.manual_seed(0)
    weight = torch.nn.Parameter(torch.randn(64, 32).to(dtype))
    return weight, MasterWeightAdamW([weight], lr=kw.pop("lr", 1e-3), weight_decay=0.0, **kw)


def test_master_weights_keep_updates_bf16_rounds_away():
    """At lr 5e-5, bf16 AdamW cannot move weights in [1, 2) (bf16's step there is 2^-7, so an
    update below 0.004 rounds away); the fp32 master copy accumulates the updates until the
    bf16 value moves."""
    torch.manual_seed(0)
    start = (torch.rand(64, 32) + 1).to(torch.bfloat16)
    plain = torch.nn.Parameter(start.clone())
    mastered = torch.nn.Parameter(start.clone())
    opt_plain = torch.optim.AdamW([plain], lr=5e-5, weight_decay=0.0)
    opt_master = MasterWeightAdamW([mastered], lr=5e-5, weight_decay=0.0)
    for _ in range(200):
        for p, opt in ((plain, opt_plain), (mastered, opt_master)):
            p.grad = torch.ones_like(p)
            opt.step()
            opt.zero_grad()
    assert torch.equal(plain, start)  # every update rounded away
    moved = (start.float() - mastered.float()).mean()
    assert 0.006 < moved < 0.014  # 200 steps x 5e-5 = 0.01, in whole bf16 steps
    assert mastered.dtype == torch.bfloat16 and opt_master.param_groups[0]["params"][0].dtype == torch.float32


def test_master_adamw_equals_torch_adamw_in_fp32_and_in_chunks():
    torch.manual_seed(1)
    params = [torch.nn.Parameter(torch.randn(n)) for n in (10, 300, 7)]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in params]
    ours = MasterWeightAdamW([{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:],
                                                                            "weight_decay": 0.0}],
                             lr=1e-2, chunk_elements=64)  # three chunks
    theirs = torch.optim.AdamW([{"params": ref[:2], "weight_decay": 0.1}, {"params": ref[2:], "weight_decay": 0.0}],
                               lr=1e-2)
    for step in range(5):
        grads = [torch.randn_like(p) for p in params]
        for p, q, g in zip(params, ref, grads, strict=True):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        ours.zero_grad()
        assert all(p.grad is None for p in params), step
    for p, q in zip(params, ref, strict=True):
        torch.testing.assert_close(p, q)


def test_master_adamw_resumes_from_its_state_dict_exactly():
    weight, opt = _adamw_pair(torch.bfloat16, lr=1e-3)
    for _ in range(3):
        weight.grad = torch.randn_like(weight)
        opt.step()
    import io

    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # what the Trainer writes into a checkpoint
    buffer.seek(0)
    state = torch.load(buffer)
    masters = [t.clone() for t in state["master_weights"]]
    # a new process: the model comes back in bf16, the optimizer from the checkpoint
    weight2 = torch.nn.Parameter(weight.detach().clone())
    opt2 = MasterWeightAdamW([weight2], lr=1e-3, weight_decay=0.0)
    opt2.load_state_dict(state)
    assert torch.equal(opt2.param_groups[0]["params"][0], masters[0])  # fp32 bits, not the rounded bf16 ones
    assert not torch.equal(masters[0], weight.detach().float())
    g = torch.randn_like(weight)
    for w, o in ((weight, opt), (weight2, opt2)):
        w.grad = g.clone()
        o.step()
    assert torch.equal(weight, weight2)


# --------------------------------------------------------------------------- batches and throughput


def _flat_batch(lengths: list[int], pad_id: int = 0) -> dict:
    ids = torch.arange(1, sum(lengths) + 1)[None]
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    labels = ids.clone()
    labels[pos == 0] = -100
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "cu_seq_lens_q": cu, "cu_seq_lens_k": cu,
            "max_length_q": max(lengths), "max_length_k": max(lengths), "seq_idx": torch.zeros_like(ids)}


def test_padding_free_batches_are_padded_to_one_static_shape():
    shape = fastpath.BatchShape(pad_id=0, drop_varlen=True, flat_length=32, row_length=16)
    batch = _flat_batch([5, 9, 3])
    out = fastpath.shape_batch(dict(batch), shape)
    assert set(out) == {"input_ids", "labels", "position_ids"}  # varlen keys dropped for non-flash attention
    assert out["input_ids"].shape == (1, 32) and out["input_ids"][0, 17:].eq(0).all()
    assert out["labels"][0, 17:].eq(-100).all() and torch.equal(out["labels"][0, :17], batch["labels"][0])
    # the padding is one extra document with its own positions: nothing real attends to it
    assert out["position_ids"][0, 17:].tolist() == list(range(15))
    flash = fastpath.BatchShape(pad_id=0, drop_varlen=False)
    assert set(fastpath.shape_batch(dict(batch), flash)) == set(batch)  # flash keeps varlen, no static shape


def test_padded_rows_are_widened_with_masked_padding():
    shape = fastpath.BatchShape(pad_id=7, drop_varlen=True, flat_length=64, row_length=12)
    batch = {"input_ids": torch.ones(2, 9, dtype=torch.long), "attention_mask": torch.ones(2, 9, dtype=torch.long),
             "labels": torch.ones(2, 9, dtype=torch.long)}
    out = fastpath.shape_batch(batch, shape)
    assert out["input_ids"].shape == (2, 12) and out["input_ids"][:, 9:].eq(7).all()
    assert out["attention_mask"][:, 9:].eq(0).all() and out["labels"][:, 9:].eq(-100).all()


def test_token_meter_counts_real_tokens_not_padding():
    meter = throughput.TokenMeter(pad_id=0)
    batch = _flat_batch([5, 9, 3])
    padded = fastpath.shape_batch(dict(batch), fastpath.BatchShape(pad_id=0, drop_varlen=True, flat_length=40))
    # TRL's pad_to_multiple_of pads positions with 0: the meter trims that trailing run
    trl_padded = {k: torch.cat([v, torch.full((1, 23), f)], 1) for k, v, f in
                  (("input_ids", batch["input_ids"], 0), ("labels", batch["labels"], -100),
                   ("position_ids", batch["position_ids"], 0))}
    assert meter.count(batch) == 17 and meter.count(trl_padded) == 17
    assert throughput.TokenMeter().count(padded) == 40  # meddata counts before padding, so never sees this
    assert meter.count({"input_ids": torch.ones(2, 6), "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2])}) \
        == 10
    assert meter.tokens == 44


def test_mfu_uses_the_peak_and_is_na_without_one():
    assert throughput.spec_peak_flops("NVIDIA H200") == 989e12
    assert throughput.spec_peak_flops("NVIDIA H100 PCIe") == 756e12  # the longest matching name wins
    assert throughput.spec_peak_flops("Some NPU") is None
    assert throughput.device_peak("cpu", cuda=False) == (None, "n/a on CPU")
    import time

    t0 = time.perf_counter() - 2.0
    gpu = throughput.summarise(10_000, 0, t0, 10, 6e8, 1e15, "measured")
    assert 4_000 < gpu["tokens_per_s"] <= 5_000 and gpu["mfu"] == pytest.approx(gpu["tokens_per_s"] * 6e8 / 1e15)
    cpu = throughput.summarise(10_000, 0, t0, 10, 6e8, None, "n/a on CPU")
    assert cpu["mfu"] is None and cpu["tokens_per_s"] > 0
    assert throughput.summarise(10, 0, None, 0, 6e8, None, "")["timing_note"]


def test_model_flops_count_six_n_full_and_less_for_lora():
    from meddata.trainers.tiny import tiny_llama_config
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(tiny_llama_config(256, hidden=32, layers=2, heads=2))
    n = sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()
    flops, params = throughput.model_flops_per_token(model)
    assert params == n and flops == 6 * n
    lora = get_peft_model(model, LoraConfig(r=2, target_modules="all-linear"))
    adapters = sum(p.numel() for p in lora.parameters() if p.requires_grad)
    lora_flops, lora_params = throughput.model_flops_per_token(lora)
    # frozen weights: forward + activation gradients only (4N); adapters also get weight gradients
    assert lora_params == n + adapters and lora_flops == 4 * (n + adapters) + 2 * adapters
