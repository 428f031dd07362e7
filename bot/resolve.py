"""From what the user typed to a complete ``JobSpec``: template, model, LoRAs and defaults.

Precedence for every setting: the command's flag, then the template, then the model's
catalog entry (then the bot's defaults). Resolving here, in the chat process, means a user
hears about a typo or a limit before anything is queued; the worker checks the spec again.
"""

from __future__ import annotations

from bot.commands import ImagineRequest, size_for_aspect
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.errors import CatalogError, UserError
from engine.settings import Settings
from engine.spec import JobSpec, LoraRef, new_spec

# What each reserved flag waits for; the grammar accepts them so commands written today
# keep working once the workflow lands.
NOT_YET = {
    "strength": "image-to-image (attach an image)",
    "mask": "inpainting",
    "control": "ControlNet guides",
    "variations": "variations of an existing image (react \U0001f501 on an image for now)",
}


def build_spec(
    request: ImagineRequest,
    *,
    catalog: Catalog,
    settings: Settings,
    bot_settings: BotSettings,
    requested_by: str,
) -> JobSpec:
    """A validated spec for ``request``; :class:`UserError` with a sentence for the user."""
    for name in request.flags:
        raise UserError(
            f"--{name} is not available yet; it comes with {NOT_YET.get(name, 'a later release')}. "
            "Leave it out for now."
        )
    template = catalog.template(request.template) if request.template else None
    model = catalog.model(
        request.model or (template.model if template else None) or bot_settings.model_name(settings)
    )
    if template is not None:
        try:
            prompt, negative = template.render(request.variables, extra=request.prompt)
        except CatalogError as exc:
            if request.variables:
                raise
            # "/imagine character design of a robot" may mean the word, not the template.
            raise CatalogError(
                f"{exc.message}. (To use `{template.name}` as an ordinary word, start the "
                f"prompt with another word, e.g. `/imagine a {template.name} ...`.)"
            ) from None
    else:
        prompt, negative = request.prompt, ""
    if request.negative:
        negative = f"{negative}, {request.negative}" if negative else request.negative

    weights: dict[str, float | None] = dict(template.loras) if template else {}
    for lora in request.loras:
        weights[lora.name] = lora.weight if lora.weight is not None else weights.get(lora.name)
    loras = []
    for name, weight in weights.items():
        entry = catalog.lora(name, family=model.family)
        loras.append(LoraRef(name=entry.name, weight=entry.weight if weight is None else weight))

    if request.size:
        width, height = request.size
    elif request.aspect:
        width, height = size_for_aspect(
            request.aspect, pixels=model.width * model.height, min_side=settings.limits.min_side
        )
    else:
        width, height = model.width, model.height

    return new_spec(
        limits=settings.limits,
        seed=request.seed,
        prompt=prompt,
        negative_prompt=negative,
        model=model.name,
        loras=loras,
        sampler=_first(request.sampler, template and template.sampler, model.sampler),
        steps=_first(request.steps, template and template.steps, model.steps),
        cfg_scale=_first(request.cfg, template and template.cfg_scale, model.cfg_scale),
        width=width,
        height=height,
        count=request.count if request.count is not None else bot_settings.default_count,
        requested_by=requested_by,
        template=template.name if template else None,
        variables=dict(request.variables),
    )


def _first(*values: object) -> object:
    """The first value that is set (0 counts as set; None and a missing template do not)."""
    return next(v for v in values if v is not None and v is not False and v != "")
