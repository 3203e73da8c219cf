"""Run by tests/test_training.py under `accelerate launch --multi_gpu --num_processes 2`: the same parse_recipe +
run_training path as `accelerate launch -m training.train RECIPE`, then every rank writes its trainable weights."""

import os
import sys

from safetensors.torch import save_file

from training.train import parse_recipe, run_training

out_dir, recipe, overrides = sys.argv[1], sys.argv[2], sys.argv[3:]
trainer = run_training(*parse_recipe(recipe, overrides))
rank = trainer.args.process_index
model = trainer.accelerator.unwrap_model(trainer.model)
save_file({k: v.contiguous() for k, v in model.trainable_state_dict().items()},
          os.path.join(out_dir, f"rank{rank}.safetensors"), metadata={"world_size": str(trainer.args.world_size)})
