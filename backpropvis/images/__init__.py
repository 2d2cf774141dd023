"""Pictures and where they come from.

- :mod:`.samples`: the bundled sample photos by name, any image file by path, ImageNet
  class names (re-exported here: ``backpropvis.images.load_image``).
- :mod:`.sets`: which images a run looks at (a folder, seeded crops of the samples, the
  digits VGG's held-out digits), each named by a stable key.
"""

from .samples import SAMPLES, class_name, imagenet_classes, load_image, logit_name, sample_names

__all__ = ["SAMPLES", "sample_names", "load_image", "imagenet_classes", "class_name", "logit_name"]
