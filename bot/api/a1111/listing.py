"""The catalog as A1111 lists it: ``/sdapi/v1/sd-models``, ``/loras``, ``/samplers``,
``/schedulers``, and the few ``/options`` that mean something here. Pure; a listing shows a
file's name, never the server's path.
"""

from __future__ import annotations

from typing import Any

from bot.api.a1111.names import CHECKPOINT_SUFFIXES, file_name
from engine.catalog import Catalog, LoraEntry, ModelEntry
from engine.spec import SAMPLERS

# A1111's aliases and options of the samplers Proofroom has (modules/sd_samplers_kdiffusion.py
# before samplers and schedulers were split: the Karras ones carried {"scheduler": "karras"}).
SAMPLER_ALIASES: dict[str, list[str]] = {
    "Euler a": ["k_euler_a", "k_euler_ancestral"],
    "Euler": ["k_euler"],
    "DPM++ 2M Karras": ["k_dpmpp_2m_ka"],
    "DPM++ 2M SDE Karras": ["k_dpmpp_2m_sde_ka"],
    "DPM++ SDE Karras": ["k_dpmpp_sde_ka"],
    "DDIM": [],
    "UniPC": [],
    "LMS": ["k_lms"],
    "Heun": ["k_heun"],
}
# The schedules a client may name (``/sdapi/v1/schedulers``): the sampler's own, and Karras
# where a sampler of that name exists.
SCHEDULERS = (("automatic", "Automatic"), ("karras", "Karras"))


def sd_models(catalog: Catalog) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/sd-models``: each catalog model as A1111 lists a checkpoint. The title
    is the catalog name (what ``sd_model_checkpoint`` takes back); no hash is given, since
    hashing a checkpoint reads gigabytes; ``filename`` is the file's name, never its path."""
    return [
        {
            "title": entry.name,
            "model_name": entry.name,
            "hash": None,
            "sha256": None,
            "filename": _shown_source(entry),
            "config": None,
        }
        for entry in catalog.models.values()
    ]


def loras(catalog: Catalog) -> list[dict[str, Any]]:
    """``GET /sdapi/v1/loras``: each catalog LoRA as A1111's Lora extension lists one, with
    what the catalog knows in ``metadata`` (families, triggers, default weight)."""
    return [
        {
            "name": entry.name,
            "alias": entry.name,
            "path": _shown_source(entry),
            "metadata": {
                "families": list(entry.families),
                "triggers": list(entry.triggers),
                "weight": entry.weight,
                "description": entry.description,
            },
        }
        for entry in catalog.loras.values()
    ]


def samplers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/samplers``: Proofroom's samplers with A1111's aliases and options."""
    return [
        {
            "name": name,
            "aliases": SAMPLER_ALIASES.get(name, []),
            "options": {"scheduler": "karras"} if name.endswith(" Karras") else {},
        }
        for name in SAMPLERS
    ]


def schedulers() -> list[dict[str, Any]]:
    """``GET /sdapi/v1/schedulers``: the two schedules a request may name."""
    return [
        {
            "name": name,
            "label": label,
            "aliases": None,
            "default_rho": -1,
            "need_inner_model": False,
        }
        for name, label in SCHEDULERS
    ]


def options(*, model: str) -> dict[str, Any]:
    """``GET /sdapi/v1/options``: the few A1111 options that mean something here; ``model``
    is the key's default model (or the service's)."""
    return {
        "sd_model_checkpoint": model,
        "sd_checkpoint_hash": None,
        "samples_format": "png",
        "sd_vae": "Automatic",
        "CLIP_stop_at_last_layers": 1,
    }


def _shown_source(entry: ModelEntry | LoraEntry) -> str:
    """What a listing shows of where an entry comes from: a file's name (never the server's
    path), a Hub repo id, or ``builtin:name``."""
    source = entry.source
    if source.startswith("builtin:") or not _looks_local(source):
        return source
    return file_name(source)


def _looks_local(source: str) -> bool:
    return source.startswith(("/", ".", "~")) or source.lower().endswith(
        (*CHECKPOINT_SUFFIXES, ".yaml")
    )


__all__ = [
    "SAMPLER_ALIASES",
    "SCHEDULERS",
    "loras",
    "options",
    "samplers",
    "schedulers",
    "sd_models",
]
