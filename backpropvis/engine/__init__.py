"""The rule engine: one forward pass, then one backward pass per (rule, target chunk).

During the forward pass every piecewise-linear activation, whatever its spelling, is
replaced by a node whose backward pass applies the current
:class:`~backpropvis.core.rules.Rule` (Eq. 1); so is every elementwise smooth activation when
the smooth mode is "rule" (g' = f'; :mod:`backpropvis.core.smooth_activations`); every other
layer, gates included, keeps its true gradient.
The engine is three parts a reader can hold, and the API on top:

- :mod:`.ruled`: what a backward node reads: the rule of the pass now running (a slot).
- :mod:`.recording`: what the forward pass records (activation outputs, convolution
  nodes, what was let through), alive only for the call.
- :mod:`.planning`: a frozen plan (where to split the backward passes, how many
  targets per pass) computed from that record.
- :mod:`.attribution`: ``attribute_many`` and friends, returning :mod:`.attributions`;
  :mod:`.inputs`: the input side (a tensor, a tuple of them with extra forward arguments, one
  unbatched image); :mod:`.unit_targets`: units inside the network as targets;
  :mod:`.precision`: the arithmetic; :mod:`.observers`: who is shown each finished call (per
  context); :mod:`.receipt`: what a lower precision did to the maps (one call made again in float32).

Nothing is registered on the model and nothing of a call outlives it.
"""

from ..core.targets import Target, Unit, resolve_targets
from .attribution import (
    Attributions,
    DeconvNet,
    Explainer,
    GuidedBackprop,
    Saliency,
    TrainingModeWarning,
    attribute,
    attribute_many,
)
from .planning import DEFAULT_MAX_BATCH
from .precision import PRECISION_NAMES, Precision, PrecisionLike

__all__ = [
    "Attributions",
    "Explainer",
    "Saliency",
    "DeconvNet",
    "GuidedBackprop",
    "TrainingModeWarning",
    "attribute",
    "attribute_many",
    "resolve_targets",
    "Target",
    "Precision",
    "PrecisionLike",
    "Unit",
    "PRECISION_NAMES",
    "DEFAULT_MAX_BATCH",
]
