"""LoRA hot-swap: the adapters resident in one pipeline's modules.

Each LoRA file is read once and kept as a named peft adapter in the UNet and text
encoders; a job then only activates its set with its weights (``set_adapters``), which
costs milliseconds where reloading a model costs seconds. Derived pipelines (img2img,
inpaint, ControlNet) share these very modules, so an adapter loaded once serves every
mode of the model. Beyond ``cap`` resident adapters the least recently used one is
deleted (``delete_adapters``) to bound memory.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LoraFile = tuple[str, Path, float]  # catalog name, file, weight


class LoraAdapters:
    """The adapters loaded into ``pipe``, least recently used first.

    ``reads`` counts, per file, how often a file was read from disk; it is the cache's
    counter, shared by every pipeline, so tests and the bench can see each file read once.
    """

    def __init__(self, *, pipe: Any, cap: int, reads: Counter[str]) -> None:
        self.pipe = pipe
        self.cap = cap
        self.reads = reads
        self.resident: OrderedDict[str, str] = OrderedDict()  # adapter name -> file
        self.active: tuple[tuple[str, float], ...] = ()

    def activate(self, loras: list[LoraFile]) -> bool:
        """Make exactly ``loras`` active with their weights; an empty list disables LoRA.
        Returns whether adapters were loaded or deleted (the parameter count changed)."""
        wanted = {adapter_name(name): str(path) for name, path, _ in loras}
        for adapter, path in wanted.items():
            if self.resident.get(adapter) == path:
                self.resident.move_to_end(adapter)  # used now: evicted last
        missing = [a for a, path in wanted.items() if self.resident.get(a) != path]
        changed = self._evict(keep=set(wanted), room=len(missing))
        for adapter in missing:
            self._load(adapter, wanted[adapter])
            changed = True
        self._switch([(adapter_name(name), weight) for name, _, weight in loras])
        return changed

    def _switch(self, active: list[tuple[str, float]]) -> None:
        if not self.resident:
            self.active = ()
            return
        if not active:
            self.pipe.disable_lora()
        else:
            self.pipe.enable_lora()
            self.pipe.set_adapters([a for a, _ in active], adapter_weights=[w for _, w in active])
        self.active = tuple(active)

    def _load(self, adapter: str, path: str) -> None:
        if adapter in self.resident:  # the catalog now points the name at another file
            self.pipe.delete_adapters(adapter)
            del self.resident[adapter]
        with warnings.catch_warnings(), _quiet_transformers():
            # peft warns on every adapter after the first; several are the point here.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            self.pipe.load_lora_weights(path, adapter_name=adapter)
        self.reads[path] += 1
        self.resident[adapter] = path

    def _evict(self, *, keep: set[str], room: int) -> bool:
        """Delete least recently used adapters (never one in ``keep``) until ``room`` more
        fit under the cap. A job that needs more than the cap still gets all of its own."""
        evicted = False
        for adapter in list(self.resident):
            if len(self.resident) + room <= self.cap:
                break
            if adapter in keep:
                continue
            self.pipe.delete_adapters(adapter)
            del self.resident[adapter]
            log.info("LoRA adapter %s deleted: more than %d resident", adapter, self.cap)
            evicted = True
        return evicted


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers reports every text-encoder parameter the LoRA file does not hold (the
    base weights, the other adapters) as "MISSING": a page of table per load that says
    nothing wrong, so its warnings are held back while an adapter loads."""
    from transformers.utils import logging as transformers_logging

    level = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(level)


def adapter_name(lora: str) -> str:
    """The peft adapter name of catalog LoRA ``lora``."""
    # peft keeps adapters in ModuleDicts, whose keys may not contain dots.
    return lora.replace(".", "_")
