"""Slash commands from INTERACTION_CREATE payloads into the real service (real Redis, no
worker): typed options become the grammar's text, attachments are checked before anything
is queued, meta commands answer ephemerally, autocomplete ranks catalog names."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
import redis as redis_lib
from PIL import Image

from bot.adapters.discord.commands import imagine_text, rank
from bot.grammar.parse import ImagineRequest, LoraRequest, parse
from bot.state import BotState
from engine.catalog import Catalog
from engine.settings import Settings
from engine.store import store_from_settings
from tests.bot.adapters.discord.fake_discord import CHANNEL_ID, FakeDiscord, text_channel
from tests.bot.adapters.discord.gateway import (
    attachment,
    attachment_option,
    command_interaction,
    option,
    wait_for,
)
from tests.bot.adapters.discord.images import encoded, png_bomb
from tests.bot.conftest import queued_jobs

USER = "1600000000000000001"


def queued(redis: redis_lib.Redis, settings: Settings) -> int:
    return queued_jobs(settings, redis)


def job_of(reply: str, redis: redis_lib.Redis, settings: Settings):
    job_id = reply.split("`")[1]
    record = BotState(redis=redis, key_prefix=settings.key_prefix, ttl_s=60).job(job_id)
    assert record is not None, reply
    return record


# ---- typed options -> the grammar -------------------------------------------------------------
def test_typed_options_read_back_through_the_grammar(settings: Settings) -> None:
    catalog = Catalog.load(settings.templates_dir)
    text = imagine_text(
        prompt='a "vintage" lamp, it\'s brass',
        negative="text, watermark",
        seed=42,
        count=2,
        aspect="3:2",
        steps=12,
        cfg=6.5,
        sampler="DPM++ 2M Karras",
        model="tiny",
        loras=["tiny-style:0.7", "tiny-brand"],
    )
    parsed = parse(text, catalog=catalog)
    assert parsed == ImagineRequest(
        prompt='a "vintage" lamp, it\'s brass',
        negative="text, watermark",
        seed=42,
        count=2,
        aspect=(3, 2),
        steps=12,
        cfg=6.5,
        sampler="DPM++ 2M Karras",
        model="tiny",
        loras=(LoraRequest("tiny-style", 0.7), LoraRequest("tiny-brand")),
    )


def test_a_template_option_takes_its_variables_from_the_prompt(settings: Settings) -> None:
    catalog = Catalog.load(settings.templates_dir)
    text = imagine_text(prompt='product="leather handbag" style=luxury', template="product-photo")
    parsed = parse(text, catalog=catalog)
    assert isinstance(parsed, ImagineRequest)
    assert parsed.template == "product-photo"
    assert dict(parsed.variables) == {"product": "leather handbag", "style": "luxury"}


def test_imagine_with_typed_options_queues_that_spec(make_bot, service_factory, redis, settings):
    bot = make_bot(service_factory=service_factory)
    interaction = command_interaction(
        "imagine",
        [
            option("prompt", "a lighthouse at dusk"),
            option("seed", 99),
            option("count", 3),
            option("steps", 3),
            option("cfg", 5.5),
            option("sampler", "Euler"),
            option("negative", "people"),
            option("model", "tiny"),
            option("lora", "tiny-style:0.6"),
        ],
        user_id=USER,
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    reply = bot.reply_to(interaction)
    spec = job_of(reply, redis, settings).spec
    assert (
        spec.prompt.startswith("a lighthouse at dusk"),
        spec.seed,
        spec.count,
        spec.steps,
        spec.cfg_scale,
        spec.sampler,
        spec.model,
    ) == (True, 99, 3, 3, 5.5, "Euler", "tiny")
    assert "people" in spec.negative_prompt
    assert [(lora.name, lora.weight) for lora in spec.loras] == [("tiny-style", 0.6)]
    assert spec.origin["platform"] == "discord" and spec.origin["channel"] == CHANNEL_ID
    assert queued(redis, settings) == 1


def test_a_usage_error_is_the_reply_and_nothing_is_queued(
    make_bot, service_factory, redis, settings, fake_discord
):
    bot = make_bot(service_factory=service_factory)
    interaction = command_interaction(
        "imagine", [option("prompt", "a cat"), option("model", "tiyn")], user_id=USER
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    assert bot.reply_to(interaction) == "Unknown model `tiyn`; did you mean `tiny`?"
    assert queued(redis, settings) == 0
    assert not fake_discord.channel_posts()


def test_imagine_inside_a_thread_opens_its_job_thread_in_the_parent(
    make_bot, service_factory, fake_discord
):
    bot = make_bot(service_factory=service_factory)
    thread_channel = {
        "id": "1300000000000000777",
        "type": 11,
        "guild_id": "1200000000000000001",
        "parent_id": CHANNEL_ID,
        "name": "old job",
        "owner_id": USER,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 3,
        "member_count": 2,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
    }
    fake_discord.threads[thread_channel["id"]] = thread_channel
    interaction = command_interaction(
        "imagine", [option("prompt", "a cat")], user_id=USER, channel=thread_channel
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    assert bot.reply_to(interaction).startswith("Queued job")
    card = fake_discord.channel_posts()[0]
    assert card.path == f"/channels/{CHANNEL_ID}/messages"
    assert "asked for" in card.json["content"]  # the job card, in the parent channel


def test_imagine_in_a_forum_post_says_where_to_run_it(
    make_bot, service_factory, fake_discord, redis, settings
):
    bot = make_bot(service_factory=service_factory)
    forum = {
        **text_channel("1300000000000000888"),
        "type": 15,
        "name": "ideas",
        "available_tags": [],
        "default_reaction_emoji": None,
    }
    bot.dispatch("CHANNEL_CREATE", forum)
    post = {
        "id": "1300000000000000889",
        "type": 11,
        "guild_id": "1200000000000000001",
        "parent_id": forum["id"],
        "name": "a post",
        "owner_id": USER,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
    }
    interaction = command_interaction(
        "imagine", [option("prompt", "a cat")], user_id=USER, channel=post
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    assert "run /imagine in a text channel" in bot.reply_to(interaction)
    assert not fake_discord.channel_posts()
    assert queued(redis, settings) == 0


@pytest.mark.parametrize(
    ("subcommand", "expected"),
    [("templates", "product-photo"), ("loras", "tiny-style"), ("status", ""), ("help", "--seed")],
)
def test_meta_commands_answer_in_the_deferred_reply(
    make_bot, service_factory, fake_discord, subcommand, expected
):
    bot = make_bot(service_factory=service_factory)
    interaction = command_interaction("proofroom", [], subcommand=subcommand, user_id=USER)
    bot.dispatch("INTERACTION_CREATE", interaction)
    reply = bot.reply_to(interaction)
    assert expected in reply and reply
    [defer] = fake_discord.calls_to("POST", "/interactions/")
    assert defer.json == {"type": 5, "data": {"flags": 64}}  # deferred, ephemeral


def test_cancel_passes_the_job_id(make_bot, service_factory):
    bot = make_bot(service_factory=service_factory)
    interaction = command_interaction(
        "proofroom", [option("job", "0123456789ab")], subcommand="cancel", user_id=USER
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    assert "0123456789ab" in bot.reply_to(interaction)


# ---- attachments ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("filename", "data", "content_type", "size", "message"),
    [
        ("notes.txt", b"not a picture", "text/plain", None, "is not an image Proofroom can read"),
        ("huge.png", b"x" * 1000, "image/png", 30 * 1024 * 1024, "is 30.0 MB; attachments may be at most 20.0 MB"),
        ("bomb.png", png_bomb(10_000, 10_000), "image/png", None, "10000x10000 (100,000,000 pixels); the limit is"),
    ],
    ids=["not-an-image", "too-large", "decompression-bomb"],
)  # fmt: skip
def test_a_bad_attachment_is_refused_and_nothing_is_queued(
    make_bot,
    service_factory,
    fake_discord: FakeDiscord,
    redis,
    settings,
    filename,
    data,
    content_type,
    size,
    message,
) -> None:
    bot = make_bot(service_factory=service_factory)
    file = attachment(
        fake_discord, filename=filename, data=data, content_type=content_type, size=size
    )
    interaction = command_interaction(
        "imagine",
        [option("prompt", "restyle this"), attachment_option("image", file)],
        user_id=USER,
        attachments=[file],
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    reply = bot.reply_to(interaction)
    assert message in reply
    assert f"`{filename}`" in reply
    assert queued(redis, settings) == 0
    assert not fake_discord.channel_posts()
    downloads = fake_discord.calls_to("GET", f"/cdn/{filename}")
    assert len(downloads) == (0 if size else 1)  # too large by its declared size: not fetched


def test_a_good_attachment_reaches_the_service(
    make_bot, service_factory, fake_discord, redis, settings
):
    bot = make_bot(service_factory=service_factory)
    image = attachment(
        fake_discord, filename="photo.png", data=encoded("PNG"), content_type="image/png"
    )
    mask = attachment(
        fake_discord, filename="photo.png", data=white_square_png(), content_type="image/png"
    )
    interaction = command_interaction(
        "imagine",
        [
            option("prompt", "a cat"),
            attachment_option("image", image),
            attachment_option("mask", mask),
        ],
        user_id=USER,
        attachments=[image, mask],
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    # Each option's file arrived with its role (the mask under a unique name): an inpaint job.
    reply = bot.reply_to(interaction)
    assert reply.startswith("Queued job"), reply
    spec = job_of(reply, redis, settings).spec
    assert spec.mode == "inpaint" and spec.prompt == "a cat"  # no --mask text was added
    store = store_from_settings(settings)
    assert store.meta(spec.init_image) | {"requested_by": ""} == {
        "role": "init",
        "filename": "photo.png",
        "requested_by": "",
    }
    assert store.meta(spec.mask_image)["filename"] == "mask-photo.png"
    assert queued(redis, settings) == 1


def white_square_png() -> bytes:
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- autocomplete ---------------------------------------------------------------------------
def test_rank_puts_prefix_matches_first_and_caps_at_25() -> None:
    names = [f"style-{i:02d}" for i in range(30)] + ["lifestyle", "product-photo", "Stylized"]
    ranked = rank(names, "sty")
    assert len(ranked) == 25
    assert ranked[:2] == ["style-00", "style-01"]
    assert rank(names, "STYLIZ") == ["Stylized"]  # case does not matter
    assert rank(names, "life") == ["lifestyle"]
    assert rank(["a-style", "style-b", "b-style", "Style-a"], "style") == [
        "Style-a",
        "style-b",
        "a-style",
        "b-style",
    ]
    assert rank(names, "") == sorted(names, key=str.lower)[:25]


@pytest.fixture()
def many_templates(settings: Settings, tmp_path: Path) -> Settings:
    root = tmp_path / "templates"
    shutil.copytree(settings.templates_dir, root)
    lines = [
        f"style-{i:02d}:\n  description: style {i}\n  prompt: a thing, style {i}\n"
        for i in range(40)
    ]
    lines.append("lifestyle-shot:\n  description: lifestyle\n  prompt: people using it\n")
    (root / "prompts" / "many.yaml").write_text("".join(lines), encoding="utf-8")
    return settings.model_copy(update={"templates_dir": root})


def _autocomplete(bot, fake: FakeDiscord, *, name: str, typed: str, others=()) -> list[dict]:
    options = [option("prompt", "x"), *others, option(name, typed, focused=True)]
    interaction = command_interaction("imagine", options, user_id=USER, focused=True)
    bot.dispatch("INTERACTION_CREATE", interaction)
    [call] = wait_for(
        lambda: fake.calls_to("POST", f"/interactions/{interaction['id']}/"),
        what="autocomplete answer",
    )
    assert call.json["type"] == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    return call.json["data"]["choices"]


def test_template_autocomplete_returns_at_most_25_ranked_by_prefix(
    make_bot, fake_discord, many_templates
) -> None:
    bot = make_bot(settings=many_templates)
    found = _autocomplete(bot, fake_discord, name="template", typed="sty")
    assert len(found) == 25
    assert [c["value"] for c in found[:3]] == ["style-00", "style-01", "style-02"]
    assert found[0]["name"] == "style-00 \u2014 style 0"
    found = _autocomplete(bot, fake_discord, name="template", typed="style-3")
    assert [c["value"] for c in found][:2] == ["style-30", "style-31"]
    found = _autocomplete(bot, fake_discord, name="template", typed="style-0")
    assert [c["value"] for c in found] == [f"style-0{i}" for i in range(10)]
    found = _autocomplete(bot, fake_discord, name="template", typed="shot")
    assert [c["value"] for c in found] == ["lifestyle-shot"]  # a substring match, no prefix one
    assert len(_autocomplete(bot, fake_discord, name="template", typed="")) == 25


def test_model_and_lora_autocomplete(make_bot, fake_discord) -> None:
    bot = make_bot()
    models = [c["value"] for c in _autocomplete(bot, fake_discord, name="model", typed="tiny")]
    assert models == ["tiny", "tiny-xl"]
    loras = _autocomplete(bot, fake_discord, name="lora", typed="tiny-style:0.8, tiny-b")
    assert [c["value"] for c in loras] == ["tiny-style:0.8, tiny-brand"]


def test_a_csv_batch_reaches_the_batch_desk_and_queues_bulk_jobs(
    make_bot, service_factory, fake_discord, redis, settings
):
    bot = make_bot(service_factory=service_factory)
    data = b"product,style\nRed Widget,minimalist\nBlue Widget,luxury\n"
    csv_file = attachment(fake_discord, filename="products.csv", data=data, content_type="text/csv")
    interaction = command_interaction(
        "proofroom",
        [
            option("template", "product-photo"),
            attachment_option("file", csv_file),
            option("variations", 2),
            option("options", "--steps 2"),
        ],
        subcommand="batch",
        user_id=USER,
        attachments=[csv_file],
    )
    bot.dispatch("INTERACTION_CREATE", interaction)
    reply = bot.reply_to(interaction)
    assert reply.startswith("Queued batch `b"), reply
    assert "2 rows \u00d7 2 = 4 images on the bulk queue" in reply
    assert queued(redis, settings) == 2
