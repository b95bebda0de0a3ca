"""ZeroSearch in miniature: GRPO against the simulator vs against the real engine, plus the paper's two ablations.

    python bench/miniature.py run [--out outputs/miniature] [--steps 20] [--seeds 0,1] [--test-questions 200]
    python bench/miniature.py report [--out outputs/miniature] [--doc docs/results.md]
    python bench/miniature.py plot RUN6/summary.json RUN7/summary.json --label "sixth run" --label "guard" --out F.png

`run` starts the simulator (`zerosearch serve`, its default model) and the real engine (`zerosearch serve
--backend corpus`) on free ports, builds the factbook QA (`zerosearch data factbook`) when `--data` has none,
warms the bundled policy up once (documents from the simulator at noise 0), then trains each arm with
`zerosearch train` from that one checkpoint, with the same seeds, steps and batch:

- zerosearch   (a) the simulator with the curriculum, noise 0 -> 0.5, b = 4
- real-search  (b) the corpus engine (the Search-R1 analogue)
- fixed-noise  (c) the simulator at a fixed noise level (paper: p = 0.5)
- no-masking   (d) (a) with the retrieved tokens trained on (`--mask_information false`)

With `--learnable N` (the question-difficulty filter) the warm-up first answers the first N training questions
against the real engine, and every arm trains only on those it gets at least partly right (`OUT/data-learnable`).

`run` then evaluates every arm and two references (`warmup`: the warmed-up policy without GRPO; `direct`: the bundled
policy answering without search) with `zerosearch eval` against the corpus engine on the same test questions.

Each arm has its own directory under `OUT/runs/` (train log, checkpoints, `train.json`, `eval.json` and the
per-arm `arm.json`); a rerun skips what is finished and resumes training from the last checkpoint. `report`
(run at the end of `run`) writes `OUT/summary.json`, `OUT/table.md`, the reward curves of all arms in one PNG,
and, with `--doc`, the table into the marked section of that Markdown file. `plot` draws the curves of several
runs' `summary.json` in one figure, each run labelled, for arms that were trained in different runs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._servers import ROOT, VENV_BIN, ServerProcess, start_simulator  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n\n")[0])
console = Console(stderr=True)

TABLE_BEGIN = "<!-- miniature:table:begin -->"
TABLE_END = "<!-- miniature:table:end -->"


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    engine: str  # "simulator" or "corpus": what answers the searches during training
    args: tuple[str, ...]
    paper: str  # the paper's corresponding figure (Qwen2.5-3B, EM averaged over seven datasets)


def arms(fixed_noise: float) -> dict[str, Arm]:
    curriculum = ("--curriculum", "noise", "--noise_start", "0.0", "--noise_end", "0.5", "--noise_base", "4.0")
    return {a.name: a for a in (
        Arm("zerosearch", "(a) simulator, curriculum 0 -> 0.5", "simulator", curriculum,
            "34.47 (SFT-14B simulator, curriculum)"),
        Arm("real-search", "(b) real engine (corpus)", "corpus", ("--curriculum", "off"),
            "32.81 (Search-R1 trained on Google)"),
        Arm("fixed-noise", f"(c) simulator, fixed noise {fixed_noise:g}", "simulator",
            ("--curriculum", "noise", "--noise_start", f"{fixed_noise}", "--noise_end", f"{fixed_noise}"),
            "32.59 (fixed p = 0.5)"),
        Arm("no-masking", "(d) simulator, curriculum, documents not masked", "simulator",
            (*curriculum, "--mask_information", "false"), "34.53 vs 36.07 masked (LLaMA-3.2-3B)"),
    )}


REFERENCES = {
    "warmup": ("warm-up only (no GRPO)", "-"),
    "direct": ("bundled policy, no search", "- (the paper's direct-prompt baseline)"),
}


@dataclass
class Settings:
    out: Path
    data: Path
    steps: int
    seeds: list[int]
    ablation_seeds: list[int]
    arms: list[str]
    train_questions: int
    test_questions: int
    fixed_noise: float
    threads: int
    sim_backend: str | None
    engine_backend: str
    warmup_examples: int
    batch: int
    group: int
    learning_rate: float
    temperature: float
    save_steps: int
    eval_batch: int
    sim_max_new_tokens: int
    sim_verify: bool
    parallel: int
    redis_url: str
    references: list[str] = field(default_factory=lambda: list(REFERENCES))
    train_extra: list[str] = field(default_factory=list)
    learnable: int = 0  # the question-difficulty filter: 0 off, else how many training questions it screens

    # the rollout lengths (same in training and evaluation; the recipe holds the training copy)
    max_turns: int = 2
    max_tokens_per_turn: int = 40
    max_completion_length: int = 256
    top_k: int = 3

    @property
    def train_data(self) -> Path:
        """What the arms train on: the filter's questions (`learnable_data` writes them first) or the QA data."""
        return self.out / "data-learnable" if self.learnable else self.data


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter(f"seeds must be comma-separated integers, got {text!r}") from None


def _env(threads: int) -> dict[str, str]:
    n = str(threads)
    return {"TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": n,
            "MKL_NUM_THREADS": n, "PYTHONUNBUFFERED": "1"}


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# ---- subprocesses with a progress bar -------------------------------------------------------------------


_RUNNING: set[subprocess.Popen] = set()  # what a SIGTERM must stop (arms run in worker threads)
_STOPPING = threading.Event()  # set by SIGTERM: queued jobs of the worker threads must not start
_TRAIN_STEP = re.compile(r"step (\d+) rollout:")
_TQDM = re.compile(r"(\d+)/(\d+) \[")


def run_logged(argv: Sequence[str], log: Path, progress: Progress, description: str, total: int,
               parse: re.Pattern[str], env: dict[str, str]) -> float:
    """Run `argv` with its output in `log`, advancing a progress bar from what the log says; returns seconds."""
    if _STOPPING.is_set():
        raise RuntimeError(f"{description} not started: stopping")
    log.parent.mkdir(parents=True, exist_ok=True)
    task = progress.add_task(description, total=total)
    started = time.perf_counter()
    with log.open("a") as sink:
        sink.write(f"\n$ {shlex.join(argv)}\n")
        sink.flush()
        proc = subprocess.Popen(list(argv), cwd=ROOT, env=os.environ | env, stdout=sink, stderr=subprocess.STDOUT)
        _RUNNING.add(proc)
        try:
            while proc.poll() is None:
                time.sleep(2)
                done = _progress_in(log, parse, total)
                if done is not None:
                    progress.update(task, completed=min(done, total))
        except BaseException:
            proc.terminate()
            proc.wait(60)
            raise
        finally:
            _RUNNING.discard(proc)
    seconds = time.perf_counter() - started
    progress.remove_task(task)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        raise RuntimeError(f"{description} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return seconds


def _progress_in(log: Path, parse: re.Pattern[str], total: int) -> int | None:
    try:
        with log.open("rb") as handle:
            handle.seek(max(0, log.stat().st_size - 20000))
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    # a tqdm line counts only when its total is this stage's (model loading and data mapping draw bars too)
    matches = [m for m in parse.finditer(text) if parse is _TRAIN_STEP or int(m.group(2)) == total]
    if not matches:
        return None
    done = int(matches[-1].group(1))
    return done + 1 if parse is _TRAIN_STEP else done  # a logged step number is 0-based, tqdm counts done


# ---- the stages -------------------------------------------------------------------------------------------


def answering_model(url: str) -> str:
    """The `model` field of the native API's answer (which model wrote, or which engine found, the documents)."""
    response = httpx.post(url + "/v1/search", json={"query": "capital of France", "k": 1, "noise": 0.0,
                                                    "question": "What is the capital of France?",
                                                    "answers": ["Paris"], "seed": 0, "cache": False}, timeout=600)
    response.raise_for_status()
    return str(response.json().get("model"))


def ensure_data(s: Settings, progress: Progress) -> None:
    if any((s.data / f"test{suffix}").is_file() for suffix in (".parquet", ".jsonl", ".json")):
        return
    argv = [str(VENV_BIN / "zerosearch"), "data", "factbook", "--out", str(s.data)]
    run_logged(argv, s.out / "logs" / "data.log", progress, "factbook QA", 1, _TQDM, _env(s.threads))


def ensure_warmup(s: Settings, sim_url: str, progress: Progress) -> dict[str, Any]:
    target = s.out / "warmup"
    marker = target / "warmup.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    argv = [str(VENV_BIN / "zerosearch"), "warmup", "--config", "configs/warmup-miniature.yaml",
            "--dataset_name", str(s.data), "--max_train_samples", str(s.train_questions),
            "--num_examples", str(s.warmup_examples), "--search_top_k", str(s.top_k),
            "--output_dir", str(target), "--search_url", sim_url, "--torch_threads", str(s.threads)]
    import yaml

    recipe = yaml.safe_load((ROOT / "configs/warmup-miniature.yaml").read_text())
    total = -(-s.warmup_examples // recipe["per_device_train_batch_size"]) * int(recipe["num_train_epochs"])
    seconds = run_logged(argv, s.out / "logs" / "warmup.log", progress, "warm-up", total, _TQDM, _env(s.threads))
    record = {"seconds": round(seconds, 1), "command": _command(argv)}
    marker.write_text(json.dumps(record, indent=2))
    return record


def train_argv(s: Settings, arm: Arm, seed: int, run_dir: Path, url: str) -> list[str]:
    return [str(VENV_BIN / "zerosearch"), "train", "--config", "configs/grpo-miniature.yaml",
            "--model_name_or_path", str(s.out / "warmup"), "--dataset_name", str(s.train_data),
            "--max_train_samples", str(s.train_questions), "--max_steps", str(s.steps),
            "--per_device_train_batch_size", str(s.batch), "--num_generations", str(s.group),
            "--learning_rate", str(s.learning_rate), "--temperature", str(s.temperature),
            "--max_turns", str(s.max_turns), "--max_tokens_per_turn", str(s.max_tokens_per_turn),
            "--max_completion_length", str(s.max_completion_length), "--search_top_k", str(s.top_k),
            "--save_steps", str(s.save_steps), "--seed", str(seed), "--rollout_seed", str(seed),
            "--output_dir", str(run_dir), "--search_url", url, "--torch_threads", str(s.threads),
            "--resume_from_checkpoint", "last", *arm.args, *s.train_extra]


def eval_argv(s: Settings, model: str, url: str, output: Path, max_turns: int, split: str = "test",
              questions: int | None = None) -> list[str]:
    return [str(VENV_BIN / "zerosearch"), "eval", "--model", model, "--data", str(s.data), "--split", split,
            "--search_url", url, "--max_samples", str(questions or s.test_questions), "--output", str(output),
            "--batch_size", str(s.eval_batch), "--max_turns", str(max_turns),
            "--max_completion_length", str(s.max_completion_length),
            "--max_tokens_per_turn", str(s.max_tokens_per_turn), "--top_k", str(s.top_k), "--greedy",
            "--threads", str(s.threads)]


def _command(argv: Sequence[str]) -> str:
    """The command as a user types it (`zerosearch ...` from the repository root)."""
    parts = [Path(argv[0]).name if argv[0].startswith(str(VENV_BIN)) else argv[0], *argv[1:]]
    return shlex.join(_rel(Path(p)) if p.startswith(str(ROOT)) else p for p in parts)


def evaluate(s: Settings, name: str, model: str, max_turns: int, engine_url: str, run_dir: Path,
             progress: Progress) -> dict[str, Any]:
    output = run_dir / "eval.json"
    marker = run_dir / "eval-done.json"
    if marker.is_file() and output.is_file():
        return json.loads(marker.read_text())
    argv = eval_argv(s, model, engine_url, output, max_turns)
    seconds = run_logged(argv, run_dir / "eval.log", progress, f"eval {name}", s.test_questions, _TQDM,
                         _env(s.threads))
    record = {"seconds": round(seconds, 1), "command": _command(argv)}
    marker.write_text(json.dumps(record, indent=2))
    return record


def learnable_data(s: Settings, engine_url: str, progress: Progress) -> Path:
    """The question-difficulty filter: the warm-up answers the first `s.learnable` training questions (greedy,
    against the real engine, as in evaluation) and the arms train only on those it gets at least partly right
    (F1 > 0). A question the policy never gets right gives every trajectory of its group reward 0, so no
    gradient: in the runs of docs/results.md, half of the groups had all-equal rewards (frac_reward_zero_std)."""
    target = s.train_data
    if (target / "train.jsonl").is_file():
        return target
    run_dir = s.out / "runs" / "warmup-train"
    output = run_dir / "eval.json"
    if not output.is_file():
        argv = eval_argv(s, str(s.out / "warmup"), engine_url, output, s.max_turns, "train", s.learnable)
        run_logged(argv, run_dir / "eval.log", progress, "warm-up on training questions", s.learnable, _TQDM,
                   _env(s.threads))
    from zerosearch_trainer.data import load_records

    records = load_records(str(s.data), split="train", max_samples=s.learnable)
    kept = answered_questions(records, json.loads(output.read_text())["results"])
    if not kept:
        raise RuntimeError(f"the warm-up answered none of the first {s.learnable} training questions; "
                           "the question filter would leave nothing to train on (raise --learnable)")
    target.mkdir(parents=True, exist_ok=True)
    with (target / "train.tmp").open("w") as sink:
        for record in kept:
            sink.write(json.dumps({"question": record.question, "golden_answers": list(record.golden_answers),
                                   "data_source": record.data_source}) + "\n")
    (target / "train.tmp").replace(target / "train.jsonl")  # whole or absent: a rerun redoes a cut-short write
    console.print(f"question filter: training on the {len(kept)} of {len(records)} questions the warm-up answers")
    return target


def answered_questions(records: Sequence[Any], results: Sequence[dict[str, Any]]) -> list[Any]:
    """The records whose evaluation row (matched by uid) has F1 > 0, in the records' order."""
    answered = {r["uid"] for r in results if float(r.get("f1") or 0.0) > 0.0}
    return [record for record in records if record.uid in answered]


def train_arm(s: Settings, arm: Arm, seed: int, url: str, run_dir: Path, progress: Progress) -> dict[str, Any]:
    marker = run_dir / "train.json"
    if marker.is_file():
        return json.loads(marker.read_text())
    argv = train_argv(s, arm, seed, run_dir, url)
    seconds = run_logged(argv, run_dir / "train.log", progress, f"train {run_dir.name}", s.steps, _TRAIN_STEP,
                         _env(s.threads))
    record = {"seconds": round(seconds, 1), "command": _command(argv)}
    marker.write_text(json.dumps(record, indent=2))
    return record


def arm_record(name: str, label: str, seed: int | None, run_dir: Path, train: dict[str, Any] | None,
               evaluation: dict[str, Any], models: dict[str, str], paper: str,
               trained_against: str | None = None) -> dict[str, Any]:
    report = json.loads((run_dir / "eval.json").read_text())
    record: dict[str, Any] = {"diagnostics": diagnostics(report["results"]),
        "arm": name, "label": label, "seed": seed, "paper": paper, "trained_against": trained_against,
        "eval": report["overall"],
        "eval_seconds": evaluation["seconds"], "eval_command": evaluation["command"], "models": models,
    }
    if train is not None:
        state = json.loads((run_dir / "trainer_state.json").read_text())
        record |= {"train_seconds": train["seconds"], "train_command": train["command"],
                   "curve": curve(state["log_history"])}
    (run_dir / "arm.json").write_text(json.dumps(record, indent=2))
    return record


def rescore(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evaluation's rows scored again from their stored completions with the current answer extraction (so
    that runs evaluated before a scoring fix are scored like the rest)."""
    from zerosearch_core.scoring import exact_match, f1_score, sub_exact_match
    from zerosearch_trainer.rewards import extract_answer

    scored = []
    for r in rows:
        answer = extract_answer(r["completion"])
        scored.append(r | {"answer": answer, "em": exact_match(answer, r["golden_answers"]),
                           "sub_em": sub_exact_match(answer, r["golden_answers"]),
                           "f1": f1_score(answer, r["golden_answers"])})
    return scored


_INFORMATION = re.compile(r"<information>(.*?)</information>", re.DOTALL)


def searched_the_question(row: dict[str, Any]) -> bool:
    """Whether the trajectory searched, with a query carrying at least half of the question's content words: not
    the filler that GRPO teaches small policies (`What I found.`, `and`) and not a search that never closed."""
    from zerosearch_trainer.rewards import query_score

    return query_score(row.get("completion", ""), row["question"]) >= 0.5


def diagnostics(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """How the answers fail: copied from the question, left empty, or the same few strings for everything; and how
    the queries do: a search whose best query carries less than half of the question's content words is off the
    question (the filler that GRPO teaches small policies: `What I found.`, `and`)."""
    from collections import Counter

    from zerosearch_core.scoring import contains_answer, normalize_answer
    from zerosearch_trainer.rewards import extract_answer, search_queries

    rows = [r | {"answer": extract_answer(r["completion"])} for r in rows]
    answers = [normalize_answer(r["answer"]) for r in rows if r.get("answer")]
    n = max(1, len(rows))
    copied = sum(1 for r in rows
                 if r.get("answer") and normalize_answer(r["answer"]) in normalize_answer(r["question"]))
    found = sum(1 for r in rows if contains_answer(" ".join(_INFORMATION.findall(r.get("completion", ""))),
                                                   r["golden_answers"]))
    off_question = sum(1 for r in rows if search_queries(r.get("completion", "")) and not searched_the_question(r))
    top = Counter(answers).most_common(1)
    return {"gold_in_documents": found / n, "off_question_queries": off_question / n,
            "answer_in_question": copied / n, "distinct_answers": len(set(answers)),
            "most_common_answer_share": top[0][1] / n if top else 0.0,
            "most_common_answer": top[0][0] if top else ""}


CURVE_KEYS = ("reward", "rewards/f1_reward/mean", "rewards/format_reward/mean", "rewards/query_reward/mean",
              "search/searches_per_trajectory",
              "rollout/answered", "rollout/invalid_actions", "curriculum/noise", "completions/mean_length",
              "reward_std", "frac_reward_zero_std", "entropy")


def curve(log_history: Sequence[dict[str, Any]]) -> list[dict[str, float]]:
    return [{"step": e["step"], **{k: e[k] for k in CURVE_KEYS if isinstance(e.get(k), int | float)}}
            for e in log_history if "reward" in e and "step" in e]


# ---- commands ----------------------------------------------------------------------------------------------


@app.command()
def run(
    out: Annotated[Path, typer.Option(help="Output directory (reused: finished parts are skipped).")
                   ] = Path("outputs/miniature"),
    data: Annotated[Path | None, typer.Option(
        help="QA directory with train and test files; default OUT/data, built with `zerosearch data factbook`.")
                    ] = None,
    steps: Annotated[int, typer.Option(min=1, help="GRPO steps of every arm.")] = 20,
    seeds: Annotated[str, typer.Option(help="Seeds of arms (a) and (b), comma-separated.")] = "0,1",
    ablation_seeds: Annotated[str, typer.Option(help="Seeds of arms (c) and (d).")] = "0",
    only: Annotated[str, typer.Option(help="Arms to run, comma-separated (zerosearch, real-search, fixed-noise, "
                                           "no-masking; warmup and direct are always evaluated).")
                    ] = "zerosearch,real-search,fixed-noise,no-masking",
    train_questions: Annotated[int, typer.Option(min=1, help="Training questions (the first N of train).")] = 256,
    test_questions: Annotated[int, typer.Option(min=1, help="Held-out questions (the first N of test).")] = 200,
    fixed_noise: Annotated[float, typer.Option(min=0.0, max=1.0, help="Noise of arm (c) (paper: 0.5).")] = 0.5,
    batch: Annotated[int, typer.Option(min=1, help="Trajectories per step (questions x group).")] = 16,
    group: Annotated[int, typer.Option(min=2, help=(
        "GRPO group size (trajectories per question); 8 rather than the paper's 5, so that a weak policy's group "
        "more often holds both a right and a wrong answer (all-equal rewards give no gradient)."))] = 8,
    learning_rate: Annotated[float, typer.Option(help="GRPO learning rate.")] = 1e-5,
    temperature: Annotated[float, typer.Option(help=(
        "Sampling temperature of the rollouts (the paper: 1.0; at 1.0 the 135M policy's samples were almost "
        "never right, so groups had no reward variance)."))] = 0.7,
    save_steps: Annotated[int, typer.Option(min=1, help="Checkpoint every N steps (what a rerun resumes from).")
                          ] = 5,
    warmup_examples: Annotated[int, typer.Option(min=1, help="Protocol warm-up trajectories.")] = 256,
    eval_batch: Annotated[int, typer.Option(min=1, help="Questions generated together in evaluation.")] = 16,
    max_turns: Annotated[int, typer.Option(min=1, help="Searches before the final answer turn.")] = 2,
    max_tokens_per_turn: Annotated[int, typer.Option(min=8, help=(
        "New tokens per turn (40 cut the warm-up's first turn inside <search> in 87 of 200 trajectories)."))] = 96,
    max_completion_length: Annotated[int, typer.Option(min=32, help="Token budget of a trajectory.")] = 320,
    top_k: Annotated[int, typer.Option(min=1, max=20, help="Documents per search.")] = 3,
    threads: Annotated[int, typer.Option(min=1, help="torch threads of each process.")] = 1,
    parallel: Annotated[int, typer.Option(min=1, help=(
        "Arms trained (and evaluated) at the same time; the simulator batches their searches together."))] = 1,
    sim_max_new_tokens: Annotated[int, typer.Option(min=8, help=(
        "ZS_MAX_NEW_TOKENS of the simulator: its generation budget per search. The policy reads at most 96 tokens "
        "of documents per search (the recipe's max_information_tokens), so more is wasted CPU."))] = 128,
    sim_verify: Annotated[bool, typer.Option(help=(
        "ZS_VERIFY_LABELS of the simulator (label verification and answer anchoring). Off by default, as the "
        "paper's simulator: with it on, every useful set holds the answer, so at the curriculum's low starting "
        "noise every trajectory of a group copies it, scores 1.0, and the group gives no gradient."))] = False,
    redis_url: Annotated[str, typer.Option(help=(
        "The simulator's cache (its own database): a restarted run gets the searches it already paid for back; "
        "'' for the in-process cache."))] = "redis://127.0.0.1:6379/13",
    sim_backend: Annotated[str | None, typer.Option(
        help="Simulator backend; default: `zerosearch serve`'s default (the tuned model when installed).")] = None,
    engine_backend: Annotated[str, typer.Option(help="The real engine's backend.")] = "corpus",
    train_arg: Annotated[list[str] | None, typer.Option(
        "--train-arg", help="Extra `zerosearch train` argument for every arm (repeat), e.g. --train-arg=--beta "
                            "--train-arg=0.001.")] = None,
    learnable: Annotated[int, typer.Option(min=0, help=(
        "Question-difficulty filter: evaluate the warm-up on the first N training questions and train every arm "
        "only on those it answers at least partly (F1 > 0); 0: off, every arm trains on the first "
        "--train-questions."))] = 0,
    references: Annotated[str, typer.Option(help=(
        "References to evaluate, comma-separated: warmup (the warmed-up policy, no GRPO), direct (the bundled "
        "policy answering without search); '' for none."))] = "warmup,direct",
    doc: Annotated[Path | None, typer.Option(help="Markdown file whose marked table section to rewrite.")] = None,
) -> None:
    """Train every arm, evaluate arms and references against the real engine, then write the report."""
    chosen = [a.strip() for a in only.split(",") if a.strip()]
    known = arms(fixed_noise)
    if unknown := [a for a in chosen if a not in known]:
        raise typer.BadParameter(f"unknown arm(s) {unknown}; choose from {list(known)}", param_hint="--only")
    chosen_references = [r.strip() for r in references.split(",") if r.strip()]
    if unknown := [r for r in chosen_references if r not in REFERENCES]:
        raise typer.BadParameter(f"unknown reference(s) {unknown}; choose from {list(REFERENCES)}",
                                 param_hint="--references")
    if batch % group:
        raise typer.BadParameter(f"--batch {batch} must be a multiple of --group {group}", param_hint="--batch")
    s = Settings(out=out.resolve(), data=(data or out / "data").resolve(), steps=steps, seeds=_seeds(seeds),
                 ablation_seeds=_seeds(ablation_seeds), arms=chosen, train_questions=train_questions,
                 test_questions=test_questions, fixed_noise=fixed_noise, threads=threads, sim_backend=sim_backend,
                 engine_backend=engine_backend, warmup_examples=warmup_examples, batch=batch, group=group,
                 learning_rate=learning_rate, temperature=temperature, save_steps=save_steps,
                 eval_batch=eval_batch, sim_max_new_tokens=sim_max_new_tokens, sim_verify=sim_verify,
                 parallel=parallel, redis_url=redis_url, references=chosen_references,
                 train_extra=list(train_arg or []), learnable=learnable,
                 max_turns=max_turns,
                 max_tokens_per_turn=max_tokens_per_turn, max_completion_length=max_completion_length, top_k=top_k)
    # SIGTERM (and SIGINT, which background jobs ignore) unwinds: the running step and both servers are stopped
    signal.signal(signal.SIGTERM, _stop)
    s.out.mkdir(parents=True, exist_ok=True)
    (s.out / "settings.json").write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                                     for k, v in vars(s).items()}, indent=2))
    try:
        _run(s, known)
    except RuntimeError as exc:
        console.print(f"[red]Error:[/red] {exc}")
        raise typer.Exit(1) from None
    write_report(s.out, doc)


def _stop(*_: Any) -> None:
    _STOPPING.set()
    for proc in list(_RUNNING):
        proc.terminate()
    sys.exit(143)


def _run(s: Settings, known: dict[str, Arm]) -> None:
    plan = [(known[name], seed) for name in s.arms
            for seed in (s.seeds if name in ("zerosearch", "real-search") else s.ablation_seeds)]
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    started = time.perf_counter()
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("miniature", total=len(plan) * 2 + len(s.references) + 1)
        ensure_data(s, progress)
        sim_env = _env(s.threads) | {"ZS_TIMEOUT_S": "600", "ZS_MAX_NEW_TOKENS": str(s.sim_max_new_tokens)}
        if not (s.out / "warmup" / "warmup.json").is_file():
            # The warm-up's documents are always verified: it teaches the protocol (search, then copy the answer
            # from the documents), the same whatever the arms' simulator does.
            console.print("starting the warm-up's simulator (label verification on) ...")
            with start_simulator(backend=s.sim_backend, redis_url=s.redis_url or None,
                                 env=sim_env | {"ZS_VERIFY_LABELS": "true"}, name="miniature-warmup-sim") as sim:
                ensure_warmup(s, sim.url, progress)
        progress.advance(overall)
        console.print(f"starting the simulator (label verification {'on' if s.sim_verify else 'off'}) ...")
        train_env = sim_env | {"ZS_VERIFY_LABELS": str(s.sim_verify).lower()}
        with start_simulator(backend=s.sim_backend, redis_url=s.redis_url or None, env=train_env,
                             name="miniature-sim") as sim:
            models = {"simulator": answering_model(sim.url),
                      "simulator_verification": f"{'on' if s.sim_verify else 'off'} in GRPO, on in the warm-up"}
            console.print(f"simulator: {models['simulator']}")
            console.print("starting the real engine ...")
            with _start_engine(s) as engine:
                models["engine"] = answering_model(engine.url)
                console.print(f"real engine: {models['engine']}")
                (s.out / "models.json").write_text(json.dumps(models, indent=2))
                if s.learnable:
                    learnable_data(s, engine.url, progress)
                failures = _run_jobs(s, plan, sim.url, engine.url, models, progress, overall)
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    if failures:
        raise RuntimeError("; ".join(failures))


def _run_jobs(s: Settings, plan: list[tuple[Arm, int]], sim_url: str, engine_url: str, models: dict[str, str],
              progress: Progress, overall: Any) -> list[str]:
    """The references' evaluations and each arm's training then evaluation, `s.parallel` at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def reference(name: str) -> None:
        label, paper = REFERENCES[name]
        run_dir = s.out / "runs" / name
        model, turns = (str(s.out / "warmup"), s.max_turns) if name == "warmup" else ("bundled", 0)
        evaluation = evaluate(s, name, model, turns, engine_url, run_dir, progress)
        arm_record(name, label, None, run_dir, None, evaluation, models, paper)
        progress.advance(overall)

    def arm_job(arm: Arm, seed: int) -> None:
        run_dir = s.out / "runs" / f"{arm.name}-seed{seed}"
        train = train_arm(s, arm, seed, sim_url if arm.engine == "simulator" else engine_url, run_dir, progress)
        progress.advance(overall)
        evaluation = evaluate(s, run_dir.name, str(run_dir), s.max_turns, engine_url, run_dir, progress)
        arm_record(arm.name, arm.label, seed, run_dir, train, evaluation, models, arm.paper, arm.engine)
        progress.advance(overall)

    # the main comparison first, seed by seed, so that a run cut short still has (a) beside (b) and the warm-up
    order: list[tuple[str, Any]] = [(f"{a.name}-seed{seed}", (arm_job, a, seed)) for a, seed in plan
                                    if a.engine == "corpus" or a.name == "zerosearch"]
    order.sort(key=lambda item: (item[1][2], item[1][1].engine))
    if "warmup" in s.references:
        order.append(("warmup", (reference, "warmup")))
    order += [(f"{a.name}-seed{seed}", (arm_job, a, seed)) for a, seed in plan
              if not (a.engine == "corpus" or a.name == "zerosearch")]
    if "direct" in s.references:
        order.append(("direct", (reference, "direct")))
    failures = []
    with ThreadPoolExecutor(max_workers=s.parallel) as pool:
        jobs = {pool.submit(*call): name for name, call in order}
        for future, name in jobs.items():
            try:
                future.result()
            except RuntimeError as exc:  # one arm failing leaves the others running; its log says why
                console.print(f"[red]{name} failed:[/red] {exc}")
                failures.append(f"{name} failed")
    return failures


def _start_engine(s: Settings) -> ServerProcess:
    return start_simulator(backend=s.engine_backend, env=_env(s.threads) | {"ZS_TIMEOUT_S": "600"},
                           name="miniature-engine")


@app.command()
def report(
    out: Annotated[Path, typer.Option(help="The `run` output directory.")] = Path("outputs/miniature"),
    doc: Annotated[Path | None, typer.Option(help="Markdown file whose marked table section to rewrite.")] = None,
) -> None:
    """Summarise finished arms: OUT/summary.json, OUT/table.md, OUT/reward_curves.png (and the --doc table)."""
    if not (out / "runs").is_dir():
        console.print(f"[red]Error:[/red] {out}/runs does not exist; run `python bench/miniature.py run` first")
        raise typer.Exit(1)
    write_report(out, doc)


@app.command()
def plot(
    summaries: Annotated[list[Path], typer.Argument(help="`summary.json` files that `report` wrote, one per run.")],
    label: Annotated[list[str] | None, typer.Option(help="A name for each run, in the same order.")] = None,
    out: Annotated[Path, typer.Option(help="The PNG to write.")] = Path("outputs/miniature/reward_curves_all.png"),
) -> None:
    """The reward curves of arms trained in several runs, in one figure, each run labelled."""
    labels = label or [path.parent.name for path in summaries]
    if len(labels) != len(summaries):
        raise typer.BadParameter(f"{len(labels)} labels for {len(summaries)} summaries; give one per summary",
                                 param_hint="--label")
    runs = []
    for path, name in zip(summaries, labels, strict=True):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="SUMMARIES") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("curves"), dict):
            raise typer.BadParameter(f"{path} has no 'curves': give a summary.json that `report` wrote",
                                     param_hint="SUMMARIES")
        runs.append((name, summary))
    figure = plot_curves(runs, out)
    if figure is None:
        console.print("[red]Error:[/red] none of these summaries holds a trained arm's curve")
        raise typer.Exit(1)
    console.print(f"reward curves: {figure}")


def _mean_spread(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (max(values) - min(values)) / 2 if len(values) > 1 else 0.0


def task_reward(point: dict[str, float]) -> float | None:
    """The step's F1 reward, the task's own: `reward` is the weighted sum, which holds shaping terms (format,
    query) when a run weights them, and those would make a ratio or a curve compare runs unlike for like."""
    return point.get("rewards/f1_reward/mean", point.get("reward"))


def _task_rewards(points: Sequence[dict[str, float]]) -> list[float]:
    return [r for r in map(task_reward, points) if r is not None]


def _reward_ratio(points: list[dict[str, float]], window: int = 10) -> float | None:
    rewards = _task_rewards(points)
    if len(rewards) < 2:
        return None
    w = min(window, len(rewards) // 2)
    first = statistics.fmean(rewards[:w])
    last = statistics.fmean(rewards[-w:])
    return last / first if first > 0 else None


def paired(arm: dict[str, float], reference: dict[str, float]) -> dict[str, float] | None:
    """EM of an arm against a reference on the questions both answered: how many it gets right that the reference
    gets wrong (better) and the reverse (worse), the EM change in points, and the exact two-sided McNemar p (a
    binomial test on the questions where they differ), so that a reader can tell a change from noise."""
    from math import comb

    shared = arm.keys() & reference.keys()
    if not shared:
        return None
    better = sum(1 for q in shared if arm[q] > reference[q])
    worse = sum(1 for q in shared if arm[q] < reference[q])
    n = better + worse
    p = min(1.0, 2 * sum(comb(n, i) for i in range(min(better, worse) + 1)) / 2 ** n) if n else 1.0
    return {"better": better, "worse": worse, "em_change_points": round(100 * (better - worse) / len(shared), 2),
            "p": round(p, 3)}


def training_figures(points: Sequence[dict[str, float]]) -> dict[str, Any]:
    """What a step's groups gave GRPO: the share of groups whose rewards differ (the others carry no gradient), the
    steps with any such group, the F1 reward of the first and the second half, and the sampling entropy's range."""
    spread = [1.0 - p["frac_reward_zero_std"] for p in points if "frac_reward_zero_std" in p]
    rewards = _task_rewards(points)
    entropy = [p["entropy"] for p in points if "entropy" in p]
    half = len(rewards) // 2
    return {"groups_with_variance": statistics.fmean(spread) if spread else None,
            "steps_with_gradient": sum(1 for s in spread if s > 0), "steps": len(points),
            "reward_halves": [statistics.fmean(rewards[:half]), statistics.fmean(rewards[half:])] if half else None,
            "entropy_range": [min(entropy), max(entropy)] if entropy else None}


def summarise(out: Path) -> dict[str, Any]:
    from zerosearch_trainer.evaluate import summarise as summarise_eval

    records = []
    em_by_run: dict[str, dict[str, float]] = {}
    on_question: dict[str, set[str]] = {}  # per run, the questions it searched with the question's words
    for path in sorted((out / "runs").glob("*/arm.json")):
        record = json.loads(path.read_text())
        results = json.loads((path.parent / "eval.json").read_text())["results"]
        scored = rescore(results)
        em_by_run[path.parent.name] = {r["question"]: r["em"] for r in scored}
        on_question[path.parent.name] = {r["question"] for r in scored if searched_the_question(r)}
        record["run"] = path.parent.name
        record["diagnostics"] = diagnostics(results)
        record["eval_as_run"], record["eval"] = record["eval"], summarise_eval(scored)["overall"]
        if (state := path.parent / "trainer_state.json").is_file():  # the curve with the current CURVE_KEYS
            record["curve"] = curve(json.loads(state.read_text())["log_history"])
        records.append(record)
    for record in records:
        if "warmup" in em_by_run and record["run"] != "warmup" and record["arm"] != "direct":
            arm, warmup = em_by_run[record["run"]], em_by_run["warmup"]
            record["paired_vs_warmup"] = paired(arm, warmup)
            # split by whether the arm still searched the question: a loss there is reading the documents worse,
            # a loss elsewhere is the query or the format that GRPO broke
            searched = on_question[record["run"]]
            record["paired_vs_warmup_searched"] = paired({q: v for q, v in arm.items() if q in searched}, warmup)
            record["paired_vs_warmup_not_searched"] = paired({q: v for q, v in arm.items() if q not in searched},
                                                             warmup)
        if "curve" in record:
            record["training"] = training_figures(record["curve"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(r["arm"], []).append(r)
    order = ["zerosearch", "real-search", "fixed-noise", "no-masking", "warmup", "direct"]
    rows = []
    for name in sorted(groups, key=lambda n: order.index(n) if n in order else len(order)):
        runs = groups[name]
        row: dict[str, Any] = {"arm": name, "label": runs[0]["label"], "paper": runs[0]["paper"],
                               "seeds": [r["seed"] for r in runs], "n": runs[0]["eval"]["n"]}
        for metric in ("em", "f1", "sub_em", "searches_per_question", "answered"):
            row[metric], row[f"{metric}_spread"] = _mean_spread([r["eval"][metric] for r in runs])
        row["per_seed_em"] = [r["eval"]["em"] for r in runs]
        row["diagnostics"] = [r["diagnostics"] for r in runs]
        row["answered_as_run"] = [r["eval_as_run"]["answered"] for r in runs]
        row["eval_seconds"] = [r["eval_seconds"] for r in runs]
        for key in ("paired_vs_warmup", "paired_vs_warmup_searched", "paired_vs_warmup_not_searched"):
            row[key] = [r.get(key) for r in runs]
        row["training"] = [r.get("training") for r in runs]
        if "train_seconds" in runs[0]:
            row["train_seconds"] = [r["train_seconds"] for r in runs]
            ratios = [_reward_ratio(r["curve"]) for r in runs]
            row["reward_last10_over_first10"] = ratios
            row["commands"] = [r["train_command"] for r in runs] + [r["eval_command"] for r in runs]
        else:
            row["commands"] = [r["eval_command"] for r in runs]
        rows.append(row)
    by = {r["arm"]: r for r in rows}
    targets: dict[str, Any] = {}
    if "warmup" in by:
        for name in ("zerosearch", "real-search"):
            if name in by:
                targets[f"{name}_minus_warmup_em_points"] = round(100 * (by[name]["em"] - by["warmup"]["em"]), 2)
    if "zerosearch" in by and "real-search" in by and by["real-search"]["em"] > 0:
        targets["zerosearch_over_real_search_em"] = round(by["zerosearch"]["em"] / by["real-search"]["em"], 3)
    if "zerosearch" in by:
        targets["zerosearch_reward_last10_over_first10"] = by["zerosearch"].get("reward_last10_over_first10")
    models = json.loads((out / "models.json").read_text()) if (out / "models.json").is_file() else {}
    return {"rows": rows, "targets": targets, "models": models, "curves": {
        f"{r['arm']}-seed{r['seed']}": r["curve"] for r in records if "curve" in r}}


def _per_seed_markdown(summary: dict[str, Any]) -> list[str]:
    """Each trained run against the warm-up policy on the same questions, and what its steps gave GRPO."""
    lines = ["", "| arm | seed | better than the warm-up | worse | EM change | McNemar p | better / worse where it "
             "searched the question | elsewhere | groups with reward variance | steps with a gradient "
             "| reward, first half / second half | entropy (nats/token) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def split(pair: dict[str, Any] | None) -> str:
        return f"{pair['better']} / {pair['worse']}" if pair else "0 / 0"

    rows = 0
    for row in summary["rows"]:
        for seed, pair, figures, on, off in zip(row["seeds"], row["paired_vs_warmup"], row["training"],
                                                row["paired_vs_warmup_searched"],
                                                row["paired_vs_warmup_not_searched"], strict=True):
            if pair is None and figures is None:
                continue
            rows += 1
            vs = (f"{pair['better']} | {pair['worse']} | {pair['em_change_points']:+.1f} | {pair['p']:.3f} | "
                  f"{split(on)} | {split(off)}" if pair else "- | - | - | - | - | -")
            if figures:
                variance = figures["groups_with_variance"]
                halves, entropy = figures["reward_halves"], figures["entropy_range"]
                train = (f"{'-' if variance is None else f'{100 * variance:.0f}%'} | "
                         f"{figures['steps_with_gradient']} of {figures['steps']} | "
                         f"{'-' if not halves else f'{halves[0]:.3f} / {halves[1]:.3f}'} | "
                         f"{'-' if not entropy else f'{entropy[0]:.2f} to {entropy[1]:.2f}'}")
            else:
                train = "- | - | - | -"
            lines.append(f"| {row['label']} | {'-' if seed is None else seed} | {vs} | {train} |")
    return lines if rows else []


def table_markdown(summary: dict[str, Any]) -> str:
    lines = ["| arm | seeds | EM | F1 | sub-EM | searches/q | answered | train s | eval s | paper (EM, 3B) |",
             "|---|---|---|---|---|---|---|---|---|---|"]

    def cell(row: dict[str, Any], key: str, scale: float = 100.0, digits: int = 1) -> str:
        value, spread = row[key] * scale, row[f"{key}_spread"] * scale
        return f"{value:.{digits}f} ± {spread:.{digits}f}" if len(row["seeds"]) > 1 else f"{value:.{digits}f}"

    for row in summary["rows"]:
        seeds = ",".join(str(s) for s in row["seeds"] if s is not None) or "-"
        train = "/".join(f"{t:.0f}" for t in row.get("train_seconds", [])) or "-"
        evals = "/".join(f"{t:.0f}" for t in row["eval_seconds"])
        lines.append(f"| {row['label']} | {seeds} | {cell(row, 'em')} | {cell(row, 'f1')} | {cell(row, 'sub_em')} | "
                     f"{cell(row, 'searches_per_question', 1.0, 2)} | {cell(row, 'answered')} | {train} | {evals} | "
                     f"{row['paper']} |")
    n = summary["rows"][0]["n"] if summary["rows"] else 0
    lines.append("")
    lines.append(f"EM, F1, sub-EM and answered in %, on {n} held-out questions, greedy decoding, searches against the "
                 "real engine; ± is half the range over seeds. "
                 f"Simulator: {summary['models'].get('simulator', '?')} (label verification "
                 f"{summary['models'].get('simulator_verification', 'on')}); real engine: "
                 f"{summary['models'].get('engine', '?')}.")
    lines += ["", "| arm | seed | gold answer in a retrieved document | answered, counting the invalid-action message "
              "| most common answer (share) | answer copied from the question | searched off the question |",
              "|---|---|---|---|---|---|---|"]
    for row in summary["rows"]:
        for seed, d, as_run in zip(row["seeds"], row["diagnostics"], row["answered_as_run"], strict=True):
            common = f"{d['most_common_answer'] or '-'!r} ({100 * d['most_common_answer_share']:.1f})"
            lines.append(f"| {row['label']} | {'-' if seed is None else seed} | {100 * d['gold_in_documents']:.1f} | "
                         f"{100 * as_run:.1f} | {common} | {100 * d['answer_in_question']:.1f} | "
                         f"{100 * d['off_question_queries']:.1f} |")
    lines += _per_seed_markdown(summary)
    if summary["targets"]:
        lines.append("")
        lines.append("Targets: " + "; ".join(f"{k} = {v}" for k, v in summary["targets"].items()))
    return "\n".join(lines)


def plot_curves(runs: Sequence[tuple[str | None, dict[str, Any]]], path: Path) -> Path | None:
    """Every arm's curves in one figure: a colour per arm, a line style per seed and, with several runs, a marker
    and a label per run."""
    if not any(summary["curves"] for _, summary in runs):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # the reward, and why it can stay flat: groups whose rewards are all equal give no gradient, and a policy
    # whose sampling entropy is near zero writes the same trajectory eight times
    panels: list[tuple[str, Any]] = [
        ("reward (F1)", task_reward), ("groups with no reward variance", "frac_reward_zero_std"),
        ("policy entropy", "entropy"), ("searches per trajectory", "search/searches_per_trajectory"),
        ("curriculum noise", "curriculum/noise")]
    if any("rewards/query_reward/mean" in p for _, summary in runs for points in summary["curves"].values()
           for p in points):
        panels.append(("query reward (question's words searched)", "rewards/query_reward/mean"))
    colours = {"zerosearch": "tab:blue", "real-search": "tab:orange", "fixed-noise": "tab:green",
               "no-masking": "tab:red"}
    markers = "osx^"
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, key) in zip(axes[0], panels, strict=True):
        value = key if callable(key) else (lambda p, k=key: p.get(k))
        for index, (run_label, summary) in enumerate(runs):
            for name, points in sorted(summary["curves"].items()):
                xy = [(p["step"], v) for p in points if (v := value(p)) is not None]
                if not xy:
                    continue
                arm, _, seed = name.rpartition("-seed")
                xs, ys = zip(*xy, strict=True)
                ax.plot(xs, ys, color=colours.get(arm), linestyle="-" if seed == "0" else "--",
                        marker=markers[index % len(markers)], markersize=2.5,
                        label=f"{name} ({run_label})" if run_label else name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(out: Path, doc: Path | None) -> None:
    summary = summarise(out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    table = table_markdown(summary)
    (out / "table.md").write_text(table + "\n")
    figure = plot_curves([(None, summary)], out / "reward_curves.png")
    if doc is not None:
        text = doc.read_text() if doc.is_file() else f"{TABLE_BEGIN}\n{TABLE_END}\n"
        if TABLE_BEGIN not in text or TABLE_END not in text:
            raise typer.BadParameter(f"{doc} has no {TABLE_BEGIN} ... {TABLE_END} section", param_hint="--doc")
        head, rest = text.split(TABLE_BEGIN, 1)
        _, tail = rest.split(TABLE_END, 1)
        doc.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}")
    console.print(table)
    if figure:
        console.print(f"reward curves: {figure}")


if __name__ == "__main__":
    app()
