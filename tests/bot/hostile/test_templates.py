"""Hostile template files (``prompts/*.yaml``): the catalog loads, or refuses with a
``ValueError`` naming the file (or the template); a loaded template gives a job spec or a sentence for any
values, never another exception; and a template's name is only ever a name."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given
from hypothesis import strategies as st

from bot.grammar.parse import ImagineRequest
from bot.jobs.resolve import JobResolver
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.errors import UserError
from engine.settings import Settings
from tests.bot.hostile.conftest import LORAS_YAML, MODELS_YAML
from tests.bot.hostile.strategies import FILES

SCALARS = st.one_of(
    st.sampled_from(
        ["", "x", "{product}", "{undeclared}", "{", "}", "{{product}}", "poster of {product}",
         "../../etc/passwd", "/root/x", "x\x00y", "tiny", "tiny-style", "Euler a", "Nope",
         "(red:1.2.3)", "a" * 3000, {"tiny-style": float("nan")}, {"tiny-style": 1e300}, "%s %(x)s {0}"]
    ),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = ["description", "prompt", "negative", "variables", "model", "loras", "steps",
          "cfg_scale", "sampler", "qa", "unknown"]  # fmt: skip


@st.composite
def variable(draw: st.DrawFn) -> object:
    if draw(st.integers(0, 4)) == 4:
        return draw(VALUES)
    body: dict[str, object] = {}
    if draw(st.booleans()):
        body["default"] = draw(st.one_of(st.sampled_from(["minimal", ""]), SCALARS))
    if draw(st.booleans()):
        body["aliases"] = draw(st.one_of(st.just(["product_name"]), VALUES))
    return body


@st.composite
def template_files(draw: st.DrawFn) -> bytes:
    """A ``prompts/*.yaml`` file: mostly templates with hostile fields, sometimes junk."""
    kind = draw(st.sampled_from(["yaml"] * 5 + ["text", "bytes"]))
    if kind == "text":
        return draw(st.text(max_size=80)).encode("utf-8")
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    name = draw(st.sampled_from(["poster", "../../x", "a/b", "x\x00y", "", "help", "1"]))
    body: dict[str, object] = {"description": "d", "prompt": "poster of {product}"}
    body["variables"] = {"product": draw(variable())}
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[field] = draw(VALUES) if field != "variables" else {"product": draw(variable())}
    entry: object = body if draw(st.integers(0, 5)) < 5 else draw(VALUES)
    return yaml.safe_dump({name: entry}, allow_unicode=True).encode("utf-8")


def load(root: Path, text: bytes) -> Catalog:
    (root / "prompts").mkdir(parents=True, exist_ok=True)
    (root / "prompts" / "a.yaml").write_bytes(text)
    (root / "models.yaml").write_text(MODELS_YAML, encoding="utf-8")
    (root / "loras.yaml").write_text(LORAS_YAML, encoding="utf-8")
    return Catalog.load(root)


@FILES
@given(
    text=template_files(),
    values=st.dictionaries(
        st.sampled_from(["product", "product_name", "style"]), st.text(max_size=8), max_size=2
    ),
)
def test_a_template_file_loads_or_is_refused_naming_the_file_and_then_resolves_or_answers(
    hostile_settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    text: bytes,
    values: dict[str, str],
) -> None:
    root = tmp_path_factory.mktemp("catalog")
    try:
        catalog = load(root, text)
    except ValueError as exc:
        # The file, or the template whose model, LoRA or placeholder does not resolve.
        said = str(exc)
        assert str(root / "prompts" / "a.yaml") in said or said.startswith("template "), said
        event("refused at load")
        return
    resolver = JobResolver(
        catalog=catalog,
        settings=hostile_settings,
        bot_settings=BotSettings(_env_file=None),  # type: ignore[call-arg]
    )
    for name in catalog.templates:
        request = ImagineRequest(template=name, variables=values, model="tiny")
        try:
            spec = resolver.resolve(request, requested_by="fake:U1").spec
        except UserError as exc:
            assert exc.message.strip()
            event("refused")
        else:
            assert spec.template == name and spec.model == "tiny"
            assert all(math.isfinite(lora.weight) and abs(lora.weight) <= 5 for lora in spec.loras)
            event("resolved")


@pytest.mark.parametrize(
    ("file", "text"),
    [
        ("prompts/a.yaml", "poster:\n  description: d\n  prompt: p\n  loras: {tiny-style: .nan}\n"),
        (
            "prompts/a.yaml",
            "poster:\n  description: d\n  prompt: p\n  loras: {tiny-style: 1e300}\n",
        ),
        (
            "loras.yaml",
            "tiny-style:\n  source: builtin:tiny-lora-a\n  families: [sd15]\n  weight: 40\n",
        ),
        ("prompts/a.yaml", "poster: [a, b]\n"),
        ("models.yaml", "tiny: builtin:tiny\n"),
        ("prompts/a.yaml", "poster: {description: d, prompt: \x07}\n"),
    ],
)
def test_a_broken_catalog_file_is_refused_naming_it(tmp_path: Path, file: str, text: str) -> None:
    # Found by the suite: a NaN or huge LoRA weight loaded and was queued with every job of
    # the template (black or noise images); YAML errors and entries that are not mappings
    # raised YAMLError or TypeError instead of the catalog's ValueError naming the file.
    root = tmp_path / "catalog"
    load(root, b"")
    (root / file).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=str(root / file)):
        Catalog.load(root)
