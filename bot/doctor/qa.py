"""The automated QA's optional NSFW check (``engine.qa.nsfw``): on when a local folder of
classifier weights is configured and looks like one, off otherwise. Nothing is loaded
here (the chat side never imports torch); a worker loads the folder on its first image."""

from __future__ import annotations

from bot.doctor.report import Check
from engine.settings import QaSettings

# What transformers' image-classification pipeline reads from a folder: its config and
# the weights in one of these files.
_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


def qa_check(qa: QaSettings) -> Check:
    """One line: QA on or off, its policy, and whether the NSFW check is on."""
    if not qa.enabled:
        return Check("qa", "ok", "automated QA is off (PROOFROOM_QA__ENABLED=false)")
    head = f"automated QA on (policy {qa.policy}, sharpness >= {qa.min_sharpness:g})"
    folder = qa.nsfw_model
    if folder is None:
        return Check("qa", "ok", f"{head}; NSFW check off (no PROOFROOM_QA__NSFW_MODEL)")
    if not folder.is_dir():
        return Check(
            "qa",
            "warn",
            f"{head}; NSFW check off: {folder} is not a folder",
            fix="set PROOFROOM_QA__NSFW_MODEL to a local folder of an image-classification "
            "model (config.json and its weights), or unset it; nothing is downloaded",
        )
    if not (folder / "config.json").is_file() or not any(
        (folder / name).is_file() for name in _WEIGHTS
    ):
        return Check(
            "qa",
            "warn",
            f"{head}; NSFW check off: {folder} has no config.json and weights",
            fix="copy the whole model folder (config.json, preprocessor_config.json and "
            "model.safetensors) there",
        )
    return Check("qa", "ok", f"{head}; NSFW check on ({folder}, label {qa.nsfw_label!r})")
