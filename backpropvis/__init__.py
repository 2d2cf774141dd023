"""backpropvis: saliency, DeconvNet and Guided Backprop from one rule, and what they mean.

Nie, Zhang & Patel, "A Theoretical Explanation for Perplexing Behaviors of
Backpropagation-based Visualizations", ICML 2018.

>>> import backpropvis
>>> model = backpropvis.models.vgg16(weights="random")
>>> maps = backpropvis.attribute_many(model, x, ["max", "random"], ["saliency", "deconvnet", "gbp"])
>>> maps["gbp"].shape  # [T, B, 3, H, W]
>>> unit_map = backpropvis.attribute(model, x, backpropvis.Unit("features.28", 12, (5, 7)), "gbp")

The package is layered: a module imports only from its own layer and the layers below
(CONTRIBUTING.md, "Layers"; checked by tests/test_layers.py).
"""

from . import models
from .core.errors import BackpropvisError
from .core.rules import (
    DECONVNET,
    GUIDED_BACKPROP,
    LINEAR,
    METHOD_LABELS,
    PAPER_METHODS,
    RULES,
    SALIENCY,
    Rule,
    resolve_rule,
)
from .core.smooth_activations import SMOOTH_MODES, SmoothReport
from .core.targets import Unit, parse_targets, resolve_targets
from .engine import Attributions, DeconvNet, Explainer, GuidedBackprop, Saliency, attribute, attribute_many

__version__ = "0.1.0"

__all__ = [
    "attribute",
    "attribute_many",
    "resolve_targets",
    "Unit",
    "Attributions",
    "Explainer",
    "Saliency",
    "DeconvNet",
    "GuidedBackprop",
    "Rule",
    "SMOOTH_MODES",
    "SmoothReport",
    "SALIENCY",
    "DECONVNET",
    "GUIDED_BACKPROP",
    "LINEAR",
    "RULES",
    "PAPER_METHODS",
    "METHOD_LABELS",
    "parse_targets",
    "resolve_rule",
    "BackpropvisError",
    "models",
]
