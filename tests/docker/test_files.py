"""docker/ read without Docker (no engine runs here): the compose file, the Dockerfiles and
their build contexts say what docs/deploy.md promises.

- Redis keeps jobs across restarts (append-only file on a named volume); the worker gets a GPU
  and time to finish its job when stopped; every service has a health check.
- Every base image is pinned to an exact version; every image runs as a non-root user; no
  secret is written into an image or the compose file, and .env never enters a build context.
- The bot image is the chat side only: nothing it installs pulls torch or diffusers.
- Every container runs a real ``proofroom`` subcommand with arguments it accepts, and its
  health check is the one for what it runs.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any

import pytest
import yaml

from bot.cli import SUBCOMMANDS
from engine.settings import REPO_ROOT, Settings
from tests.docker.reading import (
    DOCKER_DIR,
    Instruction,
    arg_defaults,
    copy_sources,
    env_pairs,
    exec_form,
    final_stage,
    healthcheck_command,
    ignore_patterns,
    ignored,
    instructions,
    substitute,
)

COMPOSE_FILE = DOCKER_DIR / "compose.yaml"
DOCKERFILES = sorted(p for p in DOCKER_DIR.glob("Dockerfile.*") if p.suffix != ".dockerignore")
# Services that run the project (the others are Redis and the dashboard).
PROOFROOM_SERVICES = ("worker", "slack", "discord", "serve")
# Packages of the worker side; none may reach the chat image.
WORKER_PACKAGES = frozenset(
    {"torch", "torchvision", "diffusers", "transformers", "accelerate", "peft", "xformers"}
    | {"triton", "opencv-python-headless", "open-clip-torch"}
)
# Variable names that hold credentials; checked against the real ones in .env.example below.
SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|PRIVATE_?KEY|(^|_)KEY$", re.I)
# An exact version in an image tag: major.minor.patch (7.4.2, 3.11.13-slim-bookworm).
EXACT_VERSION = re.compile(r"\d+\.\d+\.\d+")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def dockerfile_of(service: dict[str, Any]) -> Path:
    """The Dockerfile a service with ``build:`` is built from."""
    build = service["build"]
    context = (DOCKER_DIR / build["context"]).resolve()
    return context / build.get("dockerfile", "Dockerfile")


def command_of(service: dict[str, Any]) -> list[str]:
    """What a built service's container runs: its compose command, else the image's CMD
    (after the image's ENTRYPOINT, if it has one)."""
    stage = final_stage(instructions(dockerfile_of(service)))
    entrypoint = [exec_form(i.args) for i in stage if i.keyword == "ENTRYPOINT"]
    cmd = [exec_form(i.args) for i in stage if i.keyword == "CMD"]
    command = service.get("command")
    if isinstance(command, str):
        command = shlex.split(command)
    return (entrypoint[-1] if entrypoint else []) + (command or cmd[-1])


def healthcheck_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DOCKER_DIR / "healthcheck.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the compose file -------------------------------------------------------------------------


def test_compose_file_has_every_service_and_declares_its_named_volumes(compose, services):
    assert {"redis", "worker", "slack", "discord", "rq-dashboard"} <= set(services)
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source")
            if source and not source.startswith((".", "/", "~")):  # a named volume
                assert source in declared, f"{name} mounts undeclared volume {source}"


def test_bots_are_opt_in_by_profile_and_the_core_is_not(services):
    assert services["slack"]["profiles"] == ["slack"]
    assert services["discord"]["profiles"] == ["discord"]
    assert services["rq-dashboard"]["profiles"] == ["dashboard"]
    # `docker compose up` without a profile starts Redis and the worker.
    assert "profiles" not in services["redis"] and "profiles" not in services["worker"]


def test_redis_keeps_jobs_in_an_append_only_file_on_a_named_volume(compose, services):
    redis = services["redis"]
    command = redis["command"]
    words = shlex.split(command) if isinstance(command, str) else command
    assert words[0] == "redis-server"
    options = dict(zip(words[1::2], words[2::2], strict=False))
    assert options.get("--appendonly") == "yes"
    assert options.get("--maxmemory-policy", "noeviction") == "noeviction"
    data = [v.split(":") for v in redis["volumes"] if v.split(":")[1] == "/data"]
    assert data, "Redis's /data (where the append-only file lives) is not mounted"
    assert data[0][0] in (compose.get("volumes") or {}), "/data is not a named volume"


def test_worker_reserves_an_nvidia_gpu(services):
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d["capabilities"]]
    assert gpus, devices
    assert gpus[0].get("count") == 1 or len(gpus[0].get("device_ids", [])) == 1


def test_stopping_a_worker_waits_for_its_job(services):
    """engine/worker.py: the first SIGTERM lets the running job finish. Docker must wait at
    least the default job timeout before its SIGKILL, or a stop cuts renders short."""
    grace = services["worker"]["stop_grace_period"]
    match = re.fullmatch(r"(\d+)([smh])", grace)
    assert match, f"stop_grace_period {grace!r}: write it as 900s, 15m or 1h"
    seconds = int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]
    assert seconds >= Settings.model_fields["job_timeout_s"].default


def test_every_service_has_a_health_check(services):
    for name, service in services.items():
        check = service.get("healthcheck")
        if check is None and "build" in service:  # the image's own HEALTHCHECK
            stage = final_stage(instructions(dockerfile_of(service)))
            checks = [healthcheck_command(i.args) for i in stage if i.keyword == "HEALTHCHECK"]
            assert checks and checks[-1], f"{name} has no health check"
            continue
        assert check, f"{name} has no health check"
        assert not check.get("disable") and check.get("test"), f"{name}: {check}"
    for dockerfile in DOCKERFILES:  # and each image checks itself outside compose too
        stage = final_stage(instructions(dockerfile))
        assert any(i.keyword == "HEALTHCHECK" for i in stage), dockerfile.name


def test_bots_and_workers_share_the_data_folder_and_mount_every_folder_they_are_told(
    services,
):
    data_sources = set()
    for name in PROOFROOM_SERVICES:
        service = services[name]
        env = service["environment"]
        mounts = {}
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            mounts[target] = source
        for variable, path in env.items():
            if variable.endswith("_DIR") or variable == "HF_HOME":
                inside = [t for t in mounts if path == t or path.startswith(t.rstrip("/") + "/")]
                assert inside, f"{name}: {variable}={path} is not in a mounted folder"
        data_sources.add((DOCKER_DIR / mounts[env["PROOFROOM_DATA_DIR"]]).resolve())
        assert env["REDIS_URL"].startswith("redis://redis:"), f"{name}: {env['REDIS_URL']}"
        assert "redis" in service["depends_on"]
    assert len(data_sources) == 1, data_sources
    dashboard_env = services["rq-dashboard"]["environment"]
    assert dashboard_env["RQ_DASHBOARD_REDIS_URL"].startswith("redis://redis:")


def test_settings_come_from_the_repository_env_file(services):
    for name in PROOFROOM_SERVICES:
        env_file = services[name]["env_file"]
        paths = [env_file] if isinstance(env_file, str) else env_file
        assert [(DOCKER_DIR / p).resolve() for p in paths] == [REPO_ROOT / ".env"], name


# -- images -----------------------------------------------------------------------------------


def test_every_base_image_is_pinned_to_an_exact_version(services):
    images = [("compose", s["image"]) for s in services.values() if "image" in s]
    for dockerfile in DOCKERFILES:
        items = instructions(dockerfile)
        # Names given with FROM ... AS name; a later FROM name starts from that stage.
        stages = {
            words[-1]
            for i in items
            if i.keyword == "FROM" and (words := i.args.split())[-2:-1] in (["AS"], ["as"])
        }
        for item in items:
            if item.keyword == "FROM":
                image = [w for w in item.args.split() if not w.startswith("--")][0]
                if image not in stages:  # FROM an earlier stage is not a base image
                    images.append((dockerfile.name, image))
    assert len(images) >= len(DOCKERFILES) + 1
    for where, image in images:
        if "@sha256:" in image:
            continue
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest" and EXACT_VERSION.search(tag), f"{where}: {image} is not exact"


def test_the_dashboard_packages_are_pinned():
    stage = final_stage(instructions(DOCKER_DIR / "Dockerfile.dashboard"))
    installs = [pip_requirements(i) for i in stage if i.keyword == "RUN"]
    requirements = [r for group in installs for r in group]
    assert requirements
    assert all("==" in r for r in requirements), requirements


def test_images_run_as_a_non_root_user():
    for dockerfile in DOCKERFILES:
        stage = final_stage(instructions(dockerfile))
        keywords = [i.keyword for i in stage]
        assert "USER" in keywords and "CMD" in keywords, dockerfile.name
        last_user = max(n for n, k in enumerate(keywords) if k == "USER")
        assert last_user < keywords.index("CMD"), f"{dockerfile.name}: USER after CMD"
        user = substitute(stage[last_user].args, arg_defaults(stage)).split(":")[0]
        assert user not in ("root", "0", ""), f"{dockerfile.name} runs as {user}"


def test_compose_does_not_switch_back_to_root(services):
    for name, service in services.items():
        assert str(service.get("user", "x")).split(":")[0] not in ("root", "0"), name


def test_secret_names_match_the_real_credentials():
    """The pattern below catches every token the project reads (.env.example names them)."""
    text = (REPO_ROOT / ".env.example").read_text()
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.M)
    credentials = {
        n for n in names if n.startswith(("SLACK_", "DISCORD_")) and SECRET_NAME.search(n)
    }
    assert {"SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_TOKEN"} <= (
        credentials
    )
    assert not SECRET_NAME.search("PROOFROOM_KEY_PREFIX")


def test_no_secret_is_baked_into_an_image_or_the_compose_file(services):
    for dockerfile in DOCKERFILES:
        for item in instructions(dockerfile):
            if item.keyword == "ENV":
                for name, value in env_pairs(item.args):
                    assert not (SECRET_NAME.search(name) and value), f"{dockerfile.name}: {name}"
            if item.keyword == "ARG":
                name, _, value = item.args.partition("=")
                assert not (SECRET_NAME.search(name) and value), f"{dockerfile.name}: {name}"
            if item.keyword in ("COPY", "ADD"):
                for source in copy_sources(item):
                    assert PurePosixPath(source).name != ".env", f"{dockerfile.name} copies .env"
                    assert source not in (".", "./"), f"{dockerfile.name} copies the whole context"
    for name, service in services.items():
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(item.partition("=")[::2] for item in environment)
        build_args = (service.get("build") or {}).get("args") or {}
        for variable, value in {**environment, **build_args}.items():
            assert not (SECRET_NAME.search(variable) and value), f"{name}: {variable}"


@pytest.mark.parametrize("image", ["bot", "worker"])
def test_build_context_leaves_out_env_and_data_and_keeps_what_is_copied(services, image):
    dockerfile = DOCKER_DIR / f"Dockerfile.{image}"
    # BuildKit reads <Dockerfile>.dockerignore beside the Dockerfile, over the context's own.
    patterns = ignore_patterns(dockerfile.with_name(dockerfile.name + ".dockerignore"))
    for path in (".env", ".venv/bin/python", ".git/config", "data/artifacts/a.png"):
        assert ignored(path, patterns), f"{path} would be sent to the build"
    for path in ("models/big.safetensors", "loras/x.safetensors", "proofroom.egg-info/PKG-INFO"):
        assert ignored(path, patterns), f"{path} would be sent to the build"
    built = [s for s in services.values() if "build" in s and dockerfile_of(s) == dockerfile]
    assert built and all((DOCKER_DIR / s["build"]["context"]).resolve() == REPO_ROOT for s in built)
    for item in instructions(dockerfile):
        for source in copy_sources(item):
            path = REPO_ROOT / source
            assert path.exists(), f"{dockerfile.name} copies {source}, which does not exist"
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                relative = file.relative_to(REPO_ROOT).as_posix()
                if "__pycache__" in relative or relative.endswith(".pyc"):
                    continue
                assert not ignored(relative, patterns), f"{relative} is copied but not sent"


# -- the bot image stays on the chat side -------------------------------------------------------


def pip_requirements(item: Instruction) -> list[str]:
    """The requirements named by the ``pip install`` commands of a RUN instruction."""
    # "$(echo /wheels/x.whl)[extra]" is the wheel with an extra, once the shell expands it.
    text = re.sub(r"\$\(echo ([^)]*)\)", r"\1", item.args)
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in ("&&", "||", ";", "|"):
            commands.append([])
        else:
            commands[-1].append(token)
    requirements = []
    for words in commands:
        if "pip" in words and "install" in words:
            rest = words[words.index("install") + 1 :]
            skip_next = False
            for word in rest:
                if skip_next:
                    skip_next = False
                elif word in ("-c", "--constraint", "-r", "--requirement", "-e", "--editable"):
                    skip_next = True
                elif not word.startswith("-"):
                    requirements.append(word)
    return requirements


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~ ;@]", requirement, maxsplit=1)[0].strip().lower()


def project_closure(extras: set[str]) -> set[str]:
    """The names of every package that installing the project with ``extras`` asks for,
    following extras that name the project itself (``proofroom[engine]``)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]
    names: set[str] = set()
    todo, seen = list(project["dependencies"]), set()
    todo += [r for extra in extras for r in optional[extra]]
    while todo:
        requirement = todo.pop()
        name = requirement_name(requirement)
        if name == project["name"]:
            nested = re.search(r"\[(.*)\]", requirement)
            for extra in nested.group(1).split(",") if nested else []:
                if extra.strip() not in seen:
                    seen.add(extra.strip())
                    todo += optional[extra.strip()]
        else:
            names.add(name)
    return names


def test_the_bot_image_installs_the_chat_side_without_worker_packages():
    stage = final_stage(instructions(DOCKER_DIR / "Dockerfile.bot"))
    base = [i.args for i in stage if i.keyword == "FROM"][0]
    assert not re.search(r"torch|cuda|nvidia", base, re.I), base
    requirements = [r for i in stage if i.keyword == "RUN" for r in pip_requirements(i)]
    project = [r for r in requirements if "proofroom" in r or r.startswith((".", "/"))]
    assert project, f"the bot image does not install the project: {requirements}"
    extras: set[str] = set()
    for requirement in project:
        match = re.search(r"\[(.*)\]", requirement)
        extras |= {e.strip() for e in match.group(1).split(",")} if match else set()
    assert {"slack", "discord"} <= extras
    installed = project_closure(extras) | {
        requirement_name(r) for r in requirements if r not in project
    }
    assert not installed & WORKER_PACKAGES, installed & WORKER_PACKAGES
    # And the check has teeth: the worker's extra is what brings them.
    assert project_closure({"engine"}) & WORKER_PACKAGES >= {"torch", "diffusers"}


def test_the_worker_image_installs_the_engine_extra_on_the_base_images_torch():
    stage = final_stage(instructions(DOCKER_DIR / "Dockerfile.worker"))
    base = [i.args for i in stage if i.keyword == "FROM"][0]
    assert re.match(r"pytorch/pytorch:.*cuda", base), base
    runs = [i for i in stage if i.keyword == "RUN"]
    requirements = [r for i in runs for r in pip_requirements(i)]
    assert any("proofroom" in r and "engine" in r for r in requirements), requirements
    assert not any(requirement_name(r) == "torch" for r in requirements)
    assert any("--constraint" in i.args and "torch" in i.args for i in runs)


def test_importing_the_cli_loads_no_torch():
    probe = (
        "import sys, bot.cli; print(sorted(m for m in sys.modules if m in ('torch', 'diffusers')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# -- what the containers run ---------------------------------------------------------------------


def parse_subcommand(command: list[str]) -> str:
    """Check ``command`` as ``proofroom`` would: a known subcommand and arguments its own
    parser accepts; returns the subcommand."""
    assert command[0] == "proofroom", command
    name = command[1]
    assert name in SUBCOMMANDS, f"`proofroom {name}` does not exist"
    module = importlib.import_module(SUBCOMMANDS[name][0])
    parser = argparse.ArgumentParser(prog=f"proofroom {name}")
    module.add_arguments(parser)
    parser.parse_args(command[2:])  # exits (SystemExit) on an unknown option
    return name


def test_containers_run_real_proofroom_subcommands(services):
    for name in PROOFROOM_SERVICES:
        subcommand = parse_subcommand(command_of(services[name]))
        # The service a profile starts runs that platform's bot; the worker runs the worker.
        assert subcommand == (services[name].get("profiles") or ["worker"])[0], name
    for image, expected in (("bot", "slack"), ("worker", "worker")):
        stage = final_stage(instructions(DOCKER_DIR / f"Dockerfile.{image}"))
        cmd = [exec_form(i.args) for i in stage if i.keyword == "CMD"][-1]
        assert parse_subcommand(cmd) == expected


def test_health_checks_check_what_the_container_runs(services):
    health = healthcheck_module()
    for name in PROOFROOM_SERVICES:
        service = services[name]
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "python", test
        # The script is where the image puts it ...
        stage = final_stage(instructions(dockerfile_of(service)))
        copied = {shlex.split(i.args)[-1]: copy_sources(i) for i in stage if i.keyword == "COPY"}
        assert copied.get(test[2]) == ["docker/healthcheck.py"], f"{name}: {test[2]}"
        # ... and checks what runs there: the worker, or this platform's bot.
        args = health.parser().parse_args(test[3:])
        subcommand = command_of(service)[1]
        if subcommand == "worker":
            assert args.role == "worker", name
        elif subcommand == "serve":  # the service's own /healthz, on the port it listens on
            port = command_of(service)[command_of(service).index("--port") + 1]
            assert (args.role, args.url) == ("http", f"http://127.0.0.1:{port}/healthz"), name
        else:
            assert (args.role, args.platform) == ("bot", subcommand), name
    for image, expected in (("bot", ["bot", "slack"]), ("worker", ["worker"])):
        stage = final_stage(instructions(DOCKER_DIR / f"Dockerfile.{image}"))
        check = [healthcheck_command(i.args) for i in stage if i.keyword == "HEALTHCHECK"][-1]
        assert check is not None and check[2:] == expected, check


def test_readme_points_to_the_deploy_guide():
    assert (REPO_ROOT / "docs" / "deploy.md").is_file()
    assert "docs/deploy.md" in (REPO_ROOT / "README.md").read_text()
