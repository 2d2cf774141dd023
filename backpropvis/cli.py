"""The ``backpropvis`` command: argument parsing and error messages, nothing else.

Each subcommand calls one function of the Python API. A
:class:`~backpropvis.errors.BackpropvisError` (something the user can fix) is printed
as one line on stderr with exit status 2; any other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Optional, Sequence

from .errors import BackpropvisError

__all__ = ["main", "build_parser"]


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _run_visualize(args: argparse.Namespace) -> int:
    from .visualize import parse_targets, visualize

    summary = visualize(
        images=args.images or ["tabby"], model=args.model, weights=args.weights, methods=_split(args.methods),
        targets=parse_targets(args.targets), seed=args.seed, device=args.device, out=args.out,
    )
    for image in summary["images"]:
        print(f"{image['image']}: predicted {image['predicted']} ({image['predicted_name']})")
    for entry in summary["maps"]:
        print(
            f"  {entry['method']:>9} target {entry['target_index']:>4} ({entry['target_name']}): "
            f"input similarity {entry['input_similarity']:+.3f}"
        )
    print(f"wrote {len(summary['maps'])} maps, grid.png and summary.json to {args.out}")
    return 0


def _add_visualize(commands: argparse._SubParsersAction) -> None:
    from .models import MODEL_NAMES

    parser = commands.add_parser("visualize", help="maps of images for chosen methods and targets")
    parser.add_argument("images", nargs="*", metavar="IMAGE-or-NAME", help="image files or sample names (default: tabby)")
    parser.add_argument("--model", default="vgg16", choices=MODEL_NAMES)
    parser.add_argument("--weights", default="random", help="random, imagenet or a checkpoint path")
    parser.add_argument("--methods", default="saliency,deconvnet,gbp", help="comma-separated rule names")
    parser.add_argument("--targets", default="max,random", help="comma-separated: max, random or logit indices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="visualize-out", help="output folder")
    parser.set_defaults(run=_run_visualize)


_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_visualize]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and status 2, as for every user error
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``backpropvis`` argument parser with every subcommand."""
    parser = _Parser(
        prog="backpropvis",
        description="Saliency, DeconvNet and Guided Backprop from one rule, and what they mean (Nie et al. 2018).",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in _COMMANDS:
        add(commands)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except BackpropvisError as error:
        print(f"backpropvis: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("backpropvis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
