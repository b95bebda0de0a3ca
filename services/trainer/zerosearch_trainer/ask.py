"""`zerosearch ask QUESTION`: one trajectory of a policy against a search endpoint, step by step."""

from __future__ import annotations

import re

from rich.console import Console
from rich.text import Text

from zerosearch_core.scoring import exact_match, f1_score
from zerosearch_trainer.rewards import extract_answer

__all__ = ["render_steps", "run_ask"]

_TAG = re.compile(r"<(think|search|answer)>(.*?)(?:</\1>|$)", re.DOTALL)
_STYLES = {"think": "dim", "search": "bold cyan", "information": "green", "answer": "bold magenta",
           "invalid": "red", "text": ""}


def render_steps(segments: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(kind, text) steps: think / search / answer from model text, information / invalid from the environment."""
    steps: list[tuple[str, str]] = []
    for kind, text in segments:
        if kind == "information":
            body = text.strip()
            body = body.removeprefix("<information>").removesuffix("</information>").strip()
            steps.append(("information", body))
        elif kind == "invalid":
            steps.append(("invalid", text.strip()))
        else:
            found = False
            for match in _TAG.finditer(text):
                steps.append((match.group(1), match.group(2).strip()))
                found = True
            if not found and text.strip():
                steps.append(("text", text.strip()))
    return steps


def run_ask(question: str, *, model: str, search_url: str, noise: float = 0.0, answers: list[str] | None = None,
            max_turns: int = 5, max_completion_length: int = 500, max_tokens_per_turn: int = 200, top_k: int = 5,
            sample: bool = False, threads: int = 0, console: Console | None = None) -> str | None:
    import torch
    from transformers import GenerationConfig

    from zerosearch_trainer.config import SimulatorArguments
    from zerosearch_trainer.data import build_prompt
    from zerosearch_trainer.policy import load_policy, use_chat
    from zerosearch_trainer.rollout import HFGenerator, RolloutSettings, SearchRollout
    from zerosearch_trainer.search import open_search

    console = console or Console()
    if threads:
        torch.set_num_threads(threads)
    search = open_search(SimulatorArguments(search_url=search_url), "paper")
    try:
        with console.status("Loading the policy…"):
            model_args = type("M", (), {"model_name_or_path": model, "dtype": None, "model_revision": "main",
                                        "attn_implementation": None})()
            policy, tokenizer, path = load_policy(model_args)
            policy.eval()
        generation = GenerationConfig(do_sample=sample, eos_token_id=tokenizer.eos_token_id,
                                      pad_token_id=tokenizer.pad_token_id)
        rollout = SearchRollout(tokenizer, search, RolloutSettings(
            max_turns=max_turns, max_completion_length=max_completion_length,
            max_tokens_per_turn=max_tokens_per_turn, top_k=top_k, append_eos_after_answer=False))
        console.print(Text(f"Policy: {path}\nSearch: {search_url} (noise {noise})\nQuestion: {question}"))
        with console.status("Thinking and searching…"):
            batch = rollout.run(HFGenerator(policy, tokenizer, generation, compute_logprobs=False),
                                [build_prompt(question, chat=use_chat(tokenizer, "auto"))],
                                [{"question": question, "golden_answers": answers or [], "uid": "ask"}],
                                noise=noise)
    finally:
        search.close()
    trajectory = batch.trajectories[0]
    for kind, text in render_steps(trajectory.segments):
        label = Text(f"[{kind}] ", style=_STYLES.get(kind, ""))
        label.append(Text(text))
        console.print(label)
    answer = extract_answer(tokenizer.decode(trajectory.completion_ids, skip_special_tokens=True))
    summary = f"answer: {answer!r}, searches: {trajectory.searches}, turns: {trajectory.turns}"
    if answers:
        summary += f", EM {exact_match(answer, answers):.0f}, F1 {f1_score(answer, answers):.2f}"
    console.print(Text(summary, style="bold"))
    return answer
