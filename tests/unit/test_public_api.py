import ast
import pathlib

import zerosearch_core

SHARED = pathlib.Path(zerosearch_core.__file__).parent


def test_public_names_are_exported():
    assert sorted(zerosearch_core.__all__) == zerosearch_core.__all__
    for name in zerosearch_core.__all__:
        assert getattr(zerosearch_core, name) is not None


def test_shared_package_imports_no_service():
    for path in SHARED.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert not name.startswith(("zerosearch_simulator", "zerosearch_trainer")), f"{path.name}: {name}"
