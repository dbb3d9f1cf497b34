"""Continued pretraining on ``text`` rows (textbooks, guidelines, de-identified notes).

TRL's SFTTrainer on a language-modeling dataset is exactly causal-LM pretraining: every
token is in the loss, an EOS is appended to each document, and packing (on by default
here) fills each sequence of ``max_length`` tokens with whole documents.
"""

from __future__ import annotations

from meddata.trainers import common, sft
from meddata.trainers.validate import Plan, StagePlan


def run(plan: Plan, stage: StagePlan, start: common.StageInput, resume_from: str | None) -> common.StageResult:
    if stage.kind != "language_modeling":  # validate() guarantees this; keep the contract explicit
        raise ValueError(f"{stage.where}: continued pretraining needs text rows, got {stage.kind}")
    return sft.run(plan, stage, start, resume_from)
