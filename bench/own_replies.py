"""Why a simulator's own reply falls short of k documents: the model's first reply, before the engine adds
anything (no continuation, no label check), parsed by the service's own parser.

For the first N items of the Factbook QA test split, one useful and one noisy search each (the sft prompt with
the question and gold answers, k = 5), sampled with the service's defaults (ZS_TEMPERATURE, ZS_TOP_P) and a
budget of ZS_MAX_NEW_TOKENS, seed = batch index, and the service's decoding rules: the repeat ban
(ZS_NO_REPEAT_NGRAM; --no-repeat-ngram 0 turns it off), no end of sequence before `Doc k:` and a usable
document after it (--no-end-ban turns it off), and the next marker written for the model once the budget left is
the reserve of the documents still to come (--no-marker-reserve turns it off). A reply is short when the parser
keeps fewer than k documents; each short reply is put down to one cause: a document written twice (the parser
keeps one), the model ending before `Doc k:`, or the budget running out. RESULT: the share of replies with k
documents.

    .venv/bin/python bench/own_replies.py --n 24 [--model bundled-base] [--show]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cause(text: str, k: int, tokens: int, budget: int) -> str:
    """Why a reply kept fewer than k documents."""
    from zerosearch_simulator import parsing

    written = [d.lower() for d in parsing.written_documents(text, k)]
    if len(written) > len(set(written)):
        return "a document written twice"
    if tokens >= budget:
        return "budget spent"
    return "ended before Doc k"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT / "data/factbook_qa"), help="QA file or folder (Search-R1 schema)")
    parser.add_argument("--split", default="test", help="split of a QA folder")
    parser.add_argument("--n", type=int, default=24, help="QA items, one useful and one noisy search each")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--model", default=None, help="ZS_MODEL (default: the shipped tuned simulator)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-repeat-ngram", type=int, default=None,
                        help="the repeat ban's span in tokens (default: ZS_NO_REPEAT_NGRAM; 0: off)")
    parser.add_argument("--no-end-ban", action="store_true", help="let a reply end before `Doc k:`")
    parser.add_argument("--no-marker-reserve", action="store_true",
                        help="let one document spend the budget of the rest")
    parser.add_argument("--show", action="store_true", help="print every short reply")
    args = parser.parse_args()

    import torch
    from tqdm import tqdm
    from transformers import AutoModelForCausalLM, AutoTokenizer, LogitsProcessor, LogitsProcessorList

    from zerosearch_core.models import resolve_model
    from zerosearch_core.simulator_prompt import build_messages
    from zerosearch_simulator import parsing
    from zerosearch_simulator.backends.continuous import marker_due, may_end, repeating_tokens
    from zerosearch_simulator.engine import first_reply_budget, marker_reserve
    from zerosearch_simulator.settings import Settings
    from zerosearch_simulator.tuned import simulator_model
    from zerosearch_trainer.sim_data import load_qa_items

    torch.set_num_threads(args.threads)
    settings = Settings()
    ban = settings.no_repeat_ngram if args.no_repeat_ngram is None else args.no_repeat_ngram
    end_marker = None if args.no_end_ban else parsing.marker(args.k)
    markers = tuple(parsing.marker(i) for i in range(1, args.k + 1))
    reserve = 0 if args.no_marker_reserve else marker_reserve(settings.max_new_tokens)

    class DecodingRules(LogitsProcessor):
        """The service's decoding rules over each row's reply (the tokens after the padded prompt)."""

        def __init__(self, prompt_width: int, rows: int) -> None:
            self.prompt_width = prompt_width
            self.forced: list[list[int]] = [[] for _ in range(rows)]  # a marker being written, per row

        def __call__(self, input_ids, scores):
            for row, ids in enumerate(input_ids[:, self.prompt_width:].tolist()):
                reply = tokenizer.decode(ids, skip_special_tokens=True)  # once for both rules that read it
                if reserve and not self.forced[row]:
                    due = marker_due(reply, markers, budget - len(ids), reserve, parsing.MIN_WORDS)
                    if due is not None:
                        self.forced[row] = tokenizer.encode("\n" + due, add_special_tokens=False)
                if self.forced[row]:
                    token = self.forced[row].pop(0)
                    scores[row, :] = float("-inf")
                    scores[row, token] = 0.0
                    continue
                if ban and (banned := repeating_tokens(ids, ban)):
                    scores[row, banned] = float("-inf")
                if end_marker and not may_end(reply, end_marker, parsing.MIN_WORDS):
                    scores[row, tokenizer.eos_token_id] = float("-inf")
            return scores

    resolved = resolve_model(simulator_model(args.model))
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    budget = first_reply_budget(settings.max_new_tokens, args.k)
    items = load_qa_items(args.data, split=args.split, max_items=args.n)
    prompts = [(label, tokenizer.apply_chat_template(
        list(build_messages("sft", label=label, query=item.question, question=item.question,
                            answers=list(item.answers), k=args.k)), tokenize=False, add_generation_prompt=True))
        for item in items for label in ("useful", "noisy")]
    causes: Counter[str] = Counter()
    full = 0
    for start in tqdm(range(0, len(prompts), args.batch), desc=f"replies of {resolved.model_id}"):
        chunk = prompts[start:start + args.batch]
        encoded = tokenizer([p for _, p in chunk], return_tensors="pt", padding=True)
        torch.manual_seed(start)
        with torch.no_grad():
            out = model.generate(**encoded, max_new_tokens=budget, do_sample=settings.temperature > 0,
                                 temperature=settings.temperature or None, top_p=settings.top_p,
                                 pad_token_id=tokenizer.eos_token_id,
                                 logits_processor=LogitsProcessorList(
                                     [DecodingRules(encoded["input_ids"].shape[1], len(chunk))]
                                     if ban or end_marker or reserve else []))
        for (label, _), row in zip(chunk, out, strict=True):
            new = row[encoded["input_ids"].shape[1]:]
            tokens = int((new != tokenizer.eos_token_id).sum())
            text = tokenizer.decode(new, skip_special_tokens=True)
            kept = len(parsing.split_snippets(text, args.k))
            if kept >= args.k:
                full += 1
                continue
            why = cause(text, args.k, tokens, budget)
            causes[why] += 1
            if args.show:
                print(f"--- {label}: {kept} of {args.k} kept, {tokens} tokens, {why}\n{text}")
    total = len(prompts)
    print(f"model: {resolved.model_id}; {total} replies ({args.n} items x useful/noisy), k = {args.k}, "
          f"budget {budget} tokens, temperature {settings.temperature}, top_p {settings.top_p}, "
          f"repeat ban {ban or 'off'}, end before {end_marker or '-'} {'banned' if end_marker else 'allowed'}, "
          f"marker reserve {reserve or 'off'}")
    print(f"k documents by itself: {full} of {total} ({100 * full / total:.1f}%)")
    for why, count in causes.most_common():
        print(f"  short, {why}: {count}")
    print(f"RESULT own_replies ratio={full / total:.3f} goal=>=0.98 ({'met' if full / total >= 0.98 else 'not met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
