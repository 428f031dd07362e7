"""The optional NSFW check with a real (tiny, random-weight) image-classification model
saved to a local folder here: loaded through transformers' pipeline from that folder alone,
its score of the label ``nsfw`` stored with the verdict, flagged at the threshold."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from engine.qa import nsfw
from engine.qa.assess import JobQa
from engine.settings import QaSettings


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    folder = tmp_path_factory.mktemp("nsfw-model")
    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        id2label={0: "normal", 1: "nsfw"},
        label2id={"normal": 0, "nsfw": 1},
    )
    ViTForImageClassification(config).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


def test_a_local_classifier_scores_each_image_and_flags_at_its_threshold(
    model_folder: Path,
) -> None:
    image = Image.new("RGB", (64, 64), (200, 40, 40))
    image.putpixel((3, 3), (0, 0, 0))
    flagging = JobQa(
        settings=QaSettings(nsfw_model=model_folder, nsfw_threshold=0.0),
        thresholds=QaSettings(nsfw_threshold=0.0, min_contrast=0, blank_contrast=0),
    )
    verdict = flagging.assess(0, image)
    assert verdict is not None and verdict.nsfw is not None and 0 < verdict.nsfw < 1
    assert [f["check"] for f in verdict.flags] == ["nsfw"]
    assert verdict.record()["scores"]["nsfw"] == round(verdict.nsfw, 3)
    passing = JobQa(
        settings=QaSettings(nsfw_model=model_folder),
        thresholds=QaSettings(nsfw_threshold=1.0, min_contrast=0, blank_contrast=0),
    )
    assert passing.assess(0, image).flags == []  # type: ignore[union-attr]
    # Loaded once per worker, whoever asks.
    label = QaSettings().nsfw_label
    assert nsfw.classifier(model_folder, label=label) is nsfw.classifier(model_folder, label=label)


def test_a_folder_that_cannot_be_loaded_turns_the_check_off(tmp_path: Path) -> None:
    assert nsfw.classifier(tmp_path, label="nsfw") is None  # logged once, never downloaded
    assert nsfw.classifier(None, label="nsfw") is None
