"""Dependencies point down: shared modules never import a domain package."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "branchloans"
DOMAINS = frozenset({"auth", "health", "idempotency", "loans"})
# The composition roots: they assemble the domains into an app, a command, Alembic's metadata.
COMPOSITION_ROOTS = frozenset({"app.py", "cli.py", "models.py"})


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


def _shared_modules() -> list[Path]:
    return [
        path
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in DOMAINS
        and str(path.relative_to(PACKAGE)) not in COMPOSITION_ROOTS
    ]


def test_the_domains_are_packages_of_the_source() -> None:
    assert {path.name for path in PACKAGE.iterdir() if path.is_dir()} >= DOMAINS


def test_no_shared_module_imports_a_domain() -> None:
    upward = {
        str(path.relative_to(PACKAGE)): sorted(
            module
            for module in _imported_modules(path)
            if module.split(".")[:2][-1] in DOMAINS and module.startswith("branchloans.")
        )
        for path in _shared_modules()
    }

    assert {module: imports for module, imports in upward.items() if imports} == {}
