"""What the paper's theory says, computed from the weights alone (no backward pass: the
independent check of the engine).

- :mod:`.closed_forms`: the closed-form maps of Lemma 1 (Eq. 4) and Eq. 6-7 for the random
  three-layer CNN of Eq. 3, with max or average pooling, and how often Eq. 7's switches
  assumption fails.
- :mod:`.limits`: Theorem 1's limit image, the recovery measure, the recovery law (a power
  law in N) and Theorem 2's statistics.
- :mod:`.receptive_fields`: the input region of a layer's units, measured on any model.

All three are re-exported here (``backpropvis.theory.limit_image``).
"""

from .closed_forms import (
    METHOD_FORMS,
    MethodForm,
    SwitchDisagreement,
    closed_form_map,
    fold_patches,
    method_form,
    patches,
    pool_switches,
    switch_disagreement,
)
from .limits import (
    PowerLaw,
    effective_dimension,
    expected_gbp_recovery,
    filters_needed,
    fit_power_law,
    gaussianity,
    gbp_amplitude,
    law_amplitude,
    limit_image,
    recovery,
    tangent_squared,
)
from .receptive_fields import (
    ReceptiveField,
    layers_over_depth,
    modules_that_ran,
    receptive_field,
)

__all__ = [
    "METHOD_FORMS",
    "MethodForm",
    "SwitchDisagreement",
    "closed_form_map",
    "fold_patches",
    "method_form",
    "patches",
    "pool_switches",
    "switch_disagreement",
    "PowerLaw",
    "effective_dimension",
    "expected_gbp_recovery",
    "filters_needed",
    "fit_power_law",
    "gaussianity",
    "gbp_amplitude",
    "law_amplitude",
    "limit_image",
    "recovery",
    "tangent_squared",
    "ReceptiveField",
    "receptive_field",
    "modules_that_ran",
    "layers_over_depth",
]
