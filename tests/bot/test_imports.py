"""The shape of the bot package's imports.

- The chat processes stay light: no module of the bot package imports torch or diffusers.
- No import cycle among bot modules (read from the source with ``ast``; imports under
  ``if TYPE_CHECKING:`` do not run, so they do not count).
- The workflow desks do not know the service: only the service itself and the modules that
  build one (the platforms' command lines, the test chat) name ``BotService``.
- Redis is called only from state classes (files named ``state.py``).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path

from engine.settings import REPO_ROOT

BOT = REPO_ROOT / "bot"

PROBE = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    import bot
    names = [m.name for m in pkgutil.walk_packages(bot.__path__, "bot.")]
    for name in names:
        importlib.import_module(name)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "diffusers"))
    print(len(names), "modules;", "heavy:", heavy)
    sys.exit(1 if heavy else 0)
    """
)

# The modules that build a BotService today (besides bot/service.py, which defines it).
BUILDS_THE_SERVICE = frozenset(
    {
        "bot/adapters/discord/cli.py",
        "bot/adapters/shell/cli.py",
        "bot/adapters/slack/cli.py",
        "bot/testing/chat.py",
    }
)


def test_importing_every_bot_module_loads_neither_torch_nor_diffusers():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heavy: []" in done.stdout


# -- import cycles ---------------------------------------------------------------------------


def test_no_bot_modules_import_each_other_in_a_cycle():
    graph = import_graph(bot_sources())
    cycles = find_cycles(graph)
    assert not cycles, "import cycles among bot modules:\n" + "\n".join(
        "  " + " -> ".join(cycle) for cycle in cycles
    )


def test_the_cycle_finder_finds_a_cycle_in_a_hand_built_graph():
    graph = {"a": {"b"}, "b": {"c", "d"}, "c": {"a"}, "d": set(), "e": {"a"}, "f": {"f"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["f", "f"]]
    assert find_cycles({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def test_the_import_reader_counts_what_runs_and_skips_what_only_type_checkers_see():
    modules = {
        "bot": True,
        "bot.jobs": True,
        "bot.jobs.meta": False,
        "bot.jobs.resolve": False,
        "bot.grammar": True,
        "bot.grammar.parse": False,
        "bot.service": False,
        "bot.state": False,
    }
    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        import redis
        from bot.jobs import meta
        from . import resolve
        if TYPE_CHECKING:
            from bot.service import BotService
        else:
            import bot.state

        def later():
            from bot.grammar.parse import parse
        """
    )
    edges = module_imports("bot.jobs.delivery", source, is_package=False, modules=modules)
    # Not bot.jobs nor bot: delivery's own packages have run before it; not bot.service:
    # only type checkers import it. bot.grammar's __init__ runs before bot.grammar.parse.
    assert edges == {
        "bot.jobs.meta",
        "bot.jobs.resolve",
        "bot.state",
        "bot.grammar",
        "bot.grammar.parse",
    }


# -- BotService ------------------------------------------------------------------------------


def test_no_bot_module_but_the_service_and_its_builders_names_bot_service():
    offenders = []
    for path, source in bot_sources().items():
        if path == "bot/service.py" or path in BUILDS_THE_SERVICE:
            continue
        named = {
            getattr(node, "lineno", 0)
            for node in ast.walk(ast.parse(source))
            if _names_bot_service(node)
        }
        for number, line in enumerate(source.splitlines(), start=1):
            if number in named or re.search(r"\bBotService\b", line):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert not offenders, "modules naming BotService:\n" + "\n".join(offenders)


def test_every_module_allowed_to_name_bot_service_builds_one():
    sources = bot_sources()
    idle = [path for path in BUILDS_THE_SERVICE if "BotService.build(" not in sources[path]]
    assert not idle, f"allowed to name BotService but build none (drop them from the list): {idle}"


def _names_bot_service(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id == "BotService"
    if isinstance(node, ast.Attribute):
        return node.attr == "BotService"
    if isinstance(node, ast.alias):
        return "BotService" in (node.name, node.asname)
    return False  # strings (annotations, docstrings): the source text check


# -- Redis -----------------------------------------------------------------------------------

REDIS_RECEIVER = re.compile(r"(?:^|\.)_*redis$")


def test_no_bot_module_calls_redis_outside_a_state_class():
    offenders = []
    for path, source in bot_sources().items():
        if Path(path).name == "state.py":
            continue
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = ast.unparse(node.func.value)
            if REDIS_RECEIVER.search(receiver) or node.func.attr == "pipeline":
                offenders.append((path, node.lineno, lines[node.lineno - 1].strip()))
    assert not offenders, "Redis called outside a state.py:\n" + "\n".join(
        f"{path}:{number}: {line}" for path, number, line in sorted(offenders)
    )


# -- reading the package ---------------------------------------------------------------------


def bot_sources() -> dict[str, str]:
    """Every bot module's source, by path relative to the repository root."""
    return {
        path.relative_to(REPO_ROOT).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(BOT.rglob("*.py"))
    }


def module_name(path: str) -> tuple[str, bool]:
    """``bot/jobs/meta.py`` -> (``bot.jobs.meta``, False); ``bot/jobs/__init__.py`` ->
    (``bot.jobs``, True)."""
    parts = list(Path(path).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def import_graph(sources: Mapping[str, str]) -> dict[str, set[str]]:
    """Module -> the bot modules that importing it runs (directly)."""
    named = dict(module_name(path) for path in sources)
    return {
        module_name(path)[0]: module_imports(
            module_name(path)[0], source, is_package=module_name(path)[1], modules=named
        )
        for path, source in sources.items()
    }


def module_imports(
    module: str, source: str, *, is_package: bool, modules: Mapping[str, bool]
) -> set[str]:
    """The bot modules that running ``module``'s source imports: every import statement but
    those under ``if TYPE_CHECKING:``, ``from X import name`` read as ``X.name`` where that is
    a module, and each target's packages too (their ``__init__`` runs first) except the
    packages ``module`` itself lives in. ``modules``: every known module -> is a package."""
    package = module if is_package else module.rpartition(".")[0]
    own = _ancestors(module) | {module}
    targets: set[str] = set()
    for node in _running_imports(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = _absolute(node.module, node.level, package)
        targets.add(base)
        targets.update(f"{base}.{alias.name}" for alias in node.names)
    edges = set()
    for target in targets:
        if target not in modules:
            continue
        for name in {target} | _ancestors(target):
            if name not in own and name in modules:
                edges.add(name)
    return edges


def _running_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement of ``tree`` that runs: all but the bodies of
    ``if TYPE_CHECKING:`` (their ``else:`` does run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return ast.unparse(test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


def _absolute(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    base = package.split(".")
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _ancestors(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:k]) for k in range(1, len(parts))}


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component that has one, each as a chain
    that starts and ends on the component's first module in sorted order."""
    cycles = []
    for component in _components(graph):
        start = min(component)
        path = _shortest_path(graph, start, start, within=component)
        if path is not None:
            cycles.append(path)
    return sorted(cycles)


def _components(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components (iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                found.append(component)
    return found


def _shortest_path(
    graph: Mapping[str, set[str]], start: str, goal: str, *, within: set[str]
) -> list[str] | None:
    """Breadth first from ``start``'s successors to ``goal``, inside ``within``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph.get(node, ())):
            if child not in within or child in came_from:
                continue
            came_from[child] = node
            if child == goal:
                path = [goal]
                while path[-1] != start or len(path) == 1:
                    path.append(came_from[path[-1]])
                return path[::-1]
            queue.append(child)
    return None
