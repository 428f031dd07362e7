"""Images attached to ``/imagine``: the part each plays, the mode that follows, the checks
the worker will run (run here first, so a bad file is refused before anything is queued),
the upload to the artifact store (Redis carries only the ids) and the thumbnails that open
the job's thread. No torch: ``engine.inputs`` is pure Pillow.

Which file is which:

- a role given by the platform (Discord's typed ``image`` / ``mask`` / ``control`` options);
- ``--mask NAME`` names the mask among files without a role (Slack);
- the other files in order: with ``--control`` the first is the control image, otherwise
  the first is the starting image.

The mode follows from what is there: a mask means inpainting (it needs the starting image
too), a control image means ControlNet, a starting image alone means img2img.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image

from bot import texts
from bot.ports import Attachment, ChatAdapter, MessageRef
from engine.errors import UserError
from engine.inputs import ROLES, PreparedInputs, prepare
from engine.settings import Settings
from engine.spec import JobSpec, Mode
from engine.store import ArtifactStore

IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
THUMBNAIL_SIDE = 512
_PLATFORM_ROLE = {"image": "init", "mask": "mask", "control": "control"}
# The JobSpec field that carries each role's artifact id.
SPEC_FIELDS = {"init": "init_image", "mask": "mask_image", "control": "control_image"}


@dataclass(frozen=True)
class JobInputs:
    """The attached images of one command, by the part they play."""

    init: Attachment | None = None
    mask: Attachment | None = None
    control: Attachment | None = None

    def by_role(self) -> dict[str, Attachment]:
        """The attachments present, keyed ``init`` / ``mask`` / ``control``."""
        found = {"init": self.init, "mask": self.mask, "control": self.control}
        return {role: file for role, file in found.items() if file is not None}

    @property
    def mode(self) -> Mode:
        """The job mode these inputs make; :class:`UserError` for a combination that
        does not make one."""
        if self.mask and self.control:
            raise UserError(
                "inpainting with a ControlNet guide is not supported; attach a mask or a "
                "control image, not both"
            )
        if self.mask:
            if not self.init:
                raise UserError(
                    f"`{self.mask.filename}` is a mask, but the image it masks is missing; "
                    "attach that image too"
                )
            return Mode.inpaint
        if self.control:
            if self.init:
                raise UserError(
                    "a ControlNet job takes the guide image only; leave out "
                    f"`{self.init.filename}` (a starting image with a guide is not supported yet)"
                )
            return Mode.controlnet
        return Mode.img2img if self.init else Mode.txt2img


def sort_inputs(
    attachments: tuple[Attachment, ...] | list[Attachment], *, mask: str | None, control: bool
) -> JobInputs:
    """Give each attached image its part (see the module docstring). Files that are not
    images (a CSV for a batch) are another workflow's and are left alone; an image of a
    kind a job cannot take (GIF, SVG) is refused rather than left out."""
    refused = [a for a in attachments if _other_image(a.content_type)]
    if refused:
        # Dropping it would queue a job from the text alone, which is not what was asked.
        raise UserError(
            f"`{refused[0].filename}` is an image of type {refused[0].content_type}, which I "
            "can't use; attach a PNG, JPEG or WebP file"
        )
    images = [a for a in attachments if a.content_type in IMAGE_TYPES]
    roles: dict[str, Attachment] = {}
    free: list[Attachment] = []
    for file in images:
        if file.role is None:
            free.append(file)
            continue
        _assign(roles, _PLATFORM_ROLE[file.role], file)
    if mask is not None:
        named = next((f for f in free if f.filename == mask), None)
        if named is None:
            attached = ", ".join(f"`{f.filename}`" for f in images) or "none"
            raise UserError(
                f"--mask names `{mask}`, but no attached image has that name (attached: "
                f"{attached}); attach the mask with the command and give its file name"
            )
        free.remove(named)
        _assign(roles, "mask", named)
    order = ("control", "init") if control else ("init",)
    for role in order:
        if free and role not in roles:
            roles[role] = free.pop(0)
    if control and "control" not in roles and "init" in roles and "mask" not in roles:
        # --control with the one image given as the starting image (Discord's image
        # option): a guide is what was asked for, and a job cannot take both.
        roles["control"] = roles.pop("init")
    if free:
        raise UserError(
            "I can use one starting image, one mask and one control image; "
            f"{', '.join(f'`{f.filename}`' for f in free)} has no part here. Leave it out, "
            "or name the mask with --mask FILE"
        )
    return JobInputs(**roles)


def check_inputs(
    inputs: JobInputs, *, spec_size: tuple[int, int], settings: Settings
) -> PreparedInputs:
    """Run the worker's preparation on the attachments now, so a file it would refuse (not
    an image, a bomb, an all-black mask, a mask of another shape) is refused before queueing;
    the prepared images are what the thread shows (:func:`post_inputs`)."""
    files = inputs.by_role()
    return prepare(
        images={role: file.read() for role, file in files.items()},
        width=spec_size[0],
        height=spec_size[1],
        how=settings.input_fit,
        max_pixels=settings.limits.max_input_pixels,
        labels={role: f"`{file.filename}`" for role, file in files.items()},
    )


def store_fields(inputs: JobInputs) -> list[str]:
    """The ``JobSpec`` fields that will carry these inputs' artifact ids."""
    return [SPEC_FIELDS[role] for role in inputs.by_role()]


def store_inputs(inputs: JobInputs, *, store: ArtifactStore, requested_by: str) -> dict[str, str]:
    """Put each input in the store; return the ``JobSpec`` fields with their artifact ids."""
    fields = {}
    for role, file in inputs.by_role().items():
        artifact_id = store.put(
            file.read(),
            suffix=IMAGE_TYPES[file.content_type],
            meta={"role": role, "filename": file.filename, "requested_by": requested_by},
        )
        fields[SPEC_FIELDS[role]] = artifact_id
    return fields


def post_inputs(
    adapter: ChatAdapter, spec: JobSpec, *, thread: MessageRef, prepared: PreparedInputs
) -> None:
    """Upload the job's inputs into its thread as the job will see them (``prepared`` by
    :func:`check_inputs`: fitted to its size, the mask in black and white), each captioned
    with its part."""
    for role in ROLES:
        image = getattr(prepared, role)
        if image is None:
            continue
        adapter.upload(
            channel=thread.channel,
            thread=thread.thread_id,
            data=_thumbnail(image),
            filename=f"{spec.id}-{role}.png",
            text=texts.input_caption(role, spec),
        )


def _other_image(content_type: str) -> bool:
    """Whether a file declared as an image is of a kind a job cannot take (GIF, SVG...)."""
    kind = content_type.split(";")[0].strip().lower()
    return kind.startswith("image/") and kind not in IMAGE_TYPES


def _assign(roles: dict[str, Attachment], role: str, file: Attachment) -> None:
    if role in roles:
        raise UserError(
            f"`{roles[role].filename}` and `{file.filename}` are both given as the "
            f"{texts.INPUT_NAMES[role]}; attach one"
        )
    roles[role] = file


def _thumbnail(image: Image.Image) -> bytes:
    shown = image.copy()
    shown.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    buffer = io.BytesIO()
    shown.save(buffer, format="PNG")
    return buffer.getvalue()


__all__ = [
    "JobInputs",
    "check_inputs",
    "post_inputs",
    "sort_inputs",
    "store_fields",
    "store_inputs",
]
