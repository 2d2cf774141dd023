"""The ``backpropvis`` command: argument parsing and error messages, nothing else.

Each subcommand calls one function of the Python API. A
:class:`~backpropvis.core.errors.BackpropvisError` (something the user can fix) is printed
as one line on stderr with exit status 2; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

from .core.errors import BackpropvisError, first_few
from .core.rules import PAPER_METHODS
from .core.smooth_activations import SMOOTH_MODES
from .engine import PRECISION_NAMES, Precision
from .engine.receipt import DEFAULT_THRESHOLD, PrecisionReceipt

__all__ = ["main", "build_parser", "in_flags", "FLAGS", "PRECISION_CHOICES"]

PRECISION_CHOICES = PRECISION_NAMES
"""``--precision``: the names of :class:`~backpropvis.engine.Precision` ("default": PyTorch's global flags)."""


FLAGS: dict[str, str] = {
    "model": "--model",
    "model_args": "--model-args",
    "weights": "--weights",
    "output": "--output",
    "input_size": "--input-size",
    "smooth": "--smooth-activations",
    "precision": "--precision",
    "receipt_threshold": "--receipt-threshold",
    "methods": "--methods",
    "targets": "--targets",
    "pairs": "--pairs",
    "seed": "--seed",
    "device": "--device",
    "images": "--images",
    "limit": "--limit",
    "batch_size": "--batch-size",
    "workers": "--workers",
    "few_images": "--few-images",
    "unit_layers": "--unit-layers",
    "layers": "--layers",
    "layer": "--layer",
    "channels": "--channels",
    "top": "--top",
    "adversarial_steps": "--fgsm-steps",
    "save_maps": "--save-maps",
    "db": "--db",
    "out": "--out",
    "protocol": "--protocol",
    "settings": "--set",
    "count": "--count",
}
"""The library's parameter names -> the command line's flags. The library names a parameter
in its messages in backquotes (```few_images` must be at least 1``); :func:`in_flags` says it
as the flag."""


def in_flags(message: str) -> str:
    """A library message in the command line's words: each ```name``` becomes its flag (or the bare name)."""
    return re.sub(r"`(\w+)`", lambda match: FLAGS.get(match.group(1), match.group(1)), message)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _methods(text: str) -> list[str]:
    """``--methods gbp,saliency``: rule names, each one the command line can name."""
    from .core.rules import RULES

    names = _split(text)
    unknown = [name for name in names if name not in RULES and name != "guided_backprop"]
    if unknown or not names:
        what = f"unknown method {unknown[0]!r}" if unknown else "no method named"
        raise BackpropvisError(f"--methods: {what}; choose from {', '.join(RULES)} (comma-separated)")
    return names


def _run_visualize(args: argparse.Namespace) -> int:
    from .core.targets import parse_targets
    from .jobs.visualize import visualize
    from .render import DISPLAYS

    methods, targets = _methods(args.methods), parse_targets(args.targets)
    summary = visualize(
        images=args.images or ["tabby"],
        **_model_options(args),
        methods=methods,
        targets=targets,
        seed=args.seed,
        device=args.device,
        out=args.out,
        save_maps=args.save_maps,
        display=DISPLAYS[args.display],
        on_model=_say_model,
    )
    _say_receipt(summary["precision_receipt"])
    width = max(len(image["image"]) for image in summary["images"])
    for image in summary["images"]:
        print(f"{image['image']:<{width}}  predicted {image['predicted']} ({image['predicted_name']})")
    for entry in summary["maps"]:
        print(
            f"{entry['image']:<{width}}  {entry['method']:>9} target {entry['target_index']:>4} "
            f"({entry['target_name']}): input similarity {entry['input_similarity']:+.3f}"
        )
    if summary["class_distances"]:
        print("class distance between the maps of two targets (unit L2 maps; 0: the same map, 2: opposite):")
        for entry in summary["class_distances"]:
            first, second = (f"{target} ({index})" for target, index in zip(entry["targets"], entry["target_indices"]))
            print(f"{entry['image']:<{width}}  {entry['method']:>9} {first} vs {second}: {entry['class_distance']:.4f}")
    saved = f", {summary['saved_maps']}" if "saved_maps" in summary else ""
    print(f"wrote {len(summary['maps'])} maps, grid.png and summary.json to {args.out}{saved}")
    return 0


def _warn_receipt(receipt: Optional[PrecisionReceipt], prefix: str = "") -> None:
    """A precision receipt's warnings, one line each on stderr (its numbers go with the results)."""
    for line in receipt.warnings() if receipt is not None else []:
        print(f"backpropvis: warning: {prefix}{in_flags(line)}", file=sys.stderr)


def _say_receipt(receipt: Optional[dict], prefix: str = "") -> None:
    """A stored precision receipt (None: there is none): its line on stdout, its warnings on stderr."""
    if receipt is not None:
        read = PrecisionReceipt.from_dict(receipt)
        print(prefix + read.summary_line())
        _warn_receipt(read, prefix)


def _say_model(loaded) -> None:
    """The model's lines (model and preprocessing, then its notes), printed once it is built, before any image is
    read, so that a long run says what it computes at its start."""
    print(f"model: {loaded.title}; preprocessing: {loaded.preprocessing_description}", flush=True)
    for note in loaded.notes:
        if not note.startswith("preprocessing:"):
            print(f"model: {note}", flush=True)


def _model_options(args: argparse.Namespace) -> dict[str, Any]:
    """What :func:`_add_model_options` read: the model as one :class:`~backpropvis.models.ModelSpec`,
    and the precision, as the keyword arguments every model-building API takes."""
    from .models import ModelSpec, default_weights

    weights = args.weights if args.weights is not None else default_weights(args.model)
    spec = ModelSpec(args.model, weights, args.model_args, args.output, args.input_size, args.smooth_activations)
    return {"model": spec, "precision": Precision(args.precision), "receipt_threshold": args.receipt_threshold}


def _streaming_options(args: argparse.Namespace) -> dict[str, Any]:
    """What :func:`_add_streaming_options` read, as keyword arguments."""
    return {"limit": args.limit, "batch_size": args.batch_size, "workers": args.workers}


def _add_model_options(
    parser: argparse.ArgumentParser, input_size_default: str, model: str = "vgg16", weights: Optional[str] = None
) -> None:
    """--model, --model-args, --weights, --output, --input-size, --smooth-activations, --precision: for every
    command that builds a model."""
    from .models import MODEL_NAMES, TRAINED_WEIGHTS

    parser.add_argument(
        "--model",
        default=model,
        metavar="NAME|MODULE:CALLABLE|PATH.py:CALLABLE",
        help=f"a built-in model ({', '.join(MODEL_NAMES)}), or a callable returning a torch.nn.Module: "
        f"MODULE:CALLABLE (e.g. torchvision.models:resnet18) or PATH.py:CALLABLE (default: {model})",
    )
    bundled = ", ".join(f"{weights} for {name}" for name, weights in TRAINED_WEIGHTS.items())
    parser.add_argument(
        "--model-args",
        default=None,
        metavar="JSON",
        help="keyword arguments of a MODULE:CALLABLE model, as a JSON object, e.g. "
        "'{\"num_classes\": 10}' (default: none)",
    )
    said = weights if weights is not None else f"the model's bundled trained weights, {bundled}; else random"
    parser.add_argument(
        "--weights",
        default=weights,
        help="random (a built-in model's seeded init; a callable's model as built), imagenet (built-in "
        f"models) or a state-dict file (default: {said})",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="KEY",
        help="where the logits are when the model returns a dict, tuple or object: a key (logits), "
        "an index (0) or an attribute (default: the output itself)",
    )
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        metavar="PIXELS",
        help=f"crop size of the preprocessing (default: {input_size_default})",
    )
    parser.add_argument(
        "--smooth-activations",
        default=None,
        choices=SMOOTH_MODES,
        help="what the methods do at smooth activations (SiLU, GELU, Mish, ...): refuse them; gradient: their "
        "true gradient whatever the method; rule: the method's rule with g' = f' (DeconvNet max(R,0), GBP "
        "f'(x) max(R,0)); gates (sigmoid, softmax, tanh) keep their gradient (default: the model's own "
        "smooth_activations, else refuse; see docs/smooth-activations.md)",
    )
    _add_precision(parser, "default")


def _add_precision(parser: argparse.ArgumentParser, default: str) -> None:
    """--precision and --receipt-threshold: the engine's arithmetic (the commands differ in the default
    only) and when its receipt warns."""
    parser.add_argument(
        "--precision",
        default=default,
        choices=PRECISION_CHOICES,
        help="the engine's arithmetic: default follows PyTorch's global flags; float32 is exact IEEE float32 "
        "whatever the flags say, so numbers are reproducible; tf32 and bfloat16 trade exactness for speed "
        "on GPUs (default: %(default)s)",
    )
    parser.add_argument(
        "--receipt-threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="COSINE",
        help="at --precision tf32 or bfloat16 the first engine call (the first batch) is also made in float32; "
        "warn when a method's maps' cosine to it falls under this (default: %(default)s)",
    )


def _add_device_and_seed(parser: argparse.ArgumentParser) -> None:
    """--device and --seed: for every command that computes maps."""
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N or mps; under torchrun each rank uses cuda:LOCAL_RANK (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of every random draw: random weights, random targets or logits, redrawn layers, the "
        "bootstrap (default: %(default)s)",
    )


def _add_visualize(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "visualize",
        help="maps of images for chosen methods and targets",
        description="Maps of images for chosen methods and targets: one PNG per map, grid.png, summary.json (with the "
        "class distance between the targets' maps per image and method), and optionally the raw maps as arrays.",
    )
    parser.add_argument(
        "images", nargs="*", metavar="IMAGE-or-NAME", help="image files or sample names (default: tabby)"
    )
    _add_model_options(parser, "the model's own, or 224 for a model without .preprocessing", "efficientnet-lite0")
    parser.add_argument(
        "--methods", default=",".join(PAPER_METHODS), help="comma-separated rule names (default: %(default)s)"
    )
    parser.add_argument(
        "--display",
        default="clip99",
        choices=["clip99", "minmax"],
        help="how maps become pictures: clip99 divides by the 99th percentile of |map| and clips (0 is grey), "
        "minmax is the paper's min-max (default: %(default)s)",
    )
    parser.add_argument(
        "--targets",
        default="max,random",
        help="comma-separated: max, random, logit indices, or units inside the model LAYER:CHANNEL or "
        "LAYER:CHANNEL@Y,X (a module name as in named_modules(); CHANNEL also max or random; without @Y,X "
        "the channel's spatial maximum) (default: %(default)s)",
    )
    _add_device_and_seed(parser)
    parser.add_argument("--out", default="visualize-out", help="output folder (default: %(default)s)")
    parser.add_argument(
        "--save-maps",
        default=None,
        metavar="FILE.npz|FILE.pt",
        help="also save the raw signed maps, targets and logits as arrays (default: not saved)",
    )
    parser.set_defaults(run=_run_visualize)


def _image_source(args: argparse.Namespace):
    """``--images DIR`` or ``--samples [--crops N]`` as an image source (see :func:`_add_image_source`)."""
    from .images.sets import Samples

    if args.crops and not args.samples:
        raise BackpropvisError("--crops goes with --samples (crops of the bundled samples)")
    return Samples(args.crops, args.seed) if args.samples else args.images


def _add_image_source(parser: argparse.ArgumentParser, default: Optional[str] = None) -> None:
    """--images DIR | --samples [--crops N]: the images of an image-set command (required unless
    ``default`` says what the command takes without them)."""
    source = parser.add_mutually_exclusive_group(required=default is None)
    source.add_argument(
        "--images",
        metavar="DIR",
        help="folder of images, searched recursively, e.g. an ImageFolder tree "
        + (f"(default: {default})" if default else "(no default: give --images or --samples)"),
    )
    source.add_argument("--samples", action="store_true", help="use the bundled sample images instead of a folder")
    parser.add_argument(
        "--crops",
        type=int,
        default=0,
        metavar="N",
        help="with --samples: N seeded random crops of them too, keys such as tabby#crop07 (default: %(default)s)",
    )


def _add_streaming_options(parser: argparse.ArgumentParser) -> None:
    """--limit, --batch-size, --workers: how an image-set command streams its images."""
    parser.add_argument("--limit", type=int, help="only the first N images of the sorted list (default: all)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default: %(default)s)")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes decoding images (0: decode in the main process; default: 0 on the CPU, where a decoding "
        "process takes cores from the model's threads, 2 on a GPU)",
    )


def _run_class_distance(args: argparse.Namespace) -> int:
    from .stats import run_class_distance
    from .stats.summary import format_summary, summarize

    report = run_class_distance(
        _image_source(args),
        args.db,
        **_model_options(args),
        **_streaming_options(args),
        methods=_methods(args.methods),
        pairs=args.pairs,
        seed=args.seed,
        device=args.device,
        on_model=_say_model,
    )
    _warn_receipt(report.receipt)
    _print_report(report)
    if report.rank == 0:
        print(format_summary(summarize([args.db])))
    return 0


def _print_report(report) -> None:
    """What a streamed run did: images measured, failed and before (the model was said before the first batch)."""
    failed = f": {first_few(report.failed_images, 3)}" if report.failed_images else ""
    print(
        f"{report.db}: {report.measured_now} images measured now, {report.failed_now} failed{failed} "
        f"({report.images_per_second:.2f} images/s); {report.already_done} before, {report.images_total} in all"
    )


def _run_unit_distance(args: argparse.Namespace) -> int:

    from .core.files import write_json
    from .stats import format_unit_distance, plot_unit_distance, run_unit_distance, summarize_unit_distance

    report = run_unit_distance(
        _image_source(args),
        args.db,
        layers=_split(args.layers),
        **_model_options(args),
        **_streaming_options(args),
        methods=_methods(args.methods),
        seed=args.seed,
        device=args.device,
        on_model=_say_model,
    )
    _warn_receipt(report.receipt)
    _print_report(report)
    if report.rank == 0:
        summary = summarize_unit_distance([args.db], seed=args.seed)
        stem = Path(args.db).with_suffix("")
        plot_unit_distance(summary, f"{stem}.png")
        write_json(summary, Path(f"{stem}.json"))
        print(format_unit_distance(summary))
        print(f"wrote {stem}.png and {stem}.json")
    return 0


def _image_set_command(
    commands: argparse._SubParsersAction, name: str, help: str, description: str
) -> argparse.ArgumentParser:
    """A command streaming an image set through a model: the image source, model, streaming,
    device and seed options; the caller adds its own."""
    parser = commands.add_parser(name, help=help, description=description)
    _add_image_source(parser)
    _add_model_options(parser, "the model's own, or 224 for a model without .preprocessing")
    _add_streaming_options(parser)
    _add_device_and_seed(parser)
    return parser


def _add_unit_distance(commands: argparse._SubParsersAction) -> None:
    parser = _image_set_command(
        commands,
        "unit-distance",
        help="is the map about the unit? per layer, the distance between two units' maps (resumable database)",
        description="Streams images through a model and stores, per image, layer and method, the distance between "
        "the maps of the layer's most active unit and of a random other channel at its position (0: the map does "
        "not depend on the unit; sqrt 2: unrelated maps). Writes DB, and DB's stem .png (per method a curve over "
        "depth with bootstrap 95%% intervals) and .json. Run it again to resume; under torchrun each rank writes "
        "DB.rank-R.",
    )
    parser.add_argument(
        "--layers",
        required=True,
        metavar="LAYER,LAYER,...",
        help="module names as in named_modules(), shallow to deep, e.g. features.2,features.14,features.28",
    )
    parser.add_argument(
        "--methods", default=",".join(PAPER_METHODS), help="comma-separated rule names (default: %(default)s)"
    )
    parser.add_argument("--db", required=True, help="SQLite results file (created, or resumed)")
    parser.set_defaults(run=_run_unit_distance)


def _run_units(args: argparse.Namespace) -> int:
    from .jobs.units_view import UNITS_JSON, run_units
    from .models import as_loaded
    from .stats.top_units import Streaming, UnitScan, parse_channels

    options = _model_options(args)
    loaded = as_loaded(options["model"], args.seed)
    _say_model(loaded)
    channels = parse_channels(args.channels) if args.channels is not None else None
    scan = UnitScan(args.layer, channels, args.top, args.limit)
    streaming = Streaming(args.batch_size, args.workers, args.device)
    page = run_units(
        _image_source(args), args.out, loaded, scan, streaming, options["precision"], options["receipt_threshold"]
    )
    _say_receipt(json.loads((Path(args.out) / UNITS_JSON).read_text(encoding="utf-8"))["precision_receipt"])
    print(f"wrote {page} and {Path(args.out) / UNITS_JSON}")
    return 0


def _add_units(commands: argparse._SubParsersAction) -> None:
    parser = _image_set_command(
        commands,
        "units",
        help="the Zeiler & Fergus view of a layer: per channel its top images and their projections",
        description="Streams images through a model (resumable) and keeps, per channel of a layer, the images with "
        "the highest activation; writes DIR/units.json and DIR/index.html: per channel the image patches (the "
        "unit's receptive field) beside their DeconvNet, GBP and saliency projections.",
    )
    parser.add_argument("--layer", required=True, help="a module name as in named_modules(), e.g. features.28")
    parser.add_argument(
        "--channels", default=None, metavar="0-15", help="channels: indices and ranges (default: the first 16)"
    )
    parser.add_argument("--top", type=int, default=9, help="images kept per channel (default: %(default)s)")
    parser.add_argument("--out", default="units-out", help="output folder (default: %(default)s)")
    parser.set_defaults(run=_run_units)


def _add_class_distance(commands: argparse._SubParsersAction) -> None:
    from .stats.pairs import PAIRS

    parser = commands.add_parser(
        "class-distance",
        help="class distance of every image in a folder, into a resumable SQLite database (Figure 7)",
        description="Streams a folder of images through a model and stores, per image and method, the class distance "
        "between the maps of two logits. Run it again to resume; under torchrun each rank writes DB.rank-R.",
    )
    _add_image_source(parser)
    _add_model_options(parser, "the model's own, or 224 for a model without .preprocessing")
    parser.add_argument(
        "--methods", default=",".join(PAPER_METHODS), help="comma-separated rule names (default: %(default)s)"
    )
    parser.add_argument(
        "--pairs", default="max-random", choices=list(PAIRS), help="which two logits per image (default: %(default)s)"
    )
    parser.add_argument("--db", required=True, help="SQLite results file (created, or resumed)")
    _add_streaming_options(parser)
    _add_device_and_seed(parser)
    parser.set_defaults(run=_run_class_distance)


def _run_audit(args: argparse.Namespace) -> int:
    from .audit import AUDIT_FILE, format_verdicts, run_audit
    from .report.page import INDEX_FILE

    audit = run_audit(
        _image_source(args),
        args.out,
        **_model_options(args),
        **_streaming_options(args),
        methods=_methods(args.methods),
        pairs=args.pairs,
        seed=args.seed,
        few_images=args.few_images,
        adversarial_steps=_steps(args.fgsm_steps),
        unit_layers=_split(args.unit_layers) if args.unit_layers else None,
        device=args.device,
        on_model=_say_model,
    )
    print(f"images: {audit['images']['described']}")
    for note in audit["notes"]:
        print(f"note: {note}")
    print(format_verdicts(audit))
    print(f"wrote {args.out}/{AUDIT_FILE} and {args.out}/{INDEX_FILE}")
    return 0


def _steps(text: str) -> list[float]:
    """``--fgsm-steps 0.25,0.5,1``: the FGSM steps in units of 1/255."""
    try:
        return [float(part) for part in _split(text)]
    except ValueError:
        raise BackpropvisError(f"--fgsm-steps takes numbers separated by commas (1/255 units), not {text!r}") from None


def _add_audit(commands: argparse._SubParsersAction) -> None:
    from .audit import ADVERSARIAL_STEPS
    from .stats.pairs import PAIRS

    parser = commands.add_parser(
        "audit",
        help="the paper's diagnostics on your model and images, with a verdict per method",
        description="Are GBP / DeconvNet maps on your model class-sensitive, or do they redraw the image? Measures "
        "per method the class distance between two logits' maps over the images (resumable database, bootstrap "
        "95% intervals, ratio to saliency), the input similarity, the change as the model's layers are redrawn "
        "from the top down, and the change with FGSM adversarial images; judges each method by thresholds "
        "declared in backpropvis/audit/verdicts.py; writes DIR/audit.json and DIR/index.html. Rerun the same "
        "command to resume.",
    )
    _add_image_source(parser)
    _add_model_options(parser, "the model's own, or 224 for a model without .preprocessing")
    parser.add_argument(
        "--methods",
        default=",".join(PAPER_METHODS),
        help="comma-separated rule names; saliency, the reference, is always added (default: %(default)s)",
    )
    parser.add_argument(
        "--pairs",
        default="random-random",
        choices=list(PAIRS),
        help="which two logits per image for the class distance (default: %(default)s, as the paper's Figure 7)",
    )
    parser.add_argument(
        "--out",
        default="audit-out",
        help="output folder: audit.json, index.html, figures/, class-distance.sqlite, steps/ (default: %(default)s)",
    )
    parser.add_argument(
        "--few-images",
        type=int,
        default=4,
        metavar="N",
        help="images (the first readable ones) of the randomisation and adversarial tests (default: %(default)s)",
    )
    parser.add_argument(
        "--fgsm-steps",
        default=",".join(f"{step:g}" for step in ADVERSARIAL_STEPS),
        metavar="STEPS",
        help="FGSM steps of the adversarial test, in units of 1/255, comma-separated; each image is "
        "read at its smallest step that changes the prediction (default: %(default)s)",
    )
    parser.add_argument(
        "--unit-layers",
        default=None,
        metavar="LAYER,LAYER,...",
        help="layers of the unit-distance panel, shallow to deep (default: six convolutions and dense layers "
        "spread over the depth)",
    )
    _add_streaming_options(parser)
    _add_device_and_seed(parser)
    parser.set_defaults(run=_run_audit)


def _run_summarize(args: argparse.Namespace) -> int:
    import json

    from .stats.compare import format_runs, plot_runs, summarize_runs

    summary = summarize_runs(args.databases, resamples=args.resamples)
    if args.plot:
        summary["plot"] = str(plot_runs(summary, args.plot))
    print(json.dumps(summary, indent=2) if args.json else in_flags(format_runs(summary)))
    if args.plot and not args.json:
        print(f"wrote {args.plot}")
    return 0


def _add_summarize(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "summarize",
        help="mean class distance per method with bootstrap 95%% CIs, from class-distance databases",
        description="Summarises class-distance databases: the files of one run are merged (torchrun ranks); "
        "databases of different runs (e.g. a random and a trained model) are reported side by side.",
    )
    parser.add_argument(
        "databases",
        nargs="+",
        metavar="DB",
        help="database files or globs; results.sqlite also finds results.rank-*.sqlite",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--plot", metavar="PNG", help="write a bar chart like the paper's Figure 7 (default: none)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: %(default)s)")
    parser.set_defaults(run=_run_summarize)


def _run_selected(group: str, names: Sequence[str], args: argparse.Namespace, **options) -> int:
    """Run the named paper figures or theory studies, print their claims and the report's path."""
    from . import experiments
    from .core.devices import resolve_device
    from .jobs.suite import run_suite
    from .report.page import INDEX_FILE, summary_table

    registry = _reproduced() if group == "paper" else experiments.THEORY
    results = run_suite(
        experiments.select(registry, names),
        args.out,
        quick=args.quick,
        device=resolve_device(args.device),
        seed=args.seed,
        vgg16_weights=args.vgg16_weights,
        precision=Precision(args.precision),
        resume=not args.fresh,
        receipt_threshold=args.receipt_threshold,
        **options,
    )
    print(summary_table(results))
    for result in results:
        _say_receipt(result.precision_receipt, f"{result.experiment}: ")
    print(f"report: {args.out}/{INDEX_FILE}")
    return 0  # a claim that does not hold is a finding, not a failure


def _reproduced() -> dict:
    """What ``reproduce`` runs: the paper's figures, then the field's sanity protocols on the bundled models."""
    from . import experiments
    from .sanity.experiments import SANITY

    return {**experiments.PAPER, **SANITY}


def _add_fresh(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="recompute every experiment (default: one whose result in --out was made the same way, same "
        "settings, seed, device, precision and inputs, is kept and said so)",
    )


def _run_reproduce(args: argparse.Namespace) -> int:
    return _run_selected("paper", args.experiments, args, images=args.images)


def _add_reproduce(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reproduce",
        help="the paper's figures with their claims checked: DIR/<fig>/figure.png, metrics.json, DIR/index.html",
    )
    parser.add_argument(
        "experiments",
        nargs="*",
        metavar="EXPERIMENT",
        help="fig2 ... fig9, the sanity protocols on the bundled models (adebayo2018-digits, "
        "adebayo2018-efficientnet, ...: extra experiments, reported under their own heading), or all (the default)",
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (minutes on a laptop CPU)")
    _add_fresh(parser)
    parser.add_argument("--out", default="reproduce-out", help="output folder (default: %(default)s)")
    _add_device_and_seed(parser)
    parser.add_argument(
        "--images",
        default=None,
        metavar="DIR",
        help="fig7: a folder of images, e.g. ImageNet validation JPEGs (default: the bundled samples "
        "and seeded crops of them)",
    )
    parser.add_argument(
        "--vgg16-weights",
        default=None,
        metavar="FILE",
        help="torchvision's trained VGG-16 checkpoint, vgg16-397923af.pth (default: the torch hub "
        "cache's, else EfficientNet-Lite0 stands in for the trained net)",
    )
    _add_precision(parser, "float32")
    parser.set_defaults(run=_run_reproduce)


def _protocol_settings(pairs: Optional[Sequence[str]]) -> dict[str, Any]:
    """``--set NAME=VALUE``: protocol setting overrides, each value read as JSON when it parses, else
    as text (comma-separated text as a tuple: ``methods=saliency,gbp``)."""
    import json

    settings: dict[str, Any] = {}
    for pair in pairs or ():
        name, equals, text = pair.partition("=")
        if not equals or not name.strip():
            raise BackpropvisError(f"--set takes NAME=VALUE, e.g. seeds=3, not {pair!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = tuple(_split(text)) if "," in text else text  # methods=saliency,gbp
        settings[name.strip()] = tuple(value) if isinstance(value, list) else value
    return settings


def _protocol_setting_names(protocols: dict) -> str:
    """ "adebayo2018: methods, seeds, ...": what ``--set`` can name, per protocol."""
    import dataclasses

    return "; ".join(
        f"{name}: {', '.join(field.name for field in dataclasses.fields(protocol.full))}"
        for name, protocol in protocols.items()
    )


def _run_sanity(args: argparse.Namespace) -> int:
    from .report.page import INDEX_FILE
    from .sanity.page import format_result
    from .sanity.run import RESULT_FILE, SanityOptions, run_sanity

    source = _image_source(args)
    options = SanityOptions(
        size="quick" if args.quick else "full",
        settings=_protocol_settings(args.set),
        count=args.count,
        device=args.device,
        precision=Precision(args.precision),
        seed=args.seed,
        receipt_threshold=args.receipt_threshold,
    )
    result, claims = run_sanity(
        args.protocol, args.out, images=source, model=_model_options(args)["model"], options=options
    )
    print(format_result(result))
    _say_receipt(result.precision_receipt)
    for note in result.notes:
        print(f"note: {note}")
    for claim in claims:
        verdict = "holds" if claim["holds"] else "does NOT hold"
        print(f"claim {claim['id']}: {claim['value']:.3g} {claim['comparison']} {claim['threshold']:g}: {verdict}")
    print(f"wrote {args.out}/{RESULT_FILE} and {args.out}/{INDEX_FILE}")
    return 0  # a claim that does not hold is a finding, not a failure


def _add_sanity(commands: argparse._SubParsersAction) -> None:
    from .sanity import PROTOCOLS

    parser = commands.add_parser(
        "sanity",
        help="the field's sanity protocols (Adebayo et al. 2018, ...) on your model and images",
        description="Runs one published sanity test of saliency methods (cascading and independent model "
        "randomisation, data randomisation, ...) with controls beside every number (random map, edge map, "
        "another seed of the redraw) and bootstrap intervals; judges the literature's claims; writes "
        "DIR/sanity.json and DIR/index.html. Rerun the same command to resume. See docs/sanity.md.",
    )
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS), help="which protocol")
    _add_model_options(parser, "the model's own, or 224 for a model without .preprocessing", "digits-vgg")
    parser.set_defaults(precision="float32")
    _add_image_source(parser, default="the held-out digits for digits-vgg, else the bundled samples")
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="images used, spread over the list (default: the protocol's)",
    )
    parser.add_argument("--quick", action="store_true", help="the protocol's reduced settings (a minute on a CPU)")
    parser.add_argument(
        "--set",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="override one of the protocol's settings, e.g. --set seeds=5 --set independent=false (repeatable; "
        f"settings: {_protocol_setting_names(PROTOCOLS)}; default: none, the protocol's settings)",
    )
    _add_device_and_seed(parser)
    parser.add_argument(
        "--out", default="sanity-out", help="output folder: sanity.json, index.html, steps/ (default: %(default)s)"
    )
    parser.set_defaults(run=_run_sanity)


def _run_theory(args: argparse.Namespace) -> int:
    from .images.samples import load_image

    load_image(args.image)  # a bad --image is refused before anything runs
    return _run_selected("theory", args.studies, args, image=args.image)


def _add_theory(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "theory",
        help="the paper's theory computed (closed forms, Theorems 1-2, depth, dead zones), with claims checked",
    )
    parser.add_argument(
        "studies",
        nargs="*",
        metavar="STUDY",
        help="closed-form, recovery, gaussianity, depth, dead-zones, unit-distance, or all (the default)",
    )
    parser.add_argument("--quick", action="store_true", help="reduced sizes (all studies in minutes on a 2-core CPU)")
    _add_fresh(parser)
    parser.add_argument(
        "--out",
        default="theory-out",
        help="output folder (default: %(default)s); index.html is shared with reproduce when both "
        "write to the same folder",
    )
    parser.add_argument(
        "--image", default="tabby", metavar="NAME-or-PATH", help="sample name or image file (default: %(default)s)"
    )
    _add_device_and_seed(parser)
    parser.add_argument(
        "--vgg16-weights",
        default=None,
        metavar="FILE",
        help="dead-zones: torchvision's trained VGG-16 checkpoint (default: the torch hub cache's, "
        "else the study is skipped)",
    )
    _add_precision(parser, "float32")
    parser.set_defaults(run=_run_theory)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_visualize,
    _add_class_distance,
    _add_unit_distance,
    _add_units,
    _add_audit,
    _add_summarize,
    _add_reproduce,
    _add_theory,
    _add_sanity,
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line and status 2, as for every user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``backpropvis`` argument parser with every subcommand."""
    from . import __version__

    parser = _Parser(
        prog="backpropvis",
        description="Saliency, DeconvNet and Guided Backprop from one rule, and what they mean (Nie et al. 2018).",
    )
    parser.add_argument("--version", action="version", version=f"backpropvis {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error, 130 Ctrl-C).

    Without a command it prints the help (status 0).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except BackpropvisError as error:
        print(f"backpropvis: error: {in_flags(str(error))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # an Interrupted says what was saved and how to go on
        detail = str(interrupt)
        print(f"backpropvis: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
