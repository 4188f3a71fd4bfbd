"""Regression tracking across library versions: stacks from pins (`harness.launch.stacks`), a catalog of result
sets (`catalog`), change points over it (`steps`), and bisecting a library's releases (`bisect`)."""
