"""meddata.trainers: the TRL backend (continued pretraining, SFT, DPO) and evaluation.

Training (``meddata train CONFIG.yaml``): :mod:`config` (the YAML schema) ->
:mod:`validate` (the whole run checked before any model loads: datasets via :mod:`data`,
hardware via :mod:`hardware`, chat templates via :mod:`chat_templates`) -> :mod:`stages`
(stages in order; :mod:`sft`, :mod:`pretrain`, :mod:`dpo` on shared :mod:`common` and
:mod:`models`) -> :mod:`publish` (Hub). :mod:`distributed` writes accelerate configs.
Speed: :mod:`speed` resolves the ``speed:`` section per stage (with reasons);
:mod:`fastpath` applies it to TRL's trainers (static shapes, compiled layers, the
fp32-master AdamW of :mod:`optim`); :mod:`throughput` reports tokens/s and MFU.

Evaluation (``meddata eval``): :mod:`eval_config` -> :mod:`evaluate` (benchmarks through
``meddata.exams``; :mod:`scoring`: log-likelihood, generation, answer parsing, ROUGE-L;
:mod:`judge`: the LLM judge) -> :mod:`report` (JSON + Markdown, :mod:`stats` intervals).

:mod:`tiny` builds tiny random-init Llama models with a locally trained tokenizer for tests.
Heavy libraries (torch, transformers, trl, peft) are imported inside functions only.
"""
