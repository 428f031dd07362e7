"""``docs/benchmarks.md`` from a run's figures (``bench.report.render_markdown``): every
figure on the page, each goal met or not from the figures, and what was not measured said so.
The figures are built here, never read from a stored run."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.report import render_markdown


def _figures() -> dict[str, Any]:
    """One run's figures, every goal met. Values print as written (no thousands, no
    rounding) so that the page can be searched for them."""
    return {
        "ack": {
            "what": "fifty slash commands at once",
            "concurrency": 50,
            "http_p50_ms": 11.5,
            "http_p99_ms": 41.25,
            "http_errors": 0,
            "socket_p50_ms": 7.75,
            "socket_p99_ms": 23.5,
            "socket_errors": 0,
            "http_error_kinds": "",
        },
        "footprint": {
            "what": "resident memory",
            "bot_idle_rss_mb": 88.5,
            "bot_idle_anon_mb": 41.5,
            "bot_after_rss_mb": 121.25,
            "bot_peak_rss_mb": 133.75,
            "worker_idle_rss_mb": 612.5,
        },
        "worker": {
            "what": "tiny through the worker",
            "steps": 3,
            "bare_ms_per_job": 402.5,
            "worker_ms_per_job": 415.25,
            "throughput_ratio": 0.969,
            "throughput_ratio_rounds": [0.951, 0.987],
            "busy_fraction": 0.975,
            "busy_fraction_micro": 0.982,
            "micro_batching_speedup": 1.124,
            "n4_batching_speedup": 1.375,
            "micro_calls": 1,
        },
        "commands": {
            "what": "the service answers",
            "rounds": 30,
            "shapes": [
                {"shape": "plain", "command": "/imagine a cat", "median_ms": 2.35, "p90_ms": 4.5},
                {"shape": "refusal", "command": "/imagine --sed", "median_ms": 0.25, "p90_ms": 0.5},
            ],
        },
        "grammar": {
            "what": "hostile text",
            "hostile_chars": 999,
            "hostile_parse_as_served_ms": 0.05,
        },
        "lora_swap": {
            "what": "switch vs load",
            "tiny": {"model_load_ms": 297.5, "lora_switch_ms": 22.75, "switch_over_load": 0.0765},
            "sd15_random": {
                "model_load_ms": 491.5,
                "lora_switch_ms": 19.5,
                "switch_over_load": 0.0397,
                "lora_layers": 264,
            },
        },
        "gpu": {"measured": False, "reason": "no CUDA device"},
        "qa": {
            "what": "scores of one image",
            "size": "1024x1024",
            "rounds": 60,
            "grayscale_ms": 1.25,
            "sharpness_ms": 0.375,
            "exposure_ms": 0.0625,
            "phash_ms": 0.25,
            "flags_ms": 0.0078,
            "total_ms": 2.5,
        },
    }


def _results(figures: dict[str, Any] | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    figures = figures if figures is not None else _figures()
    return {
        "date": "2031-04-05",
        "elapsed_s": 321.5,
        "quick": False,
        "file": "2031-04-05-benchhost.json",
        "machine": {
            "host": "benchhost",
            "cpu": "Example CPU 9000",
            "cores": 2,
            "ram_gib": 23.5,
            "device": "cpu (no GPU)",
            "torch": "2.13.0+cpu",
        },
        "sections": {
            **{name: {"ok": True, "elapsed_s": 1.5, "figures": f} for name, f in figures.items()},
            **sections,
        },
    }


def _leaves(value: Any, key: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(v, k)]
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v, key)]
    return [(key, value)]


def _status(page: str, goal: str) -> str:
    """The status cell of the goals table's row that starts with ``goal``."""
    rows = [line for line in page.splitlines() if line.startswith(f"| {goal}")]
    assert len(rows) == 1, f"{goal!r}: {rows}"
    return rows[0].rstrip(" |").rsplit(" | ", 1)[1]


def test_the_page_states_the_machine_the_date_and_every_figure() -> None:
    page = render_markdown(_results())

    for text in ("Example CPU 9000", "| cores | 2 |", "23.5 GiB", "2.13.0+cpu", "cpu (no GPU)"):
        assert text in page
    assert "2031-04-05" in page and "benchhost" in page
    for section, figures in _figures().items():
        for key, value in _leaves(figures):
            if key in ("measured", "reason") or value == "":
                continue  # the GPU's "not measured" sentence, an empty error list
            assert key in page, f"{section}: {key}"
            assert str(value) in page, f"{section}: {key} = {value}"


def test_a_page_rendered_from_the_stored_json_is_the_same() -> None:
    results = _results()
    assert render_markdown(json.loads(json.dumps(results))) == render_markdown(results)


def test_goals_met_by_the_figures_are_marked_met() -> None:
    page = render_markdown(_results())

    for goal in (
        "Ack p99 under 100 ms, 0 errors, 50 concurrent (HTTP)",
        "Ack p99 under 100 ms, 0 errors, 50 concurrent (Socket Mode)",
        "Worker throughput at least 0.95",
        "Busy fraction at least 0.97, saturated queue, one call per job",
        "Busy fraction at least 0.97, saturated queue, micro-batched",
        "Micro-batching faster than one by one on CPU",
        "Batching faster than one by one on CPU",
        "LoRA switch at most 0.05 of a reload",
        "Bot under 150 MB resident",
        "QA scores under 10 ms per 1024x1024 image on CPU",
    ):
        assert _status(page, goal) == "met", goal
    assert _status(page, "LoRA switch / reload, `tiny`") == "reported"


@pytest.mark.parametrize(
    ("section", "key", "value", "goal"),
    [
        ("ack", "http_p99_ms", 100.0, "Ack p99 under 100 ms, 0 errors, 50 concurrent (HTTP)"),
        ("ack", "socket_errors", 1, "Ack p99 under 100 ms, 0 errors, 50 concurrent (Socket"),
        ("ack", "concurrency", 10, "Ack p99 under 100 ms, 0 errors, 50 concurrent (HTTP)"),
        ("worker", "throughput_ratio", 0.949, "Worker throughput at least 0.95"),
        ("worker", "busy_fraction", 0.9, "Busy fraction at least 0.97, saturated queue, one"),
        ("worker", "micro_batching_speedup", 0.98, "Micro-batching faster than one by one"),
        ("worker", "n4_batching_speedup", 1.0, "Batching faster than one by one on CPU"),
        ("footprint", "bot_peak_rss_mb", 150.5, "Bot under 150 MB resident"),
        ("footprint", "bot_after_rss_mb", 150.0, "Bot under 150 MB resident"),
        ("qa", "total_ms", 10.0, "QA scores under 10 ms per 1024x1024 image on CPU"),
    ],
)
def test_a_figure_past_its_goal_is_marked_not_met(
    section: str, key: str, value: Any, goal: str
) -> None:
    figures = _figures()
    figures[section][key] = value

    assert "not met" in _status(render_markdown(_results(figures)), goal)


def test_the_lora_goal_is_judged_on_sd15_not_on_tiny() -> None:
    figures = _figures()
    figures["lora_swap"]["tiny"]["switch_over_load"] = 0.01
    figures["lora_swap"]["sd15_random"]["switch_over_load"] = 0.113

    page = render_markdown(_results(figures))

    assert "not met" in _status(page, "LoRA switch at most 0.05 of a reload")
    assert "0.113" in page


def test_the_lora_goal_says_why_sd15_was_not_measured() -> None:
    figures = _figures()
    figures["lora_swap"]["sd15_random"] = {"measured": False, "reason": "a quick run skips it"}

    status = _status(render_markdown(_results(figures)), "LoRA switch at most 0.05 of a reload")

    assert status == "not measured: a quick run skips it"


def test_without_a_gpu_the_gpu_figures_are_marked_not_measured() -> None:
    page = render_markdown(_results())

    assert _status(page, "Micro-batching at least 1.3x on GPU") == "not measured: no GPU was lent"
    gpu_section = page.split("## GPU (`bench/gpu.py`)", 1)[1]
    assert gpu_section.strip().startswith("not measured: no GPU was lent")


def test_with_a_gpu_its_batching_is_judged_per_model() -> None:
    figures = _figures()
    row = {"worker_s_per_image": 0.25, "bare_s_per_image": 0.2}
    figures["gpu"] = {
        "measured": True,
        "device": "Example GPU",
        "models": {
            "sd15": {"batches": {"1": row, "8": {**row, "worker_s_per_image": 0.125}}},
            "sdxl": {"batches": {"1": row, "4": {**row, "worker_s_per_image": 0.225}}},
        },
    }

    page = render_markdown(_results(figures))

    assert _status(page, "Micro-batching at least 1.3x on GPU, sd15") == "met"
    assert "not met" in _status(page, "Micro-batching at least 1.3x on GPU, sdxl")
    assert "0.125" in page and "Example GPU" in page


def test_a_failed_section_shows_its_error_and_leaves_its_goals_unmeasured() -> None:
    figures = _figures()
    del figures["footprint"]
    failed = {"ok": False, "elapsed_s": 2.5, "error": "RuntimeError: the bot never answered"}

    page = render_markdown(_results(figures, footprint=failed))

    assert "RuntimeError: the bot never answered" in page.split("## Memory footprint", 1)[1]
    status = _status(page, "Bot under 150 MB resident")
    assert status.startswith("not measured:") and "the bot never answered" in status
