"""Code fingerprints: which package modules a rule's script runs, found by reading them.

Snakemake's code trigger only sees the script file. A rule's ``params.code`` is instead a
hash of every package module its script can import: the script's import closure inside
the package, walked over the source (``ast``, nothing is imported). Editing a module thus
reruns exactly the rules whose scripts reach it.

What counts as an import of module M (all package-internal; other imports are ignored):
- ``import neurodissect.a.b`` / ``from neurodissect.a import b`` / relative forms, at any
  depth (lazy imports inside functions count: they run when the function does);
- importing a.b also runs the ``__init__`` of every package above it;
- a module that imports by name at run time (``importlib.import_module``: a registry such
  as the SAE variants or the dataset adapters) depends on every module beside it (its
  package's own folder, not subpackages).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = "neurodissect"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def module_file(name: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of dotted module ``name`` (``neurodissect.a.b``), or None outside the package."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return base.with_suffix(".py") if base.with_suffix(".py").is_file() else None


def module_name(path: Path, package_dir: Path = PACKAGE_DIR) -> str:
    rel = path.relative_to(package_dir).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _package_of(path: Path, package_dir: Path) -> str:
    """The package a relative import in ``path`` starts from."""
    name = module_name(path, package_dir)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _import_statements(tree: ast.Module, path: Path, package_dir: Path):
    """(module, names) per import in ``path``: ``import a.b`` → ("a.b", ()), ``from X import
    y, z`` → (X, ("y", "z")) with a relative X resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path, package_dir).split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, tuple(alias.name for alias in node.names)


def _imported_names(tree: ast.Module, path: Path, package_dir: Path) -> set[str]:
    """Dotted names ``path`` imports (absolute or resolved relative), incl. ``from X import
    y`` as both X and X.y (y may be a submodule)."""
    names: set[str] = set()
    for target, members in _import_statements(tree, path, package_dir):
        names.add(target)
        names.update(f"{target}.{member}" for member in members)
    return names


def _imports_dynamically(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name == "import_module":
                return True
    return False


def _with_parents(name: str, package_dir: Path) -> set[Path]:
    """The files importing ``name`` runs: its own and every enclosing package's __init__."""
    parts = name.split(".")
    files = {module_file(".".join(parts[:i]), package_dir) for i in range(1, len(parts) + 1)}
    return {f for f in files if f is not None}


def _direct_deps(path: Path, package_dir: Path) -> frozenset[Path]:
    return _deps_of_source(path.read_bytes(), path, package_dir)


@cache  # keyed on the source too: an edited file is read afresh
def _deps_of_source(source: bytes, path: Path, package_dir: Path) -> frozenset[Path]:
    tree = ast.parse(source, filename=str(path))
    deps: set[Path] = set()
    for name in _imported_names(tree, path, package_dir):
        deps |= _with_parents(name, package_dir)
    if path.is_relative_to(package_dir) and _imports_dynamically(tree):
        deps |= set(path.parent.glob("*.py"))
    return frozenset(deps - {path})


def import_closure(script: str | Path, package_dir: Path = PACKAGE_DIR) -> list[Path]:
    """Every package module ``script`` can import, directly or transitively (sorted)."""
    package_dir = Path(package_dir).resolve()
    seen: set[Path] = set()
    todo = [Path(script).resolve()]
    while todo:
        for dep in _direct_deps(todo.pop(), package_dir):
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return sorted(seen)


def fingerprint(files: list[Path], package_dir: Path = PACKAGE_DIR) -> str:
    """A short hash of the files' package-relative paths and bytes."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(f.relative_to(package_dir).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def code_fingerprint(script: str | Path, package_dir: Path = PACKAGE_DIR) -> str:
    """params.code of a rule running ``script``: the hash of its import closure."""
    return fingerprint(import_closure(script, package_dir), Path(package_dir).resolve())


# -- the import graph --------------------------------------------------------------------
def module_imports(path: Path, package_dir: Path = PACKAGE_DIR) -> set[Path]:
    """The package modules ``path`` names in its imports: ``from X import y`` is X.y where
    that is a module, else X. Unlike the closure above, the enclosing packages' __init__ that
    Python also runs are not edges: they would make every package a cycle with its modules."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    found: set[Path] = set()
    for target, members in _import_statements(tree, path, package_dir):
        for name in [f"{target}.{m}" for m in members] or [target]:
            file = module_file(name, package_dir) or module_file(target, package_dir)
            if file is not None and file != path:
                found.add(file)
    return found


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[Path, set[Path]]:
    """Each package module → the package modules it imports (:func:`module_imports`)."""
    package_dir = Path(package_dir).resolve()
    return {p: module_imports(p, package_dir) for p in sorted(package_dir.rglob("*.py"))}


def import_cycle(graph: dict[Path, set[Path]]) -> list[Path]:
    """One cycle of ``graph`` (its modules in import order, the first repeated at the end),
    or [] when the graph is acyclic (a depth-first search for a back edge)."""
    state: dict[Path, int] = {}  # 1: on the current path, 2: done
    path: list[Path] = []

    def visit(node: Path) -> list[Path]:
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in graph:
        if start not in state and (cycle := visit(start)):
            return cycle
    return []
