"""Reading docker/ without Docker: Dockerfile instructions, exec-form commands, ARG
substitution, and which paths a .dockerignore leaves in the build context.

No Docker engine runs where the tests run, so the files are read the way the engine reads
them, for the parts the tests check (not a full Dockerfile grammar).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from engine.settings import REPO_ROOT

DOCKER_DIR = REPO_ROOT / "docker"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its keyword (upper case), its argument text with line
    continuations joined, and the index of the build stage it belongs to (0 = first FROM)."""

    keyword: str
    args: str
    stage: int


def instructions(path: Path) -> list[Instruction]:
    """The instructions of the Dockerfile at ``path``. Comment lines are dropped also inside
    a continued instruction, as the engine does."""
    result: list[Instruction] = []
    pending = ""
    stage = -1
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, args.strip(), stage))
    return result


def final_stage(items: list[Instruction]) -> list[Instruction]:
    """The instructions of the last stage: what the image is made of."""
    last = max(item.stage for item in items)
    return [item for item in items if item.stage == last]


def exec_form(args: str) -> list[str]:
    """The argument list of an exec-form instruction (``CMD ["a", "b"]``); a shell-form one
    becomes ``["/bin/sh", "-c", args]`` as the engine runs it."""
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(part) for part in value]
    return ["/bin/sh", "-c", args]


def healthcheck_command(args: str) -> list[str] | None:
    """The command of a ``HEALTHCHECK [OPTIONS] CMD ...`` instruction; None for ``NONE``."""
    if args.strip().upper() == "NONE":
        return None
    match = re.search(r"(?:^|\s)CMD\s+(.*)$", args)
    assert match, f"HEALTHCHECK without CMD: {args}"
    return exec_form(match.group(1).strip())


def arg_defaults(items: list[Instruction]) -> dict[str, str]:
    """``ARG NAME=default`` values, for substituting ``${NAME}`` in later instructions."""
    defaults = {}
    for item in items:
        if item.keyword == "ARG" and "=" in item.args:
            name, _, value = item.args.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def substitute(text: str, values: dict[str, str]) -> str:
    """``text`` with ``$NAME`` and ``${NAME}`` replaced from ``values``."""
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text
    )


def env_pairs(args: str) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of an ``ENV`` instruction, in both of its forms."""
    words = shlex.split(args)
    if words and "=" not in words[0]:  # legacy form: ENV NAME value with spaces
        return [(words[0], " ".join(words[1:]))]
    pairs = (word.partition("=") for word in words if "=" in word)
    return [(name, value) for name, _, value in pairs]


def copy_sources(item: Instruction) -> list[str]:
    """The context paths a ``COPY``/``ADD`` reads; empty when it copies from another stage
    (``--from=``), whose files do not come from the build context, and for any other
    instruction."""
    if item.keyword not in ("COPY", "ADD"):
        return []
    words = shlex.split(item.args)
    if any(word.startswith("--from=") for word in words):
        return []
    paths = [word for word in words if not word.startswith("--")]
    return paths[:-1]  # the last one is the destination


# -- .dockerignore --------------------------------------------------------------------------


def ignore_patterns(path: Path) -> list[str]:
    """The patterns of a .dockerignore file, comments and blank lines dropped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves out ``path`` (relative, ``/``-separated). As the
    engine decides: the last pattern that matches the path or one of its parent folders
    wins, and ``!`` makes a pattern bring paths back."""
    result = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = (raw[1:] if negate else raw).strip().strip("/")
        if _matches(pattern, path):
            result = not negate
    return result


def _matches(pattern: str, path: str) -> bool:
    regex = re.compile(_pattern_regex(pattern))
    parts = path.split("/")
    return any(regex.fullmatch("/".join(parts[:end])) for end in range(1, len(parts) + 1))


def _pattern_regex(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out
