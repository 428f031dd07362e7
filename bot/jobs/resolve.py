"""From what the user typed to a complete ``JobSpec``: template, model, LoRAs and defaults.

Precedence for every setting: the command's flag, then the template, then the model's
catalog entry (then the bot's defaults). Resolving here, in the chat process, means a user
hears about a typo or a limit before anything is queued; the worker checks the spec again.
So does a model that no worker renders (``bot.jobs.routing``): refused here, or resolved with
the sentence saying the job will wait for a worker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from bot.grammar.parse import ImagineRequest, size_for_aspect
from bot.jobs.inputs import JobInputs, check_inputs, sort_inputs, store_fields, store_inputs
from bot.jobs.routing import Routing
from bot.ports import Attachment
from bot.settings import BotSettings
from engine.catalog import Catalog, ModelEntry
from engine.errors import MissingVariables, UserError
from engine.inputs import PreparedInputs
from engine.settings import Settings
from engine.spec import CONTROL_TYPES, JobSpec, LoraRef, Mode, new_spec
from engine.store import ArtifactStore

# What each reserved flag waits for; the grammar accepts them so commands written today
# keep working once the workflow lands.
STAND_IN_ID = "19700101-0000000000000000.png"  # well formed, never stored
NOT_YET: dict[str, str] = {}
# Reserved flags that belong to another command (``--variations``: rows of a batch), with
# what to do on a single ``/imagine`` instead.
ELSEWHERE = {
    "variations": "to get variations of an image, react \U0001f500 on it or type "
    "`/imagine vary JOB#K`; for more images of this prompt use --n",
}


@dataclass(frozen=True)
class ResolvedJob:
    """A validated spec and, with attached images, those images as the job will see them;
    ``waiting``: the sentence saying it will wait for a worker (``bot.jobs.routing``)."""

    spec: JobSpec
    inputs: PreparedInputs | None = None
    waiting: str | None = None


class JobResolver:
    """Specs for requests with this process's defaults, worked out once at start (the default
    model and image count from the bot's settings, the limits from the engine's), so a desk
    that queues jobs holds this instead of both settings objects. ``routing``: whether a
    model has workers (``None``: the embedded default, or a command line, which checks none).
    """

    def __init__(
        self,
        *,
        catalog: Catalog,
        settings: Settings,
        bot_settings: BotSettings,
        store: ArtifactStore | None = None,
        routing: Routing | None = None,
    ) -> None:
        self.catalog = catalog
        self.routing = routing
        self.settings = settings
        self.limits = settings.limits
        self.default_model = bot_settings.model_name(settings)
        self.default_count = bot_settings.default_count
        self.store = store

    def resolve(
        self,
        request: ImagineRequest,
        *,
        requested_by: str,
        attachments: Sequence[Attachment] = (),
        route: bool = True,
        admit: Callable[[JobSpec], object] | None = None,
    ) -> ResolvedJob:
        """The spec for ``request``; :class:`UserError` with a sentence for the user.

        Attached images make an img2img, inpaint or ControlNet job (``bot.jobs.inputs``); they
        are checked like the worker will check them and then put in the store, and the spec
        carries their artifact ids. ``route``: check that its model has workers (a desk that
        resolves many jobs checks them all at once with :meth:`route` instead). ``admit``:
        the last check (the user's quotas, ``bot.quotas``), called with the spec after every
        other one and before attached images are stored; it refuses with a ``UserError``.
        """
        for name in request.flags:
            if name in ELSEWHERE:
                raise UserError(f"--{name} is for batches; {ELSEWHERE[name]}")
            raise UserError(
                f"--{name} is not available yet; it comes with {NOT_YET.get(name, 'a later release')}. "
                "Leave it out for now."
            )
        inputs = sort_inputs(
            tuple(attachments), mask=request.mask, control=request.control is not None
        )
        mode = inputs.mode
        template = self.catalog.template(request.template) if request.template else None
        model = self.catalog.model(
            request.model or (template.model if template else None) or self.default_model
        )
        if template is not None:
            try:
                prompt, negative = template.render(request.variables, extra=request.prompt)
            except MissingVariables as exc:
                if request.variables:
                    raise
                # "/imagine character design of a robot" may mean the word, not the template.
                raise MissingVariables(
                    f"{exc.message}. (To use `{template.name}` as an ordinary word, start the "
                    f"prompt with another word, e.g. `/imagine a {template.name} ...`.)",
                    template=exc.template,
                    missing=exc.missing,
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
            entry = self.catalog.lora(name, family=model.family)
            loras.append(
                LoraRef(name=entry.name, weight=entry.weight if weight is None else weight)
            )

        if request.size:
            width, height = request.size
        elif request.aspect:
            width, height = size_for_aspect(
                request.aspect, pixels=model.width * model.height, min_side=self.limits.min_side
            )
        else:
            width, height = model.width, model.height

        fields: dict[str, Any] = dict(
            prompt=prompt,
            negative_prompt=negative,
            model=model.name,
            loras=loras,
            sampler=_first(request.sampler, template and template.sampler, model.sampler),
            steps=_first(request.steps, template and template.steps, model.steps),
            cfg_scale=_first(request.cfg, template and template.cfg_scale, model.cfg_scale),
            width=width,
            height=height,
            count=request.count if request.count is not None else self.default_count,
            requested_by=requested_by,
            template=template.name if template else None,
            variables=dict(request.variables),
            mode=mode,
            **_image_fields(request, inputs, mode=mode, catalog=self.catalog, model=model),
        )
        if inputs.by_role():
            if self.store is None:
                raise ValueError("attached images need an artifact store")
            fields["input_fit"] = self.settings.input_fit  # recorded: a re-render fits them alike
            prepared = check_inputs(inputs, spec_size=(width, height), settings=self.settings)
            # Every other check first, with stand-in ids, so a refused command stores nothing.
            stand_ins = dict.fromkeys(store_fields(inputs), STAND_IN_ID)
            stand_in = new_spec(limits=self.limits, seed=request.seed, **fields, **stand_ins)
            waiting = self.route([model.name]) if route else None  # last: it asks Redis
            if admit is not None:
                admit(stand_in)
            fields |= store_inputs(inputs, store=self.store, requested_by=requested_by)
            spec = new_spec(limits=self.limits, seed=request.seed, **fields)
            return ResolvedJob(spec, prepared, waiting)
        spec = new_spec(limits=self.limits, seed=request.seed, **fields)
        waiting = self.route([model.name]) if route else None
        if admit is not None:
            admit(spec)
        return ResolvedJob(spec, None, waiting)

    def route(self, models: Iterable[str]) -> str | None:
        """Before jobs on ``models`` are queued: the sentence saying they will wait for a
        worker, or ``None``; :class:`~bot.jobs.routing.NoWorkerError` when a model's pool has
        had no worker within the grace window (``bot.jobs.routing``). Without routing: None."""
        return self.routing.check(models) if self.routing is not None else None


def _image_fields(
    request: ImagineRequest, inputs: JobInputs, *, mode: Mode, catalog: Catalog, model: ModelEntry
) -> dict[str, Any]:
    """Strength and ControlNet settings of ``request`` for ``mode``; flags that need an
    attached image are refused without one."""
    if request.strength is not None and mode not in (Mode.img2img, Mode.inpaint):
        raise UserError(
            "--strength says how far to move from an attached image; attach the image to "
            "start from, or leave --strength out"
        )
    if mode is not Mode.controlnet:
        if request.control is not None:
            raise UserError(
                f"--control {request.control} needs an attached image: a photo to take the "
                "edges from (canny), or a prepared depth map, pose or scribble"
            )
        if request.control_scale is not None:
            raise UserError("--control-scale needs a control image; attach one with --control")
        return {"strength": request.strength}
    # A control image without --control (a Discord option): edges are the one guide that
    # any photo gives.
    wanted = request.control or "canny"
    if wanted in CONTROL_TYPES:
        entry = catalog.controlnet_for(model, wanted)
    elif wanted in catalog.controlnets:
        entry = catalog.controlnet(wanted, model=model)
    else:
        close = catalog.suggest("ControlNet", wanted)
        hint = f"; did you mean `{close}`?" if close else ""
        raise UserError(
            f"--control takes {', '.join(CONTROL_TYPES)} or a ControlNet name; "
            f"`{wanted}` is neither{hint}"
        )
    scale = request.control_scale if request.control_scale is not None else entry.scale
    return {"control_type": entry.control, "controlnet": entry.name, "control_scale": scale}


def _first(*values: object) -> object:
    """The first value that is set (0 counts as set; None and a missing template do not)."""
    return next(v for v in values if v is not None and v is not False and v != "")
