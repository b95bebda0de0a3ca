"""ZeroSearch trainer: GRPO (TRL) with multi-turn search rollouts against the simulator over HTTP."""
