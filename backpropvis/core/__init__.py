"""The bottom two layers: what every other part of backpropvis stands on.

Layer 0 (imports nothing of the package): :mod:`.errors` (user errors), :mod:`.files`
(atomic writes), :mod:`.devices` (device names).

Layer 1: :mod:`.rules` (the rule of Eq. 1-2 and the method registry),
:mod:`.activations` (piecewise-linear activations), :mod:`.smooth_activations` (smooth
activations and gates), :mod:`.targets` (logits and units), :mod:`.metrics` (pure tensor
metrics: the class distance of Eq. 11, cosine, ...), :mod:`.module_checks` (checks of a
user's modules), :mod:`.saved_maps` (maps as arrays), :mod:`.claims` (``Claim``, ``Skip``).

The public names are re-exported by ``backpropvis`` itself; this package imports nothing.
"""
