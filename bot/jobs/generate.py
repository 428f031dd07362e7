"""``proofroom generate``: render a template or a prompt on this machine, without Redis.

    proofroom generate --template product-photo --var product="leather handbag" \\
        --model tiny --seed 7 -n 2 -o out/
    proofroom generate --from exports/abc123-0-7.json -o again/   # an approved image again

The options become the ``ImagineRequest`` a chat command would make and go through the
chat's own ``bot.jobs.resolve.JobResolver`` (defaults, LoRA checks, limits, messages). The spec is
rendered in this process by the worker's renderer (torch is imported only then), and
``<name>-<seed>.png`` files with their A1111 parameters are written into ``-o``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import cast

from bot.grammar.flags import FLAG_BY_NAME, LoraRequest, convert
from bot.grammar.parse import ImagineRequest
from bot.jobs import remake
from bot.jobs.resolve import JobResolver
from bot.settings import BotSettings
from engine.catalog import Catalog
from engine.errors import MissingVariables, UserError
from engine.model_folders import load_catalog
from engine.settings import Settings, get_settings
from engine.spec import JobSpec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Define the ``generate`` options on ``parser``."""
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--template", "-t", help="prompt template name (see templates/prompts)")
    what.add_argument("--prompt", "-p", help="a prompt, A1111 syntax: (word:1.3), [word], BREAK")
    what.add_argument(
        "--from",
        dest="from_sidecar",
        type=Path,
        metavar="SIDECAR",
        help="an exported image's .json sidecar: render that image again (bot.jobs.remake)",
    )
    parser.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="template variable"
    )
    parser.add_argument("--negative", help="added to the template's negative prompt")
    parser.add_argument("--model", "-m", help="model name from models.yaml (default: settings)")
    parser.add_argument("--seed", type=int, help="seed of the first image (default: random)")
    parser.add_argument("-n", "--count", type=int, default=1, help="number of images")
    parser.add_argument("-o", "--output", type=Path, default=Path("out"), help="output folder")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--cfg", type=float, help="CFG scale")
    parser.add_argument("--sampler", help='A1111 sampler name, e.g. "DPM++ 2M Karras"')
    parser.add_argument("--width", type=int, help="with --height (default: the model's size)")
    parser.add_argument("--height", type=int)
    parser.add_argument(
        "--lora", action="append", default=[], metavar="NAME[:WEIGHT]", help="LoRA from loras.yaml"
    )


def run(args: argparse.Namespace) -> int:
    """Render and write the images; 0 on success, 2 on a user error (message, no traceback)."""
    settings = get_settings()
    if args.from_sidecar is not None:
        return remake.run(args.from_sidecar, output=args.output, settings=settings)
    try:
        catalog = load_catalog(settings)
        resolver = JobResolver(catalog=catalog, settings=settings, bot_settings=BotSettings())
        spec = resolver.resolve(request_from(args, catalog=catalog), requested_by="cli").spec
        return _render(
            spec.model_copy(update={"origin": {"platform": "cli"}}),
            args,
            catalog=catalog,
            settings=settings,
        )
    except MissingVariables as exc:
        example = " ".join(f'--var {name}="..."' for name in exc.missing)
        names = ", ".join(f"`{name}`" for name in exc.missing)
        print(
            f"error: template `{exc.template}` needs {names}; for example: "
            f"proofroom generate --template {exc.template} {example}",
            file=sys.stderr,
        )
        return 2
    except UserError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


def request_from(args: argparse.Namespace, *, catalog: Catalog) -> ImagineRequest:
    """The request the chat grammar would make of these options."""
    if args.var and not args.template:
        raise UserError("--var needs --template; with --prompt, write the text directly")
    if (args.width is None) != (args.height is None):
        raise UserError(
            "--width and --height go together; give both, or neither for the model's size"
        )
    # The grammar's own conversions: the same names, checks and messages as in chat.
    loras = tuple(
        cast(LoraRequest, convert(FLAG_BY_NAME["lora"], item, catalog)) for item in args.lora
    )
    sampler = convert(FLAG_BY_NAME["sampler"], args.sampler, catalog) if args.sampler else None
    return ImagineRequest(
        prompt=args.prompt or "",
        template=args.template,
        variables=_variables(args.var),
        negative=args.negative,
        seed=args.seed,
        count=args.count,
        size=(args.width, args.height) if args.width is not None else None,
        steps=args.steps,
        cfg=args.cfg,
        sampler=str(sampler) if sampler else None,
        model=args.model,
        loras=loras,
    )


def _render(
    spec: JobSpec, args: argparse.Namespace, *, catalog: Catalog, settings: Settings
) -> int:
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
