"""The import structure: no module imports itself back through others (lazy imports in functions
count too: they are dependencies all the same), and the packages that were once tangled stay apart."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The product's folders and their import names (pyproject.toml's package-dir).
FOLDERS = {"gkd_deploy": ROOT / "gkd_deploy", "gkd_deploy.cli": ROOT / "cli",
           "gkd_deploy.exporters": ROOT / "exporters", "gkd_deploy.calib": ROOT / "calib"}


def _imports() -> dict[str, set[str]]:
    """module -> the gkd_deploy modules it imports (a package's name stands for its __init__)."""
    modules = {}
    for prefix, folder in FOLDERS.items():
        for file in folder.rglob("*.py"):
            parts = [p for p in file.relative_to(folder).with_suffix("").parts if p != "__init__"]
            modules[".".join([prefix, *parts])] = file
    graph: dict[str, set[str]] = {}
    for name, file in modules.items():
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            targets |= {c for c in candidates if c in modules and c != name}
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _is_package_init(module: str, graph: dict[str, set[str]]) -> bool:
    return any(other.startswith(module + ".") for other in graph)


def test_no_module_imports_itself_back():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the finder finds
    graph = _imports()
    # A package's __init__ re-exporting its modules is not a dependency cycle of the modules.
    graph = {name: {t for t in targets if not _is_package_init(t, graph)} for name, targets in graph.items()
             if not _is_package_init(name, graph)}
    assert _cycles(graph) == []


def test_once_tangled_packages_depend_one_way():
    graph = _imports()

    def depends(a: str, b: str) -> bool:
        return any(t.startswith(b) for name, targets in graph.items() if name.startswith(a) for t in targets)

    for lower, upper in [("gkd_deploy.runtime", "gkd_deploy.evaluation"), ("gkd_deploy.data.base", "gkd_deploy.data.datasets"),
                         ("gkd_deploy.benchmark.plot", "gkd_deploy.benchmark.report"),
                         ("gkd_deploy.training", "gkd_deploy.evaluation.validation"),
                         ("gkd_deploy.evaluation.runner", "gkd_deploy.evaluation.validation"),
                         ("gkd_deploy.evaluation.instances", "gkd_deploy.evaluation.validation")]:
        assert not depends(lower, upper), f"{lower} imports {upper}"
    assert depends("gkd_deploy.evaluation", "gkd_deploy.runtime")  # the direction that stays


def test_the_edge_runtime_needs_no_torch_module_of_ours():
    """The ONNX Runtime predictor, its metadata, the precision table and the settings the command line
    makes before it imports torch import nothing that needs torch."""
    graph = _imports()
    torch_free = {"gkd_deploy.runtime.onnxruntime_backend", "gkd_deploy.runtime.metadata", "gkd_deploy.runtime.base",
                  "gkd_deploy.runtime.agreement", "gkd_deploy.precision", "gkd_deploy.run", "gkd_deploy.devices",
                  "gkd_deploy.models.config", "gkd_deploy.models.decoder_options", "gkd_deploy.size",
                  "gkd_deploy.evaluation.settings", "gkd_deploy.runtime.cuda_memory",
                  "gkd_deploy.runtime.tensorrt_backend"}
    for module in torch_free:
        file = next(FOLDERS["gkd_deploy"].rglob(module.split(".", 1)[1].replace(".", "/") + ".py"))
        top_level = [n for n in ast.parse(file.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name for n in top_level if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in top_level if isinstance(n, ast.ImportFrom) and n.module}
        assert not {"torch", "onnx"} & {name.split(".")[0] for name in names}, module
        # training.config, sskd.config: the run folder reads its typed config back; those modules
        # import only errors and each other at load time (their checks load the zoo when they run).
        assert graph[module] <= torch_free | {"gkd_deploy.errors", "gkd_deploy.data.classes", "gkd_deploy.fileio",
                                              "gkd_deploy", "gkd_deploy.data", "gkd_deploy.training.config",
                                              "gkd_deploy.sskd.config"}, module
