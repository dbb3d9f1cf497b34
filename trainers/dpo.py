"""Direct preference optimisation with TRL's DPOTrainer on prompt/chosen/rejected rows.

The reference model is the stage's starting model: with LoRA it is the base with the
adapter switched off (no second copy in memory); with full fine-tuning TRL loads a second
copy from the same folder, or, when a chat template grew the vocabulary in this stage, a
deep copy of the resized model is passed so both have the same embeddings.
"""

from __future__ import annotations

import copy
import logging

from meddata.trainers import common
from meddata.trainers.validate import Plan, StagePlan

log = logging.getLogger("meddata.trainers")


def dpo_config(plan: Plan, stage: StagePlan):
    from trl import DPOConfig

    args = common.common_args(plan, stage)
    args["beta"] = stage.spec.beta
    args["loss_type"] = [stage.spec.dpo_loss]
    return DPOConfig(**args)


def run(plan: Plan, stage: StagePlan, start: common.StageInput, resume_from: str | None) -> common.StageResult:
    from meddata.trainers.fastpath import trainer_class
    from trl import DPOTrainer

    model, tokenizer, peft_config, grew = common.prepare(plan, stage, start)
    ref_model = copy.deepcopy(model) if grew and peft_config is None else None
    trainer = trainer_class(DPOTrainer)(
        model=model,
        ref_model=ref_model,
        args=dpo_config(plan, stage),
        train_dataset=stage.train,
        eval_dataset=stage.eval,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    speed_callback = common.accelerate(trainer, plan, stage)
    log.info("%s: DPO on %d preference pairs", stage.where, len(stage.train))
    trainer.train(resume_from_checkpoint=resume_from)
    if stage.eval is not None:
        trainer.evaluate()
    return common.finish(plan, stage, start, trainer, tokenizer, speed_callback)
