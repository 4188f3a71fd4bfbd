"""One module per verb: its parser, its run, its exit-code policy (`harness.cli` only dispatches)."""
