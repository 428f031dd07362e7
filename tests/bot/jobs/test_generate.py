"""``proofroom generate``: the command line renders templates and prompts locally, with the
chat's own resolution of templates, flags and limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from engine import metadata

pytestmark = pytest.mark.usefixtures("cli_env")


def test_renders_a_template_into_the_output_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "generate",
            "--template",
            "product-photo",
            "--var",
            "product=leather handbag",
            "--model",
            "tiny",
            "--seed",
            "7",
            "-n",
            "2",
            "-o",
            str(out),
            "--steps",
            "2",
            "--negative",
            "watermark",
        ]
    )
    assert code == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == ["product-photo-7.png", "product-photo-8.png"]
    printed = capsys.readouterr().out
    assert f"{files[0]}  seed 7" in printed and f"{files[1]}  seed 8" in printed
    params = metadata.parse_parameters(metadata.read_parameters(files[1].read_bytes()))
    assert "leather handbag" in params["Prompt"] and params["Seed"] == "8"
    # As in chat, --negative adds to the template's negative prompt.
    assert params["Negative prompt"].startswith("blurry")
    assert params["Negative prompt"].endswith(", watermark")
    lineage = metadata.read_proofroom(files[0].read_bytes())
    assert lineage["spec"]["template"] == "product-photo"
    assert lineage["spec"]["variables"] == {"product": "leather handbag"}


def test_renders_a_prompt_with_flags_and_a_lora(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = [
        "generate",
        "--prompt",
        "a (red:1.3) cat",
        "--negative",
        "blurry",
        "--model",
        "tiny",
        "--seed",
        "3",
        "--steps",
        "2",
        "--cfg",
        "5",
        "--sampler",
        "DDIM",
        "--width",
        "64",
        "--height",
        "128",
        "--lora",
        "tiny-style:0.5",
        "-o",
        str(out),
    ]
    assert main(args) == 0
    assert main(args) == 0  # a second run does not overwrite the first
    files = sorted(out.glob("*.png"))
    assert len(files) == 2
    params = metadata.parse_parameters(metadata.read_parameters(files[0].read_bytes()))
    assert params["Prompt"] == "tinystyle, a (red:1.3) cat"
    assert (params["Sampler"], params["CFG scale"], params["Size"]) == ("DDIM", "5", "64x128")
    assert params["Lora"] == "tiny-style:0.5"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--template", "product-fotos"], "did you mean `product-photo`"),
        (["--template", "product-photo"], "needs `product`"),
        (["--prompt", "a cat", "--model", "tiny", "--steps", "500"], "steps must be between"),
        (["--prompt", "a cat", "--model", "tiny", "--sampler", "Euler b"], "unknown sampler"),
        (["--prompt", "a cat", "--model", "tiny", "--lora", "tiny-style:lots"], "must be a number"),
        (["--prompt", "a cat", "--model", "tiny-xl", "--lora", "tiny-style"], "sd15"),
        (["--prompt", "a cat", "--var", "x"], "--var needs --template"),
        (["--template", "product-photo", "--var", "product"], "name=value"),
        (["--prompt", "a cat", "--width", "512"], "--width and --height go together"),
    ],
)
def test_user_errors_exit_2_without_a_traceback(tmp_path: Path, capsys, args, message) -> None:
    assert main(["generate", *args, "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("out/*.png"))


def test_a_missing_variable_is_explained_with_the_cli_syntax(tmp_path: Path, capsys) -> None:
    assert main(["generate", "--template", "product-photo", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err == (
        "error: template `product-photo` needs `product`; for example: "
        'proofroom generate --template product-photo --var product="..."\n'
    )
