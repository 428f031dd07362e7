"""Messages, attachments and reactions on dpytest: the real bot, adapter and service, with
dpytest's in-memory Discord under discord.py (see ``dpytest_harness`` for what it covers).

Application commands and the interaction webhook are not part of dpytest; they are tested
against the local REST fake (``test_interactions``, ``test_end_to_end``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import discord
import discord.ext.test as dpytest
import pytest
import pytest_asyncio
from discord.ext.test import backend

from bot.adapters.discord.adapter import PLATFORM, DiscordAdapter
from bot.adapters.discord.app import ProofroomDiscord
from bot.adapters.discord.settings import DiscordSettings
from bot.jobs.attachments import AttachmentError
from bot.ports import CommandEvent
from engine.catalog import Catalog
from engine.settings import Settings
from tests.bot.adapters.discord.dpytest_harness import members_intents, messages_in, patch_dpytest
from tests.bot.adapters.discord.gateway import APPROVER_ROLE  # the role bot_settings approves by
from tests.bot.adapters.discord.images import encoded, png_bomb
from tests.waiting import until

MIB = 1024 * 1024
JOB_TIMEOUT = 120  # a cold tiny model on two CPU cores


@pytest_asyncio.fixture()
async def client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, settings: Settings
) -> AsyncIterator[ProofroomDiscord]:
    """The bot on dpytest: one guild, one text channel, members ada, grace (an approver by
    role) and bob."""
    monkeypatch.chdir(tmp_path)  # dpytest keeps each uploaded file as ./dpytest_N.dat
    patch_dpytest(monkeypatch)
    bot = ProofroomDiscord(
        settings=DiscordSettings(  # type: ignore[call-arg]
            _env_file=None, token="unused", max_attachment_bytes=1 * MIB, pump_block_ms=100
        ),
        catalog=Catalog.load(settings.templates_dir),
        limits=settings.limits,
        intents=members_intents(),
    )
    await bot._async_setup_hook()  # what login() does first: bind the client to this loop
    dpytest.configure(bot, members=["ada", "grace", "bob"])
    config = dpytest.get_config()
    role = backend.make_role(APPROVER_ROLE, config.guilds[0])
    await dpytest.add_role(config.members[1], role)
    yield bot
    bot.ws = None  # type: ignore[assignment]  # dpytest's stand-in has no socket to close
    await bot.close()  # stops the event pump when a test started it
    await dpytest.empty_queue()


def channel() -> discord.TextChannel:
    return dpytest.get_config().channels[0]


def member(name: str) -> discord.Member:
    """The guild's current member (dpytest's config keeps the object from before roles)."""
    found = discord.utils.get(channel().guild.members, name=name)
    assert found is not None
    return found


def cached(client: discord.Client, message_id: str) -> discord.Message:
    found = discord.utils.get(client.cached_messages, id=int(message_id))
    assert found is not None, f"message {message_id} was not sent"
    return found


@pytest.mark.asyncio
async def test_a_post_and_its_edits_are_one_channel_message(client: ProofroomDiscord) -> None:
    where = str(channel().id)
    ref = await client.adapter.apost(
        channel=where, text="Job <https://example.com/jobs/1|j-1> for <@123>: queued"
    )

    sent = dpytest.get_message()
    assert (sent.id, sent.channel.id) == (int(ref.id), channel().id)
    assert sent.content == "Job [j-1](https://example.com/jobs/1) for <@123>: queued"
    await client.adapter.aedit(message=ref, text="rendering " + "x" * 2500)
    stored = await channel().fetch_message(int(ref.id))
    assert len(stored.content) == 2000 and stored.content.endswith("\u2026")
    assert stored.content.startswith("rendering x")
    assert dpytest.verify().message().nothing()  # edited in place, nothing new posted


@pytest.mark.asyncio
async def test_each_file_is_a_message_and_result_images_get_vote_reactions(
    client: ProofroomDiscord,
) -> None:
    where = str(channel().id)
    png = encoded("PNG", size=(64, 64))
    image = await client.adapter.aupload(
        channel=where, thread=None, data=png, filename="j-0-7.png", text="Image 1", votable=True
    )
    preview = await client.adapter.aupload(
        channel=where, thread=None, data=png, filename="j-init.png", text="Your start image"
    )
    manifest = await client.adapter.aupload(
        channel=where, thread=None, data=b"row,file\n1,a.png\n", filename="b.csv", text="CSV"
    )
    await client.adapter.aclose()  # the reactions are added in the background

    # (dpytest drops the text of a message that carries a file: captions are checked on
    # the REST fake, test_adapter.)
    posted = cached(client, image.id)
    assert [a.filename for a in posted.attachments] == ["j-0-7.png"]
    assert await posted.attachments[0].read() == png
    assert [(str(r.emoji), r.me) for r in posted.reactions] == [
        ("\u2705", True),
        ("\u274c", True),
        ("\U0001f501", True),
        ("\U0001f500", True),
        ("\u2b06\ufe0f", True),
    ]
    assert cached(client, preview.id).reactions == []  # an input, not a result to review
    file = cached(client, manifest.id)
    assert await file.attachments[0].read() == b"row,file\n1,a.png\n"
    assert file.reactions == []  # a file to download


@pytest.mark.asyncio
async def test_an_image_over_the_upload_limit_is_reencoded_to_fit(
    client: ProofroomDiscord,
) -> None:
    where = str(channel().id)
    big = encoded("PNG", size=(256, 256), noise=True)  # about 200 KB, incompressible
    client.adapter.remember_upload_limit(channel=where, limit=60_000)

    ref = await client.adapter.aupload(
        channel=where, thread=None, data=big, filename="j-0-7.png", text="Image 1 of 1"
    )

    posted = cached(client, ref.id)
    data = await posted.attachments[0].read()
    assert len(big) > 60_000 >= len(data)
    assert posted.attachments[0].filename in {"j-0-7.jpg", "j-0-7.webp"}


@pytest.mark.asyncio
async def test_attachments_are_downloaded_and_checked(
    client: ProofroomDiscord, tmp_path: Path
) -> None:
    def attached(name: str, data: bytes) -> discord.Attachment:
        path = tmp_path / name
        path.write_bytes(data)
        return backend.make_attachment(path)

    png = encoded("PNG", size=(96, 64))
    checked = await client.checked_attachments(
        {"image": attached("shoe.png", png), "mask": attached("m.png", png), "control": None}
    )
    assert {role: (a.filename, a.content_type, a.data) for role, a in checked.items()} == {
        "image": ("shoe.png", "image/png", png),
        "mask": ("m.png", "image/png", png),
    }
    assert checked["mask"].role == "mask"

    refused = {
        "notes.txt": (b"meeting notes\n", "`notes.txt` is not an image"),
        "bomb.png": (png_bomb(10_000, 10_000), "100,000,000 pixels"),
        "huge.png": (bytes(2 * MIB), r"`huge.png` is 2.0 MB; .* at most 1.0 MB"),
    }
    for name, (data, message) in refused.items():
        with pytest.raises(AttachmentError, match=message):
            await client.checked_attachments({"image": attached(name, data)})


@pytest.mark.slow
@pytest.mark.asyncio
async def test_an_attached_image_to_a_thread_of_results_approved_by_reaction(
    client: ProofroomDiscord, service_factory, worker, bot_settings, settings, tmp_path: Path
) -> None:
    service = service_factory(client.adapter)
    client.bind(service)
    await client.setup_hook()  # as at login: no guilds to sync here; starts the event pump
    ada, grace = member("ada"), member("grace")
    start = tmp_path / "start.png"
    start.write_bytes(encoded("PNG", size=(64, 64)))
    files = await client.checked_attachments({"image": backend.make_attachment(start)})
    event = CommandEvent(
        platform=PLATFORM,
        user=str(ada.id),
        channel=str(channel().id),
        text="a red fox in the snow --n 2 --seed 7 --steps 2",
        attachments=tuple(files.values()),
        roles=await client.adapter.directory.roles_of(guild_id=ada.guild.id, user_id=ada.id),
    )
    reply = await asyncio.to_thread(service.handle_command, event)
    assert reply.startswith("Queued job `"), reply
    job_id = reply.split("`")[1]

    # The job card starts a thread; the results arrive in it, one message per image.
    card = messages_in(client, channel().id)[0]
    assert job_id in card.content

    def results() -> list[discord.Message]:
        found = [m for m in messages_in(client, card.id) if m.attachments]
        return [m for m in found if m.attachments[0].filename.startswith(f"{job_id}-")]

    images = await until(
        lambda: len(results()) == 3 and results(),  # the input preview, then two images
        timeout=JOB_TIMEOUT,
        what="the input preview and two images in the job's thread",
    )
    thread = client.get_channel(card.id)
    assert isinstance(thread, discord.Thread) and thread.parent_id == channel().id
    names = [m.attachments[0].filename for m in images]
    assert names[0] == f"{job_id}-init.png"
    assert [n.split("-")[1] for n in names[1:]] == ["0", "1"]
    await client.adapter.aclose()  # the vote reactions are added in the background
    assert [len(m.reactions) for m in images] == [0, 5, 5]  # votes on results only
    first = images[1]

    # The requester is no art director: their ✅ does not count, and they are told why.
    export_dir = bot_settings.export_path(settings)
    await dpytest.add_reaction(ada, first, "\u2705")
    notices = [m for m in messages_in(client, card.id) if m.content.startswith(f"<@{ada.id}>")]
    assert len(notices) == 1
    assert "Only people with the role `art-director` can approve" in notices[0].content
    assert not list(export_dir.glob(f"{job_id}-*.png"))

    # An art director's ✅, a raw gateway reaction with the member's roles, exports it.
    await dpytest.add_reaction(grace, first, "\u2705")
    exported = list(export_dir.glob(f"{job_id}-0-*.png"))
    assert len(exported) == 1 and exported[0].with_suffix(".json").exists()
    assert not list(export_dir.glob(f"{job_id}-1-*.png"))

    # A restart: discord.py's message cache, the adapter and the service start empty; only
    # Redis remembers. A ✅ on the second image, posted before, still counts (raw event).
    client._connection._messages.clear()  # type: ignore[union-attr]
    client.adapter = DiscordAdapter(client=client, settings=client.settings)
    client.bind(service_factory(client.adapter))
    await dpytest.add_reaction(grace, images[2], "✅")
    assert len(list(export_dir.glob(f"{job_id}-1-*.png"))) == 1
