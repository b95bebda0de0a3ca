"""`zerosearch train`: GRPO (TRL 1.16) with multi-turn search rollouts against the simulator.

TRL's `GRPOTrainer(rollout_func=...)` is the integration point: the rollout (rollout.py) plays the tag
protocol, returns ids, sampling log-probs and `env_mask` (0 on inserted `<information>` and invalid-action
tokens, which TRL then leaves out of the loss, the KL and the token count), and the reward functions
(rewards.py) score the completion's last answer.

Workarounds TRL 1.16 forced (see docs/trainer.md):
- `rollout_func(prompts, trainer)` receives the prompts only, not the dataset rows; the question, golden
  answers and group id the simulator needs are stashed by a thin subclass (`SearchGRPOTrainer`) before TRL
  calls the rollout.
- custom per-step metrics go into `trainer._metrics` (TRL's own averaging and logging then put them into
  `trainer_state.json`); there is no public hook for them.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zerosearch_core.curriculum import noise_probability
from zerosearch_core.errors import ZeroSearchError
from zerosearch_trainer.config import (
    CurriculumArguments,
    RolloutArguments,
    ScriptArguments,
    SimulatorArguments,
)
from zerosearch_trainer.policy import load_policy, use_chat
from zerosearch_trainer.rollout import HFGenerator, RolloutSettings, SearchRollout, VLLMGenerator
from zerosearch_trainer.search import SetupError, open_search

__all__ = ["SetupError", "curriculum_noise", "make_parser", "make_rollout_func", "main"]

logger = logging.getLogger(__name__)


def make_parser():
    from trl import GRPOConfig, ModelConfig, TrlParser

    return TrlParser((ScriptArguments, ModelConfig, GRPOConfig, RolloutArguments, SimulatorArguments,
                      CurriculumArguments))


def curriculum_noise(step: int, total_steps: int, cur: CurriculumArguments) -> float | None:
    """The noise level at `step` for logging and (mode `noise`) for the requests; None when unknown."""
    if cur.curriculum == "off":
        return 0.0
    total = cur.curriculum_steps or total_steps
    if total <= 0:
        return None
    return noise_probability(min(step, total), total, cur.noise_start, cur.noise_end, cur.noise_base)


def rollout_settings(ro: RolloutArguments, max_completion_length: int) -> RolloutSettings:
    return RolloutSettings(max_turns=ro.max_turns, max_completion_length=max_completion_length,
                           max_tokens_per_turn=ro.max_tokens_per_turn,
                           max_information_tokens=ro.max_information_tokens, top_k=ro.search_top_k,
                           mode=ro.search_mode, seed=ro.rollout_seed,
                           append_eos_after_answer=ro.append_eos_after_answer,
                           mask_information=ro.mask_information)


def make_rollout_func(rollout: SearchRollout, cur: CurriculumArguments, *, compute_logprobs: bool = True):
    """The `rollout_func(prompts, trainer)` TRL calls once per generation batch."""

    def rollout_func(prompts: list[Any], trainer: Any) -> dict[str, Any]:
        from trl.models import unwrap_model_for_generation

        rows = getattr(trainer, "_zs_inputs", None)
        if rows is None or len(rows) != len(prompts):
            raise RuntimeError("rollout_func needs the dataset rows of the batch; use SearchGRPOTrainer")
        step = int(trainer.state.global_step)
        total = int(cur.curriculum_steps or trainer.state.max_steps or trainer.args.max_steps or 0)
        noise = curriculum_noise(step, total, cur)
        send_step = False
        request_noise = noise if cur.curriculum in ("noise", "off") else None
        if cur.curriculum == "push":
            send_step = True
            try:
                rollout.search.set_curriculum(step=step, total_steps=max(1, total), start=cur.noise_start,
                                              end=cur.noise_end, base=cur.noise_base)
            except ZeroSearchError as exc:  # the step still travels with each request
                logger.warning("could not push the curriculum step to the simulator: %s", exc)
        mode = "train" if trainer.model.training else "eval"
        if getattr(trainer, "use_vllm", False):
            batch = rollout.run(VLLMGenerator(trainer, rollout.tokenizer), prompts, rows, step=step,
                                noise=request_noise, send_step=send_step)
        else:
            import torch

            with unwrap_model_for_generation(
                    trainer.model_wrapped, trainer.accelerator, generation_kwargs=trainer.generation_kwargs,
                    gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs) as model, \
                    torch.no_grad():
                generator = HFGenerator(model, rollout.tokenizer, trainer.generation_config,
                                        compute_logprobs=compute_logprobs)
                batch = rollout.run(generator, prompts, rows, step=step, noise=request_noise,
                                    send_step=send_step)
        metrics = batch.metrics()
        if noise is not None:
            metrics["curriculum/noise"] = noise
        for key, value in metrics.items():
            trainer._metrics[mode][key].append(value)
        logger.info("step %d rollout: %.2f searches/trajectory, %.2f turns, %.2f invalid, %d failed searches, "
                    "noise %s", step, metrics["search/searches_per_trajectory"], metrics["rollout/turns"],
                    metrics["rollout/invalid_actions"], int(metrics["search/failed_searches"]),
                    "n/a" if noise is None else f"{noise:.3f}")
        return {
            "prompt_ids": batch.prompt_ids,
            "completion_ids": batch.completion_ids,
            "logprobs": batch.logprobs if (compute_logprobs or getattr(trainer, "use_vllm", False)) else None,
            "env_mask": batch.env_mask,
            "num_searches": [t.searches for t in batch.trajectories],
        }

    return rollout_func


def _trainer_class():
    from trl import GRPOTrainer

    class SearchGRPOTrainer(GRPOTrainer):
        """GRPOTrainer that lets the rollout see the dataset rows (question, golden answers, group id)."""

        def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
            self._zs_inputs = [{"question": x.get("question", ""), "golden_answers": x.get("golden_answers", []),
                                "uid": x.get("uid", "")} for x in inputs]
            try:
                return super()._generate_and_score_completions(inputs)
            finally:
                self._zs_inputs = None

    return SearchGRPOTrainer


def _maybe_warm_up(script: ScriptArguments, model_args: Any, sim: SimulatorArguments) -> None:
    """Run the configured protocol warm-up first when the warmed-up checkpoint does not exist yet."""
    name = model_args.model_name_or_path or ""
    if not script.warmup_config or (Path(name).expanduser() / "config.json").is_file():
        return
    from zerosearch_trainer.warmup import run_warmup_from_config

    logger.info("%s does not exist yet: running the protocol warm-up %s first", name, script.warmup_config)
    produced = run_warmup_from_config(script.warmup_config, output_dir=name,
                                      extra_args=["--search_url", sim.search_url])
    model_args.model_name_or_path = str(produced)


def train(script: ScriptArguments, model_args: Any, args: Any, ro: RolloutArguments, sim: SimulatorArguments,
          cur: CurriculumArguments) -> dict[str, Any]:
    """Run GRPO; returns a summary (paths, steps, seconds per step, peak memory)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import torch

    from zerosearch_trainer.data import load_records, records_to_dataset
    from zerosearch_trainer.rewards import get_reward_functions

    if script.torch_threads:
        torch.set_num_threads(script.torch_threads)
    if not torch.cuda.is_available() and (args.bf16 or args.fp16):
        logger.info("no GPU: training in float32 (bf16/fp16 switched off)")
        args.bf16 = args.fp16 = False
    records = load_records(script.dataset_name, split=script.dataset_train_split,
                           max_samples=script.max_train_samples or None)
    reward_funcs = get_reward_functions(script.reward_funcs)
    args.reward_weights = list(script.reward_weights_list)
    search = open_search(sim, ro.rendering)
    try:
        _maybe_warm_up(script, model_args, sim)
        model, tokenizer, path = load_policy(model_args)
        dataset = records_to_dataset(records, chat=use_chat(tokenizer, script.chat_template))
        rollout = SearchRollout(tokenizer, search, rollout_settings(ro, args.max_completion_length))
        trainer_cls = _trainer_class()
        trainer = trainer_cls(model=model, reward_funcs=reward_funcs, args=args, train_dataset=dataset,
                              processing_class=tokenizer,
                              rollout_func=make_rollout_func(rollout, cur, compute_logprobs=ro.compute_logprobs))
        logger.info("policy %s, %d questions, simulator %s, curriculum %s", path, len(records), sim.search_url,
                    cur.curriculum)
        resume = args.resume_from_checkpoint
        if resume == "last":
            from transformers.trainer_utils import get_last_checkpoint

            resume = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        started = time.perf_counter()
        result = trainer.train(resume_from_checkpoint=resume)
        elapsed = time.perf_counter() - started
        trainer.save_model(args.output_dir)
        trainer.save_state()
        plot_path = None
        if script.plot:
            from zerosearch_trainer.plotting import plot_training_curves

            plot_path = plot_training_curves(trainer.state.log_history, Path(args.output_dir) / "training_curves.png")
        steps = max(1, int(result.global_step))
        summary = {"output_dir": args.output_dir, "global_step": int(result.global_step),
                   "seconds": round(elapsed, 1), "seconds_per_step": round(elapsed / steps, 1),
                   "peak_rss_gb": round(_peak_rss_gb(), 2), "plot": str(plot_path) if plot_path else None,
                   "search_batch_calls": search.batch_calls}
        logger.info("done: %s", summary)
        return summary
    finally:
        search.close()


def _peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def parse(argv: Sequence[str] | None = None):
    parser = make_parser()
    return parser.parse_args_and_config(args=list(argv) if argv is not None else None)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    script, model_args, args, ro, sim, cur = parse(argv)
    return train(script, model_args, args, ro, sim, cur)
