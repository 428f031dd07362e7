"""``proofroom models``: what the catalog holds on this machine (the YAML under
``templates/`` and the files of the drop-in folders, ``engine.model_folders``), and the
files that cannot be used, with the reason, so an admin sees why a dropped file is missing.

    proofroom models

Reads file headers only (no torch), so it answers in a moment even for large folders.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from engine.catalog import Catalog, ModelEntry
from engine.model_folders import load_catalog
from engine.settings import get_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``proofroom models`` takes no options."""
    parser.description = __doc__.split("\n\n")[0] if __doc__ else None


def run(args: argparse.Namespace) -> int:
    """Print each kind, then the unusable files; 0, or 1 when the YAML does not load."""
    settings = get_settings()
    try:
        catalog = load_catalog(settings)
    except ValueError as exc:
        print(f"error: the catalog does not load: {exc}", file=sys.stderr)
        return 1
    print(listing(catalog))
    return 0


def listing(catalog: Catalog) -> str:
    """The catalog as aligned text: name, family (and worker pool), source per entry; then
    the problems."""
    sections = [
        _section("Models", ((m.name, _family(m), m.source) for m in catalog.models.values())),
        _section(
            "LoRAs", ((e.name, "/".join(e.families), e.source) for e in catalog.loras.values())
        ),
        _section(
            "Embeddings",
            ((e.name, "/".join(e.families), e.source) for e in catalog.embeddings.values()),
        ),
        _section("VAEs", ((e.name, "/".join(e.families), e.source) for e in catalog.vaes.values())),
    ]
    if catalog.problems:
        lines = [f"Files that cannot be used ({len(catalog.problems)}):"]
        lines += [f"  {p.path} ({p.kind}): {p.reason}" for p in catalog.problems]
        sections.append("\n".join(lines))
    else:
        sections.append("Files that cannot be used: none")
    return "\n\n".join(sections)


def _family(model: ModelEntry) -> str:
    """``sd2`` or, for a model with a worker pool of its own, ``sd2 pool:turbo``."""
    return model.family if model.pool == model.family else f"{model.family} pool:{model.pool}"


def _section(title: str, rows: Iterable[tuple[str, str, str]]) -> str:
    rows = list(rows)
    if not rows:
        return f"{title}: none"
    name_width = max(len(r[0]) for r in rows)
    family_width = max(len(r[1]) for r in rows)
    lines = [f"{title} ({len(rows)}):"]
    lines += [f"  {n:<{name_width}}  {f:<{family_width}}  {s}" for n, f, s in rows]
    return "\n".join(lines)
