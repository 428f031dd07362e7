"""The Discord commands: ``/imagine`` with typed options, ``/proofroom <meta>``, and the
pure translation of typed options into the one command grammar (``bot.grammar.parse``).

Typed options become the text the other platforms send (``product-photo product="bag"
--n 4``), so there is one grammar and one set of error messages. Autocomplete ranks catalog
names by prefix, at most 25 (Discord's limit).

No ``from __future__ import annotations`` here: discord.py reads the option types from the
annotations, and the ranges below are built from the configured limits at run time.
"""

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.texts import clip
from engine.settings import Limits
from engine.spec import MAX_SEED, SAMPLERS, UPSCALE_FACTORS

if TYPE_CHECKING:
    from bot.adapters.discord.app import ProofroomDiscord

MAX_CHOICES = 25  # Discord shows at most 25 autocomplete entries or choices
MAX_CHOICE_TEXT = 100
ASPECTS = ("1:1", "3:2", "2:3", "4:3", "3:4", "16:9", "9:16", "21:9")
META = ("help", "templates", "loras", "models", "embeddings", "status", "review", "reload")


# ---- the command tree -----------------------------------------------------------------------
def add_commands(
    tree: app_commands.CommandTree, *, bot: "ProofroomDiscord", limits: Limits
) -> None:
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
            Choice(name=clip(head + c.name, MAX_CHOICE_TEXT), value=head + c.value)
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

    @group.command(name="vary", description="Variations of an image (or react \U0001f500 on it)")
    @app_commands.describe(
        image="JOB#K: the job id and the image's number, as its caption shows them",
        strong="Move further from the image (default: subtle)",
        count="How many variations",
    )
    async def vary(
        interaction: discord.Interaction,
        image: str,
        strong: bool = False,
        count: Range[int, 1, limits.max_count] | None = None,
    ) -> None:
        text = f"vary {''.join(image.split())}" + (" --strong" if strong else "")
        text += f" --n {count}" if count is not None else ""
        await bot.run_command(interaction, text=text)

    @group.command(name="upscale", description="An image 2x or 4x larger (or react \u2b06\ufe0f)")
    @app_commands.describe(
        image="JOB#K: the job id and the image's number, as its caption shows them",
        scale="How many times larger (default 2)",
    )
    @app_commands.choices(scale=[Choice(name=f"{f}x", value=f) for f in UPSCALE_FACTORS])
    async def upscale(
        interaction: discord.Interaction, image: str, scale: Choice[int] | None = None
    ) -> None:
        text = f"upscale {''.join(image.split())}"
        text += f" --scale {scale.value}" if scale is not None else ""
        await bot.run_command(interaction, text=text)

    @group.command(name="calendar", description="The next content-calendar threads")
    async def calendar(interaction: discord.Interaction) -> None:
        await bot.run_command(interaction, text="calendar")

    tree.add_command(group)


def _meta_command(bot: "ProofroomDiscord", name: str) -> app_commands.Command[Any, ..., None]:
    descriptions = {
        "help": "How /imagine works: flags, templates, reactions",
        "templates": "List the prompt templates",
        "loras": "List the LoRAs",
        "models": "List the models",
        "embeddings": "List the textual-inversion embeddings",
        "reload": "Admins: rescan the model, LoRA, embedding and VAE folders",
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
    """The command text the grammar (``bot.grammar.parse.parse``) reads for these typed options.
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
            name=clip(
                f"{name} \u2014 {described[name]}" if described[name] else name, MAX_CHOICE_TEXT
            ),
            value=name,
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
