"""Structure rules of the product code (`../shared/DESIGN.md`, docs/layout.md), read from its source with `ast`:
no import cycles, imports that follow the data flow, no module using another's private names, and backends named
only where they are registered."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"faceid": "faceid", "faceid.training": "training", "faceid.gallery": "gallery",
           "faceid.export": "export", "faceid.evaluation": "evaluation"}  # pyproject's package-dir
STAGES = ("faceid.training", "faceid.gallery", "faceid.export", "faceid.evaluation")
COMMAND_LAYER = ("faceid.cli", "faceid.commands", "faceid.demo", "faceid.demo_faces", "faceid.api", "faceid.analysis")
PYTHON_API = {"faceid": {"faceid.api", "faceid.analysis"}}  # the package root re-exports the Python API, lazily
MAY_IMPORT = {"faceid.evaluation": (), "faceid.export": (), "faceid.training": ("faceid.evaluation",),
              "faceid.gallery": ("faceid.export", "faceid.evaluation")}


def _modules() -> dict[str, Path]:
    """Every product module by its installed name."""
    modules = {}
    for package, folder in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            modules[".".join((package, *parts[:-1])) + ("" if parts[-1] == "__init__" else f".{parts[-1]}")] = path
    return modules


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _stage(module: str) -> str:
    return next((stage for stage in STAGES if module == stage or module.startswith(stage + ".")), "faceid")


def _in(module: str, prefixes) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def _imports(name: str) -> set[str]:
    """The product modules `name` imports anywhere in its source (top level, functions, TYPE_CHECKING blocks)."""
    found = set()
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}:{node.lineno}: a relative import (the project imports by full name)"
            base = node.module
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(target for target in targets if target in MODULES and target != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_the_module_list_is_read_from_every_folder():
    assert {"faceid.cli", "faceid.training.trainer", "faceid.gallery.gallery", "faceid.gallery.index.backend",
            "faceid.export.embedder", "faceid.evaluation.verification"} <= set(MODULES)


def test_no_import_cycles():
    index, low, stack, on_stack, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles: {cycles}"


def test_imports_follow_the_data_flow():
    wrong = []
    for name, targets in GRAPH.items():
        if _in(name, COMMAND_LAYER):
            continue
        stage = _stage(name)
        for target in targets - PYTHON_API.get(name, set()):
            target_stage = _stage(target)
            if _in(target, COMMAND_LAYER):
                wrong.append(f"{name} imports the command layer ({target})")
            elif target_stage != stage and target_stage != "faceid" and (
                    stage == "faceid" or target_stage not in MAY_IMPORT[stage]):
                wrong.append(f"{name} ({stage}) imports {target} ({target_stage})")
    assert not wrong, "\n".join(sorted(wrong))


def _private_names(tree: ast.Module, class_name: str) -> set[str]:
    """The private attributes and methods of class `class_name`: its `_name` defs and `self._name` assignments."""
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name)
    names = {node.name for node in cls.body if isinstance(node, ast.FunctionDef) and node.name.startswith("_")}
    names |= {node.attr for node in ast.walk(cls) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
              and isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr.startswith("_")}
    return {name for name in names if not name.startswith("__")}


def test_no_module_but_the_gallery_uses_a_private_name_of_gallery():
    private = _private_names(TREES["faceid.gallery.gallery"], "Gallery")
    assert {"_store", "_live", "_refresh"} <= private
    sources = {**{name: TREES[name] for name in MODULES if name != "faceid.gallery.gallery"},
               **{str(path): ast.parse(path.read_text()) for path in sorted((ROOT / "tests").rglob("*.py"))}}
    offenders = [f"{name}:{node.lineno}: .{node.attr}" for name, tree in sources.items() for node in ast.walk(tree)
                 if isinstance(node, ast.Attribute) and node.attr in private
                 and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]
    assert not offenders, "\n".join(offenders)


def test_no_module_imports_or_reads_another_modules_private_names():
    offenders = []
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module in MODULES:
                offenders += [f"{name}:{node.lineno}: from {node.module} import {alias.name}" for alias in node.names
                              if alias.name.startswith("_") and not alias.name.startswith("__")]
            elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                  and not node.attr.startswith("__") and _is_module_alias(tree, node.value.id)):
                offenders.append(f"{name}:{node.lineno}: {node.value.id}.{node.attr}")
    assert not offenders, "\n".join(offenders)


def _is_module_alias(tree: ast.Module, name: str) -> bool:
    """Whether `name` is bound by an import of a product module in `tree`."""
    return any(isinstance(node, (ast.Import, ast.ImportFrom)) and any(
        (alias.asname or alias.name.split(".")[0]) == name and (
            isinstance(node, ast.Import) or f"{node.module}.{alias.name}" in MODULES)
        for alias in node.names) for node in ast.walk(tree))


def test_only_the_registry_names_a_backend():
    from faceid.gallery.index.backend import BACKENDS

    names = set(BACKENDS.names())
    assert names >= {"faiss", "milvus"}
    allowed = defaultdict(set)  # the string nodes of each module's `register(...)` calls
    for name, tree in TREES.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register":
                allowed[name] |= {id(arg) for arg in node.args}
    offenders = [f"{name}:{node.lineno}: {node.value!r}" for name, tree in TREES.items()
                 if name != "faceid.gallery.index.backend" for node in ast.walk(tree)
                 if isinstance(node, ast.Constant) and node.value in names and id(node) not in allowed[name]]
    assert not offenders, "a backend is named outside its registration:\n" + "\n".join(offenders)


def test_the_backbone_registry_imports_no_torchvision():
    """torchvision's model zoo pulls in torch._dynamo: seconds of start-up for every command that loads a model.
    Only building a torchvision ResNet imports it."""
    import subprocess
    import sys

    code = "import sys, faceid.backbones; print('torchvision' in sys.modules, 'torch._dynamo' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"], result.stdout
