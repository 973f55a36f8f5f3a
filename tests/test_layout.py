"""The house rules of DESIGN.md §1 that a test can hold: no import circles inside llmie, the backend
protocol imports no implementation, the CLI is a package of thin modules, one resolver per concept."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "llmie"


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> list[tuple[str, list[str], int]]:
    """(module, imported names, relative level) of every import, at any depth, outside TYPE_CHECKING."""
    found = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((a.name, [], 0) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", [a.name for a in child.names], child.level))
            walk(child)

    walk(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> llmie modules it imports (function-level imports count: a lazy circle is still a circle;
    importing a.b.c also runs the package a.b's __init__; a module's own parent packages are left out)."""
    mods = _modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        for mod, names, level in _imports(ast.parse(f.read_text(encoding="utf-8"))):
            if level:
                base = pkg.split(".")[: len(pkg.split(".")) - level + 1]
                mod = ".".join(base + ([mod] if mod else []))
            if not mod.startswith("llmie"):
                continue
            for target in [mod] + [f"{mod}.{n}" for n in names]:
                t = resolve(target)
                chain = t.split(".")
                for i in range(2, len(chain) + 1):  # the target and the packages above it
                    dep = ".".join(chain[:i])
                    if dep != m and not m.startswith(dep + "."):
                        graph[m].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert cycles(import_graph()) == []


def test_the_detector_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_backend_protocol_imports_no_implementation():
    g = import_graph()
    assert not {d for d in g["llmie.backends.base"] if d.startswith("llmie.backends.")}
    for impl in ("hf", "vllm", "openai", "cache"):
        assert "llmie.backends.factory" not in g[f"llmie.backends.{impl}"]


def test_engine_and_benches_import_no_method_package():
    g = import_graph()
    methods = ("llmie.projection", "llmie.massie", "llmie.topro", "llmie.transfusion")
    for m in ("llmie.scale.engine", "llmie.scale.jobs", "llmie.registry"):
        assert not {d for d in g[m] if d.startswith(methods)}, m


def test_method_packages_do_not_import_each_other_privately():
    """projection's MIPRO program uses optimize's generic API (optimize.lm/program), not run.py."""
    g = import_graph()
    assert "llmie.optimize.run" not in g["llmie.projection.mipro"]


def test_cli_is_a_package_of_thin_modules():
    cli = PKG / "cli"
    assert (cli / "__init__.py").is_file() and (cli / "__main__.py").is_file() and not (PKG / "cli.py").exists()
    for f in cli.glob("*.py"):
        assert len(f.read_text(encoding="utf-8").splitlines()) < 260, f
        tree = ast.parse(f.read_text(encoding="utf-8"))
        top = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        # command functions do not shadow library names (project/extract/report/... are library functions)
        assert not top & {"project", "extract", "report", "score", "synth", "export", "optimize", "sft", "dpo",
                          "train_projector", "train_aligner"}, (f, top)


def test_one_prompt_resolver_and_one_settings_home():
    """`prompts_dir` and `os.environ[...LLMIE_...]` live in llmie/prompts.py and llmie/settings.py only."""
    for f in PKG.rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        rel = f.relative_to(PKG).as_posix()
        if rel not in ("prompts.py", "settings.py"):
            assert "def prompts_dir" not in text, rel
            assert 'environ.get("LLMIE_' not in text and "environ['LLMIE_" not in text, rel
