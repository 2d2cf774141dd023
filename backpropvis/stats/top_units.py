"""The Zeiler & Fergus scan: per channel of a layer, the images that excite it most.

Every image of a folder (or the bundled samples) is streamed through the model once
(decoded by DataLoader workers, bad files recorded and skipped); per channel the ``top``
images with the highest activation (the channel's spatial maximum, at its position) are
kept. The scan's state (its settings, the images done, the running top lists) is written
atomically after every batch to a JSON file, so a run stopped at any moment continues
where it was with the same command, and ends with the same lists as an uninterrupted one
(ties between equal activations are broken by the image key).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from ..core.errors import BackpropvisError, Interrupted, StoreError, TargetError
from ..core.files import write_json
from ..engine.unit_targets import layer_modules, layer_output
from ..images.sets import ImageSource, list_images, source_setting
from ..models import LoadedModel
from .decoding import ImageSet, batch_loader, decoding_workers

__all__ = [
    "UnitScan",
    "Streaming",
    "DEFAULT_STREAMING",
    "TopImage",
    "ScanResult",
    "parse_channels",
    "scan_top_units",
    "DEFAULT_CHANNELS",
]

DEFAULT_CHANNELS = 16
"""Without ``channels``, the layer's first 16 channels are scanned."""


@dataclass(frozen=True)
class UnitScan:
    """What to scan: ``layer`` (a module name), its ``channels`` (None: the first
    :data:`DEFAULT_CHANNELS`), the ``top`` images kept per channel, the first ``limit`` images."""

    layer: str
    channels: Optional[tuple[int, ...]] = None
    top: int = 9
    limit: Optional[int] = None


@dataclass(frozen=True)
class Streaming:
    """How images are streamed: ``batch_size`` per forward pass, ``workers`` decoding
    processes (0: in this process; None: 0 on the CPU, 2 on an accelerator,
    :func:`~.decoding.decoding_workers`), the ``device`` the model runs on, a ``progress`` bar."""

    batch_size: int = 8
    workers: Optional[int] = None
    device: Union[str, torch.device] = "cpu"
    progress: bool = True


DEFAULT_STREAMING = Streaming()


@dataclass(frozen=True)
class TopImage:
    """One of a channel's top images: its key, the activation and where it peaks (spatial indices)."""

    image: str
    activation: float
    position: tuple[int, ...]


@dataclass
class ScanResult:
    """A finished scan: per channel its top images, highest first; the failures; the state file."""

    channels: dict[int, list[TopImage]]
    failures: dict[str, str]
    images: int
    state: Path
    settings: dict = field(default_factory=dict)


def parse_channels(text: str) -> tuple[int, ...]:
    """``"0-3,8"`` -> ``(0, 1, 2, 3, 8)``.

    Raises:
        TargetError: anything but indices and ranges LOW-HIGH (LOW <= HIGH).
    """
    channels: list[int] = []
    for part in (part.strip() for part in text.split(",")):
        found = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not found or (found.group(2) and int(found.group(2)) < int(found.group(1))):
            raise TargetError(f"channels {text!r}: use indices and ranges such as 0-15 or 3,7,9-12")
        low = int(found.group(1))
        channels += range(low, int(found.group(2) or low) + 1)
    return tuple(dict.fromkeys(channels))


def scan_top_units(
    images: ImageSource,
    state: Union[str, os.PathLike],
    model: LoadedModel,
    scan: UnitScan,
    streaming: Streaming = DEFAULT_STREAMING,
) -> ScanResult:
    """Stream ``images`` through ``model`` and keep per channel of ``scan.layer`` the top images.

    Args:
        images: a folder, :class:`~backpropvis.images.sets.Samples`, or None (bundled samples).
        state: the JSON file of the scan's state (resumed when it holds the same settings).
        model: the model, its preprocessing and identity (:class:`~backpropvis.models.LoadedModel`).
        scan: layer, channels, top and limit.
        streaming: batch size, workers, device and progress bar.

    Raises:
        BackpropvisError: an unknown layer, channels outside it, a state file of another
            scan, bad settings; Interrupted on Ctrl-C (what is saved is kept).
    """
    batch_size, device = streaming.batch_size, torch.device(streaming.device)
    workers = decoding_workers(streaming.workers, device)
    if batch_size < 1 or scan.top < 1:
        raise BackpropvisError(f"`batch_size` and `top` must be at least 1, not {batch_size} and {scan.top}")
    state = Path(state)
    layer_modules(model.module, [scan.layer])  # an unknown layer is refused before anything is read
    keys = list_images(images, scan.limit)
    settings = _scan_settings(model, scan, images)
    saved = _read_state(state, settings)
    network = model.module.to(device)
    dataset = ImageSet(images, keys, model.preprocessing)
    finished = set(saved["done"]) | set(saved["failed"])
    todo = [index for index, key in enumerate(keys) if key not in finished]
    batches = [todo[start : start + batch_size] for start in range(0, len(todo), batch_size)]
    try:
        with tqdm(total=len(todo), unit="image", desc="top units", disable=not streaming.progress or not todo) as bar:
            for batch in batch_loader(dataset, batches, workers, batch_size):
                if batch.keys:
                    inputs = batch.inputs(model.preprocessing, device)[: len(batch.keys)]
                    _merge(saved, network, inputs, batch.keys, scan)
                saved["done"] += batch.keys
                saved["failed"].update({key: reason for key, _, reason in batch.failures})
                write_json(saved, state)
                bar.update(len(batch.keys) + len(batch.failures))
    except KeyboardInterrupt:
        raise Interrupted(
            f"{len(saved['done'])} of {len(keys)} images scanned and saved in {state}; "
            "run the same command again to resume"
        ) from None
    channels = {
        int(channel): [TopImage(key, value, tuple(position)) for value, key, position in entries]
        for channel, entries in saved["top"].items()
    }
    return ScanResult(channels, dict(saved["failed"]), len(saved["done"]), state, settings)


def _scan_settings(model: LoadedModel, scan: UnitScan, images: ImageSource) -> dict:
    """What decides a scan's lists: a state file with other ones is not resumed."""
    return {
        "model": model.name,
        "weights_fingerprint": model.fingerprint,
        "model_source": model.source,
        "layer": scan.layer,
        "channels": list(scan.channels) if scan.channels is not None else None,
        "top": scan.top,
        "images": source_setting(images),
        "preprocessing": model.preprocessing_description,
    }


def _read_state(path: Path, settings: dict) -> dict:
    """The saved state of the same scan, or a fresh one; another scan's file is refused."""
    fresh = {"settings": settings, "done": [], "failed": {}, "top": {}}
    if not path.exists():
        return fresh
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        stored = saved["settings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StoreError(f"{path} is not a units scan's state ({error}); use another `out`") from None
    differences = [name for name in settings if stored.get(name) != settings[name]]
    if differences:
        raise StoreError(
            f"{path} holds a scan with other settings ({', '.join(differences)}); "
            "use the same settings to resume it, or another `out`"
        )
    return saved


def _merge(saved: dict, network: torch.nn.Module, pixels: torch.Tensor, keys: Sequence[str], scan: UnitScan) -> None:
    """Fold one batch's activations into the running top lists (sorted by activation, then key)."""
    output = layer_output(network, pixels, scan.layer).float().cpu()  # [B, C, *spatial]
    if output.dim() < 2:
        raise TargetError(f"layer '{scan.layer}' returns {list(output.shape)}, without a channel dimension")
    available = output.shape[1]
    channels = scan.channels if scan.channels is not None else tuple(range(min(DEFAULT_CHANNELS, available)))
    outside = [channel for channel in channels if channel >= available]
    if outside:
        raise TargetError(f"channel {outside[0]} is outside layer '{scan.layer}''s {available} channels")
    spatial = tuple(output.shape[2:])
    peaks = output[:, list(channels)].reshape(len(keys), len(channels), -1).max(dim=2)  # [B, channels] each
    for column, channel in enumerate(channels):
        entries = saved["top"].setdefault(str(channel), [])
        for row, key in enumerate(keys):
            flat = int(peaks.indices[row, column])
            position = [int(i) for i in torch.unravel_index(torch.tensor(flat), spatial)] if spatial else []
            entries.append([float(peaks.values[row, column]), key, position])
        entries.sort(key=lambda entry: (-entry[0], entry[1]))
        del entries[scan.top :]
