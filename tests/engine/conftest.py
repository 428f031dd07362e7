"""Fixtures of the renderer tests: one warm pipeline cache per session (the tiny models
are deterministic, so sharing it is safe), the real catalog plus a tiny SDXL LoRA, and a
fresh artifact store per test. No Redis needed."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# One torch thread per process. tests/conftest.py sets it, because it must come before the
# first import of torch and a bot test collected before this file makes that import; this
# repeat (a no-op then) only keeps the renderer tests' assumption written next to them.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from engine.catalog import Catalog
from engine.settings import REPO_ROOT, Settings
from engine.spec import JobSpec, new_spec
from tests.engine.jobs_fixtures import MODEL_CACHE


@pytest.fixture(scope="session")
def engine_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings of the renderer tests: own data and LoRA dirs, the shared model cache."""
    root = tmp_path_factory.mktemp("engine")
    return Settings(
        data_dir=root / "data",
        lora_dir=root / "loras",
        model_cache_dir=MODEL_CACHE,
        templates_dir=REPO_ROOT / "templates",
        device="cpu",
    )


@pytest.fixture(scope="session")
def catalog(engine_settings: Settings) -> Catalog:
    """The repository's catalog (it ships ``tiny-xl-style``, a LoRA for the tiny SDXL model)."""
    return Catalog.load(engine_settings.templates_dir)


@pytest.fixture(scope="session")
def pipeline_cache(engine_settings: Settings) -> Any:
    """One warm ``PipelineCache`` for the whole session."""
    from engine.pipelines import PipelineCache

    return PipelineCache(settings=engine_settings)


@pytest.fixture()
def artifact_store(tmp_path: Path) -> Any:
    """An empty local artifact store of this test."""
    from engine.store import LocalStore

    return LocalStore(tmp_path / "artifacts")


@pytest.fixture()
def tiny_job(engine_settings: Settings) -> Callable[..., JobSpec]:
    """Build a validated spec for the tiny model: 64x64, 3 steps, seed 1234."""

    def build(**fields: Any) -> JobSpec:
        values: dict[str, Any] = {
            "prompt": "a red cat on a wooden table",
            "model": "tiny",
            "sampler": "Euler a",
            "steps": 3,
            "width": 64,
            "height": 64,
            "seed": 1234,
            **fields,
        }
        return new_spec(limits=engine_settings.limits, **values)

    return build


@pytest.fixture()
def run_job(pipeline_cache: Any, artifact_store: Any, catalog: Catalog) -> Callable[..., Any]:
    """Render a spec with the session cache and this test's store."""
    from engine.render import render

    def run(spec: JobSpec, **kwargs: Any) -> Any:
        return render(spec, cache=pipeline_cache, store=artifact_store, catalog=catalog, **kwargs)

    return run


@pytest.fixture()
def pixels(artifact_store: Any) -> Callable[[str], Any]:
    """Read a stored PNG of this test's store as an RGB numpy array."""
    import numpy as np
    from PIL import Image

    def read(artifact_id: str) -> Any:
        with Image.open(io.BytesIO(artifact_store.get(artifact_id))) as image:
            return np.asarray(image.convert("RGB"))

    return read
