"""Do rlgen's imports point down its layers? Reads every module of a source tree (its ``rlgen`` package) and
prints the imports that run against the layer order, the circles between packages and between files, and the
function-local imports of rlgen modules, each with its place.

    python experiments/import_layers.py            # this checkout
    python experiments/import_layers.py --root DIR # another checkout, e.g. an older revision
    python experiments/import_layers.py --json out.json

The layer order, bottom to top, is :data:`LAYERS`; a module may import from its own layer or any layer below.
The three families (gen, selfsup, rl) share one layer but do not import each other.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import defaultdict
from pathlib import Path

# Bottom to top. A name is a module or package under rlgen; the first entry that prefixes a module wins.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "version"),
    ("files", "machine", "seeding", "schedules"),
    ("track",),
    ("checkpoint",),
    ("cli",),
    ("lifecycle",),
    ("nets",),
    ("augment", "encoders", "plots", "images", "envnames"),
    ("data",),
    ("gen", "selfsup", "rl"),
    ("loading", "registry", "export", "commands", "__main__"),
]
FAMILIES = ("gen", "selfsup", "rl")


def modules(root: Path) -> dict[str, Path]:
    """``{"rlgen.rl.dqn": path, ...}`` for every module of the package under ``root``."""
    out = {}
    for path in sorted((root / "rlgen").rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> list[tuple[str, int, bool]]:
    """(imported rlgen module, line, function-local) for each import of an rlgen module in one file."""
    tree = ast.parse(path.read_text(), str(path))
    local_lines = {n.lineno for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                   for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            # "from rlgen.data import sources" imports a module; "from rlgen.nets import make_backbone" a name
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            if (t == "rlgen" or t.startswith("rlgen.")) and (t, node.lineno, node.lineno in local_lines) not in found:
                found.append((t, node.lineno, node.lineno in local_lines))
    return found


def layer_of(module: str) -> tuple[int, str] | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # rlgen/__init__.py stands above everything
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i, parts[1]
    return None


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return groups


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def report(root: Path) -> dict:
    mods = modules(root)
    known = set(mods)
    against, local = [], []
    file_edges: dict[str, set[str]] = defaultdict(set)
    package_edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for target, line, is_local in imports(path, name, known):
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target == name:
                continue
            where = f"{path.relative_to(root)}:{line}"
            if is_local:
                local.append(f"{where} -> {target}")
            file_edges[name].add(target)
            src, dst = package_of(name), package_of(target)
            if src != dst and target != "rlgen":
                package_edges[src].add(dst)
            a, b = layer_of(name), layer_of(target)
            if a is None or b is None:
                continue
            up = b[0] > a[0]
            across = a[0] == b[0] and a[1] != b[1] and a[1] in FAMILIES
            if up or across:
                against.append(f"{where}: {name} -> {target}")
    # a package's __init__ re-exporting its own modules is not a circle of files
    file_edges = {k: {v for v in vs if not (k == package_of(k) and package_of(v) == k)} for k, vs in file_edges.items()}
    return {"against_layers": sorted(against), "package_circles": circles(package_edges),
            "file_circles": circles(file_edges), "local_imports": sorted(local)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]),
                        help="the checkout whose rlgen package is read (default: this one)")
    parser.add_argument("--json", help="also write the report to this JSON file")
    args = parser.parse_args()
    r = report(Path(args.root))
    for key, title in [("against_layers", "imports against the layers"), ("package_circles", "circles between "
                       "packages"), ("file_circles", "circles of files"), ("local_imports", "function-local imports "
                       "of rlgen modules")]:
        print(f"{title}: {len(r[key])}")
        for item in r[key]:
            print(f"  {' -> '.join(item) if isinstance(item, list) else item}")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1) + "\n")


if __name__ == "__main__":
    main()
