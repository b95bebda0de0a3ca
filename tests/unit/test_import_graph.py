"""The packages' import graphs: no module imports itself back through others, and no service imports the other.

Read from the source (every `import`, also those inside functions; not those under `if TYPE_CHECKING:`),
so a cycle that only bites when a function runs is caught as well as one at import time.
"""

import ast
import pathlib

import pytest

import zerosearch_core
import zerosearch_simulator
import zerosearch_trainer

PACKAGES = {p.__name__: pathlib.Path(p.__file__).parent for p in (zerosearch_core, zerosearch_simulator,
                                                                    zerosearch_trainer)}


def _modules(package: str) -> dict[str, pathlib.Path]:
    root = PACKAGES[package]
    found = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join((package, *parts))] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported(tree: ast.AST, module: str, is_package: bool, modules: frozenset[str] = frozenset()):
    """Every dotted name `module` imports. `from pkg import name` gives `pkg.name` when that is a module of
    `modules`, else `pkg` (whose `__init__` then has to define `name`)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                yield f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (package `__init__`s included as the package)."""
    modules = _modules(package)
    graph = {}
    for name, path in modules.items():
        targets = _imported(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py",
                            frozenset(modules))
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle_through_a_function_level_import(tmp_path):
    graph = {"p.train": {"p.warmup"}, "p.warmup": {"p.policy", "p.train"}, "p.policy": set()}
    assert find_cycle(graph) == ["p.train", "p.warmup", "p.train"]
    graph["p.warmup"].discard("p.train")
    assert find_cycle(graph) is None
    tree = ast.parse("def run():\n    from zerosearch_trainer.train import load_policy\n"
                     "    from . import rollout\n")
    imported = set(_imported(tree, "zerosearch_trainer.warmup", False, frozenset(["zerosearch_trainer.rollout"])))
    assert imported == {"zerosearch_trainer.train", "zerosearch_trainer.rollout"}


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycle(package):
    graph = import_graph(package)
    assert len(graph) > 3, f"found too few modules of {package}"
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle in {package}: {' -> '.join(cycle or [])}"


def test_warmup_and_train_import_one_way():
    graph = import_graph("zerosearch_trainer")
    assert "zerosearch_trainer.warmup" in graph["zerosearch_trainer.train"]
    assert "zerosearch_trainer.train" not in graph["zerosearch_trainer.warmup"]


@pytest.mark.parametrize(("service", "other"), [("zerosearch_simulator", "zerosearch_trainer"),
                                                ("zerosearch_trainer", "zerosearch_simulator")])
def test_a_service_does_not_import_the_other(service, other):
    for name, path in _modules(service).items():
        imported = _imported(ast.parse(path.read_text()), name, path.name == "__init__.py")
        assert not [t for t in imported if t == other or t.startswith(other + ".")], f"{name} imports {other}"
