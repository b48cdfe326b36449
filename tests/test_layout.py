"""The package's shape, beyond the import-linter contracts of `make lint`: no import cycles
between modules, and no module longer than a reader can hold (STYLE.md: ~300 lines)."""

from __future__ import annotations

from pathlib import Path

import grimp

import streamchat

MAX_LINES = 350


def test_no_module_imports_itself_through_others() -> None:
    graph = grimp.build_graph("streamchat")
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back is not None:
                cycles.append((module, *back))
    assert not cycles, cycles


def test_no_module_is_over_the_length_limit() -> None:
    root = Path(streamchat.__file__).parent
    long = {
        str(path.relative_to(root)): lines
        for path in root.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long
