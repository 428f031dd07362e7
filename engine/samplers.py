"""A1111 sampler names -> diffusers schedulers. Each job gets a fresh scheduler built from
the model's own scheduler config, so one job's choice never leaks into the next."""

from __future__ import annotations

from typing import Any

from engine.errors import SpecError
from engine.spec import SAMPLERS

# A1111 sampler name -> (diffusers scheduler class, from_config overrides).
SAMPLER_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE Karras": (
        "DPMSolverMultistepScheduler",
        {"use_karras_sigmas": True, "algorithm_type": "sde-dpmsolver++"},
    ),
    # lower_order_final: diffusers forces it on (with a warning) for a final sigma of zero.
    "DPM++ SDE Karras": (
        "DPMSolverSinglestepScheduler",
        {"use_karras_sigmas": True, "lower_order_final": True},
    ),
    "DDIM": ("DDIMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
}


def make_scheduler(sampler: str, base_config: Any) -> Any:
    """A new scheduler for A1111 sampler name ``sampler``, from the model's scheduler config."""
    if sampler not in SAMPLER_SCHEDULERS:
        raise SpecError(f"unknown sampler `{sampler}`; choose one of: {', '.join(SAMPLERS)}")
    import diffusers

    class_name, overrides = SAMPLER_SCHEDULERS[sampler]
    return getattr(diffusers, class_name).from_config(base_config, **overrides)
