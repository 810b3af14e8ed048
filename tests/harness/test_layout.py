"""The harness depends on the library and on the tests' helpers only one
way: benchmark code (bench/) never reaches into tests/, neither by import
nor by putting tests/ on the path nor by running a script from there; the
tests may use bench/ (the namespace topologies, the native loops)."""

from __future__ import annotations

import ast
from pathlib import Path

from dn_harness import ROOT

TESTS = Path(ROOT) / "tests"
BENCH = Path(ROOT) / "bench"


def helper_modules() -> set[str]:
    return {p.stem for p in TESTS.rglob("*.py")} | {"tests"}


def reaches_into_tests(source: Path, helpers: set[str]) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source.read_text(), str(source))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        found += [f"{source.name}:{node.lineno}: imports {n}" for n in names if n.split(".")[0] in helpers]
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            v = node.value
            if v == "tests" or v.startswith("tests/") or "/tests/" in v:
                found.append(f"{source.name}:{node.lineno}: names {v!r}")
    return found


def test_bench_never_reaches_into_tests() -> None:
    helpers = helper_modules()
    assert {"dn_harness", "peer", "kernel_peer"} <= helpers
    sources = sorted(BENCH.rglob("*.py"))
    assert len(sources) > 10, "bench/ not found"
    found = [hit for s in sources for hit in reaches_into_tests(s, helpers)]
    assert found == []
