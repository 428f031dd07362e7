"""LoRA hot-swap: the adapters resident in one pipeline's modules.

Each LoRA file is read once and kept as a named peft adapter in the UNet and text
encoders; a job then only activates its set with its weights in the adapted layers
(:meth:`LoraAdapters._switch`, what diffusers' ``set_adapters`` does without its walks over
every module), which costs a millisecond or two where reloading a model costs seconds. Derived pipelines (img2img,
inpaint, ControlNet) share these very modules, so an adapter loaded once serves every
mode of the model. Beyond ``cap`` resident adapters the least recently used one is
deleted (``delete_adapters``) to bound memory.

Files come in several formats (``engine.lora_formats``): diffusers/peft, kohya-ss (alphas and
text-encoder parts included) and LyCORIS LoCon all load through diffusers'
``load_lora_weights``, which converts the kohya-ss layout itself (alpha becomes the peft
``lora_alpha``, so scale = alpha / rank as in kohya-ss). Other formats (LyCORIS LoHa, LoKr,
(IA)³, DoRA, anything unknown), and files that fit none of the model's layers, are refused with
a sentence (:class:`ModelUnavailableError`) before any adapter is left behind.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import warnings
from collections import Counter, OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import ModelUnavailableError
from engine.lora_formats import lora_format, module_count, refusal
from engine.tensor_files import read_header

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
        self._tuner_layers: list[Any] | None = None  # see _layers

    def activate(self, loras: list[LoraFile]) -> bool:
        """Make exactly ``loras`` active with their weights; an empty list disables LoRA.
        Returns whether adapters were loaded or deleted (the parameter count changed)."""
        wanted = {adapter_name(name): str(path) for name, path, _ in loras}
        names = {adapter_name(name): name for name, _, _ in loras}
        for adapter, path in wanted.items():
            if self.resident.get(adapter) == path:
                self.resident.move_to_end(adapter)  # used now: evicted last
        missing = [a for a, path in wanted.items() if self.resident.get(a) != path]
        changed = self._evict(keep=set(wanted), room=len(missing))
        for adapter in missing:
            self._load(names[adapter], adapter, wanted[adapter])
            changed = True
        self._switch([(adapter_name(name), weight) for name, _, weight in loras])
        return changed

    def _switch(self, active: list[tuple[str, float]]) -> None:
        """Activate ``active`` (adapter, weight) in every adapted layer, or none.

        What diffusers' ``enable_lora`` + ``set_adapters`` (or ``disable_lora``) do, layer by
        layer, without their cost: they walk every module of the UNet and the text encoders
        twice and switch each adapter weight's ``requires_grad`` (for training), 28 ms of a
        switch on SD1.5 for what is a few attributes per adapted layer. The adapted layers
        are listed once per set of resident adapters."""
        if not self.resident:
            self.active = ()
            return
        if tuple(active) == self.active and self._tuner_layers is not None:
            return  # the previous job's set and weights, and no adapter loaded or deleted
        names = [adapter for adapter, _ in active]
        for layer in self._layers():
            if not active:
                layer._disable_adapters = True  # the base model exactly
                continue
            layer._disable_adapters = False
            layer._active_adapter = names  # a layer skips adapters it does not carry
            for adapter, weight in active:
                layer.set_scale(adapter, weight)  # weight x alpha / rank, as peft scales
        self.active = tuple(active)

    def _layers(self) -> list[Any]:
        """The layers that carry adapters (peft's ``BaseTunerLayer``), in every model of the
        pipeline; listed again after an adapter was loaded or deleted."""
        if self._tuner_layers is None:
            from peft.tuners.tuners_utils import BaseTunerLayer

            self._tuner_layers = [
                module
                for component in self.pipe.components.values()
                if hasattr(component, "modules")
                for module in component.modules()
                if isinstance(module, BaseTunerLayer)
            ]
        return self._tuner_layers

    def _load(self, name: str, adapter: str, path: str) -> None:
        self._tuner_layers = None  # peft adapts layers and activates what it loads
        if adapter in self.resident:  # the catalog now points the name at another file
            self.pipe.delete_adapters(adapter)
            del self.resident[adapter]
        source, keys = read_lora(name, Path(path))
        with warnings.catch_warnings(), _quiet_transformers():
            # peft warns on every adapter after the first; several are the point here.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            try:
                self.pipe.load_lora_weights(source, adapter_name=adapter)
            except (ValueError, KeyError, RuntimeError) as exc:
                if isinstance(exc, RuntimeError) and "size mismatch" not in str(exc):
                    raise  # out of memory and the like: ours, not the file's
                log.warning("LoRA %s (%s) did not load", name, path, exc_info=True)
                self.pipe.delete_adapters(adapter)  # whatever part of it got in
                raise ModelUnavailableError(_misfit(name)) from exc
        self.reads[path] += 1
        expected, adapted = module_count(keys), self._adapted_layers(adapter)
        if adapted == 0:
            self.pipe.delete_adapters(adapter)
            raise ModelUnavailableError(_misfit(name))
        if adapted < expected:
            # diffusers leaves out what it cannot place, with a warning of its own.
            log.warning(
                "LoRA %s (%s, %s): %d of its %d layers match none of the model's and are ignored",
                name,
                path,
                lora_format(keys),
                expected - adapted,
                expected,
            )
        self.resident[adapter] = path

    def _adapted_layers(self, adapter: str) -> int:
        """How many layers of the pipeline's models carry adapter ``adapter``."""
        count = 0
        for component in self.pipe.components.values():
            if not hasattr(component, "named_modules"):
                continue
            for _, module in component.named_modules():
                lora_a = getattr(module, "lora_A", None)
                if lora_a is not None and adapter in lora_a:
                    count += 1
        return count

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
            self._tuner_layers = None
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


def read_lora(name: str, path: Path) -> tuple[str | dict[str, Any], list[str]]:
    """What ``load_lora_weights`` reads for LoRA ``name`` and its tensor names, once its
    format is known to be one that loads (else :class:`ModelUnavailableError`; a file that
    cannot be read at all is an internal error, ``RuntimeError``).

    A safetensors file is given as its path (diffusers reads it, header metadata included;
    here only its header is read); a pickled one (``.pt``, ``.ckpt``, ``.bin``) is read here,
    tensors only (``weights_only``), and given as its state dict."""
    source: str | dict[str, Any]
    try:
        if path.suffix.lower() == ".safetensors":
            keys = list(read_header(path))  # the header alone; FileUnreadable is a ValueError
            source = str(path)
        else:
            import torch

            state = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            if not isinstance(state, dict):
                raise ValueError(f"{path} holds no state dict")
            keys = [str(k) for k in state]
            source = state
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError, EOFError) as exc:
        # A damaged file is ours to fix, not the user's: an internal error (retried once, then
        # "something went wrong" with a reference), with the reason in the worker's log.
        raise RuntimeError(f"LoRA {name}: cannot read {path}: {exc}") from exc
    sentence = refusal(name, keys)
    if sentence is not None:
        raise ModelUnavailableError(sentence)
    return source, keys


def _misfit(name: str) -> str:
    return (
        f"LoRA `{name}` does not fit this model: its layers do not match the model's (the "
        "worker's log has the details); check that it was made for this model's family"
    )


def adapter_name(lora: str) -> str:
    """The peft adapter name of catalog LoRA ``lora``."""
    # peft keeps adapters in ModuleDicts, whose keys may not contain dots.
    return lora.replace(".", "_")
