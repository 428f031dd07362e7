"""``proofroom shell``: a chat channel in the terminal, on the embedded default.

Type ``/imagine ...`` and the thread grows below it (job card, progress bar, image paths);
``:react 2 approve`` votes on image #2. Without ``REDIS_URL`` everything runs in this
process: a worker thread on the tiny model, and the state in the data folder's private
``redis-server`` (in memory when none is installed), so an image left undecided keeps its
number and can still be voted on after a restart. ``--script FILE`` (or lines on a
non-terminal stdin) runs a session unattended, as ``make demo`` does (in memory).

Shell commands (``:help``): ``:react N VOTE [as USER]``, ``:unreact N VOTE [as USER]``,
``:user NAME``, ``:wait``, ``:exports``, ``:quit``. ``N`` is an image number (``#2``) or a
message id; ``VOTE`` is approve/reject/rerender/vary/upscale or an emoji (✅ ❌ 🔁 🔀 ⬆️ 👍 ...).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

import redis as redis_lib

from bot.adapters.shell.adapter import ShellAdapter
from bot.adapters.shell.state import ShellState
from bot.ports import VOTES, CommandEvent, MessageRef, ReactionEvent, vote_for_emoji
from bot.service import BotService
from bot.settings import BotSettings
from engine.embedded import open_chat_redis, redis_for
from engine.logs import quiet_libraries
from engine.model_folders import load_catalog
from engine.private_redis import PrivateRedisError
from engine.settings import Settings

log = logging.getLogger(__name__)

NO_WORKER_WITHOUT_REDIS = (
    "error: --no-worker needs REDIS_URL: without it the jobs stay in this process's in-memory "
    "queue, where no `proofroom worker` can see them; drop --no-worker (a worker thread "
    "renders them here) or set REDIS_URL to the Redis your workers serve"
)

PENDING_LISTED = 10  # undecided images listed at start (`/imagine review` counts them all)

SHELL_HELP = """\
  /imagine ...                 a command, as in Slack or Discord (/imagine help)
  :react N VOTE [as USER]      react on image #N: approve, reject, rerender, vary,
                               upscale (or an emoji)
  :unreact N VOTE [as USER]    take a vote back
  :user NAME                   speak as someone else from now on
  :wait                        wait until every job has finished
  :exports                     list the approved images and their sidecars
  :quit                        leave"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``proofroom shell``."""
    parser.add_argument("--script", type=Path, help="run the lines of FILE, then exit")
    parser.add_argument("--user", default=None, help="who you are in the channel")
    parser.add_argument("--channel", default="shell", help="channel name (default: shell)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where artifacts, shell images and exports go (default: ./data)",
    )
    parser.add_argument(
        "--no-worker",
        action="store_true",
        help="do not start a worker thread (needs REDIS_URL, served by a `proofroom worker`)",
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds `:wait` waits for jobs (default: 300)"
    )


def run(args: argparse.Namespace) -> int:
    """Run the shell until ``:quit``, end of input, or the end of the script."""
    settings = Settings()
    if args.data_dir is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    if args.no_worker and not settings.redis_url:
        print(NO_WORKER_WITHOUT_REDIS, file=sys.stderr)
        return 2
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        quiet_libraries()
    interactive = args.script is None and sys.stdin.isatty()
    try:
        lines: Iterable[str] = (
            args.script.read_text(encoding="utf-8", errors="replace").splitlines()
            if args.script
            else _stdin(interactive)
        )
    except OSError as exc:
        print(f"error: cannot read {args.script}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        store = open_chat_redis(settings)
    except PrivateRedisError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with (
        store,
        Shell(
            settings=settings,
            user=args.user or _whoami(),
            channel=args.channel,
            worker=not args.no_worker,
            wait_s=args.timeout,
            echo=not interactive,
            redis=store.client,
        ) as shell,
    ):
        if store.durable and not settings.redis_url:
            shell.adapter.say(f"(state kept in {store.where}: it survives a restart)")
        shell.show_pending()
        return shell.run_lines(lines)


class Shell:
    """One terminal channel: the bot service, an event pump thread, and the REPL commands."""

    def __init__(
        self,
        *,
        settings: Settings,
        user: str,
        channel: str = "shell",
        worker: bool = True,
        wait_s: float = 300.0,
        echo: bool = False,
        out: TextIO | None = None,
        bot_settings: BotSettings | None = None,
        redis: redis_lib.Redis | None = None,
    ) -> None:
        """``redis``: where the state is kept (default: :func:`redis_for`, so ``REDIS_URL``'s
        or the in-memory one; ``proofroom shell`` passes :func:`open_chat_redis`'s)."""
        self.settings = settings
        self.user, self.channel, self.wait_s, self.echo = user, channel, wait_s, echo
        self.redis = redis if redis is not None else redis_for(settings)
        self.bot_settings = bot_settings or BotSettings()
        self.memory = ShellState(
            redis=self.redis,
            key_prefix=settings.key_prefix,
            ttl_s=self.bot_settings.state_retention_s,
        )
        self.adapter = ShellAdapter(
            out=out or sys.stdout, image_dir=settings.data_dir / "shell", memory=self.memory
        )
        self.catalog = load_catalog(settings)
        self.service = BotService.build(
            adapter=self.adapter,
            settings=settings,
            bot_settings=self.bot_settings,
            redis=self.redis,
            catalog=self.catalog,
        )
        self._worker = None
        if worker:
            self.adapter.say("(starting the embedded worker and the tiny model...)")
            from engine.embedded import start_embedded_worker

            self._worker = start_embedded_worker(settings=settings, redis=self.redis)
        self._stop = threading.Event()
        self._pump = threading.Thread(
            target=self.service.pump_until,
            args=(self._stop,),
            kwargs={"block_ms": 200},
            name="shell-pump",
            daemon=True,
        )

    def __enter__(self) -> Shell:
        self._pump.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._pump.join(5)
        if self._worker is not None:
            self._worker.stop()

    def run_lines(self, lines: Iterable[str]) -> int:
        """Run each line; return 0, or 1 when a command of a script failed."""
        status = 0
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if self.echo:
                self.adapter.say(f"\n{self.user}> {line}")
            if line in (":quit", ":q", ":exit"):
                break
            if not self._handle_safely(line):
                status = 1
        if self.echo:
            self.wait()
        return status

    def handle(self, line: str) -> bool:
        """One line typed into the channel; False when it was not understood."""
        if not line.startswith(":"):
            reply = self.service.handle_command(
                CommandEvent(
                    platform=self.adapter.platform, user=self.user, channel=self.channel, text=line
                )
            )
            self.adapter.say(f"  (only you) {reply}")
            return True
        word, _, rest = line[1:].partition(" ")
        if word in ("react", "unreact"):
            return self._react(rest, added=word == "react")
        if word == "user" and rest.strip():
            self.user = rest.strip()
            self.adapter.say(f"  (you are now {self.user})")
            return True
        if word == "wait":
            return self.wait()
        if word == "exports":
            self.show_exports()
            return True
        if word == "help":
            self.adapter.say(SHELL_HELP)
            return True
        self.adapter.say(f"  unknown shell command `:{word}`; `:help` lists them")
        return False

    def _handle_safely(self, line: str) -> bool:
        """:meth:`handle`, but a failure is a sentence and the session goes on: one odd
        line must not end a session (and lose its images' numbers)."""
        try:
            return self.handle(line)
        except Exception:
            reference = uuid.uuid4().hex[:8]
            log.exception("shell line %r failed (reference %s)", line, reference)
            self.adapter.say(
                f"  something went wrong on our side (reference {reference}); "
                "the session goes on, `:help` lists the shell commands"
            )
            return False

    def wait(self) -> bool:
        """Block until every queued job has ended and been shown (or ``wait_s`` passes)."""
        deadline = time.monotonic() + self.wait_s
        while self.service.state.open_jobs(self.adapter.platform):
            if time.monotonic() > deadline:
                self.adapter.say(
                    f"  (still rendering after {self.wait_s:.0f} s; giving up waiting)"
                )
                return False
            time.sleep(0.05)
        time.sleep(0.3)  # let the pump show the last edits
        return True

    def show_pending(self) -> None:
        """List the images of this channel that an earlier session left undecided, with the
        numbers ``:react`` takes."""
        pending = self.service.state.pending_in(
            platform=self.adapter.platform, channel=self.channel
        )
        if not pending:
            return
        self.adapter.say(f"  {len(pending)} image(s) from earlier sessions wait for a decision:")
        for image in pending[-PENDING_LISTED:]:  # the latest: the ones the user remembers
            number = self.memory.number_of(image.message)
            label = f"#{number}" if number is not None else image.message.id
            self.adapter.say(
                f"    [{label}] image {image.number}/{image.of} of job {image.job_id} "
                f"(seed {image.seed}); :react {label.lstrip('#')} approve"
            )

    def show_exports(self) -> list[Path]:
        """Print (and return) the approved images and sidecars exported so far."""
        folder = self.bot_settings.export_path(self.settings)
        files = (
            sorted(folder.glob("*.png")) + sorted(folder.glob("*.json")) if folder.is_dir() else []
        )
        if not files:
            self.adapter.say("  (nothing approved yet)")
        for path in files:
            self.adapter.say(f"  exported: {path}")
        return files

    def _react(self, rest: str, *, added: bool) -> bool:
        words = rest.split()
        user = self.user
        if len(words) == 4 and words[2] == "as":
            user, words = words[3], words[:2]
        if len(words) != 2:
            self.adapter.say("  usage: :react IMAGE VOTE [as USER], e.g. :react 2 approve")
            return False
        ref = self.adapter.find(words[0])
        vote = words[1] if words[1] in VOTES else vote_for_emoji(words[1])
        if ref is None or vote is None:
            what = f"no image {words[0]}" if ref is None else f"`{words[1]}` is not a vote"
            self.adapter.say(f"  {what}; try e.g. :react 1 approve (votes: {', '.join(VOTES)})")
            return False
        self.service.handle_reaction(
            ReactionEvent(
                platform=self.adapter.platform,
                user=user,
                message=ref,
                vote=vote,
                added=added,
            )
        )
        return True


def _stdin(interactive: bool) -> Iterable[str]:
    # Bytes that are not UTF-8 become U+FFFD instead of a UnicodeDecodeError ending the session.
    if hasattr(sys.stdin, "reconfigure"):
        sys.stdin.reconfigure(errors="replace")
    if not interactive:
        yield from sys.stdin
        return
    print("Proofroom shell: type /imagine ... (:help for shell commands, :quit to leave)")
    while True:
        try:
            yield input("> ")
        except (EOFError, KeyboardInterrupt):
            return


def _whoami() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "you"


__all__ = ["MessageRef", "Shell", "add_arguments", "run"]
