"""What the catalog holds, for ``/imagine models``, ``loras`` and ``embeddings`` and for
``proofroom models``: one line per entry, then the files of the drop-in folders that cannot
be used and why (``engine.model_folders``), so an admin sees at once why a file they dropped
is missing. Neutral markup (backticks); names and file names are escaped, since a file name
in a shared folder is not the bot's own text."""

from __future__ import annotations

from pathlib import Path

from bot.texts import escape
from engine.catalog import Catalog, FileProblem

KINDS = ("model", "LoRA", "embedding", "VAE")


def models_text(catalog: Catalog) -> str:
    """``/imagine models``: the models, the ControlNets, and the model files not listed."""
    lines = ["Models (`--model NAME`):"]
    lines += [
        f"\u2022 `{escape(m.name)}` ({m.family}"
        + (f", workers `{m.pool}`" if m.pool != m.family else "")
        + f", {m.width}x{m.height}, {m.steps} steps)"
        + (f": {m.description}" if m.description else "")
        for m in catalog.models.values()
    ]
    if catalog.controlnets:
        lines.append("ControlNets (`--control TYPE` with an attached guide image):")
        lines += [
            f"\u2022 `{c.name}`: {c.control} for "
            + (", ".join(f"`{m}`" for m in c.models) if c.models else f"{c.family} models")
            for c in catalog.controlnets.values()
        ]
    return "\n".join(lines + problem_lines(catalog, kinds=("model", "VAE")))


def loras_text(catalog: Catalog) -> str:
    """``/imagine loras``: each LoRA with its families, default weight and triggers."""
    lines = ["LoRAs (`--lora NAME:WEIGHT` or `<lora:NAME:WEIGHT>` in the prompt):"]
    lines += [
        f"\u2022 `{escape(lora.name)}` for {'/'.join(lora.families)}, weight {lora.weight:g}"
        + (f", adds `{', '.join(lora.triggers)}`" if lora.triggers else "")
        + (f": {lora.description}" if lora.description else "")
        for lora in catalog.loras.values()
    ]
    return "\n".join(lines + problem_lines(catalog, kinds=("LoRA",)))


def embeddings_text(catalog: Catalog) -> str:
    """``/imagine embeddings``: the words that name an embedding in a prompt."""
    if not catalog.embeddings:
        lines = [
            "No embeddings are installed; an admin drops textual-inversion files "
            "(`.safetensors`, `.pt`) into the embeddings folder and runs `/imagine reload`."
        ]
    else:
        lines = ["Embeddings (write the name in the prompt or the negative prompt, as in A1111):"]
        lines += [
            f"\u2022 `{escape(e.name)}` for {'/'.join(e.families)}, {e.vectors} vector(s)"
            + (f": {e.description}" if e.description else "")
            for e in catalog.embeddings.values()
        ]
    return "\n".join(lines + problem_lines(catalog, kinds=("embedding",)))


def problem_lines(catalog: Catalog, *, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """The files of ``kinds`` that the folders hold but the catalog cannot use."""
    problems = [p for p in catalog.problems if p.kind in kinds]
    if not problems:
        return []
    return ["Files that cannot be used:"] + [_problem(p) for p in problems]


def _problem(problem: FileProblem) -> str:
    # The file name, not the path: where the folders are on the server is not chat's business.
    return f"\u2022 `{escape(Path(problem.path).name)}` ({problem.kind}): {escape(problem.reason)}"
