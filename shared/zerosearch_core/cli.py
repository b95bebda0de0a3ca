"""The `zerosearch` command.

Subcommands are registered by the installed services under the entry-point group
`zerosearch.commands` (each a Typer app) and imported only when run, so `zerosearch serve`
never imports the trainer and `zerosearch train` never loads the simulator.
"""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint, entry_points

GROUP = "zerosearch.commands"
_USAGE = "Usage: zerosearch COMMAND [OPTIONS] [ARGS]...   (zerosearch COMMAND --help for its options)"


def _registered() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def _summary(ep: EntryPoint) -> str:
    try:
        app = ep.load()
    except ImportError as exc:
        return f"(unavailable: {exc.name or exc} is not installed)"
    text = (app.info.help or "") if hasattr(app, "info") else ""
    return str(text).strip().splitlines()[0] if text else ""


def _print_help(commands: dict[str, EntryPoint]) -> None:
    lines = ["ZeroSearch: a simulated search engine for training search agents with RL.", "", _USAGE, "",
             "Commands:"]
    lines += [f"  {name:<10} {_summary(ep)}" for name, ep in sorted(commands.items())]
    sys.stdout.write("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    commands = _registered()
    if not args or args[0] in ("-h", "--help", "help"):
        _print_help(commands)
        return 0
    name, rest = args[0], args[1:]
    ep = commands.get(name)
    if ep is None:
        sys.stderr.write(f"zerosearch: unknown command '{name}'. Commands: {', '.join(sorted(commands))}.\n")
        return 2
    try:
        app = ep.load()
    except ImportError as exc:
        sys.stderr.write(f"zerosearch {name}: needs {exc.name or exc}, which is not installed. Install the "
                         f"matching extra (pip install 'zerosearch[simulator]' / '[trainer]') or run 'make setup'.\n")
        return 2
    app(args=rest, prog_name=f"zerosearch {name}")  # typer exits with the command's status
    return 0


if __name__ == "__main__":
    sys.exit(main())
