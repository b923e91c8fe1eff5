"""The package's shape (issue 28): small folders, short files, no private names crossing modules,
every function within ruff's complexity limit, no reference to documents outside the repo."""

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fastadl"
MAX_TOP_LEVEL_MODULES, MAX_FILES_PER_FOLDER, MAX_LINES = 12, 12, 400


def _python_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _module_name(path: Path) -> str:
    if not path.is_relative_to(REPO):
        return path.stem
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_top_level_holds_few_modules_besides_subpackages():
    modules = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, sorted(modules)


def test_no_folder_holds_more_than_12_python_files():
    folders = {p.parent for p in _python_files()}
    counts = {str(f.relative_to(REPO)): len(list(f.glob("*.py"))) for f in folders}
    assert max(counts.values()) <= MAX_FILES_PER_FOLDER, counts


def test_no_file_is_longer_than_400_lines():
    lengths = {str(p.relative_to(REPO)): len(p.read_text().splitlines()) for p in _python_files()}
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, too_long


def private_uses(path: Path) -> list[str]:
    """``from fastadl.x import _y`` and ``x._y`` (x a fastadl module or one of its names) in
    ``path``, as "file:line: what" strings."""
    tree = ast.parse(path.read_text())
    here = _module_name(path)
    imported: dict[str, str] = {}  # local name -> what it stands for
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] != "fastadl":
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(
                        f"{path.name}:{node.lineno}: from {node.module} import {alias.name}"
                    )
                imported[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fastadl":
                    imported[alias.asname or alias.name.split(".")[0]] = alias.name
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr.startswith("_")):
            continue
        if node.attr.startswith("__"):
            continue
        base = node.value
        while isinstance(base, ast.Attribute):
            base = base.value
        if isinstance(base, ast.Name) and base.id in imported and imported[base.id] != here:
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_private_use_detector_sees_both_forms(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from fastadl.ops.edge import aten as fk\nfrom fastadl.x import _y\nfk._z(1)\nfk.ok(2)\n"
    )
    assert len(private_uses(probe)) == 2


def test_no_module_uses_another_modules_private_names():
    found = [use for p in _python_files() for use in private_uses(p)]
    assert not found, found


def test_no_function_is_more_complex_than_15():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff not installed")
    cmd = [ruff, "check", "--no-cache", "--select", "C901"]
    cmd += ["--config", "lint.mccabe.max-complexity=15", str(PACKAGE)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout


SKIPPED_DIRS = {".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "runs"}


def _repository_files() -> list[Path]:
    """The files git tracks or would track; outside a git checkout (an unpacked archive), every
    file but build outputs and caches."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, cwd=REPO
    )
    if out.returncode == 0:
        return [REPO / name for name in out.stdout.split()]
    return [
        p
        for p in REPO.rglob("*")
        if p.is_file() and not SKIPPED_DIRS.intersection(p.relative_to(REPO).parts)
    ]


def test_no_file_refers_to_documents_outside_the_repository():
    marker = "shared" + "/"  # spelled apart so that this file does not match itself
    hits = []
    for path in _repository_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        lines = enumerate(text.splitlines(), 1)
        hits += [f"{path.relative_to(REPO)}:{i}" for i, line in lines if marker in line]
    assert not hits, hits


# docs/ARCHITECTURE.md's order: each package imports only the ones before it
LAYERS = ("kernels", "space", "ops", "nn", "data", "runtime", "budget", "search", "train")
LAYERS += ("deploy", "study", "diagnostics")


def test_each_package_imports_only_the_packages_above_it():
    found = []
    for path in _python_files():
        parts = path.relative_to(PACKAGE).parts
        if len(parts) == 1:  # the top level's thin CLIs and helpers may import anything
            continue
        here = LAYERS.index(parts[0])
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                top = name.split(".")
                if top[0] != "fastadl" or len(top) < 2 or top[1] not in LAYERS:
                    continue
                if LAYERS.index(top[1]) > here:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}")
    assert not found, found
