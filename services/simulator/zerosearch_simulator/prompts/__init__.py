"""The simulator's prompts: one copy in `zerosearch_core.simulator_prompt`, shared with `zerosearch tune-sim`."""

from zerosearch_core.simulator_prompt import Template, build_messages, load_template

__all__ = ["Template", "build_messages", "load_template"]
