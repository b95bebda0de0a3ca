"""The trainer's `zerosearch` subcommands: warmup, train, eval, ask, data.

`train` and `warmup` are TrlParser recipes (`--config FILE.yaml`, any field overridable as `--field value`);
they are wrapped in Typer apps that pass every argument through, because the `zerosearch` dispatcher
loads one Typer app per entry point. Start-up failures (no simulator, missing data, a malformed record, a
bad option) print one line and exit with status 1 (2 for usage errors), without a traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["ask_command", "data_command", "eval_command", "train_command", "warmup_command"]

_PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _configure_logging(verbose: bool = True) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(code)


def _run_recipe(name: str, args: Sequence[str], make_parser: Callable[[], Any],
                parse: Callable[[Sequence[str]], tuple], run: Callable[..., Any]) -> Any:
    from zerosearch_core.errors import ZeroSearchError

    if any(a in ("-h", "--help") for a in args):
        parser = make_parser()
        parser.prog = f"zerosearch {name}"
        parser.print_help()
        raise typer.Exit(0)
    if "--config" in args and (i := list(args).index("--config")) + 1 < len(args):
        from pathlib import Path

        if not Path(args[i + 1]).is_file():
            _fail(f"--config {args[i + 1]}: no such file.", 2)
    _configure_logging()
    try:
        parsed = parse(list(args))
    except ValueError as exc:  # dataclass __post_init__ checks and TrlParser's unknown-argument errors
        _fail(str(exc), 2)
    except SystemExit as exc:  # argparse usage errors already printed their message
        raise typer.Exit(int(exc.code or 0)) from None
    try:
        return run(*parsed)
    except ZeroSearchError as exc:  # no simulator, missing data, a malformed record, a bad model path
        _fail(str(exc))


train_command = typer.Typer(add_completion=False, help="RL training (GRPO) against the search simulator.")


@train_command.command(context_settings=_PASS_THROUGH)
def train(ctx: typer.Context) -> None:
    """zerosearch train --config configs/grpo-tiny-cpu.yaml [--field value ...] (see --help for every field)."""
    from zerosearch_trainer import train as module

    summary = _run_recipe("train", ctx.args, module.make_parser, module.parse, module.train)
    typer.echo(f"Training finished: {summary}")


warmup_command = typer.Typer(add_completion=False, help="Supervised warm-up of a small policy on the tag protocol.")


@warmup_command.command(context_settings=_PASS_THROUGH)
def warmup(ctx: typer.Context) -> None:
    """zerosearch warmup --config configs/warmup-tiny-cpu.yaml [--field value ...]."""
    from zerosearch_trainer import warmup as module

    path = _run_recipe("warmup", ctx.args, module.make_parser, module.parse, module.run_warmup)
    typer.echo(f"Warmed-up policy saved to {path}")


eval_command = typer.Typer(add_completion=False,
        help="EM / sub-EM / F1 of a policy on QA data through a search endpoint.")


def _options_from_yaml(ctx: typer.Context, value: str | None) -> str | None:
    """`--config FILE.yaml`: the file's keys become the defaults of the options; flags on the command line win."""
    if value:
        import yaml

        try:
            loaded = yaml.safe_load(Path(value).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise typer.BadParameter(f"cannot read {value}: {exc}") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{value} must hold a YAML mapping of option names to values")
        ctx.default_map = {**(ctx.default_map or {}), **{str(k).replace("-", "_"): v for k, v in loaded.items()}}
    return value


@eval_command.command()
def evaluate(
    config: Annotated[str | None, typer.Option(
        "--config", is_eager=True, callback=_options_from_yaml,
        help="YAML file of these options (e.g. configs/eval-tiny-cpu.yaml); command-line flags win.")] = None,
    model: Annotated[str, typer.Option(help="Checkpoint directory, hub id, or 'bundled' (SmolLM2-135M).")] = "bundled",
    data: Annotated[str, typer.Option(help="QA file (.parquet/.jsonl/.json), directory or hub id.")
                    ] = "data/sample_test.jsonl",
    split: Annotated[str, typer.Option(help="Split (directory file name or hub split).")] = "test",
    search_url: Annotated[str, typer.Option("--search_url", "--search-url", envvar="ZS_SEARCH_URL",
        help="Search endpoint base URL(s).")
                          ] = "http://127.0.0.1:8000",
    max_samples: Annotated[int, typer.Option("--max_samples", "--max-samples", min=0,
        help="Evaluate the first N questions (0: all).")] = 0,
    output: Annotated[str | None, typer.Option(help="Write the metrics and per-question results as JSON.")] = None,
    noise: Annotated[float, typer.Option(min=0.0, max=1.0, help="Noise level sent with every search.")] = 0.0,
    batch_size: Annotated[int, typer.Option("--batch_size", "--batch-size", min=1,
        help="Questions generated together.")] = 8,
    max_turns: Annotated[int, typer.Option("--max_turns", "--max-turns", min=0,
        help="Searches before the final answer turn.")] = 5,
    max_completion_length: Annotated[int, typer.Option("--max_completion_length", "--max-completion-length", min=8,
        help="Token budget per trajectory.")] = 500,
    max_tokens_per_turn: Annotated[int, typer.Option("--max_tokens_per_turn", "--max-tokens-per-turn", min=1,
        help="New tokens per turn.")] = 200,
    top_k: Annotated[int, typer.Option("--top_k", "--top-k", min=1, max=20, help="Documents per search.")] = 5,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample (temperature) or greedy decoding.")
                      ] = False,
    temperature: Annotated[float, typer.Option(min=0.0, help="Sampling temperature with --sample.")] = 1.0,
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: default).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of sampling and of the searches.")] = 0,
) -> None:
    """Evaluate a policy: batched multi-turn rollouts against the search endpoint, then EM / sub-EM / F1."""
    from zerosearch_core.errors import ZeroSearchError
    from zerosearch_trainer.evaluate import EvalOptions, print_table, run_eval

    _configure_logging(verbose=False)
    options = EvalOptions(model=model, data=data, split=split, search_url=search_url, max_samples=max_samples,
                          output=output, noise=noise, batch_size=batch_size, max_turns=max_turns,
                          max_completion_length=max_completion_length, max_tokens_per_turn=max_tokens_per_turn,
                          top_k=top_k, sample=sample, temperature=temperature, threads=threads, seed=seed)
    try:
        report = run_eval(options)
    except ZeroSearchError as exc:
        _fail(str(exc))
    print_table(report)
    if output:
        typer.echo(f"Wrote {output}")


ask_command = typer.Typer(add_completion=False, help="Run a policy on one question, showing each search.")


@ask_command.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.", show_default=False)],
    model: Annotated[str, typer.Option(help="Checkpoint directory, hub id, or 'bundled'.")] = "bundled",
    search_url: Annotated[str, typer.Option("--search_url", "--search-url", envvar="ZS_SEARCH_URL",
        help="Search endpoint base URL(s).")
                          ] = "http://127.0.0.1:8000",
    noise: Annotated[float, typer.Option(min=0.0, max=1.0, help="Noise level sent with every search.")] = 0.0,
    answer: Annotated[list[str] | None, typer.Option(
        "--answer", "-a", help="Golden answer(s), given to the simulator's sft prompt and scored at the end.")] = None,
    max_turns: Annotated[int, typer.Option("--max_turns", "--max-turns", min=0,
        help="Searches before the final answer turn.")] = 5,
    max_completion_length: Annotated[int, typer.Option("--max_completion_length", "--max-completion-length", min=8,
        help="Token budget.")] = 500,
    max_tokens_per_turn: Annotated[int, typer.Option("--max_tokens_per_turn", "--max-tokens-per-turn", min=1,
        help="New tokens per turn.")] = 200,
    top_k: Annotated[int, typer.Option("--top_k", "--top-k", min=1, max=20, help="Documents per search.")] = 5,
    sample: Annotated[bool, typer.Option("--sample/--greedy", help="Sample or decode greedily.")] = False,
    threads: Annotated[int, typer.Option(min=0, help="torch CPU threads (0: default).")] = 0,
) -> None:
    """Run the policy on QUESTION against the search endpoint and print each think/search/information/answer."""
    from zerosearch_core.errors import ZeroSearchError
    from zerosearch_trainer.ask import run_ask

    _configure_logging(verbose=False)
    try:
        run_ask(question, model=model, search_url=search_url, noise=noise, answers=answer or [],
                max_turns=max_turns, max_completion_length=max_completion_length,
                max_tokens_per_turn=max_tokens_per_turn, top_k=top_k, sample=sample, threads=threads)
    except ZeroSearchError as exc:
        _fail(str(exc))


data_command = typer.Typer(add_completion=False, no_args_is_help=True,
                           help="Build QA datasets (the Factbook QA splits, checked against the real engine).")


@data_command.callback()
def data_group() -> None:
    """Build QA datasets: `zerosearch data factbook --out DIR`."""


@data_command.command("factbook")
def data_factbook(
    out: Annotated[Path, typer.Option("--out", help="Output folder (created when missing): {train,dev,test}."
                                      "{parquet,jsonl} and stats.json.", show_default=False)],
    kinds: Annotated[str | None, typer.Option(
        help="Comma-separated single-hop kinds (default: all; an unknown one lists the kinds).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the entity split, the two-hop choice and the order.")] = 0,
    two_hop_per_entity: Annotated[int, typer.Option("--two_hop_per_entity", "--two-hop-per-entity", min=0,
        help="Two-hop questions per entity (0: none).")] = 2,
    dev_fraction: Annotated[float, typer.Option("--dev_fraction", "--dev-fraction", min=0.0, max=1.0,
        help="Share of the entities in dev.")] = 0.1,
    test_fraction: Annotated[float, typer.Option("--test_fraction", "--test-fraction", min=0.0, max=1.0,
        help="Share of the entities in test.")] = 0.1,
    keep_unanswerable: Annotated[bool, typer.Option("--keep_unanswerable", "--keep-unanswerable",
        help="Keep questions the engine cannot answer, flagged extra_info.answerable=false (default: drop).")
                                 ] = False,
    cache_dir: Annotated[str | None, typer.Option("--cache_dir", "--cache-dir",
        help="Where the BM25 index is saved (default: the corpus engine's cache).")] = None,
) -> None:
    """Factbook QA: single-hop and two-hop questions, split by entity, each checked answerable.

    A question is kept when its gold answer is in a top-5 passage of the corpus engine (BM25 over the Factbook,
    the engine `zerosearch serve --backend corpus` runs); for two-hop, for each sub-question.
    """
    from zerosearch_core.errors import ZeroSearchError
    from zerosearch_trainer.factbook_qa import SPLITS, BuildOptions, build, parse_kinds

    _configure_logging(verbose=False)
    if dev_fraction + test_fraction > 1:
        _fail(f"--dev_fraction {dev_fraction} + --test_fraction {test_fraction} exceeds 1.", 2)
    try:
        options = BuildOptions(out=out, kinds=parse_kinds(kinds), seed=seed, two_hop_per_entity=two_hop_per_entity,
                               fractions=(1 - dev_fraction - test_fraction, dev_fraction, test_fraction),
                               keep_unanswerable=keep_unanswerable, cache_dir=cache_dir)
        stats = build(options)
    except ZeroSearchError as exc:
        _fail(str(exc), 2 if "kind" in str(exc) else 1)
    for kind, row in stats["per_kind"].items():
        typer.echo(f"{kind:<20} {row['answerable']:>4}/{row['candidates']:<4} answerable "
                   f"({100 * row['answerable_rate']:.1f}%)  " + "  ".join(f"{s} {row[s]}" for s in SPLITS))
    counts = ", ".join(f"{s} {n}" for s, n in stats["questions"].items())
    typer.echo(f"Wrote {out}: {counts} questions ({100 * stats['answerable_rate']:.1f}% of "
               f"{stats['candidates']} answerable); stats in {out / 'stats.json'}")


_APPS = {"train": train_command, "warmup": warmup_command, "eval": eval_command, "ask": ask_command,
         "data": data_command}


def main(argv: Sequence[str] | None = None) -> None:
    """`python -m zerosearch_trainer.cli COMMAND ...` until the entry points are registered."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _APPS:
        typer.echo(f"usage: python -m zerosearch_trainer.cli {{{','.join(_APPS)}}} [ARGS]...", err=True)
        raise SystemExit(2)
    _APPS[args[0]](args=args[1:], prog_name=f"zerosearch {args[0]}")


if __name__ == "__main__":
    main()
