"""The QA's scores and flags on pictures built here: sharp against blurred, blank, dark,
bright, flat, near-duplicates, and a template's thresholds over the global ones."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from engine.catalog import Template
from engine.errors import CatalogError
from engine.qa.assess import JobQa, rerender_seed
from engine.qa.checks import duplicate_flag, image_flags
from engine.qa.scores import ANALYSIS_SIDE, hamming, score
from engine.settings import QaSettings, QaThresholds


def sharp_picture(size: int = 1024, seed: int = 7) -> Image.Image:
    """Shapes with hard edges and some fine texture, like a crisp render."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(90, 170, (size, size, 3), dtype=np.uint8)
    image = Image.fromarray(texture)
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = (int(v) for v in rng.integers(0, size - 100, 2))
        w, h = (int(v) for v in rng.integers(8, size // 6, 2))
        draw.rectangle([x, y, x + w, y + h], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def checks(flags: list[dict]) -> list[str]:
    return [flag["check"] for flag in flags]


def test_a_sharp_image_passes_and_its_blurred_copy_is_flagged_soft() -> None:
    sharp = sharp_picture()
    blurred = sharp.filter(ImageFilter.GaussianBlur(4))
    defaults = QaThresholds()
    assert image_flags(score(sharp), defaults) == []
    [flag] = image_flags(score(blurred), defaults)
    assert flag["check"] == "sharpness"
    assert flag["threshold"] == defaults.min_sharpness
    assert flag["score"] < defaults.min_sharpness < score(sharp).sharpness
    assert flag["reason"] == (
        f"soft focus: sharpness {flag['score']:.0f} < {defaults.min_sharpness:g}"
    )


def test_sharpness_does_not_depend_much_on_the_render_size() -> None:
    big = sharp_picture(1536)
    small = big.resize((ANALYSIS_SIDE, ANALYSIS_SIDE), Image.Resampling.BOX)
    # Scored at the analysis size both: within a few per cent of each other.
    assert score(big).sharpness == pytest.approx(score(small).sharpness, rel=0.1)


def test_an_all_black_image_is_flagged_blank_and_only_blank() -> None:
    flags = image_flags(score(Image.new("RGB", (512, 512))), QaThresholds())
    assert checks(flags) == ["blank"]
    assert flags[0]["reason"].startswith("blank image")


def test_dark_bright_and_flat_images_are_flagged_with_their_scores() -> None:
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 12, (256, 256, 3))
    dark = Image.fromarray(np.clip(8 + noise, 0, 255).astype(np.uint8))
    bright = Image.fromarray(np.clip(250 + noise, 0, 255).astype(np.uint8))
    flat = Image.new("RGB", (256, 256), (120, 120, 120))
    ImageDraw.Draw(flat).rectangle([100, 100, 140, 140], fill=(140, 140, 140))
    defaults = QaThresholds()
    assert "dark" in checks(image_flags(score(dark), defaults))
    [too_dark] = [f for f in image_flags(score(dark), defaults) if f["check"] == "dark"]
    assert too_dark["reason"] == f"too dark: brightness {too_dark['score']:.0f} < 20"
    assert "bright" in checks(image_flags(score(bright), defaults))
    assert "flat" in checks(image_flags(score(flat), defaults))


def test_identical_images_of_a_job_are_flagged_as_duplicates_of_the_first() -> None:
    picture, other = sharp_picture(seed=1), sharp_picture(seed=2)
    qa = JobQa(settings=QaSettings(), thresholds=QaThresholds())
    verdicts = []
    for index, image in enumerate([picture, other, picture.copy()]):
        verdict = qa.assess(index, image)
        assert verdict is not None
        qa.keep(index, verdict)
        verdicts.append(verdict)
    assert verdicts[0].flags == [] and verdicts[1].flags == []
    [duplicate] = verdicts[2].flags
    assert duplicate["check"] == "duplicate"
    assert duplicate["reason"] == "near-duplicate of image 1 (distance 0 <= 4)"
    assert hamming(verdicts[0].scores.phash, verdicts[1].scores.phash) > 4


def test_a_slightly_changed_copy_is_still_a_near_duplicate() -> None:
    picture = sharp_picture(seed=3)
    nudged = picture.filter(ImageFilter.GaussianBlur(1)).resize((1000, 1000))
    flag = duplicate_flag(score(nudged).phash, [(0, score(picture).phash)], QaThresholds())
    assert flag is not None and flag["score"] <= 4
    off = QaThresholds(duplicate_distance=-1)
    assert duplicate_flag(score(nudged).phash, [(0, score(picture).phash)], off) is None


def test_a_templates_thresholds_override_the_global_ones() -> None:
    crisp = Template(name="crisp", description="d", prompt="p", qa={"min_sharpness": 1e6})
    plain = Template(name="plain", description="d", prompt="p")
    base = QaSettings(min_sharpness=30)
    picture = sharp_picture()
    assert image_flags(score(picture), plain.qa_thresholds(base)) == []
    stricter = crisp.qa_thresholds(base)
    assert stricter.min_sharpness == 1e6 and stricter.min_brightness == base.min_brightness
    assert checks(image_flags(score(picture), stricter)) == ["sharpness"]


def test_a_template_with_an_unknown_or_bad_threshold_does_not_load() -> None:
    with pytest.raises(ValueError, match="min_sharpnes"):
        Template(name="t", description="d", prompt="p", qa={"min_sharpnes": 10})
    with pytest.raises(ValueError, match="max_brightness"):
        Template(name="t", description="d", prompt="p", qa={"max_brightness": 300})
    assert issubclass(CatalogError, Exception)


def test_qa_off_gives_no_verdict_and_a_rerender_seed_is_new_and_stable() -> None:
    qa = JobQa(settings=QaSettings(enabled=False), thresholds=QaThresholds())
    assert qa.assess(0, Image.new("RGB", (64, 64))) is None
    assert rerender_seed("job", 0, 5) == rerender_seed("job", 0, 5)
    assert rerender_seed("job", 0, 5) not in (5, rerender_seed("job", 1, 6))
    assert 0 <= rerender_seed("job", 3, 2**32 - 1) < 2**32


def test_a_template_file_with_a_qa_block_loads_into_the_catalog(tmp_path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "crisp.yaml").write_text(
        "crisp:\n  description: d\n  prompt: a {thing}\n"
        "  variables: {thing: {default: mug}}\n  qa: {min_sharpness: 100, duplicate_distance: 2}\n"
    )
    from engine.catalog import Catalog

    template = Catalog.load(tmp_path).template("crisp")
    thresholds = template.qa_thresholds(QaSettings())
    assert (thresholds.min_sharpness, thresholds.duplicate_distance) == (100, 2)
    assert thresholds.min_brightness == QaThresholds().min_brightness
