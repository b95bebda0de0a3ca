"""The simulator's prompt templates (`prompts/*.txt` in this package) and the chat messages built from them.

One copy for both sides: the simulator sends these messages, and `zerosearch tune-sim` trains a model on them.

- `sft`: the exact prompt the released fine-tuned simulators (Simulation_LLM_*) were trained on.
  It must stay byte for byte as published so those models work unchanged.
- `prompt`: a few-shot prompt of our own for instruct models that were not fine-tuned.

A template's version is the hash of its file, so editing a template changes the cache key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from zerosearch_core.schemas import Label, Mode

_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight",
                 9: "nine", 10: "ten"}
# Said in the sft prompt when no golden answer is known (the released models always saw one).
_NO_ANSWER_SENTENCE = ' whose answer is {answer}.'


@dataclass(frozen=True)
class Template:
    name: str
    text: str
    version: str


@cache
def load_template(mode: Mode) -> Template:
    text = resources.files("zerosearch_core").joinpath("prompts", f"{mode}.txt").read_text(encoding="utf-8")
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return Template(name=mode, text=text.rstrip("\n") if mode == "prompt" else text, version=version)


def build_messages(mode: Mode, *, label: Label, query: str, question: str | None, answers: list[str] | None,
                   k: int) -> tuple[dict[str, str], ...]:
    """The chat messages for one search: an empty system message and the template as the user turn."""
    template = load_template(mode)
    text = template.text
    if not answers:
        # Without a golden answer, drop the clause rather than inventing one.
        text = text.replace(_NO_ANSWER_SENTENCE, ".")
    if mode == "sft" and k > 5:
        # The released simulators always wrote five; ask for more only when more are wanted (k <= 5
        # keeps the prompt byte for byte and the text is cut after Doc k).
        text = text.replace("generate five ", f"generate {_NUMBER_WORDS.get(k, str(k))} ")
    content = text.format(
        label=label,
        Label=label.capitalize(),
        question=question or query,
        answer=answers[0] if answers else "",
        query=query,
        count=_NUMBER_WORDS.get(max(k, 5), str(max(k, 5))),
    )
    return ({"role": "system", "content": ""}, {"role": "user", "content": content})
