"""A1111 sampler names -> diffusers schedulers. Each job gets a fresh scheduler built from
the model's own scheduler config, so one job's choice never leaks into the next."""

from __future__ import annotations

from typing import Any

from engine.errors import SpecError

# A1111 sampler name -> (diffusers scheduler class, from_config overrides). The one list of
# samplers: ``engine.spec.SAMPLERS`` is its keys, in this order (the order chat menus show).
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


def unknown_sampler(sampler: str) -> SpecError:
    """The refusal of a sampler name that is not in :data:`SAMPLER_SCHEDULERS`."""
    return SpecError(f"unknown sampler `{sampler}`; choose one of: {', '.join(SAMPLER_SCHEDULERS)}")


def make_scheduler(sampler: str, base_config: Any) -> Any:
    """A new scheduler for A1111 sampler name ``sampler``, from the model's scheduler config
    (:class:`SpecError` for an unknown name; ``check_limits`` refuses one before this)."""
    try:
        class_name, overrides = SAMPLER_SCHEDULERS[sampler]
    except KeyError:
        raise unknown_sampler(sampler) from None
    import diffusers

    return getattr(diffusers, class_name).from_config(base_config, **overrides)
