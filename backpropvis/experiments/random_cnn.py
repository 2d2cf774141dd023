"""The random three-layer CNN (Eq. 3) with the run's image through it and Theorem 1's
limit image of that image: what the theory studies compare the engine's maps with.
"""

from __future__ import annotations

from typing import Optional

from ..models import three_layer_cnn
from ..models.preprocessing import preprocessing_of
from ..models.shallow import ThreeLayerCNN
from ..theory.limits import limit_image
from .base import RunContext
from .networks import model_inputs

__all__ = ["RandomCNN", "random_cnn"]


class RandomCNN:
    """The random three-layer CNN (Eq. 3) with the run's image through its preprocessing.

    Attributes:
        model: the network on ``context.device`` (eval mode).
        inputs: [1, 3, S, S] the model's input x.
        limit: [3, S, S] Theorem 1's limit image of x for this conv geometry (on the CPU).
        picture: [3, S, S] the input as pixels in [0, 1], for display.
    """

    def __init__(self, model: ThreeLayerCNN, context: RunContext) -> None:
        self.model = model.to(context.device)
        self.inputs = model_inputs(model, [context.image], context.device)
        geometry = self.geometry
        self.limit = (
            limit_image(self.inputs[0].double(), geometry["kernel_size"], geometry["stride"], geometry["padding"])
            .float()
            .cpu()
        )
        self.picture = preprocessing_of(model).unnormalize(self.inputs[0].cpu())

    @property
    def geometry(self) -> dict[str, int]:
        """kernel_size, stride and padding of the convolution."""
        conv = self.model.conv
        return {"kernel_size": conv.kernel_size[0], "stride": conv.stride[0], "padding": int(conv.padding[0])}


def random_cnn(
    context: RunContext,
    *,
    num_filters: int,
    kernel_size: int,
    stride: int,
    input_size: int,
    num_classes: int,
    seed: Optional[int] = None,
    pool: Optional[int] = None,
) -> RandomCNN:
    """:class:`RandomCNN` with the paper's init; ``seed`` defaults to the run's seed.

    Only the readout columns of the targets matter to a map, so the studies use a few
    logits (``num_classes``) instead of 1000: the maps are those of the 1000-logit
    network's first logits, at a fraction of the cost.
    """
    model = three_layer_cnn(
        num_filters, kernel_size, stride, pool, num_classes, input_size, context.seed if seed is None else seed
    )
    return RandomCNN(model, context)
