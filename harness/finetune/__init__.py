"""One faithful run of the recipe (`xeonft finetune`): train, save adapters, plot the loss, generate."""

from harness.finetune.pipeline import load_tuned, new_run_dir, run_finetune, save_adapter, save_initial_adapter

__all__ = ["load_tuned", "new_run_dir", "run_finetune", "save_adapter", "save_initial_adapter"]
