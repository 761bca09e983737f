"""Training and evaluation on DeepSpeed: recipe, schedules, resumable sampling, checkpoints."""
