"""Regression tracking across library versions: stacks from pins (`harness.launch.stacks`), a catalog of result
sets (`catalog`), change points over it (`changepoints`, `trend`), the CI check (`check`), and bisecting a
library's releases (`bisect`, `bisect_run`)."""
