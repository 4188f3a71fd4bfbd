"""Running cells: environments and library stacks, binding and placement, memory budgets, one supervised process
per cell, locks, the sweep and its plan."""
