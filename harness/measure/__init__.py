"""Readings of the machine and of a run: the fingerprint, host topology, system state, noise, memory, oneDNN's
kernels, GEMM peaks, FLOP counts, the step clock's records. No training, no launching."""
