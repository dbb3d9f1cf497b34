"""Supervised fine-tuning with TRL's SFTTrainer (full, LoRA or QLoRA).

Loss masking follows the row type: conversational rows train on assistant turns only
(``assistant_only_loss``, which needs ``{% generation %}`` markers in the chat template),
prompt/completion rows on the completion only (``completion_only_loss``), text rows on
every token. ``loss: all`` trains on whole sequences.
"""

from __future__ import annotations

import logging
from typing import Any

from meddata.trainers import common
from meddata.trainers.validate import Plan, StagePlan

log = logging.getLogger("meddata.trainers")


def loss_flags(kind: str, loss: str) -> dict[str, Any]:
    """SFTConfig's two masking switches for a row type and the stage's ``loss`` setting."""
    only = loss == "assistant_only"
    return {
        "assistant_only_loss": only and kind == "conversational",
        "completion_only_loss": only and kind == "prompt_completion",
    }


def sft_config(plan: Plan, stage: StagePlan):
    from trl import SFTConfig

    args = common.common_args(plan, stage)
    args.update(loss_flags(stage.kind, stage.spec.loss))
    args["packing"] = stage.spec.use_packing
    if stage.kind == "language_modeling":
        args["dataset_text_field"] = "text"
    return SFTConfig(**args)


def run(plan: Plan, stage: StagePlan, start: common.StageInput, resume_from: str | None) -> common.StageResult:
    """Train one SFT (or continued-pretraining) stage and save its output."""
    from meddata.trainers.fastpath import trainer_class
    from trl import SFTTrainer

    model, tokenizer, peft_config, _ = common.prepare(plan, stage, start)
    trainer = trainer_class(SFTTrainer)(
        model=model,
        args=sft_config(plan, stage),
        train_dataset=stage.train,
        eval_dataset=stage.eval,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    speed_callback = common.accelerate(trainer, plan, stage)
    log.info("%s: training on %d rows (%s)", stage.where, len(stage.train), stage.kind)
    trainer.train(resume_from_checkpoint=resume_from)
    if stage.eval is not None:
        trainer.evaluate()
    return common.finish(plan, stage, start, trainer, tokenizer, speed_callback)
