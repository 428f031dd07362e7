"""Names typed in chat are names, never paths: a LoRA, model, template, sampler, ControlNet,
job, batch or calendar named like a path (``../../x``, ``/root/x``, with a NUL) is refused
with a sentence, or read as prompt text, and nothing is queued for it. Proved by behaviour:
a readable file sits at each place such a name would point to (a valid template among
them, so using it would have worked), and none of them is ever read (their access times,
set older than their modification times, would move on a read: ``relatime``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis as redis_lib

from bot.api.requests import JobRequest, LoraField, to_request
from bot.ports import Attachment
from bot.testing.chat import FakeChat
from engine.errors import UserError
from engine.queue import JobQueue
from tests.bot.conftest import queued_jobs
from tests.bot.hostile.conftest import TEMPLATE_YAML, assert_answered, outcome
from tests.bot.hostile.images import photo

OLD_ATIME_NS = 1_000_000_000  # 1970: older than any modification time


class Sentinels:
    """Files at the places path-like names would reach, watched for reads."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # A valid template file: were `../../x` looked up as a path under prompts/, or any
        # file taken for a catalog entry, the command would succeed instead of being refused.
        self.files = [root / "x", root / "x.yaml", root / "x.safetensors", root / "x.png"]
        for path in self.files:
            path.write_text(TEMPLATE_YAML.replace("poster:", "x:"), encoding="utf-8")
            os.utime(path, ns=(OLD_ATIME_NS, path.stat().st_mtime_ns))

    def read(self) -> list[Path]:
        """The sentinel files read since they were made."""
        return [p for p in self.files if p.stat().st_atime_ns != OLD_ATIME_NS]


@pytest.fixture()
def sentinels(quiet_chat: FakeChat, tmp_path: Path) -> Sentinels:
    """Sentinels at ``tmp_path``: ``../../x`` from the LoRA folder (``data/loras``) and the
    template folder's ``prompts/``, ``../x`` from the model folder (``models``)."""
    settings = quiet_chat.settings
    assert settings.lora_dir.parent.parent == tmp_path == settings.model_dir.parent
    assert settings.templates_dir.parent == tmp_path
    watched = Sentinels(tmp_path)
    probe = tmp_path / "probe"
    probe.write_text("probe")
    os.utime(probe, ns=(OLD_ATIME_NS, probe.stat().st_mtime_ns))
    probe.read_text()
    if probe.stat().st_atime_ns == OLD_ATIME_NS:
        pytest.skip("this file system does not record reads (noatime)")
    return watched


def commands(root: Path) -> list[tuple[str, str]]:
    """Commands naming paths, each with a piece of the sentence that refuses it."""
    x = root / "x"
    return [
        ("a cat --lora ../../x", "unknown LoRA `../../x`"),
        (f"a cat --lora {x}.safetensors:0.5", "unknown LoRA"),
        ("a cat --lora /root/x", "unknown LoRA `/root/x`"),
        ("a cat <lora:../../x:1>", "unknown LoRA `../../x`"),
        (f"a cat <lora:{x}>", "unknown LoRA"),
        ("a cat --model /root/x", "unknown model `/root/x`"),
        ("a cat --model ../x", "unknown model `../x`"),
        (f"a cat --model {x}.safetensors", "unknown model"),
        ("a cat --model builtin:tiny", "unknown model `builtin:tiny`"),
        ("a cat --sampler ../../x", "unknown sampler `../../x`"),
        ("a cat --control ../../x", "needs an attached image"),
        ("help ../../x", ""),
        ("help x\x00y", ""),
        ("cancel ../../x", ""),
        ("repost ../../x", "There is no job"),
        ("batch status ../../x", ""),
        ("batch retry ../../x", ""),
        ("calendar digest ../../x", "no calendar"),
    ]


# Words that name nothing are the prompt (`vary` and `upscale` take JOB#K, so a path
# after them is text too).
PROMPT_TEXT = [
    "../../x product=mug",
    "a/b product=mug",
    "x\x00y product=mug",
    f"{'../' * 9}x",
    "vary ../../x",
    "upscale /root/x",
]


def test_path_like_names_are_refused_and_nothing_is_read(
    quiet_chat: FakeChat, sentinels: Sentinels
) -> None:
    for text, refusal in commands(sentinels.root):
        result = outcome(quiet_chat, f"/imagine {text}")
        assert_answered(result)
        assert result.queued == 0, result
        assert refusal.lower() in result.text.lower(), (text, result.text)
    assert sentinels.read() == []


def test_a_template_named_like_a_path_is_prompt_text(
    quiet_chat: FakeChat, sentinels: Sentinels
) -> None:
    for text in PROMPT_TEXT:
        result = outcome(quiet_chat, f"/imagine {text}")
        assert_answered(result)
        assert result.text.startswith("Queued job"), result
        record = quiet_chat.service.state.job(result.text.split("`")[1])
        assert record is not None
        spec = record.spec
        assert (spec.template, spec.loras, spec.model) == (None, [], "tiny")
        assert text.split()[0].replace("\x00", "") in spec.prompt.replace("\x00", "")
    assert sentinels.read() == []


def test_path_like_names_in_a_batch_file_are_refused_whole(
    quiet_chat: FakeChat, sentinels: Sentinels
) -> None:
    rows = "product,lora,model\nmug,,\nlamp,../../x,\nchair,,/root/x\nbowl,,../x\n"
    data = rows.encode()
    csv = Attachment("../../x.csv", "text/csv", len(data), data)
    result = outcome(quiet_chat, "/imagine batch poster", attachments=(csv,))
    assert_answered(result, queued_when="Queued batch")
    assert result.queued == 0
    for problem in (
        "row 3: unknown LoRA `../../x`",
        "row 4: unknown model `/root/x`",
        "row 5: unknown model `../x`",
    ):
        assert problem in result.text, result.text
    result = outcome(quiet_chat, "/imagine batch ../../x", attachments=(csv,))
    assert_answered(result, queued_when="Queued batch")
    assert result.queued == 0 and "name a template" in result.text
    assert sentinels.read() == []


def test_an_attachment_named_like_a_path_is_only_a_label(
    quiet_chat: FakeChat, sentinels: Sentinels
) -> None:
    data = photo()
    image = Attachment("../../x.png", "image/png", len(data), data)
    result = outcome(quiet_chat, "/imagine a cat --strength 0.5", attachments=(image,))
    assert result.text.startswith("Queued job"), result
    record = quiet_chat.service.state.job(result.text.split("`")[1])
    assert record is not None and record.spec.init_image
    # Stored under the store's own id, in the store's folder: the name went nowhere.
    assert quiet_chat.store.get(record.spec.init_image) == data
    stored = quiet_chat.store.path(record.spec.init_image)
    assert stored.is_relative_to(quiet_chat.settings.data_dir) and "x" not in stored.name
    result = outcome(quiet_chat, "/imagine a cat --mask ../../x.png", attachments=(image,))
    assert_answered(result)
    assert result.queued == 0 and "the image it masks is missing" in result.text
    assert sentinels.read() == []


def test_the_api_refuses_path_like_names_by_field(
    quiet_chat: FakeChat, redis: redis_lib.Redis, sentinels: Sentinels
) -> None:
    x = str(sentinels.root / "x")
    bodies = [
        JobRequest(prompt="a cat", model="/root/x"),
        JobRequest(prompt="a cat", model=x + ".safetensors"),
        JobRequest(prompt="a cat", loras=[LoraField(name="../../x")]),
        JobRequest(prompt="a cat", sampler="../../x"),
    ]
    for body in bodies:
        with pytest.raises(UserError, match="unknown"):
            to_request(body, catalog=quiet_chat.catalog, max_image_bytes=1024 * 1024)
    assert queued_jobs(quiet_chat.settings, redis) == 0
    assert sentinels.read() == []


def test_the_queue_itself_takes_catalog_names_only(
    quiet_chat: FakeChat, redis: redis_lib.Redis, sentinels: Sentinels
) -> None:
    """A spec that names a path (forged past the bot) is not queued: the queue finds the
    model's pool by catalog name."""
    reply = outcome(quiet_chat, "/imagine a cat")
    record = quiet_chat.service.state.job(reply.text.split("`")[1])
    assert record is not None
    queue = JobQueue(redis=redis, settings=quiet_chat.settings, catalog=quiet_chat.catalog)
    for model in ("/root/x", "../x", str(sentinels.root / "x.safetensors")):
        forged = record.spec.model_copy(update={"model": model, "id": record.spec.id + "f"})
        with pytest.raises(UserError, match="unknown model"):
            queue.enqueue(forged)
    assert queued_jobs(quiet_chat.settings, redis) == 1
    assert sentinels.read() == []
