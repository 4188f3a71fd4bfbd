"""The lowest layer: errors, units and formatting, secrets, pure statistics. Imports nothing else of xeonft."""
