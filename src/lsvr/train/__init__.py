"""Training: the loop, the paper's optimiser and schedules, checkpoints, parallelism."""
