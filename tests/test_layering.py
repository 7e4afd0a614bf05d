"""The layering contract of the fusegen package, checked over the source (every import, also
those inside functions): a module imports only from its own layer's package or a lower layer,
and no import cycle exists between modules.

Lowest first. A module belongs to the longest entry that prefixes its name.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "fusegen"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("fusegen.errors", "fusegen.paths", "fusegen.verdict"),  # verdict: verify's bounds
    ("fusegen.fileio",),  # reading users' files, atomic writes
    ("fusegen.sequences",),  # variable-length sequences in users' files (verify, compare)
    ("fusegen.quiet",),  # TensorFlow's and the libraries' output hidden unless --verbose
    ("fusegen.ir",),
    ("fusegen.abi",),  # every name and number that crosses into C
    ("fusegen.frontend", "fusegen.passes", "fusegen.schedule"),
    ("fusegen.reference",),  # the twins: read schedule, never quantize
    ("fusegen.quantize",),  # numbers only
    ("fusegen.lower",),  # trace -> passes -> naming
    ("fusegen.codegen",),  # all C emission
    # the .tflite format: reader/writer, validation, generic builder, the hand-over from lowering
    ("fusegen.converter.tflite_file", "fusegen.converter.validate", "fusegen.converter.builder",
     "fusegen.converter.fused_call"),
    ("fusegen.host",),  # running generated code and files on the host
    ("fusegen.converter",),  # Keras model -> .tflite (float32, int8/)
    ("fusegen.commands",),  # build, convert, verify: the Python API
    ("fusegen.bench",),
    ("fusegen.compare",),
    ("fusegen.api",),  # the Python API: the commands as functions
    ("fusegen.cli",),
    ("fusegen",),  # fusegen/__init__.py: the API's lazy attributes (only the package itself)
)


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    base = PACKAGE.parent / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imports() -> set[tuple[str, str]]:
    edges = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "fusegen":
                    continue
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add((source, sub if _is_module(sub) else node.module))
            elif isinstance(node, ast.Import):
                edges |= {(source, a.name) for a in node.names if a.name.split(".")[0] == "fusegen"}
    return {(a, b) for a, b in edges if a != b and b != "fusegen"}


def _layer(module: str) -> tuple[int, str]:
    matches = [(len(entry), k, entry) for k, entries in enumerate(LAYERS) for entry in entries
               if module == entry or (module.startswith(entry + ".") and entry != "fusegen")]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    _, k, entry = max(matches)
    return k, entry


def _package(entry: str) -> str:
    return ".".join(entry.split(".")[:2])


def test_every_import_goes_down_or_stays_in_its_package():
    wrong = []
    for a, b in sorted(_imports()):
        (la, ea), (lb, eb) = _layer(a), _layer(b)
        if lb > la or (lb == la and _package(ea) != _package(eb)):
            wrong.append(f"{a} (layer {la}, {ea}) imports {b} (layer {lb}, {eb})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b in _imports():
        graph[a].add(b)
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    assert not cycles, cycles


def test_the_contract_sees_imports():
    """The checker itself: it finds known edges, including one inside a function."""
    edges = _imports()
    assert ("fusegen.lower", "fusegen.passes") in edges
    assert ("fusegen.cli", "fusegen.commands.build") in edges  # imported inside a function
    assert _layer("fusegen.converter.int8.chain")[1] == "fusegen.converter"
    assert _layer("fusegen.converter.tflite_file")[0] < _layer("fusegen.host.file")[0]
