"""The catalog: names in, entries out, helpful errors for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.catalog import Catalog
from engine.errors import CatalogError, SpecError
from engine.settings import REPO_ROOT


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load(REPO_ROOT / "templates")


def test_ships_the_lessons_templates_and_real_models(catalog: Catalog) -> None:
    for name in (
        "product-photo",
        "productivity",
        "innovation",
        "lifestyle",
        "seasonal",
        "character",
        "furniture",
        "defect",
    ):
        assert name in catalog.templates
    assert catalog.model("sd15").source == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert catalog.model("sdxl").family == "sdxl"
    assert catalog.model("sd-turbo").steps <= 4
    assert catalog.model("tiny").source == "builtin:tiny"
    assert catalog.model("tiny-xl").family == "sdxl"


def test_template_renders_variables_defaults_and_negative(catalog: Catalog) -> None:
    prompt, negative = catalog.template("product-photo").render(
        {"product": "luxury leather handbag", "background": "marble countertop"}, extra="cinematic"
    )
    assert prompt.startswith(
        "professional product photography of luxury leather handbag, minimalist"
    )
    assert "marble countertop" in prompt and prompt.endswith(", cinematic")
    assert "watermark" in negative and "cheap looking" in negative


def test_unknown_template_suggests_the_closest(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.template("prodct-photo")
    assert info.value.message == "unknown template `prodct-photo`; did you mean `product-photo`?"


def test_unknown_and_missing_variables(catalog: Catalog) -> None:
    template = catalog.template("product-photo")
    with pytest.raises(
        CatalogError, match="has no variable `colour`; its variables are product, style="
    ):
        template.render({"product": "mug", "colour": "red"})
    with pytest.raises(
        CatalogError, match='needs `product`; for example: /imagine product-photo product="..."'
    ):
        template.render({"style": "luxury"})


def test_unknown_model_and_lora(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="unknown model `sdx1`; did you mean `sdxl`"):
        catalog.model("sdx1")
    with pytest.raises(
        CatalogError,
        match="unknown LoRA `nope`; known: brand-x, tiny-brand, tiny-style, tiny-xl-style",
    ):
        catalog.lora("nope")


def test_lora_of_the_wrong_family(catalog: Catalog) -> None:
    with pytest.raises(
        SpecError, match="made for sdxl models and cannot be used with a sd15 model"
    ):
        catalog.lora("brand-x", family="sd15")
    assert catalog.lora("tiny-style", family="sd15").triggers == ["tinystyle"]


def test_a_broken_catalog_fails_at_load_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "x.yaml").write_text("bad:\n  description: d\n  prompt: 'a {thing}'\n")
    with pytest.raises(ValueError, match=r"template bad: undeclared \{thing\}"):
        Catalog.load(tmp_path)
    (tmp_path / "models.yaml").write_text("m:\n  source: x\n  family: sd3\n")
    with pytest.raises(ValueError, match="models.yaml: entry 'm' is invalid"):
        Catalog.load(tmp_path)


def test_a_variable_answers_to_its_aliases_once() -> None:
    template = Catalog.load(REPO_ROOT / "templates").template("product-photo")
    assert template.variable_name("product_name") == "product"
    prompt, _ = template.render({"product_name": "Red Widget"})
    assert "Red Widget" in prompt
    with pytest.raises(CatalogError, match="`product` and `product_name` both set `product`"):
        template.render({"product": "a", "product_name": "b"})
