"""The arrows between packages (DESIGN.md): data_loaders and neurosim import nothing of ours
but themselves, decoding imports only data_loaders, nothing imports neurosuite."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"neurosim", "data_loaders", "decoding", "neurosuite"}
ALLOWED = {
    "data_loaders": {"data_loaders"},
    "neurosim": {"neurosim"},
    "decoding": {"decoding", "data_loaders"},
    "neurosuite": OURS,
}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_follow_the_design(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_packages(path) - ALLOWED[package]:
            bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_check_sees_a_forbidden_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import numpy\nfrom decoding.evaluation import r2\n")
    assert imported_packages(f) == {"decoding"}
