"""`zerosearch tune-sim`: fine-tune an LLM into a search simulator, the paper's first step.

    zerosearch tune-sim --config configs/tune-sim-tiny-cpu.yaml [--field value ...]

Collects (query, documents) pairs from a real engine (`--engine_url`), labels them useful/noisy, builds SFT
examples in the exact prompt the released simulators were trained on (`zerosearch_trainer.sim_data`), adds
released SimulationTuning data given with `--sft_data`, and trains with TRL's `SFTTrainer` (LoRA by default,
`--tuning full` for full fine-tuning; loss on the completion only). The output directory is what
`zerosearch serve --model DIR` loads: a peft adapter whose `base_model_name_or_path` is the base's name as given
(`bundled` for the bundled SmolLM2), or merged weights with `--merge`. Beside it: `sft_train.jsonl`,
`sft_dev.jsonl`, `loss_curve.png` and `TUNING.json` (the command, the recipe, the data and base hashes, the
figures). A run with checkpoints in its output directory resumes from the last one, on the same data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zerosearch_core.schemas import MAX_K
from zerosearch_trainer import sim_data

__all__ = ["TuneSimArguments", "command", "file_sha256", "make_parser", "parse", "run"]

logger = logging.getLogger(__name__)

RECORD_FILE = "TUNING.json"
LOSS_CURVES = [("loss (train / dev)", ["loss", "eval_loss"]), ("learning rate", ["learning_rate"]),
               ("grad norm", ["grad_norm"]), ("tokens seen", ["num_tokens"])]


@dataclass
class TuneSimArguments:
    """Where the SFT data comes from and how the result is saved.

    Parameters:
        qa_data: QA items (Search-R1 schema): a file, or a folder of `{split}.jsonl` (`zerosearch data factbook`).
        qa_split: the split to read from a folder.
        max_items: use the first N QA items (0: all).
        engine_url: the real engine the documents come from (any native-API endpoint).
        sft_k: documents per target (the released simulators write five).
        fetch_k: results asked of the engine per query (spares for documents too short to keep).
        sft_data: released simulator-tuning files to add (alpaca, sharegpt or prompt/completion; JSON or JSONL).
        max_examples: cap on the balanced engine examples (0: all); imported examples are added on top.
        dev_fraction: share of QA items whose examples go to dev.
        sft_seed: seed of the noisy near misses, the balance and the split.
        tuning: `lora` (peft; r, alpha, dropout and targets from the lora_* fields) or `full`.
        lora_top_layers: put LoRA on the top N decoder layers only (0: all).
        merge: save merged weights instead of the adapter.
        adapter_dtype: dtype the adapter weights are stored in (float16 halves the file; float32 keeps it as trained).
        torch_threads: torch CPU threads (0: torch's default).
        plot: write `loss_curve.png`.
    """

    qa_data: str = field(default="data/factbook", metadata={
        "help": "QA items: a Search-R1-schema file, or a folder of {split}.jsonl (zerosearch data factbook --out)."})
    qa_split: str = field(default="train", metadata={"help": "Split to read from a QA folder."})
    max_items: int = field(default=0, metadata={"help": "Use the first N QA items (0: all)."})
    engine_url: str = field(default="http://127.0.0.1:8000", metadata={
        "help": "The real engine (native API) the documents come from, e.g. zerosearch serve --backend corpus."})
    sft_k: int = field(default=5, metadata={"help": "Documents per target."})
    fetch_k: int = field(default=20, metadata={
        "help": "Results asked of the engine per query (the passages of one field are joined into one document)."})
    sft_data: list[str] = field(default_factory=list, metadata={
        "help": "Released simulator-tuning files to add (alpaca / sharegpt / prompt-completion, JSON or JSONL)."})
    max_examples: int = field(default=0, metadata={"help": "Cap on the balanced engine examples (0: all)."})
    dev_fraction: float = field(default=0.05, metadata={"help": "Share of QA items whose examples go to dev."})
    sft_seed: int = field(default=0, metadata={"help": "Seed of near misses, balance and split."})
    tuning: str = field(default="lora", metadata={"help": "lora (peft, the lora_* fields) or full."})
    lora_top_layers: int = field(default=0, metadata={
        "help": "LoRA on the top N decoder layers only (0: all); the backward pass stops there (cheaper on a CPU)."})
    merge: bool = field(default=False, metadata={"help": "Save merged weights instead of the adapter."})
    adapter_dtype: str = field(default="float16", metadata={"help": "float16, bfloat16 or float32."})
    torch_threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)."})
    plot: bool = field(default=True, metadata={"help": "Write loss_curve.png into output_dir."})

    def __post_init__(self) -> None:
        if self.tuning not in ("lora", "full"):
            raise ValueError(f"tuning must be lora or full, got {self.tuning!r}")
        if self.adapter_dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"adapter_dtype must be float16, bfloat16 or float32, got {self.adapter_dtype!r}")
        if not 1 <= self.sft_k <= self.fetch_k <= MAX_K:
            raise ValueError(f"sft_k and fetch_k must satisfy 1 <= sft_k <= fetch_k <= {MAX_K} (the native API's "
                             f"largest k), got sft_k={self.sft_k}, fetch_k={self.fetch_k}")
        if not 0 <= self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in [0, 1)")
        if min(self.max_items, self.max_examples, self.torch_threads, self.lora_top_layers) < 0:
            raise ValueError("max_items, max_examples, torch_threads and lora_top_layers must be >= 0")


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((ModelConfig, SFTConfig, TuneSimArguments))


def parse(argv: Sequence[str] | None = None):
    return make_parser().parse_args_and_config(args=list(argv) if argv is not None else None)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_data(opts: TuneSimArguments, out: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict]:
    """The train and dev SFT sets (reused from `out` when a run there already built them), and data figures."""
    train_file, dev_file, stats_file = out / "sft_train.jsonl", out / "sft_dev.jsonl", out / "sft_stats.json"
    if train_file.is_file() and dev_file.is_file() and stats_file.is_file():
        logger.info("reusing the SFT data in %s (delete sft_train.jsonl to collect again)", out)
        train, dev = _read_jsonl(train_file), _read_jsonl(dev_file)
        return train, dev, {**json.loads(stats_file.read_text(encoding="utf-8")), "reused": True}
    imported = [e for path in opts.sft_data for e in sim_data.import_sft_file(path)]
    figures: dict[str, Any] = {"imported": len(imported)}
    engine_examples: list[dict[str, Any]] = []
    if opts.engine_url and opts.engine_url.lower() != "none":
        items = sim_data.load_qa_items(opts.qa_data, split=opts.qa_split, max_items=opts.max_items)
        collection = sim_data.collect(items, opts.engine_url, k=opts.sft_k, fetch_k=opts.fetch_k,
                                      seed=opts.sft_seed)
        built = sim_data.build_examples(collection.sets, k=opts.sft_k, seed=opts.sft_seed)
        engine_examples = sim_data.balance(built, seed=opts.sft_seed, limit=opts.max_examples)
        figures.update(qa_items=len(items), searches=collection.queries, failed_searches=collection.failed,
                       useful_built=sum(e["label"] == "useful" for e in built),
                       noisy_built=sum(e["label"] == "noisy" for e in built), engine_examples=len(engine_examples),
                       entities=sorted({c for item in items for c in item.entities}))
    elif not imported:
        raise sim_data.SFTDataError("no SFT data: give --engine_url (a real engine to collect from) or --sft_data.")
    train, dev = sim_data.split_examples(sim_data.dedupe(engine_examples + imported),
                                         dev_fraction=opts.dev_fraction, seed=opts.sft_seed)
    _write_jsonl(train_file, train)
    _write_jsonl(dev_file, dev)
    stats_file.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return train, dev, figures


def _lora_config(model_args: Any, model: Any, top_layers: int):
    from peft import LoraConfig

    layers = None
    if top_layers:
        total = model.config.num_hidden_layers
        layers = list(range(max(0, total - top_layers), total))
    targets = model_args.lora_target_modules or "all-linear"
    if isinstance(targets, list) and targets == ["all-linear"]:
        targets = "all-linear"
    if layers is not None and targets == "all-linear":
        # peft takes layers_to_transform only with module names: the decoder's linear layers by their leaf name.
        import torch

        targets = sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                          if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"})
    return LoraConfig(r=model_args.lora_r, lora_alpha=model_args.lora_alpha, lora_dropout=model_args.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM", use_rslora=model_args.use_rslora,
                      layers_to_transform=layers)


def _last_checkpoint(out: Path) -> str | None:
    checkpoints = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if
                         p.name.split("-")[-1].isdigit() else -1)
    return str(checkpoints[-1]) if checkpoints else None


def _store_adapter(out: Path, base_name: str, dtype: str) -> None:
    """The adapter names its base as the user gave it (`bundled`, a hub id), not this machine's cache path, and
    its weights are stored in `dtype`."""
    config_file = out / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_name
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if dtype != "float32":
        import torch
        from safetensors.torch import load_file, save_file

        weights = out / "adapter_model.safetensors"
        tensors = {k: v.to(getattr(torch, dtype)) for k, v in load_file(str(weights)).items()}
        save_file(tensors, str(weights), metadata={"format": "pt"})


def base_fingerprint(base_name: str, path: str) -> dict[str, str]:
    """The base model's identity: the bundled GGUF's sha256, else the weights' sha256 of a local checkpoint."""
    from zerosearch_core.models import BUNDLED_FILE, bundled_gguf

    if base_name in ("bundled", "bundled-base"):
        return {"name": base_name, "file": BUNDLED_FILE, "sha256": file_sha256(bundled_gguf())}
    weights = sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else []
    return {"name": base_name, "file": ",".join(w.name for w in weights),
            "sha256": hashlib.sha256("".join(file_sha256(w) for w in weights).encode()).hexdigest() if weights
            else "unknown (hub id)"}


def run(model_args: Any, args: Any, opts: TuneSimArguments, *, argv: Sequence[str] = (),
        config_path: str | None = None) -> dict[str, Any]:
    """Build the data, train, save; returns the record written to `TUNING.json`."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    started = time.monotonic()
    recipe_sha256 = file_sha256(config_path) if config_path and Path(config_path).is_file() else None
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_rows, dev_rows, data_figures = build_data(opts, out)
    if not train_rows:
        raise sim_data.SFTDataError("the SFT train split is empty: add QA items or lower dev_fraction.")

    import datasets
    import torch
    from trl import SFTTrainer

    from zerosearch_trainer.policy import load_policy

    if opts.torch_threads:
        torch.set_num_threads(opts.torch_threads)
    if not torch.cuda.is_available() and (args.bf16 or args.fp16):
        args.bf16 = args.fp16 = False
    base_name = model_args.model_name_or_path or "bundled"
    model, tokenizer, base_path = load_policy(model_args)
    columns = ("prompt", "completion")
    train_ds = datasets.Dataset.from_list([{c: r[c] for c in columns} for r in train_rows])
    dev_ds = datasets.Dataset.from_list([{c: r[c] for c in columns} for r in dev_rows]) if dev_rows else None
    if dev_ds is None and args.eval_strategy != "no":
        args.eval_strategy = "no"
    peft_config = _lora_config(model_args, model, opts.lora_top_layers) if opts.tuning == "lora" else None
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=dev_ds,
                         processing_class=tokenizer, peft_config=peft_config)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    resume = _last_checkpoint(out)
    if resume:
        logger.info("resuming from %s", resume)
    train_started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    train_wall = time.monotonic() - train_started
    if dev_ds is not None:
        trainer.evaluate()  # one dev loss at the end (in the log history, so in the record and the curve)

    if opts.tuning == "lora" and opts.merge:
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(out))
        tokenizer.save_pretrained(str(out))
    else:
        trainer.save_model(str(out))
        if opts.tuning == "lora":
            _store_adapter(out, base_name, opts.adapter_dtype)
            for extra in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                          "vocab.json", "merges.txt"):
                (out / extra).unlink(missing_ok=True)  # the base's tokenizer is used; keep the adapter small
        else:
            tokenizer.save_pretrained(str(out))
    trainer.save_state()
    if opts.plot:
        from zerosearch_trainer.plotting import plot_training_curves

        plot_training_curves(trainer.state.log_history, out / "loss_curve.png", curves=LOSS_CURVES)

    steps = trainer.state.global_step
    steps_per_epoch = max(1, -(-len(lengths) // (args.per_device_train_batch_size * args.gradient_accumulation_steps)))
    tokens = int(sum(lengths) * steps / steps_per_epoch)
    runtime = float(result.metrics.get("train_runtime", train_wall))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    eval_losses = [e["eval_loss"] for e in trainer.state.log_history if "eval_loss" in e]
    weights = out / "adapter_model.safetensors"
    record = {
        "output_dir": str(out),
        "command": "zerosearch tune-sim " + shlex.join(argv) if argv else "zerosearch tune-sim (in process)",
        "recipe": config_path,
        "recipe_sha256": recipe_sha256,  # as read when the run started
        "sft_data_sha256": sim_data.data_hash(train_rows + dev_rows),
        "sft_examples": {"train": len(train_rows), "dev": len(dev_rows),
                         "useful": sum(r["label"] == "useful" for r in train_rows + dev_rows),
                         "noisy": sum(r["label"] == "noisy" for r in train_rows + dev_rows)},
        "data": data_figures,
        "base_model": base_fingerprint(base_name, base_path),
        "tuning": opts.tuning,
        "lora": ({"r": model_args.lora_r, "alpha": model_args.lora_alpha, "dropout": model_args.lora_dropout,
                  "target_modules": model_args.lora_target_modules or "all-linear",
                  "top_layers": opts.lora_top_layers or "all"} if opts.tuning == "lora" else None),
        "training": {"epochs": args.num_train_epochs, "max_steps": args.max_steps, "steps": steps,
                     "batch_size": args.per_device_train_batch_size * args.gradient_accumulation_steps,
                     "learning_rate": args.learning_rate, "max_length": args.max_length,
                     "torch_threads": opts.torch_threads or torch.get_num_threads(), "resumed_from": resume},
        "figures": {"train_runtime_s": round(runtime, 1), "wall_s": round(time.monotonic() - started, 1),
                    "training_tokens": tokens, "tokens_per_s": round(tokens / runtime, 1) if runtime else None,
                    "mean_example_tokens": round(sum(lengths) / len(lengths), 1),
                    "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                    "last_eval_loss": eval_losses[-1] if eval_losses else None,
                    "adapter_bytes": weights.stat().st_size if weights.is_file() else None},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "device": "cuda" if torch.cuda.is_available() else "cpu"},
        "config": {"tune_sim": asdict(opts)},
    }
    (out / RECORD_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    logger.info("tuned simulator saved to %s (%.0f s training, %s tokens/s)", out, runtime,
                record["figures"]["tokens_per_s"])
    return record


# ---- the command -----------------------------------------------------------------------------------------------

import typer  # noqa: E402  (the command below; the module's functions do not need typer)

command = typer.Typer(add_completion=False, help="Fine-tune an LLM into a search simulator (SFT on real engine data).")


@command.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []})
def tune_sim(ctx: typer.Context) -> None:
    """zerosearch tune-sim --config configs/tune-sim-tiny-cpu.yaml [--field value ...] (see --help for every field)."""
    from zerosearch_trainer.cli import _run_recipe

    argv = list(ctx.args)
    config_path = argv[argv.index("--config") + 1] if "--config" in argv[:-1] else None

    def _run(model_args: Any, args: Any, opts: TuneSimArguments) -> dict[str, Any]:
        return run(model_args, args, opts, argv=argv, config_path=config_path)

    record = _run_recipe("tune-sim", argv, make_parser, parse, _run)
    figures = record["figures"]
    out, examples = record["output_dir"], record["sft_examples"]
    typer.echo(f"Tuned simulator saved to {out}: {examples['train']} train / {examples['dev']} dev examples, "
               f"{figures['training_tokens']} tokens in {figures['train_runtime_s']} s "
               f"({figures['tokens_per_s']} tokens/s); serve it with `zerosearch serve --model {out}`.")
