"""Data flows one way: a stage imports only itself and the stages below it (shared/STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "mmembed"

# Lower number = earlier stage. hub/ holds no models and may be used by any stage.
STAGES = {
    "errors": 0,
    "modality": 0,
    "inputs": 0,
    "results": 0,
    "hub": 0,
    "lazy": 0,  # PEP 562 lazy attributes, no imports of its own
    "processors": 1,
    "encoders": 2,
    "pages": 2,  # pages drawn from text (corpora, looks, evaluation sets): uses processors
    "heads": 3,
    "space": 4,
    "batching": 5,
    "preparation": 5,  # worker processes for encode and the index's engine
    "embedder": 5,
    "models": 6,
    "retrieval": 7,
    "eval": 7,
    "train": 8,
    "serve": 8,  # mmembed serve: HTTP over retrieval
    "cli": 9,
    "__init__": 9,
}
# Reaching up on purpose, each for a stated reason.
ALLOWED = {
    # Embedder.save / push_to_hub are the API users expect (issue 3); imported on call only.
    ("embedder", "models"),
    # Page.render draws with the renderer; imported on call only.
    ("inputs", "processors"),
}


def stage_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def imports(path: Path) -> set[str]:
    """Absolute names of the mmembed modules ``path`` imports (relative imports resolved)."""
    module = "mmembed." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
    package = (
        module.rsplit(".", 1)[0] if path.name != "__init__.py" else module.removesuffix(".__init__")
    )
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "mmembed" or name.startswith("mmembed.")}


def test_no_stage_imports_a_later_stage():
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = "mmembed." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        own = stage_of(source)
        for target in imports(path):
            other = stage_of(target)
            if STAGES[other] > STAGES[own] and (own, other) not in ALLOWED:
                violations.append(f"{source} imports {target}")
    assert not violations, "\n".join(violations)


def test_nothing_but_the_cli_imports_train():
    users = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if stage_of("mmembed." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts))
        not in ("train", "cli")
        and any(stage_of(t) == "train" for t in imports(path))
    ]
    assert not users, users
