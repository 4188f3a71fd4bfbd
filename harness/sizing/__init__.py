"""Sizing (`xeonft size`): the largest batch a memory budget allows, throughput over placements, and the real job's
projected time, memory and cost, each with its interval; `--validate` runs the job and checks the projection."""
