"""What to run: the run config (`finetune`), what each precision means (`precision`), a cell's definition (`spec`)
and its identity and statuses (`identity`), matrix files (`matrix`), library stacks (`stack`), and the shipped
recipes. `harness.config` itself re-exports the run config's API."""

from harness.config.finetune import (
    BACKENDS,
    COMPILED,
    PRECISIONS,
    FinetuneConfig,
    base_values,
    build_config,
    explain,
    load_config,
    overlay_values,
    read_yaml,
    recipe_defaults,
    shipped_recipes,
)

__all__ = ["BACKENDS", "COMPILED", "PRECISIONS", "FinetuneConfig", "base_values", "build_config", "explain",
           "load_config", "overlay_values", "read_yaml", "recipe_defaults", "shipped_recipes"]
