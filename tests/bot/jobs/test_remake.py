"""``proofroom generate --from SIDECAR``: an exported image rendered again from its sidecar
(``bot.jobs.remake``), with its inputs read from the team's store and nothing added to it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.cli import main
from bot.ports import MessageRef
from bot.records import ImageRecord
from bot.review.export import sidecar
from engine.model_folders import load_catalog
from engine.settings import get_settings
from engine.spec import JobSpec, Mode, new_spec
from engine.store import LocalStore, store_from_settings

pytestmark = pytest.mark.usefixtures("cli_env")


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _exported(tmp_path: Path, spec: JobSpec) -> tuple[Path, bytes]:
    """Render ``spec`` into the team's store, as a worker would, and write the sidecar of
    its first image as the review's export does; the sidecar's path and the PNG."""
    from engine.pipelines import PipelineCache
    from engine.render import render

    settings = get_settings()
    store = store_from_settings(settings)
    result = render(
        spec, cache=PipelineCache(settings=settings), store=store, catalog=load_catalog(settings)
    )
    image = result.images[0]
    record = ImageRecord(
        message=MessageRef("shell", "local", "7"),
        job_id=spec.id,
        index=0,
        seed=image.seed,
        artifact_id=image.artifact_id,
        width=image.width,
        height=image.height,
        requester="U1",
        root="shell:local:7",
    )
    content = sidecar(image=record, spec=spec, approvers=["U2"], parameters=None)
    path = tmp_path / f"{spec.id}-0-{image.seed}.json"
    path.write_text(json.dumps(content))
    return path, store.get(image.artifact_id)


def _source(settings_store: LocalStore) -> str:
    rng = np.random.default_rng(5)
    cells = rng.integers(0, 255, size=(4, 4, 3), dtype=np.uint8)
    picture = Image.fromarray(cells).resize((64, 64), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return settings_store.put(buffer.getvalue(), suffix=".png")


def test_an_img2img_image_is_made_again_from_its_sidecar(tmp_path: Path, capsys) -> None:
    team = store_from_settings(get_settings())
    assert isinstance(team, LocalStore)
    init = _source(team)
    spec = new_spec(
        limits=get_settings().limits,
        prompt="a leather handbag",
        model="tiny",
        mode=Mode.img2img,
        init_image=init,
        strength=0.5,
        steps=4,
        sampler="Euler a",
        width=64,
        height=64,
        seed=77,
        parent="abc/1",
    )
    path, original = _exported(tmp_path, spec)
    content = json.loads(path.read_text())
    assert content["chain"] == {
        "parent": "abc/1",
        "mode": "img2img",
        "init_image": init,
        "seed": 77,
        "strength": 0.5,
    }
    before = sorted(p.name for p in Path(get_settings().artifacts_dir).rglob("*.png"))
    out = tmp_path / "again"
    assert main(["generate", "--from", str(path), "-o", str(out)]) == 0
    [again] = out.glob("*.png")
    assert "seed 77  64x64" in capsys.readouterr().out
    assert np.array_equal(_pixels(again.read_bytes()), _pixels(original))
    after = sorted(p.name for p in Path(get_settings().artifacts_dir).rglob("*.png"))
    assert after == before  # nothing was added to the team's store


def test_a_sidecar_without_its_input_says_why(tmp_path: Path, capsys) -> None:
    team = store_from_settings(get_settings())
    init = _source(team)  # type: ignore[arg-type]
    spec = new_spec(
        limits=get_settings().limits,
        prompt="a mug",
        model="tiny",
        mode=Mode.img2img,
        init_image=init,
        steps=2,
        width=64,
        height=64,
        seed=1,
    )
    path = tmp_path / "x.json"
    record = ImageRecord(
        message=MessageRef("shell", "local", "7"),
        job_id=spec.id,
        index=0,
        seed=1,
        artifact_id=init,
        width=64,
        height=64,
        requester="U1",
        root="shell:local:7",
    )
    path.write_text(json.dumps(sidecar(image=record, spec=spec, approvers=[], parameters=None)))
    team.delete(init)
    assert main(["generate", "--from", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert f"its init image `{init}` is no longer in the artifact store" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"job_id": "abc", "seed": 1}, "this sidecar has no `spec`"),
        ({"spec": {"prompt": "x"}, "index": 0}, "this sidecar's spec cannot be read"),
        (
            {"spec": {"prompt": "x", "model": "tiny", "seed": 1, "count": 2}, "index": 5},
            "names image 5 of a job of 2 image(s)",
        ),
    ],
)
def test_a_sidecar_that_cannot_be_made_again_is_one_sentence(
    tmp_path: Path, capsys, content: dict, message: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(content))
    assert main(["generate", "--from", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_file_that_is_not_json_is_one_sentence(tmp_path: Path, capsys) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    assert main(["generate", "--from", str(path), "-o", str(tmp_path / "o")]) == 2
    assert f"cannot read {path}" in capsys.readouterr().err
