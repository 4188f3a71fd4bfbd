"""Run-level statistics over stored records: frames, summaries, efficiency (MFU, HFU), comparisons and the
harness's own overhead; reads the store, never runs anything."""
