"""Configuration dataclasses of the trainer's commands, parsed with TRL's `TrlParser`.

`zerosearch train --config configs/grpo-tiny-cpu.yaml --max_steps 2 --search_url URL` fills, from the YAML
file and then the command line, one instance of each:

- `ScriptArguments`     data, rewards, plotting, CPU threads
- `trl.ModelConfig`     the policy (`model_name_or_path: bundled` is the SmolLM2 checkpoint shipped with the project)
- `trl.GRPOConfig`      the RL algorithm (batch, group size, lr, KL, lengths, logging, checkpoints)
- `RolloutArguments`    the multi-turn protocol: turns, per-turn budget, documents, rendering
- `SimulatorArguments`  where the search endpoint is and how hard to retry it
- `CurriculumArguments` the noise schedule and how it reaches the simulator

Field names are unique across the classes (they share one command line), hence `search_top_k` rather than
`top_k` (GRPOConfig's sampling top-k) and `rollout_seed` rather than `seed`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

__all__ = [
    "CURRICULUM_MODES",
    "CurriculumArguments",
    "RolloutArguments",
    "ScriptArguments",
    "SimulatorArguments",
]

CURRICULUM_MODES = ("noise", "push", "server", "off")
DEFAULT_SEARCH_URL = "http://127.0.0.1:8000"


@dataclass
class ScriptArguments:
    """Data, rewards and run-level switches.

    Parameters:
        dataset_name: local .parquet/.jsonl/.json file, a directory with `{split}.parquet`, or a hub id.
        dataset_train_split: split to read (file name in a directory, or the hub split).
        max_train_samples: keep the first N questions (0 = all).
        chat_template: `auto` applies the tokenizer's chat template when it has one (instruct models), `on`/`off`.
        reward_funcs: reward functions by name (f1, em, sub_em, format, query); TRL logs each.
        reward_weights_list: one weight per reward function; weight 0 logs a metric without training on it.
        plot: write `training_curves.png` into the output directory at the end.
        warmup_config: warm-up recipe to run first when the policy checkpoint does not exist yet.
        torch_threads: CPU threads for torch (0 = torch's default).
    """

    dataset_name: str = field(default="data/sample_train.jsonl", metadata={
        "help": "QA data: a local .parquet/.jsonl/.json file, a directory holding {split}.parquet or "
                "{split}.jsonl, or a hub dataset id such as sunhaonlp/ZeroSearch_dataset."})
    dataset_train_split: str = field(default="train", metadata={"help": "Split of the dataset to train on."})
    max_train_samples: int = field(default=0, metadata={"help": "Use only the first N questions (0: all)."})
    chat_template: str = field(default="auto", metadata={
        "help": "auto: chat-template the prompt when the tokenizer has a template (instruct models); on; off "
                "(base models get the plain prompt text)."})
    reward_funcs: list[str] = field(default_factory=lambda: ["f1", "em", "sub_em"], metadata={
        "help": "Reward functions by name: f1 (the paper's), em, sub_em, format, query (a shaping term: the "
                "share of the question's content words that the best search carries)."})
    reward_weights_list: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0], metadata={
        "help": "Weight of each reward function (same order); 0 logs it without training on it."})
    plot: bool = field(default=True, metadata={"help": "Write training_curves.png into output_dir at the end."})
    warmup_config: str = field(default="", metadata={
        "help": "A `zerosearch warmup` recipe to run first when model_name_or_path does not exist yet "
                "(small policies learn the tag protocol from it; see configs/warmup-tiny-cpu.yaml)."})
    torch_threads: int = field(default=0, metadata={
        "help": "torch CPU threads (0: torch's default). 1 is much faster on an oversubscribed machine."})

    def __post_init__(self) -> None:
        if self.chat_template not in ("auto", "on", "off"):
            raise ValueError(f"chat_template must be auto, on or off, got {self.chat_template!r}")
        if len(self.reward_weights_list) != len(self.reward_funcs):
            raise ValueError(f"reward_weights_list has {len(self.reward_weights_list)} weights for "
                             f"{len(self.reward_funcs)} reward_funcs; give one weight per function")
        if self.max_train_samples < 0 or self.torch_threads < 0:
            raise ValueError("max_train_samples and torch_threads must be >= 0")


@dataclass
class RolloutArguments:
    """The multi-turn search protocol (REFERENCE.md section 1).

    Parameters:
        max_turns: searches allowed before the final, answer-only turn (paper: 5).
        max_tokens_per_turn: new tokens per generation turn.
        max_information_tokens: cap on each `<information>` block's documents (Search-R1: 500).
        search_top_k: documents per search (paper: 5).
        search_mode: simulator prompt, `sft` (fine-tuned simulators) or `prompt` (few-shot).
        rendering: documents as the paper (`Doc 1: ...`) or Search-R1 (`Doc 1(Title: ...) ...`).
        rollout_seed: base of the per-search seeds (fixes the useful/noisy draws).
        append_eos_after_answer: end answered trajectories with EOS (masked, so TRL counts them as finished).
        compute_logprobs: return sampling log-probs from transformers generation.
        mask_information: leave the retrieved `<information>` tokens out of the loss (the paper's loss masking);
            off trains on them as if the policy had written them (the paper's masking ablation).
    """

    max_turns: int = field(default=5, metadata={"help": "Searches allowed before the final answer-only turn."})
    max_tokens_per_turn: int = field(default=200, metadata={"help": "New tokens per generation turn."})
    max_information_tokens: int = field(default=500, metadata={
        "help": "Cap, in tokens, on the documents of each <information> block."})
    search_top_k: int = field(default=5, metadata={"help": "Documents per search."})
    search_mode: str = field(default="sft", metadata={"help": "Simulator prompt: sft or prompt."})
    rendering: str = field(default="paper", metadata={
        "help": "Document rendering: paper ('Doc 1: ...') or searchr1 ('Doc 1(Title: ...) ...')."})
    rollout_seed: int = field(default=0, metadata={"help": "Base of the per-search seeds."})
    append_eos_after_answer: bool = field(default=True, metadata={
        "help": "Append a masked EOS after </answer> so that TRL counts the trajectory as finished."})
    compute_logprobs: bool = field(default=True, metadata={
        "help": "Return per-token sampling log-probs from transformers generation (vLLM always returns them)."})
    mask_information: bool = field(default=True, metadata={
        "help": "Mask the retrieved <information> tokens out of the loss (the paper's loss masking); false: "
                "train on them too (the masking ablation)."})

    def __post_init__(self) -> None:
        if self.max_turns < 0:
            raise ValueError("max_turns must be >= 0 (0: answer without searching)")
        if self.max_tokens_per_turn < 1 or self.max_information_tokens < 1:
            raise ValueError("max_tokens_per_turn and max_information_tokens must be >= 1")
        if not 1 <= self.search_top_k <= 20:
            raise ValueError("search_top_k must be between 1 and 20 (the simulator's limit)")
        if self.search_mode not in ("sft", "prompt"):
            raise ValueError(f"search_mode must be sft or prompt, got {self.search_mode!r}")
        if self.rendering not in ("paper", "searchr1"):
            raise ValueError(f"rendering must be paper or searchr1, got {self.rendering!r}")


@dataclass
class SimulatorArguments:
    """The search endpoint (the simulator, or anything speaking its native API).

    Parameters:
        search_url: base URL; several comma-separated URLs fail over.
        search_timeout_s: seconds per attempt.
        search_retries: retries after a failed attempt (bounded backoff); then the search counts as failed.
        search_backoff_s: first backoff delay; doubles up to search_max_backoff_s.
        search_max_backoff_s: cap on one backoff delay.
        check_simulator: stop at start-up when no URL answers /readyz.
    """

    search_url: str = field(default_factory=lambda: os.environ.get("ZS_SEARCH_URL", DEFAULT_SEARCH_URL), metadata={
        "help": "Simulator base URL(s), comma-separated for failover (env ZS_SEARCH_URL)."})
    search_timeout_s: float = field(default=120.0, metadata={"help": "Seconds per search attempt."})
    search_retries: int = field(default=3, metadata={"help": "Retries per batch call before the searches fail."})
    search_backoff_s: float = field(default=0.5, metadata={"help": "First retry delay in seconds."})
    search_max_backoff_s: float = field(default=8.0, metadata={"help": "Largest retry delay in seconds."})
    check_simulator: bool = field(default=True, metadata={"help": "Stop at start-up if no URL answers /readyz."})

    def __post_init__(self) -> None:
        if self.search_timeout_s <= 0 or self.search_retries < 0 or self.search_backoff_s < 0:
            raise ValueError("search_timeout_s must be > 0, search_retries and search_backoff_s >= 0")


@dataclass
class CurriculumArguments:
    """The noise curriculum p(t) = start + (b^(t/T) - 1)/(b - 1) * (end - start) (zerosearch_core.curriculum).

    Parameters:
        curriculum: `noise` sends the level the trainer computes with every search; `push` sets the server's
            schedule (PUT /v1/curriculum) before each rollout and sends the step; `server` sends nothing and
            leaves the server's schedule alone; `off` sends noise 0.
        noise_start: p at step 0 (paper: 0).
        noise_end: p at the last step (paper: 0.5).
        noise_base: b (paper: 4).
        curriculum_steps: T; 0 uses the run's max_steps.
    """

    curriculum: str = field(default="noise", metadata={
        "help": "noise: send the computed level per search; push: PUT /v1/curriculum and send the step; "
                "server: leave it to the server; off: noise 0."})
    noise_start: float = field(default=0.0, metadata={"help": "Noise probability at step 0."})
    noise_end: float = field(default=0.5, metadata={"help": "Noise probability at the last step."})
    noise_base: float = field(default=4.0, metadata={"help": "Base b of the exponential schedule."})
    curriculum_steps: int = field(default=0, metadata={"help": "Steps T of the schedule (0: max_steps)."})

    def __post_init__(self) -> None:
        if self.curriculum not in CURRICULUM_MODES:
            raise ValueError(f"curriculum must be one of {CURRICULUM_MODES}, got {self.curriculum!r}")
        if not (0.0 <= self.noise_start <= 1.0 and 0.0 <= self.noise_end <= 1.0):
            raise ValueError("noise_start and noise_end must lie in [0, 1]")
        if self.noise_base <= 0 or self.noise_base == 1:
            raise ValueError("noise_base must be > 0 and != 1")
        if self.curriculum_steps < 0:
            raise ValueError("curriculum_steps must be >= 0")
