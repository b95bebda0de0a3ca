"""Config classes (every field has a default and help), recipes (every key is a known field), plotting."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from zerosearch_trainer import config as cfg
from zerosearch_trainer.train import curriculum_noise

REPO = Path(__file__).resolve().parents[3]
OURS = [cfg.ScriptArguments, cfg.RolloutArguments, cfg.SimulatorArguments, cfg.CurriculumArguments]


@pytest.mark.parametrize("cls", OURS, ids=lambda c: c.__name__)
def test_every_field_has_a_default_and_help(cls):
    from zerosearch_trainer.warmup import WarmupArguments

    for klass in (cls, WarmupArguments):
        for f in dataclasses.fields(klass):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING, f.name
            assert f.metadata.get("help"), f"{klass.__name__}.{f.name} has no help"
            assert f.name in (klass.__doc__ or ""), f"{klass.__name__}.{f.name} is not in the docstring"


def _known_fields(kind: str) -> set[str]:
    if kind == "eval":  # `zerosearch eval` is a Typer command: its recipe keys are the command's parameters
        import typer.main

        from zerosearch_trainer.cli import eval_command

        return {p.name for p in typer.main.get_command(eval_command).params if p.name != "config"}

    if kind == "tune-sim":  # a TrlParser of its own: its recipe keys are the parser's dataclass fields
        from zerosearch_trainer.tune_sim import make_parser

        return {f.name for c in make_parser().dataclass_types for f in dataclasses.fields(c)}

    from trl import GRPOConfig, ModelConfig, SFTConfig

    from zerosearch_trainer.warmup import WarmupArguments

    classes = [cfg.ScriptArguments, ModelConfig, cfg.SimulatorArguments]
    classes += [SFTConfig, WarmupArguments] if kind == "warmup" else [GRPOConfig, cfg.RolloutArguments,
                                                                       cfg.CurriculumArguments]
    return {f.name for c in classes for f in dataclasses.fields(c)}


@pytest.mark.parametrize("recipe", sorted(p.name for p in (REPO / "configs").glob("*.yaml")))
def test_recipe_keys_are_fields(recipe):
    data = yaml.safe_load((REPO / "configs" / recipe).read_text())
    kind = next((k for k in ("warmup", "eval", "tune-sim") if recipe.startswith(k)), "train")
    unknown = set(data) - _known_fields(kind) - {"env"}
    assert not unknown, f"{recipe}: unknown keys {sorted(unknown)}"


def test_cpu_recipes_parse_and_override_from_the_command_line():
    from zerosearch_trainer.train import parse
    from zerosearch_trainer.warmup import parse as parse_warmup

    script, model, args, ro, sim, cur = parse(["--config", str(REPO / "configs/grpo-tiny-cpu.yaml"), "--max_steps",
                                               "2", "--output_dir", "/tmp/x", "--search_url", "http://h:1"])
    assert args.max_steps == 2 and args.output_dir == "/tmp/x" and sim.search_url == "http://h:1"
    assert args.num_generations == 2 and ro.max_turns == 2 and cur.curriculum == "noise"
    assert model.model_name_or_path == "outputs/warmup-tiny-cpu" and script.warmup_config
    warm = parse_warmup(["--config", str(REPO / "configs/warmup-tiny-cpu.yaml")])
    assert warm[3].num_examples > 0


def test_gpu_recipes_mirror_the_paper():
    for name in ("grpo-qwen2.5-3b.yaml", "grpo-qwen2.5-7b.yaml"):
        data = yaml.safe_load((REPO / "configs" / name).read_text())
        assert data["learning_rate"] == 1e-6 and data["beta"] == 0.001 and data["num_generations"] == 5
        assert data["max_turns"] == 5 and data["search_top_k"] == 5
        assert (data["noise_start"], data["noise_end"]) == (0.0, 0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"curriculum": "sideways"}, "curriculum must be one of"),
    ({"noise_end": 1.5}, "noise_start and noise_end"),
    ({"noise_base": 1.0}, "noise_base"),
])
def test_curriculum_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cfg.CurriculumArguments(**kwargs)


def test_script_checks():
    with pytest.raises(ValueError, match="one weight per function"):
        cfg.ScriptArguments(reward_funcs=["f1", "em"], reward_weights_list=[1.0])
    with pytest.raises(ValueError, match="search_top_k"):
        cfg.RolloutArguments(search_top_k=50)


def test_curriculum_noise_uses_the_shared_formula():
    cur = cfg.CurriculumArguments()
    assert curriculum_noise(0, 100, cur) == 0.0
    assert curriculum_noise(100, 100, cur) == pytest.approx(0.5)
    assert 0 < curriculum_noise(50, 100, cur) < 0.25  # b = 4: slow at first
    assert curriculum_noise(10, 100, cfg.CurriculumArguments(curriculum="off")) == 0.0
    assert curriculum_noise(10, 0, cur) is None


def test_plot_writes_a_png(tmp_path):
    from zerosearch_trainer.plotting import plot_training_curves

    history = [{"step": s, "reward": 0.1 * s, "search/searches_per_trajectory": 1.0, "curriculum/noise": 0.05 * s}
               for s in range(1, 4)]
    path = plot_training_curves(history, tmp_path / "curves.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
