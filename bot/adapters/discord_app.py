"""The Discord bot process: a ``discord.Client`` with the ``/imagine`` command tree.

Translation only. Typed slash-command options become the same command text the other
platforms send (``product-photo product="bag" --n 4``), so there is one grammar and one
set of error messages; raw gateway reactions become :class:`~bot.ports.ReactionEvent`.

- Every interaction is deferred before anything else (Discord wants an answer within 3 s);
  the reply is then the service's sentence, ephemeral. Job output goes to a thread through
  the adapter with the bot token.
- Commands are synced to the configured guilds at start (instant there); global sync is
  optional (Discord takes up to an hour to show global changes).
- Intents: the defaults (guilds and reactions included) without message content, which
  slash commands and reactions do not need.
- The service is synchronous and talks to Redis: it runs in worker threads
  (``asyncio.to_thread``) so the event loop stays free to answer Discord.

No ``from __future__ import annotations`` here: discord.py reads the option types from the
annotations, and the ranges below are built from the configured limits at run time.
"""

import asyncio
import logging
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.adapters.discord import PLATFORM, DiscordAdapter
from bot.adapters.discord_settings import DiscordSettings
from bot.attachments import AttachmentError, check_declared_size, check_image
from bot.ports import Attachment, CommandEvent, ReactionEvent
from engine.catalog import Catalog
from engine.settings import Limits
from engine.spec import MAX_SEED, SAMPLERS

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete entries or choices
MAX_CHOICE_TEXT = 100
ASPECTS = ("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9")
META = ("help", "templates", "loras", "models", "status", "review")
IN_FORUM = (
    "Proofroom opens a thread for each job, and a forum can't hold one outside a post; "
    "run /imagine in a text channel and the job's thread opens there."
)


class Service(Protocol):
    """What the app needs from ``bot.service.BotService``."""

    def handle_command(self, event: CommandEvent) -> str: ...

    def handle_reaction(self, event: ReactionEvent) -> Any: ...

    def pump_until(self, stop: threading.Event, *, block_ms: int) -> None: ...


class ProofroomDiscord(discord.Client):
    """The bot. Build it, :meth:`bind` a service made with :attr:`adapter`, then start it."""

    def __init__(
        self,
        *,
        settings: DiscordSettings,
        catalog: Catalog,
        limits: Limits,
        intents: discord.Intents | None = None,
        **options: Any,
    ) -> None:
        """``intents`` default to :func:`needed_intents`; ``options`` go to ``discord.Client``."""
        super().__init__(intents=intents or needed_intents(), **options)
        self.settings = settings
        self.catalog = catalog
        self.limits = limits
        self.adapter = DiscordAdapter(client=self, settings=settings)
        self.tree = app_commands.CommandTree(self)
        self.service: Service | None = None
        self._stop = threading.Event()
        self._pump_task: asyncio.Task[None] | None = None
        add_commands(self.tree, bot=self, limits=limits)

    def bind(self, service: Service) -> None:
        """Attach the service; its job events are pumped once the client has logged in."""
        self.service = service

    # ---- lifecycle -----------------------------------------------------------------------
    async def setup_hook(self) -> None:
        """Runs at login, before the gateway connects: sync commands, start the pump."""
        await self.sync_commands()
        if self.service is not None:
            self._pump_task = asyncio.create_task(self._pump_forever(), name="proofroom-pump")

    async def sync_commands(self) -> None:
        """Replace the command list in each configured guild (or globally)."""
        if self.settings.sync_global:
            synced = await self.tree.sync()
            log.info("synced %d global commands (may take up to an hour to show)", len(synced))
            return
        if not self.settings.guild_ids:
            log.warning("no PROOFROOM_DISCORD_GUILD_IDS and global sync off: commands not synced")
        for guild_id in self.settings.guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d commands to guild %s", len(synced), guild_id)

    async def close(self) -> None:
        """Stop pumping (after the current pump returns), then disconnect."""
        self._stop.set()
        if self._pump_task is not None:
            await asyncio.gather(self._pump_task, return_exceptions=True)
        await self.adapter.aclose()
        await super().close()

    async def _pump_forever(self) -> None:
        assert self.service is not None
        # One thread for the bot's life: the service blocks on Redis, the loop must not.
        await asyncio.to_thread(
            self.service.pump_until, self._stop, block_ms=self.settings.pump_block_ms
        )

    # ---- gateway events ------------------------------------------------------------------
    async def on_raw_reaction_add(self, raw: discord.RawReactionActionEvent) -> None:
        """Fires for uncached messages too, so votes on images posted before a restart count."""
        await self._reaction(raw)

    async def on_raw_reaction_remove(self, raw: discord.RawReactionActionEvent) -> None:
        await self._reaction(raw)

    async def _reaction(self, raw: discord.RawReactionActionEvent) -> None:
        if self.service is None:
            return
        event = await self.adapter.reaction_event(raw)
        if event is None:
            return
        try:
            await asyncio.to_thread(self.service.handle_reaction, event)
        except Exception:
            log.exception("reaction %s on %s failed", event.vote, event.message.key)

    # ---- commands --------------------------------------------------------------------------
    async def run_command(
        self, interaction: discord.Interaction, *, text: str, files: dict[str, Any] | None = None
    ) -> None:
        """Defer, check attachments, hand the text to the service, reply with its sentence."""
        # First, before any await that could be slow: Discord drops unanswered
        # interactions after 3 s.
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            reply = await self._command_reply(interaction, text=text, files=files or {})
        except AttachmentError as exc:
            reply = exc.message  # refused before anything was queued
        except Exception:
            log.exception("command %r (interaction %s) failed", text, interaction.id)
            reply = (
                "Something went wrong on our side and nothing was queued "
                f"(reference {interaction.id}); please try again in a minute."
            )
        await interaction.edit_original_response(content=reply[:2000] or "\u2705")

    async def _command_reply(
        self, interaction: discord.Interaction, *, text: str, files: dict[str, Any]
    ) -> str:
        if interaction.guild_id is None:
            return "Proofroom works in server channels; run the command there."
        if self.service is None:
            return "Proofroom is starting; try again in a few seconds."
        channel = str(interaction.channel_id)
        if isinstance(interaction.channel, discord.Thread):
            if isinstance(interaction.channel.parent, discord.ForumChannel):  # media too
                return IN_FORUM
            # A thread cannot hold threads: the job's thread goes in the parent channel.
            parent = str(interaction.channel.parent_id)
            self.adapter.note_thread(thread=channel, parent=parent)
            channel = parent
        self.adapter.remember_upload_limit(channel=channel, limit=interaction.filesize_limit)
        # Each typed option (image, mask, control) says which part its file plays.
        attachments = await self.checked_attachments(files)
        member = interaction.user if isinstance(interaction.user, discord.Member) else None
        event = CommandEvent(
            platform=PLATFORM,
            user=str(interaction.user.id),
            channel=channel,
            text=text,
            attachments=tuple(attachments.values()),
            roles=await self.adapter.roles_of(
                guild_id=interaction.guild_id, user_id=interaction.user.id, member=member
            ),
        )
        return await asyncio.to_thread(self.service.handle_command, event)

    async def checked_attachments(self, files: dict[str, Any]) -> dict[str, Attachment]:
        """Download and check the files of a command's options (``{"image": attachment}``),
        None for options not given. Images are checked (type, size, pixels; a CSV is left to
        the batch desk) and named uniquely per command. Raises :class:`AttachmentError`
        with the sentence to show, before anything is queued."""
        checked: dict[str, Attachment] = {}
        used: set[str] = set()
        for role, file in files.items():
            if file is None:
                continue
            limit = self.settings.max_attachment_bytes
            check_declared_size(filename=file.filename, size=file.size, max_bytes=limit)
            try:
                data = await file.read()
            except discord.HTTPException:
                raise AttachmentError(
                    f"`{file.filename}` could not be downloaded from Discord; attach it again."
                ) from None
            if role == "csv":
                # A batch file: text, checked row by row by the batch desk, not as an image.
                checked[role] = Attachment(
                    filename=file.filename, content_type="text/csv", size=len(data), data=data
                )
                continue
            image = await asyncio.to_thread(
                check_image,
                data,
                filename=file.filename,
                max_bytes=limit,
                max_pixels=self.limits.max_input_pixels,  # the worker's own limit
            )
            name = file.filename if file.filename not in used else f"{role}-{file.filename}"
            used.add(name)
            checked[role] = Attachment(
                filename=name,
                content_type=image.content_type,
                size=len(data),
                data=data,
                role=role,  # type: ignore[arg-type]  # the option names: image, mask, control
            )
        return checked


def needed_intents() -> discord.Intents:
    """The defaults (guilds, reactions) without message content: privileged, and nothing
    here reads message text. Members stay off too (privileged; roles come with events)."""
    intents = discord.Intents.default()
    intents.message_content = False
    return intents


# ---- the command tree -----------------------------------------------------------------------
def add_commands(tree: app_commands.CommandTree, *, bot: ProofroomDiscord, limits: Limits) -> None:
    """``/imagine`` with typed options, and ``/proofroom <meta>``."""
    catalog = bot.catalog

    @tree.command(name="imagine", description="Render images from a prompt or a template")
    @app_commands.guild_only()
    @app_commands.describe(
        prompt='What to draw; with a template: its variables, e.g. product="leather bag"',
        template="A prompt template (see /proofroom templates)",
        negative="What to keep out of the image",
        seed="Seed of the first image (image k uses seed+k)",
        count="How many images",
        aspect="Aspect ratio at the model's usual size",
        steps="Sampling steps",
        cfg="How closely to follow the prompt (CFG scale)",
        sampler="Sampler",
        model="Model (see /proofroom models)",
        lora="LoRAs: name or name:weight, comma-separated",
        image="Start from this image (image-to-image)",
        mask="Inpainting mask for the image (white = repaint)",
        control="Control image (ControlNet guide)",
    )
    @app_commands.choices(
        sampler=[Choice(name=s, value=s) for s in SAMPLERS],
        aspect=[Choice(name=a, value=a) for a in ASPECTS],
    )
    async def imagine(
        interaction: discord.Interaction,
        prompt: str,
        template: str | None = None,
        negative: str | None = None,
        seed: Range[int, 0, MAX_SEED] | None = None,
        count: Range[int, 1, limits.max_count] | None = None,
        aspect: Choice[str] | None = None,
        steps: Range[int, limits.min_steps, limits.max_steps] | None = None,
        cfg: Range[float, limits.min_cfg, limits.max_cfg] | None = None,
        sampler: Choice[str] | None = None,
        model: str | None = None,
        lora: str | None = None,
        image: discord.Attachment | None = None,
        mask: discord.Attachment | None = None,
        control: discord.Attachment | None = None,
    ) -> None:
        text = imagine_text(
            prompt=prompt,
            template=template,
            negative=negative,
            seed=seed,
            count=count,
            aspect=aspect.value if aspect else None,
            steps=steps,
            cfg=cfg,
            sampler=sampler.value if sampler else None,
            model=model,
            loras=split_loras(lora),
        )
        files = {"image": image, "mask": mask, "control": control}
        await bot.run_command(interaction, text=text, files=files)

    @imagine.autocomplete("template")
    async def template_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return choices(((n, t.description) for n, t in catalog.templates.items()), current)

    @imagine.autocomplete("model")
    async def model_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        return choices(((n, m.description) for n, m in catalog.models.items()), current)

    @imagine.autocomplete("lora")
    async def lora_names(interaction: discord.Interaction, current: str) -> list[Choice[str]]:
        # Completes the last of the comma-separated LoRAs, keeping the ones before it.
        done, _, typing = current.rpartition(",")
        head = f"{done.strip()}, " if done.strip() else ""
        found = choices(((n, e.description) for n, e in catalog.loras.items()), typing.strip())
        return [
            Choice(name=_cut(head + c.name), value=head + c.value)
            for c in found
            if len(head + c.value) <= MAX_CHOICE_TEXT
        ]

    group = app_commands.Group(
        name="proofroom",
        description="Proofroom: templates, LoRAs, your jobs, review",
        guild_only=True,
    )

    for name in META:
        group.add_command(_meta_command(bot, name))

    @group.command(name="cancel", description="Cancel one of your jobs")
    @app_commands.describe(job="The job id (see /proofroom status)")
    async def cancel(interaction: discord.Interaction, job: str) -> None:
        await bot.run_command(interaction, text=f"cancel {_quote(job)}")

    @group.command(name="batch", description="Render a CSV batch: one row per product")
    @app_commands.describe(
        template="The template whose variables the CSV columns fill",
        file="UTF-8 CSV; the first line names the columns (e.g. product,style,lighting)",
        variations="Images per row",
        seed="Seed of row 1 (row i uses seed + i*variations)",
        options="More /imagine flags, e.g. --steps 30 --lora brand-x:0.8",
    )
    async def batch(
        interaction: discord.Interaction,
        template: str,
        file: discord.Attachment,
        variations: Range[int, 1, limits.max_count] = 1,
        seed: Range[int, 0, MAX_SEED] | None = None,
        options: str | None = None,
    ) -> None:
        text = f"batch {_quote(template)} --variations {variations}"
        text += f" --seed {seed}" if seed is not None else ""
        text += f" {options}" if options else ""
        await bot.run_command(interaction, text=text, files={"csv": file})

    batch.autocomplete("template")(template_names)

    @group.command(name="batch-status", description="A batch's progress and its manifest")
    @app_commands.describe(batch="The batch id (default: this channel's latest)")
    async def batch_status(interaction: discord.Interaction, batch: str | None = None) -> None:
        await bot.run_command(
            interaction, text="batch status" + (f" {_quote(batch)}" if batch else "")
        )

    @group.command(name="batch-retry", description="Re-run a batch's failed and rejected rows")
    @app_commands.describe(batch="The batch id (default: this channel's latest)")
    async def batch_retry(interaction: discord.Interaction, batch: str | None = None) -> None:
        await bot.run_command(
            interaction, text="batch retry" + (f" {_quote(batch)}" if batch else "")
        )

    @group.command(name="calendar", description="The next content-calendar threads")
    async def calendar(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, text="calendar")

    tree.add_command(group)


def _meta_command(bot: ProofroomDiscord, name: str) -> app_commands.Command[Any, ..., None]:
    descriptions = {
        "help": "How /imagine works: flags, templates, reactions",
        "templates": "List the prompt templates",
        "loras": "List the LoRAs",
        "models": "List the models",
        "status": "Your queued and running jobs",
        "review": "Images in this channel still waiting for a decision",
    }

    async def callback(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, text=name)

    return app_commands.Command(name=name, description=descriptions[name], callback=callback)


# ---- translation helpers (pure) -------------------------------------------------------------
def imagine_text(
    *,
    prompt: str,
    template: str | None = None,
    negative: str | None = None,
    seed: int | None = None,
    count: int | None = None,
    aspect: str | None = None,
    steps: int | None = None,
    cfg: float | None = None,
    sampler: str | None = None,
    model: str | None = None,
    loras: Iterable[str] = (),
) -> str:
    """The command text the grammar (``bot.commands.parse``) reads for these typed options.
    The prompt may itself use the grammar; typed options follow it as flags, so a flag given
    both ways gets the grammar's "given twice" message."""
    words = [template.strip()] if template and template.strip() else []
    words.append(prompt.strip())
    flags: list[tuple[str, object]] = [
        ("no", negative),
        ("seed", seed),
        ("n", count),
        ("ar", aspect),
        ("steps", steps),
        ("cfg", cfg),
        ("sampler", sampler),
        ("model", model),
    ]
    flags += [("lora", name) for name in loras]
    for name, value in flags:
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        shown = f"{value:g}" if isinstance(value, float) else str(value).strip()
        words.append(f"--{name}={_quote(shown)}")
    return " ".join(w for w in words if w)


def split_loras(value: str | None) -> list[str]:
    """``"a:0.8, b"`` -> ``["a:0.8", "b"]``."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def rank(names: Iterable[str], typed: str, *, limit: int = MAX_CHOICES) -> list[str]:
    """Names matching ``typed``: those starting with it first, then those containing it,
    each group in alphabetical order; at most ``limit``."""
    typed = typed.strip().lower()
    ordered = sorted(names, key=str.lower)
    prefix = [n for n in ordered if n.lower().startswith(typed)]
    inside = [n for n in ordered if typed in n.lower() and not n.lower().startswith(typed)]
    return (prefix + inside)[:limit]


def choices(entries: Iterable[tuple[str, str]], typed: str) -> list[Choice[str]]:
    """Autocomplete choices: the value is the name, the label adds the description."""
    described = dict(entries)
    return [
        Choice(
            name=_cut(f"{name} \u2014 {described[name]}" if described[name] else name), value=name
        )
        for name in rank(described, typed)
        if len(name) <= MAX_CHOICE_TEXT
    ]


def _quote(value: str) -> str:
    """A value as one word of the grammar: bare when it has no spaces or quotes, else in
    double quotes (the grammar has no escapes, so inner double quotes become single)."""
    if value and not any(c.isspace() or c in "\"'" for c in value):
        return value
    return '"' + value.replace('"', "'") + '"'


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CHOICE_TEXT else text[: MAX_CHOICE_TEXT - 1] + "\u2026"
