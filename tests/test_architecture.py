"""The folder list is the architecture: every module sits in a subpackage named for its concern, and
imports run only down the layers the README's Architecture section states."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "protolm"
# What each subpackage may import besides itself (the README's layer table): config and data know
# no model; the model knows no data module, no serving and no post-training algorithm; library code
# never imports the command line.
LAYERS = ("utils", "config", "data", "modeling", "explanations", "prototypes", "training", "serving", "cli")
ALLOWED = {
    "utils": set(),
    "config": {"utils"},
    "data": {"config", "utils"},
    "modeling": {"config", "utils"},
    "explanations": {"modeling", "data", "config", "utils"},
    "prototypes": {"explanations", "modeling", "data", "config", "utils"},
    "training": {"prototypes", "explanations", "modeling", "data", "config", "utils"},
    "serving": {"training", "prototypes", "explanations", "modeling", "data", "config", "utils"},
    "cli": set(LAYERS),
}
TOP_LEVEL = {"protolm", "protolm.__main__"}  # the package's lazy front door and `python -m protolm`


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(every protolm module ``path`` imports, those imported at module level), as module names."""
    tree = ast.parse(path.read_text())
    own = module_name(path)
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found, top = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        targets = {resolve(n) for n in names if n.startswith("protolm")} - {None, own}
        found |= targets
        if node in tree.body:
            top |= targets
    return found, top


def resolve(name: str) -> str | None:
    """The module a dotted name refers to (``protolm.config.read_settings`` is ``protolm.config``)."""
    while name:
        path = PACKAGE.parent / name.replace(".", "/")
        if path.with_suffix(".py").is_file() or (path / "__init__.py").is_file():
            return name
        name = name.rpartition(".")[0]
    return None


def graph() -> dict[str, tuple[set[str], set[str]]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def violations(edges: dict[str, set[str]]) -> list[str]:
    """Every import against the layers: up them, across to a sibling, from library code into the CLI."""
    found = []
    for module, targets in edges.items():
        if module in TOP_LEVEL or layer(module) is None:
            continue
        for target in targets:
            if target in TOP_LEVEL or layer(target) in (None, layer(module)):
                continue
            if layer(target) not in ALLOWED[layer(module)]:
                found.append(f"{module} imports {target} ({layer(module)} may not import {layer(target)})")
    return sorted(found)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Import cycles among module-level imports (a module importing one that imports it back)."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges.get(module, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target] if target in path else [module, target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    return found


@pytest.mark.no_data
def test_every_module_sits_in_a_subpackage_named_for_its_concern():
    loose = [m for m in graph() if m not in TOP_LEVEL and layer(m) is None]
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()) == sorted(LAYERS)


@pytest.mark.no_data
def test_imports_run_only_down_the_layers():
    assert violations({m: every for m, (every, _) in graph().items()}) == []


@pytest.mark.no_data
def test_no_import_cycles():
    assert cycles({m: top for m, (_, top) in graph().items()}) == []


@pytest.mark.no_data
def test_the_checks_catch_the_faults_of_the_flat_layout():
    """The six layering faults the redesign removed, written in today's layers: each is caught."""
    faults = {
        "protolm.config.run": {"protolm.data.task"},  # the run schema importing the task schema from data
        "protolm.modeling.backbone": {"protolm.data.hub"},  # the encoder loader importing the data hub
        "protolm.modeling.module": {"protolm.serving.registry", "protolm.prototypes.projection"},  # the model
        # importing the transformers registration (for the shared forward) and the projection (its record)
        "protolm.explanations.token_faithfulness": {"protolm.cli.tool"},  # a metric importing a command's schema
    }
    assert len(violations(faults)) == 5
    assert violations({"protolm.training.module": {"protolm.prototypes.projection"}}) == []  # training runs stages
    # data/build.py and data/carving.py imported each other
    assert cycles({"protolm.data.build": {"protolm.data.carving"}, "protolm.data.carving": {"protolm.data.build"}})
