"""`zerosearch warmup`: teach a small policy the tag protocol with TRL SFT before RL.

SmolLM2-135M never writes `<search>` on its own, so GRPO would see zero advantages. The warm-up builds a few
hundred trajectories that follow the protocol, with real documents from the simulator:

    <think> ... </think>
    <search> query </search>

    <information>Doc 1: ... (from the simulator, one batch call)</information>

    <think> ... </think>
    <answer> golden answer </answer><eos>

and fine-tunes on them with TRL's `SFTTrainer`. The data is pre-tokenised exactly as the rollout builds its
sequences (chat-templated prompt, then model pieces and the `<information>` block tokenised separately and
concatenated); labels are -100 on the prompt and on every `<information>` token, so the documents are masked
from the SFT loss as they are from the RL loss. Nothing is prefilled at RL time: the policy writes every tag.
"""

from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zerosearch_trainer.config import ScriptArguments, SimulatorArguments
from zerosearch_trainer.data import QARecord, build_prompt, load_records

__all__ = ["WarmupArguments", "build_examples", "make_parser", "run_warmup", "run_warmup_from_config",
           "trajectory_texts"]

logger = logging.getLogger(__name__)

_THINK_FIRST = [
    "I need to find {topic}. Let me search for it.",
    "I do not know {topic} for sure, so I will search.",
    "To answer, I should look up {topic}.",
]
_THINK_AFTER = [
    "Based on the search results, the answer is {answer}.",
    "The documents point to {answer}.",
    "From what I found, the answer is {answer}.",
]


@dataclass
class WarmupArguments:
    """The synthetic protocol data.

    Parameters:
        num_examples: trajectories to build (questions are reused when the dataset is smaller).
        warmup_seed: shuffling and phrasing seed.
        search_top_k: documents per search in the built trajectories.
        warmup_max_information_tokens: cap on each `<information>` block, as in the rollout.
        train_top_layers: train only the top N transformer blocks (0 = all); on a CPU this cuts the backward
            pass by most of its cost, and the tag protocol is learnt by the top of the network.
    """

    num_examples: int = field(default=256, metadata={"help": "Synthetic trajectories to build."})
    warmup_seed: int = field(default=0, metadata={"help": "Seed of the question order and the phrasing."})
    search_top_k: int = field(default=5, metadata={"help": "Documents per search in the trajectories."})
    warmup_max_information_tokens: int = field(default=500, metadata={
        "help": "Cap, in tokens, on each <information> block (as in the rollout)."})
    train_top_layers: int = field(default=0, metadata={
        "help": "Train only the top N transformer blocks (0: all); much cheaper on a CPU."})

    def __post_init__(self) -> None:
        if self.num_examples < 1:
            raise ValueError("num_examples must be >= 1")
        if not 1 <= self.search_top_k <= 20:
            raise ValueError("search_top_k must be between 1 and 20")


def _topic(question: str) -> str:
    q = question.strip().rstrip("?").strip()
    q = re.sub(r"^(what|who|which|where|when|how many|in which year|in which country)\s+(is|was|are|were|did|"
               r"does|do)?\s*", "", q, flags=re.IGNORECASE)
    return q[:1].lower() + q[1:] if q else question


def trajectory_texts(record: QARecord, rng: random.Random) -> tuple[str, str, str]:
    """(first model piece, search query, second model piece without the EOS)."""
    query = record.question.strip().rstrip("?").strip()
    answer = record.golden_answers[0]
    first = f"<think> {rng.choice(_THINK_FIRST).format(topic=_topic(record.question))} </think>\n" \
            f"<search> {query} </search>"
    second = f"<think> {rng.choice(_THINK_AFTER).format(answer=answer)} </think>\n<answer> {answer} </answer>"
    return first, query, second


SEARCH_CHUNK = 32  # searches per batch call of the warm-up's document collection


def build_examples(records: Sequence[QARecord], tokenizer: Any, search: Any, *, num_examples: int, seed: int,
                   top_k: int, max_information_tokens: int, chat: bool) -> list[dict[str, list[int]]]:
    """Pre-tokenised SFT examples: `input_ids` and `labels` (-100 on the prompt and the information block)."""
    from tqdm.auto import tqdm

    from zerosearch_trainer.rollout import RolloutSettings, SearchRollout

    rng = random.Random(seed)
    chosen = [records[i % len(records)] for i in range(num_examples)]
    rng.shuffle(chosen)
    pieces = [trajectory_texts(r, rng) for r in chosen]
    requests = [{"query": q, "k": top_k, "noise": 0.0, "question": r.question, "answers": list(r.golden_answers),
                 "seed": seed} for r, (_, q, _) in zip(chosen, pieces, strict=True)]
    outcomes = []
    # in chunks, so that the bar moves and one batch call stays well inside the search timeout on a busy CPU
    # (the simulator still batches a whole chunk's generations together)
    with tqdm(total=len(requests), desc="warm-up searches", unit="search") as bar:
        for start in range(0, len(requests), SEARCH_CHUNK):
            chunk = requests[start:start + SEARCH_CHUNK]
            outcomes += search.search_batch(chunk)
            bar.update(len(chunk))
    failed = sum(o.text is None for o in outcomes)
    if failed == len(outcomes):
        raise RuntimeError(f"every warm-up search failed (first error: {outcomes[0].error})")
    rollout = SearchRollout(tokenizer, search, RolloutSettings(max_information_tokens=max_information_tokens))
    eos = rollout.eos_id
    examples = []
    for record, (first, _q, second), outcome in zip(chosen, pieces, outcomes, strict=True):
        if outcome.text is None:
            continue
        prompt_ids = rollout.prompt_ids(build_prompt(record.question, chat=chat))
        first_ids = rollout.encode(first)
        info_ids, _ = rollout.information_ids(outcome.text)
        second_ids = rollout.encode(second) + [eos]
        input_ids = prompt_ids + first_ids + info_ids + second_ids
        labels = [-100] * len(prompt_ids) + first_ids + [-100] * len(info_ids) + second_ids
        examples.append({"input_ids": input_ids, "labels": labels})
    logger.info("built %d warm-up trajectories (%d searches failed and were skipped)", len(examples), failed)
    return examples


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((ScriptArguments, ModelConfig, SFTConfig, WarmupArguments, SimulatorArguments))


def run_warmup(script: ScriptArguments, model_args: Any, args: Any, warm: WarmupArguments,
               sim: SimulatorArguments) -> Path:
    """Build the data, run SFT, save the warmed-up checkpoint into `args.output_dir`; returns that path."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import torch
    from trl import SFTTrainer

    from zerosearch_trainer.policy import load_policy, use_chat
    from zerosearch_trainer.search import open_search

    if script.torch_threads:
        torch.set_num_threads(script.torch_threads)
    if not torch.cuda.is_available() and (args.bf16 or args.fp16):
        args.bf16 = args.fp16 = False
    records = load_records(script.dataset_name, split=script.dataset_train_split,
                           max_samples=script.max_train_samples or None)
    search = open_search(sim, "paper")
    try:
        model, tokenizer, path = load_policy(model_args)
        examples = build_examples(records, tokenizer, search, num_examples=warm.num_examples,
                                  seed=warm.warmup_seed, top_k=warm.search_top_k,
                                  max_information_tokens=warm.warmup_max_information_tokens,
                                  chat=use_chat(tokenizer, script.chat_template))
    finally:
        search.close()
    if warm.train_top_layers:
        _freeze_below(model, warm.train_top_layers)
    dataset = datasets.Dataset.from_list(examples)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    out = Path(args.output_dir)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    trainer.save_state()
    logger.info("warmed-up policy from %s saved to %s", path, out)
    return out


def _freeze_below(model: Any, top: int) -> None:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise ValueError("train_top_layers needs a decoder with model.layers (Llama/Qwen-style)")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for layer in list(layers)[-top:]:
        for parameter in layer.parameters():
            parameter.requires_grad_(True)
    if (norm := getattr(model.model, "norm", None)) is not None:
        for parameter in norm.parameters():
            parameter.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("training the top %d blocks only (%.1fM parameters)", top, trainable / 1e6)


def parse(argv: Sequence[str] | None = None):
    return make_parser().parse_args_and_config(args=list(argv) if argv is not None else None)


def run_warmup_from_config(config_path: str, *, output_dir: str | None = None,
                           extra_args: Sequence[str] = ()) -> Path:
    argv = ["--config", config_path, *extra_args]
    if output_dir:
        argv += ["--output_dir", output_dir]
    script, model_args, args, warm, sim = parse(argv)
    return run_warmup(script, model_args, args, warm, sim)


def main(argv: Sequence[str] | None = None) -> Path:
    return run_warmup(*parse(argv))
