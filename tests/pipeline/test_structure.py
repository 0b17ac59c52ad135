"""The package's shape: no module-level import circle (the coordinator and the block process share the
protocol module instead of importing each other), and only pipeline/ and search/distributed.py (the search's
collectives) import torch.distributed."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "sedona_runtime"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """Modules imported at module level (what runs on import; imports inside functions are lazy)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names


def _graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in PKG.rglob("*.py")}
    return {m: {n for n in _top_level_imports(p) if n in files and n != m} for m, p in files.items()}


def test_no_module_level_import_circle_in_the_package():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # The two ends of the pipeline meet in the protocol module, never in each other.
    assert "sedona_runtime.pipeline.coordinator" not in graph["sedona_runtime.pipeline.worker"]
    assert "sedona_runtime.pipeline.worker" not in graph["sedona_runtime.pipeline.coordinator"]


# The data-parallel search keeps every collective in one module of its own.
DISTRIBUTED_OK = ("sedona_runtime.pipeline", "sedona_runtime.search.distributed")


def test_only_the_pipeline_and_the_search_collectives_import_torch_distributed():
    outside = sorted(_module(p) for p in PKG.rglob("*.py")
                     if not _module(p).startswith(DISTRIBUTED_OK)
                     and any(n.startswith("torch.distributed") for n in _top_level_imports(p)))
    assert not outside, outside


def _calls(path: Path) -> set[str]:
    """Names of the functions `path` calls (the last part of `a.b.f(...)` or `f(...)`)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", ""))
    return out


def test_only_the_builder_builds_networks():
    # A network from its parts (model, heads, blocks) is built in one place, training/build.py: the trainer,
    # every pipeline block, the coordinator's meta build and trained runs call build_network (three copies
    # had drifted: the blocks resolved `sedona:K --retarget` differently from the trainer).
    builder = "sedona_runtime.training.build"
    others = sorted(_module(p) for p in PKG.rglob("*.py") if _module(p) != builder
                    and {"build_blocks", "head_spec_fn"} & _calls(p))
    assert not others, f"build networks with {builder}.build_network, not from their parts: {others}"
    callers = {_module(p) for p in PKG.rglob("*.py") if "build_network" in _calls(p)}
    assert {"sedona_runtime.training.greedy", "sedona_runtime.pipeline.worker",
            "sedona_runtime.trained.load"} <= callers


# What turns a decoupling's spec string (`sedona:2`, a file or shipped name, `--retarget`) or the training
# options into a run: the resolver's business, on the coordinator (and the trainer) only.
RESOLVING = {"resolve_for_model", "resolve_decoupling", "load_decoupling", "sedona_decoupling", "method_of",
             "resolve_defaults", "resolve_run", "build_parts", "retarget"}
# Modules that build from a resolved RunSpec and must never resolve one: the builder, a block process, a
# trained run (evaluate, export).
BUILD_FROM_SPEC = ("sedona_runtime.training.build", "sedona_runtime.pipeline.worker", "sedona_runtime.trained.load")


def test_blocks_and_the_builder_never_resolve_a_decoupling_spec_string():
    # A block rebuilds its network from the coordinator's RunSpec (the resolved Decoupling itself), so the
    # decoupling resolved once is the one every block builds, whatever files exist on the blocks' machines.
    for module in BUILD_FROM_SPEC:
        path = PKG.parent / (module.replace(".", "/") + ".py")
        called = RESOLVING & _calls(path)
        assert not called, f"{module} resolves ({sorted(called)}): build from the run's spec (training.spec)"
        imported = {n.rsplit(".", 1)[-1] for n in _all_imports(path)}
        assert not RESOLVING & imported, f"{module} imports {sorted(RESOLVING & imported)}"
    # The process a block runs in: no resolution between its entry (the CLI's block path, run_pipeline's
    # branch for rank != 0) and the network: run_stage only, with the spec of the setup handshake.
    launcher = (PKG / "pipeline" / "launcher.py").read_text()
    branch = launcher[launcher.index("    if world.rank != 0:"):launcher.index("    pcfg = resolve(pcfg)")]
    assert "run_stage(" in branch and not any(name + "(" in branch for name in RESOLVING | {"resolve"}), branch


def _all_imports(path: Path) -> set[str]:
    """Every `from X import a` (as X.a) and `import X` in `path`, lazy ones inside functions too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return names
