"""The result set on disk: typed records (cell, manifest) with their versions and migrations, the store that
writes them atomically, merging, and the published JSON Schema."""
