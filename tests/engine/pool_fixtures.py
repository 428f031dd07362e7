"""A catalog with two worker pools, for the routing tests of the engine and the bot: the tiny
model in its family's pool (``sd15``) and the same weights as ``tiny-turbo`` in pool
``turbo``, plus one template. Built in the test's own folder: no test reads the shipped
templates for it."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine.settings import Settings

MODELS = """
tiny:
  source: builtin:tiny
  family: sd15
  description: the tiny test model, in its family's pool
  width: 64
  height: 64
  steps: 2
  sampler: Euler a
tiny-turbo:
  source: builtin:tiny
  family: sd15
  pool: turbo
  description: the same weights, rendered by the turbo pool's workers
  width: 64
  height: 64
  steps: 2
  sampler: Euler a
"""

PROMPTS = """
mug:
  description: a mug on a table
  prompt: "a {product} mug on a table"
  variables:
    product:
      description: what the mug shows
"""


def pool_templates(root: Path) -> Path:
    """A templates folder (models.yaml, prompts/mug.yaml) under ``root``; returns it."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "models.yaml").write_text(textwrap.dedent(MODELS), encoding="utf-8")
    (root / "prompts").mkdir(exist_ok=True)
    (root / "prompts" / "mug.yaml").write_text(textwrap.dedent(PROMPTS), encoding="utf-8")
    return root


def with_pools(settings: Settings, root: Path) -> Settings:
    """``settings`` reading the two-pool catalog under ``root``."""
    return settings.model_copy(update={"templates_dir": pool_templates(root)})
