"""The readers the docker/ tests rely on decide as the Docker engine does, on cases where a
naive reading would be wrong."""

from __future__ import annotations

from tests.docker.reading import (
    Instruction,
    arg_defaults,
    copy_sources,
    env_pairs,
    exec_form,
    final_stage,
    healthcheck_command,
    ignored,
    instructions,
    substitute,
)


def test_continued_instructions_are_joined_and_comments_inside_them_dropped(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM a:1.0.0 AS build\nRUN one \\\n    # a comment\n    two\n"
        'FROM b:2.0.0\nARG UID=1000\nUSER ${UID}\nCMD ["x", "y"]\n'
    )
    items = instructions(dockerfile)
    assert [(i.keyword, i.stage) for i in items] == [
        ("FROM", 0),
        ("RUN", 0),
        ("FROM", 1),
        ("ARG", 1),
        ("USER", 1),
        ("CMD", 1),
    ]
    assert items[1].args.split() == ["one", "two"]
    last = final_stage(items)
    assert last[0].args == "b:2.0.0"
    assert substitute(last[2].args, arg_defaults(last)) == "1000"
    assert exec_form(last[3].args) == ["x", "y"]


def test_shell_form_commands_run_under_a_shell():
    assert exec_form("proofroom worker") == ["/bin/sh", "-c", "proofroom worker"]
    assert healthcheck_command('--interval=5s CMD ["python", "h.py"]') == ["python", "h.py"]
    assert healthcheck_command("NONE") is None


def test_env_in_both_forms_and_copy_from_a_stage():
    assert env_pairs("A=1 B='two words'") == [("A", "1"), ("B", "two words")]
    assert env_pairs("TOKEN abc def") == [("TOKEN", "abc def")]
    assert copy_sources(Instruction("COPY", "--chown=1 a b ./", 0)) == ["a", "b"]
    assert copy_sources(Instruction("COPY", "--from=wheel /wheels /wheels", 0)) == []


def test_dockerignore_last_match_wins_and_parents_count():
    allowlist = ["*", "!bot/", "!docker/healthcheck.py", "**/__pycache__"]
    assert ignored(".env", allowlist)
    assert ignored("data/artifacts/x.png", allowlist)
    assert not ignored("bot/cli.py", allowlist)
    assert ignored("bot/__pycache__/cli.cpython-311.pyc", allowlist)
    assert not ignored("docker/healthcheck.py", allowlist)
    assert ignored("docker/compose.yaml", allowlist)
    # A denylist without the allowlist's "*" keeps what it does not name.
    assert not ignored(".env", ["data", ".venv"])
    assert ignored("data/x", ["data", ".venv"])
