"""A protocol as one call: :func:`run_sanity` loads the model and the images, runs the
protocol (every finished step kept in ``DIR/steps``: rerunning the same command resumes),
judges its claims and writes ``DIR/sanity.json``, ``DIR/sanity.npz`` (the figures' arrays)
and the self-contained ``DIR/index.html``.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import numpy as np

from .. import __version__
from ..audit.probes import Probes, load_probes
from ..core.devices import resolve_device
from ..core.errors import BackpropvisError, Interrupted
from ..core.files import make_folder, write_arrays, write_json
from ..engine import Precision, PrecisionLike
from ..engine.receipt import DEFAULT_THRESHOLD, PrecisionReceipt, collect_receipt, needs_receipt
from ..images.sets import Digits, ImageSource, list_images, source_setting
from ..models import LoadedModel, ModelLike, ModelSpec, as_loaded
from . import find_protocol
from .page import format_result, write_page
from .protocol import Protocol, SanityResult, SanityRun
from .steps import StepStore

__all__ = ["ARRAYS_FILE", "RESULT_FILE", "SanityOptions", "run_sanity", "load_result"]

RESULT_FILE = "sanity.json"
"""The protocol's result, in its folder."""

ARRAYS_FILE = "sanity.npz"
"""The arrays its figures are drawn from, in its folder."""

STEP_FORMAT = 2
"""The layout of kept steps: a kept step of another layout is computed again."""

DIGITS_MODEL = ModelSpec("digits-vgg", weights="trained")
"""The default model: the bundled trained digits VGG."""

DEFAULT_IMAGES = 16
"""Images a protocol looks at when neither it nor the caller says."""


def _settings(protocol: Protocol, size: str, overrides: Optional[Mapping[str, Any]]) -> Any:
    settings = protocol.settings(size)
    if overrides:
        known = {item.name for item in dataclasses.fields(settings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise BackpropvisError(
                f"`settings` names {unknown[0]!r}, which protocol {protocol.name} does not have; "
                f"its settings: {', '.join(sorted(known))}"
            )
        settings = dataclasses.replace(settings, **overrides)
    return settings


def _source(images: ImageSource, loaded: LoadedModel) -> ImageSource:
    """The images: as given, or the held-out digits for the digits VGG (photos mean nothing to it)."""
    if images is None and loaded.name == "digits-vgg":
        return Digits("test")
    return images


@dataclasses.dataclass(frozen=True)
class SanityOptions:
    """How a protocol runs, beside the model and the images.

    Attributes:
        size: "full", "quick" or "tiny": which of the protocol's settings.
        settings: overrides of single settings (name -> value).
        count: how many images (spread over the sorted list); None: the settings' ``images``.
        device, precision, seed, progress: where, in what arithmetic, from which seed, with bars.
        page: write ``index.html`` (``reproduce`` draws the figure into its own report instead).
        receipt_threshold: at TF32 or bfloat16 the run's first engine call is also made in
            float32; its receipt names the methods under this (:mod:`backpropvis.engine.receipt`).
    """

    size: str = "full"
    settings: Optional[Mapping[str, Any]] = None
    count: Optional[int] = None
    device: str = "cpu"
    precision: PrecisionLike = Precision.FLOAT32
    seed: int = 0
    progress: bool = True
    page: bool = True
    receipt_threshold: float = DEFAULT_THRESHOLD


def run_sanity(
    protocol: Union[str, Protocol],
    out: Union[str, os.PathLike],
    *,
    images: ImageSource = None,
    model: ModelLike = DIGITS_MODEL,
    options: SanityOptions = SanityOptions(),
) -> tuple[SanityResult, list[dict]]:
    """Run one sanity protocol on a model and images; write its result and page in ``out``.

    Args:
        protocol: a name of :data:`~backpropvis.sanity.PROTOCOLS` or a protocol.
        out: the folder (``sanity.json``, ``sanity.npz``, ``index.html``, ``steps/``).
        images: a folder, a :class:`~backpropvis.images.sets.Samples` or ``Digits``, or None
            (the bundled photos; the held-out digits for the digits VGG).
        model: a name, a :class:`~backpropvis.models.ModelSpec`, a loaded model or a module
            (:func:`backpropvis.models.as_loaded`); default: the trained digits VGG.
        options: size, setting overrides, image count, device, precision, seed, progress.

    Returns:
        The result, and its claims' verdicts (dicts as ``ClaimResult``).

    Raises:
        BackpropvisError: an unknown protocol or setting, a bad folder, images, model or
            weights (before any map is computed); ``Interrupted`` on Ctrl-C (finished steps kept).
    """
    chosen = protocol if isinstance(protocol, Protocol) else find_protocol(protocol)
    values = _settings(chosen, options.size, options.settings)
    folder = make_folder(out)
    torch_device = resolve_device(str(options.device))
    loaded = as_loaded(model, options.seed)
    source, probes = _images(images, loaded, values, options)
    identity = _identity(chosen, values, loaded, probes, options)
    run = SanityRun(
        model=loaded.module.to(torch_device).eval(),
        inputs=probes.inputs.to(torch_device),
        keys=probes.keys,
        model_name=loaded.name,
        weights=loaded.weights_description,
        store=StepStore(folder, identity),
        device=torch_device,
        precision=options.precision,
        seed=options.seed,
        progress=options.progress,
    )
    started = time.perf_counter()
    result = _measure(chosen, run, values, options, folder)
    claims = [dataclasses.asdict(claim.evaluate(result.claim_values)) for claim in chosen.claims]
    _write(folder, chosen, result, claims, source, time.perf_counter() - started, str(torch_device))
    if options.page:
        write_page(result, chosen.title, chosen.section(result), claims, folder / "index.html")
    return result, claims


def _measure(protocol: Protocol, run: SanityRun, values: Any, options: SanityOptions, folder: Path) -> SanityResult:
    """The protocol's result, with its precision receipt and a note of the steps kept.

    Raises:
        Interrupted: on Ctrl-C (the finished steps are kept).
    """
    try:
        with collect_receipt(options.receipt_threshold) as receipts:
            result = protocol.measure(run, values)
    except KeyboardInterrupt:
        raise Interrupted(
            f"kept in {folder / 'steps'}: the finished steps; run the same command again to go on"
        ) from None
    result.precision_receipt = _receipt(run, receipts.receipt, options)
    if run.store.reused:
        result.notes.append(f"{len(run.store.reused)} steps kept from an earlier run with the same inputs")
    return result


def _receipt(run: SanityRun, measured: Optional[PrecisionReceipt], options: SanityOptions) -> Optional[dict]:
    """The run's precision receipt: kept with its steps, so that a resumed run whose engine calls were
    all read back still has the first session's; judged at this run's threshold. None at float32."""
    if not needs_receipt(options.precision):
        return None
    now = measured.as_dict() if measured is not None else None
    kept = run.store.run("precision-receipt", lambda: ({"receipt": now}, {})).numbers["receipt"]
    if kept is None:
        return now
    return PrecisionReceipt.from_dict(kept).at_threshold(options.receipt_threshold).as_dict()


def _images(images: ImageSource, loaded: LoadedModel, values: Any, options: SanityOptions) -> tuple[Any, Probes]:
    """The image source and the images a run looks at (``count``, or the settings' ``images``)."""
    source = _source(images, loaded)
    wanted = options.count if options.count is not None else int(getattr(values, "images", DEFAULT_IMAGES))
    keys = list_images(source)
    return source, load_probes(source, keys, loaded.preprocessing, min(wanted, len(keys)))


def _identity(protocol: Protocol, values: Any, loaded: LoadedModel, probes: Probes, options: SanityOptions) -> dict:
    """What a kept step must have been measured with to be read back instead of computed."""
    return {
        "format": STEP_FORMAT,
        "protocol": protocol.name,
        "model": loaded.name,
        "model_args": loaded.args_json,
        "model_source": loaded.source,
        "weights_fingerprint": loaded.fingerprint,
        "preprocessing": loaded.preprocessing_description,
        "images": [list(pair) for pair in zip(probes.keys, probes.hashes)],
        "settings": dataclasses.asdict(values),
        "seed": options.seed,
        "precision": Precision.parse(options.precision).value,
    }


def _write(
    folder: Path, protocol: Protocol, result: SanityResult, claims: list, source, seconds: float, device: str
) -> None:
    document = {
        "backpropvis": __version__,
        **result.to_json(),
        "title": protocol.title,
        "reference": protocol.reference,
        "images": source_setting(source),
        "device": device,
        "claims": claims,
        "seconds": seconds,
    }
    write_arrays({name: np.asarray(value) for name, value in result.arrays.items()}, folder / ARRAYS_FILE)
    write_json(document, folder / RESULT_FILE)


def load_result(folder: Union[str, os.PathLike]) -> SanityResult:
    """A written result read back (``sanity.json`` and ``sanity.npz``)."""
    import json

    from ..core.files import read_arrays

    path = Path(folder)
    data = json.loads((path / RESULT_FILE).read_text(encoding="utf-8"))
    return SanityResult.from_json(data, read_arrays(path / ARRAYS_FILE))


def describe(result: SanityResult) -> str:
    """What the CLI prints: :func:`~backpropvis.sanity.page.format_result`."""
    return format_result(result)
