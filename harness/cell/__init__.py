"""One cell's process: resolve the model and data, build the recipe (trl, peft, the fast paths), train with the
trackers attached, and write one typed result. Knows nothing of matrices or launchers."""
