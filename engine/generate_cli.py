"""``proofroom generate``: render a template or a prompt on this machine, without Redis.

    proofroom generate --template product-photo --var product="leather handbag" \\
        --model tiny --seed 7 -n 2 -o out/

Builds the same ``JobSpec`` the chat side would, renders it with the same renderer,
and writes ``<name>-<seed>.png`` files (with their A1111 parameters) into ``-o``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.catalog import Catalog
from engine.errors import UserError
from engine.settings import get_settings
from engine.spec import JobSpec, LoraRef, new_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``generate`` options on ``parser``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--template", "-t", help="prompt template name (see templates/prompts)")
    what.add_argument("--prompt", "-p", help="a prompt, A1111 syntax: (word:1.3), [word], BREAK")
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="template variable"
    )
    parser.add_argument("--negative", help="negative prompt (replaces the template's)")
    parser.add_argument("--model", "-m", help="model name from models.yaml (default: settings)")
    parser.add_argument("--seed", type=int, help="seed of the first image (default: random)")
    parser.add_argument("-n", "--count", type=int, default=1, help="number of images")
    parser.add_argument("-o", "--output", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float, help="CFG scale")
    parser.add_argument("--sampler", help='A1111 sampler name, e.g. "DPM++ 2M Karras"')
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument(
        "--lora", action="append", default=[], metavar="NAME[:WEIGHT]", help="LoRA from loras.yaml"
    )


def run(args: argparse.Namespace) -> int:
    """Render and write the images; 0 on success, 2 on a user error (message, no traceback)."""
    settings = get_settings()
    try:
        catalog = Catalog.load(settings.templates_dir)
        spec = build_spec(args, catalog=catalog, settings=settings)
        return _render(spec, args, catalog=catalog, settings=settings)
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def build_spec(args: argparse.Namespace, *, catalog: Catalog, settings: Any) -> JobSpec:
    """The ``JobSpec`` for the command line: flags over template over model defaults."""
    template = catalog.template(args.template) if args.template else None
    if template is not None:
        prompt, negative = template.render(_variables(args.var))
    else:
        if args.var:
            raise UserError("--var needs --template; with --prompt, write the text directly")
        prompt, negative = args.prompt, ""
    model = catalog.model(args.model or (template and template.model) or settings.default_model)
    loras = dict(template.loras) if template else {}
    for name in loras:  # a template's LoRAs must fit the model chosen on the command line
        catalog.lora(name, family=model.family)
    for item in args.lora:
        name, _, weight = item.partition(":")
        entry = catalog.lora(name, family=model.family)
        try:
            loras[name] = float(weight) if weight else entry.weight
        except ValueError:
            raise UserError(
                f"--lora {item}: the weight must be a number, e.g. {name}:0.8"
            ) from None

    def pick(flag: Any, from_template: Any, from_model: Any) -> Any:
        return next(v for v in (flag, from_template, from_model) if v is not None)

    return new_spec(
        limits=settings.limits,
        seed=args.seed,
        prompt=prompt,
        negative_prompt=args.negative if args.negative is not None else negative,
        model=model.name,
        loras=[LoraRef(name=n, weight=w) for n, w in loras.items()],
        sampler=pick(args.sampler, template and template.sampler, model.sampler),
        steps=pick(args.steps, template and template.steps, model.steps),
        cfg_scale=pick(args.cfg, template and template.cfg_scale, model.cfg_scale),
        width=args.width or model.width,
        height=args.height or model.height,
        count=args.count,
        template=template.name if template else None,
        variables=_variables(args.var),
        requested_by="cli",
        origin={"platform": "cli"},
    )


def _render(spec: JobSpec, args: argparse.Namespace, *, catalog: Catalog, settings: Any) -> int:
    # Imported here so that argument errors are reported before paying for torch.
    from tqdm import tqdm

    from engine.pipelines import PipelineCache
    from engine.render import render
    from engine.store import LocalStore

    args.output.mkdir(parents=True, exist_ok=True)
    stem = spec.template or "image"
    with (
        tempfile.TemporaryDirectory() as scratch,
        tqdm(total=spec.steps * spec.count, unit="step", file=sys.stderr) as bar,
    ):
        store = LocalStore(scratch)

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        result = render(
            spec,
            cache=PipelineCache(settings=settings),
            store=store,
            catalog=catalog,
            on_progress=progress,
        )
        bar.close()
        for image in result.images:
            target = args.output / f"{stem}-{image.seed}.png"
            if target.exists():  # never overwrite an earlier run's image
                target = args.output / f"{stem}-{image.seed}-{spec.id}.png"
            target.write_bytes(store.get(image.artifact_id))
            print(f"{target}  seed {image.seed}")
    print(
        f"{len(result.images)} image(s) with {spec.model} in {result.total_s:.1f}s "
        f"(load {result.load_s:.1f}s, render {result.render_s:.1f}s, {result.device})",
        file=sys.stderr,
    )
    return 0


def _variables(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UserError(f'--var {item}: write it as name=value, e.g. --var product="handbag"')
        values[name.strip()] = value
    return values
