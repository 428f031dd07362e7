"""The catalog: prompt templates, models, LoRAs, ControlNets, embeddings and VAEs by name:
YAML under ``templates/``, plus the files found in the drop-in folders
(``engine.model_folders``), under which the YAML entries win.

Names are the only way from chat to a file: nothing a user types ever becomes a
path. No torch here; the bot resolves templates so users get errors before
anything is queued, and the worker checks again.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from engine.errors import CatalogError, MissingVariables, SpecError
from engine.settings import QaThresholds
from engine.spec import ControlType

# sd2: SD 2.x (and SD-Turbo, distilled from 2.1): OpenCLIP text encoder, 1024-wide context.
Family = Literal["sd15", "sd2", "sdxl"]
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
_PLACEHOLDER = re.compile(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}")
# A LoRA weight from a template or loras.yaml, as `--lora name:w` allows it: a NaN or a
# huge weight in a file would render black or noise images for every job that uses it.
MAX_LORA_WEIGHT = 5.0
LoraWeight = Annotated[float, Field(ge=-MAX_LORA_WEIGHT, le=MAX_LORA_WEIGHT, allow_inf_nan=False)]
# A worker pool's name: part of RQ queue names (``engine.queue``) and of ``--pools`` lists.
POOL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")


def check_pool_name(name: str) -> str:
    """``name`` if it can name a worker pool (lower-case letters, digits, ``-`` and ``_``,
    at most 40, starting with a letter or digit), else :class:`ValueError` saying so."""
    if not POOL_NAME.fullmatch(name):
        raise ValueError(
            f"pool name {name!r} is not valid: use lower-case letters, digits, '-' and '_' "
            "(at most 40, starting with a letter or digit)"
        )
    return name


class ModelEntry(BaseModel):
    """A checkpoint: HF repo id, local diffusers folder, single-file ``.safetensors``,
    or ``builtin:<name>`` for the offline test models.

    ``config``: for a single file, a local diffusers folder whose configs describe it (else
    an A1111-style ``<stem>.yaml`` beside it, else the family's config shipped with the
    project). ``vae``: a VAE by catalog name or path, used instead of the checkpoint's own.
    ``pool``: the workers that render it (its queues, ``engine.queue``); always set once
    validated: the family when models.yaml names none.
    """

    name: str
    source: str
    family: Family
    description: str = ""
    config: str | None = None
    vae: str | None = None
    width: int = 512
    height: int = 512
    steps: int = 30
    cfg_scale: float = 7.0
    sampler: str = "DPM++ 2M Karras"
    # Most images in one pipeline call (engine.merging); None: the family's default.
    max_batch: int | None = Field(default=None, ge=1)
    pool: str = ""

    @model_validator(mode="after")
    def _default_pool(self) -> ModelEntry:
        # Pools default to the family, so a catalog without `pool:` keeps the queue names
        # it always had ({prefix}-{priority}-{family}).
        self.pool = check_pool_name(self.pool) if self.pool else self.family
        return self


class LoraEntry(BaseModel):
    """A LoRA file (relative to the LoRA directory, or ``builtin:<name>``)."""

    name: str
    source: str
    families: list[Family]
    triggers: list[str] = Field(default_factory=list)
    weight: LoraWeight = 0.8
    description: str = ""


class EmbeddingEntry(BaseModel):
    """A textual-inversion embedding (A1111 ``.pt`` / ``.safetensors``): the word that names
    it in a prompt is ``name``; ``families`` it was trained for."""

    name: str
    source: str
    families: list[Family]
    vectors: int = 1
    description: str = ""


class VaeEntry(BaseModel):
    """A VAE file or folder that a model may use instead of its own (``vae:`` in models.yaml)."""

    name: str
    source: str
    families: list[Family]
    description: str = ""


class FileProblem(BaseModel):
    """A file in a drop-in folder that is not in the catalog, and why (unreadable,
    unsupported, a refiner...): listed for admins, never fatal."""

    path: str
    kind: str  # model, LoRA, embedding, VAE
    reason: str


class ControlNetEntry(BaseModel):
    """A ControlNet: HF repo id, local diffusers folder, or ``builtin:<name>`` (tests).

    ``models`` limits it to those model names (the tiny test ControlNet only fits the tiny
    model); empty means any model of ``family``.
    """

    name: str
    source: str
    family: Family
    control: ControlType
    models: list[str] = Field(default_factory=list)
    scale: float = 1.0  # default conditioning scale
    description: str = ""

    def fits(self, model: ModelEntry) -> bool:
        """Whether this ControlNet can guide ``model``. Built-in test models are far smaller
        than real ones, so they take only ControlNets that name them."""
        if model.source.startswith("builtin:"):
            return model.name in self.models
        return self.family == model.family and (not self.models or model.name in self.models)


class Variable(BaseModel):
    """One template variable; no default means the user must give it."""

    description: str = ""
    default: str | None = None
    examples: list[str] = Field(default_factory=list)
    # Other names for the same value, as people's spreadsheets already spell it (the
    # lesson's CSV says ``product_name`` where the template says ``product``).
    aliases: list[str] = Field(default_factory=list)

    @property
    def required(self) -> bool:
        """Whether the user must give a value."""
        return self.default is None


class Template(BaseModel):
    """A named prompt with ``{variables}``, a negative prompt and optional defaults."""

    name: str
    description: str
    prompt: str
    negative: str = ""
    variables: dict[str, Variable] = Field(default_factory=dict)
    model: str | None = None
    loras: dict[str, LoraWeight] = Field(default_factory=dict)
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    # QA thresholds of this template's images over the global ones (engine.settings.QaThresholds
    # names them), e.g. ``qa: {min_sharpness: 100}``; checked when the catalog loads.
    qa: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_qa_thresholds(self) -> Template:
        QaThresholds.model_validate(self.qa)  # unknown names and bad values fail the load
        return self

    def qa_thresholds(self, base: QaThresholds) -> QaThresholds:
        """``base`` with this template's ``qa:`` values over it."""
        if not self.qa:
            return base
        own = base.model_dump(include=set(QaThresholds.model_fields))  # not a QaSettings' rest
        return QaThresholds.model_validate({**own, **self.qa})

    def variable_name(self, name: str) -> str | None:
        """The variable ``name`` stands for (itself or one of its aliases), or None."""
        if name in self.variables:
            return name
        return next((k for k, v in self.variables.items() if name in v.aliases), None)

    def render(self, values: Mapping[str, str], *, extra: str = "") -> tuple[str, str]:
        """Fill the variables (by name or alias); return ``(prompt, negative)``. Free
        ``extra`` text is appended."""
        values = self._by_name(values)
        unknown = sorted(set(values) - set(self.variables))
        if unknown:
            raise CatalogError(
                f"template `{self.name}` has no variable {_quote(unknown)}; "
                f"its variables are {self.signature()}"
            )
        missing = [k for k, v in self.variables.items() if v.required and not values.get(k)]
        if missing:
            example = " ".join(f'{k}="..."' for k in missing)
            raise MissingVariables(
                f"template `{self.name}` needs {_quote(missing)}; "
                f"for example: /imagine {self.name} {example}",
                template=self.name,
                missing=missing,
            )
        filled = {k: values.get(k) or (v.default or "") for k, v in self.variables.items()}
        prompt = _PLACEHOLDER.sub(lambda m: filled[m.group(1)], self.prompt)
        # Empty optional variables would leave ", ," behind; tidy the separators.
        prompt = re.sub(r"(,\s*){2,}", ", ", prompt).strip(" ,")
        if extra.strip():
            prompt = f"{prompt}, {extra.strip()}"
        return prompt, self.negative

    def _by_name(self, values: Mapping[str, str]) -> dict[str, str]:
        """``values`` keyed by variable name; a variable given twice (by its name and an
        alias) is a :class:`CatalogError` rather than a silent choice."""
        named: dict[str, str] = {}
        given: dict[str, str] = {}
        for key, value in values.items():
            name = self.variable_name(key) or key
            if name in named:
                raise CatalogError(
                    f"`{given[name]}` and `{key}` both set `{name}` of template "
                    f"`{self.name}`; give it once"
                )
            named[name], given[name] = value, key
        return named

    def signature(self) -> str:
        """``product, style=minimalist, ...``: the variables with their defaults."""
        parts = [k if v.required else f"{k}={v.default}" for k, v in self.variables.items()]
        return ", ".join(parts) or "(none)"


class Catalog:
    """Everything that can be named in a command. Load once with :meth:`load`."""

    def __init__(
        self,
        *,
        templates: dict[str, Template],
        models: dict[str, ModelEntry],
        loras: dict[str, LoraEntry],
        controlnets: dict[str, ControlNetEntry] | None = None,
        embeddings: dict[str, EmbeddingEntry] | None = None,
        vaes: dict[str, VaeEntry] | None = None,
        problems: list[FileProblem] | None = None,
    ) -> None:
        self.templates = templates
        self.models = models
        self.loras = loras
        self.controlnets = controlnets or {}
        self.embeddings = embeddings or {}
        self.vaes = vaes or {}
        self.problems = problems or []

    @classmethod
    def load(cls, root: Path, *, found: Catalog | None = None) -> Catalog:
        """Read ``prompts/*.yaml``, ``models.yaml``, ``loras.yaml``, ``controlnets.yaml``,
        ``embeddings.yaml`` and ``vaes.yaml`` under ``root``. ``found``: the entries of the
        drop-in folders (``engine.model_folders.scan``); a YAML entry of the same name wins
        over a found one and keeps its file (and adds triggers, defaults, descriptions)."""
        found = found or cls(templates={}, models={}, loras={})
        templates: dict[str, Template] = {}
        for path in sorted((root / "prompts").glob("*.yaml")):
            for name, body in _read_yaml(path).items():
                templates[name] = _parse(Template, name, body, path)
        models = _entries(ModelEntry, root / "models.yaml", found.models)
        loras = _entries(LoraEntry, root / "loras.yaml", found.loras)
        controlnets = _entries(ControlNetEntry, root / "controlnets.yaml", {})
        embeddings = _entries(EmbeddingEntry, root / "embeddings.yaml", found.embeddings)
        vaes = _entries(VaeEntry, root / "vaes.yaml", found.vaes)
        for entry in controlnets.values():
            for model_name in entry.models:
                if model_name not in models:
                    raise ValueError(f"ControlNet {entry.name}: unknown model {model_name}")
        for template in templates.values():
            if template.model and template.model not in models:
                raise ValueError(f"template {template.name}: unknown model {template.model}")
            for lora in template.loras:
                if lora not in loras:
                    raise ValueError(f"template {template.name}: unknown LoRA {lora}")
            for placeholder in _PLACEHOLDER.findall(template.prompt):
                if placeholder not in template.variables:
                    raise ValueError(f"template {template.name}: undeclared {{{placeholder}}}")
        for model in models.values():
            named = model.vae and "/" not in model.vae and not Path(model.vae).suffix
            if named and model.vae not in vaes:
                raise ValueError(f"model {model.name}: unknown VAE {model.vae}")
        return cls(
            templates=templates,
            models=models,
            loras=loras,
            controlnets=controlnets,
            embeddings=embeddings,
            vaes=vaes,
            problems=found.problems,
        )

    def replace(self, other: Catalog) -> None:
        """Take ``other``'s entries in place (a reload): whoever holds this catalog sees them."""
        self.templates = other.templates
        self.models = other.models
        self.loras = other.loras
        self.controlnets = other.controlnets
        self.embeddings = other.embeddings
        self.vaes = other.vaes
        self.problems = other.problems

    def template(self, name: str) -> Template:
        """The template called ``name``, or a :class:`CatalogError` with a suggestion."""
        return _lookup("template", name, self.templates)

    def model(self, name: str) -> ModelEntry:
        """The model called ``name``, or a :class:`CatalogError` with a suggestion."""
        return _lookup("model", name, self.models)

    def lora(self, name: str, *, family: str | None = None) -> LoraEntry:
        """The LoRA called ``name``; with ``family``, also check that it fits that model family."""
        entry = _lookup("LoRA", name, self.loras)
        if family is not None and family not in entry.families:
            fits = [m for m, e in self.models.items() if e.family in entry.families]
            raise SpecError(
                f"LoRA `{name}` is made for {'/'.join(entry.families)} models and cannot be used "
                f"with a {family} model; use it with {_quote(fits) if fits else 'another model'}"
            )
        return entry

    def controlnet(self, name: str, *, model: ModelEntry | None = None) -> ControlNetEntry:
        """The ControlNet called ``name``; with ``model``, also check that it fits it."""
        entry = _lookup("ControlNet", name, self.controlnets)
        if model is not None and not entry.fits(model):
            raise SpecError(
                f"ControlNet `{name}` is made for {entry.family} models"
                + (f" ({_quote(entry.models)})" if entry.models else "")
                + f" and cannot guide `{model.name}`"
            )
        return entry

    def controlnet_for(self, model: ModelEntry, control: str) -> ControlNetEntry:
        """The ControlNet for ``control`` guides (``canny``, ``depth``...) that fits ``model``:
        one made for that model by name first, else the first listed for its family."""
        fitting = [e for e in self.controlnets.values() if e.control == control and e.fits(model)]
        if not fitting:
            kinds = sorted({e.control for e in self.controlnets.values() if e.fits(model)})
            available = f"available for it: {', '.join(kinds)}" if kinds else "none is installed"
            raise CatalogError(
                f"there is no {control} ControlNet for model `{model.name}`; {available}"
            )
        return next((e for e in fitting if model.name in e.models), fitting[0])

    def is_template(self, name: str) -> bool:
        """Whether ``name`` names a template (used by the command grammar)."""
        return name in self.templates

    def suggest(self, kind: str, name: str) -> str | None:
        """The closest known name of ``kind`` (template, model, LoRA), if any is close."""
        kinds: dict[str, Mapping[str, object]] = {
            "template": self.templates,
            "model": self.models,
            "LoRA": self.loras,
            "ControlNet": self.controlnets,
            "embedding": self.embeddings,
            "VAE": self.vaes,
        }
        return _closest(name, kinds[kind])


def _lookup(kind: str, name: str, entries: dict[str, T]) -> T:
    if name in entries:
        return entries[name]
    close = _closest(name, entries)
    hint = (
        f"did you mean `{close}`?" if close is not None else f"known: {', '.join(sorted(entries))}"
    )
    raise CatalogError(f"unknown {kind} `{name}`; {hint}")


def _closest(name: str, names: Iterable[str]) -> str | None:
    """The one name of ``names`` closest to ``name``, if any is close (a likely typo)."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.6)
    return close[0] if close else None


def _quote(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # a ValueError naming the file
        raise ValueError(f"{path}: not valid UTF-8 YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of names to entries")
    return data


def _entries(model: type[M], path: Path, found: Mapping[str, M]) -> dict[str, M]:
    """The entries of ``path`` over those ``found`` in a drop-in folder: a YAML entry names
    a found file by its name and adds to it (triggers, defaults, a description; ``source``
    and ``family`` may be left out), or stands alone."""
    entries = dict(found)
    for name, body in _read_yaml(path).items():
        # A found model's pool is its family's by default: not a choice to carry over when
        # the YAML entry names another family or pool.
        base = found[name].model_dump(exclude={"name", "pool"}) if name in found else {}
        entries[name] = _parse(model, name, {**base, **_fields(name, body, path)}, path)
    return entries


def _fields(name: object, body: object, path: Path) -> dict:
    """An entry's fields; a ``ValueError`` naming the file when it has none to give."""
    if body is not None and not isinstance(body, dict):
        raise ValueError(f"{path}: entry {name!r} must be a mapping of fields, not {body!r:.60}")
    return body or {}


def _parse(model: type[M], name: str, body: dict, path: Path) -> M:
    try:
        return model.model_validate({"name": name, **_fields(name, body, path)})
    except ValidationError as exc:
        raise ValueError(f"{path}: entry {name!r} is invalid: {exc}") from exc
