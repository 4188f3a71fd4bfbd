"""One matrix over a fleet of machines, through submitit: one job per target machine (a Slurm partition or node, or
this machine), each running the whole matrix one cell at a time as `xeonft run` does (`harness.launch.sweep`), into
`<out root>/<matrix name>@<host>`, then adding its set to the catalog (`harness.history.catalog`).

It sits above launch, results and history because a job uses all three, and below commands, whose `run` verb
hands it a request: `task` holds the typed values that travel to a target and back, `job` the callable that runs
there, `submit` the executors and the waiting, `fleet` the whole round (check, submit, wait, record).
"""
