"""Training the digits VGG, deterministically, and writing its checkpoint.

    python -m backpropvis.models.digits_training            # rewrites the shipped checkpoint
    python -m backpropvis.models.digits_training --out my.pt

Every random draw is seeded: He-normal init of each layer from a generator seeded by
(seed, "digits-training", layer), the order of the training images in each epoch
from a generator seeded by (seed, "digits-shuffle", epoch). Adam, cross-entropy,
mini-batches of 64, a learning rate falling as a cosine. The same command gives the
same weights on the same machine with the same number of threads (floating-point
reductions may be ordered differently elsewhere). The held-out test split
(:func:`~backpropvis.models.digits_data.load_digits_split`) is never seen in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ..core.errors import BackpropvisError, ModelError
from .digits_data import DigitsSet, load_digits_split
from .digits_vgg import DIGITS_VGG_LAYERS, DigitsVGG, digits_vgg_checkpoint
from .init import generator_for, keeps_global_rng

__all__ = ["TrainingResult", "TrainingSettings", "accuracy", "main", "save_checkpoint", "train_digits_vgg"]


@dataclass(frozen=True)
class TrainingSettings:
    """What the shipped checkpoint was trained with (the defaults)."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    train_images: int | None = None
    """Train on the first N training digits only (quick checks); None: all 1438."""
    label_permutation_seed: int | None = None
    """Train on randomly permuted labels (Adebayo et al.'s data randomisation): the training
    labels shuffled by a generator seeded by (this seed, "digits-labels"); None: the true labels."""

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "train_images"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ModelError(f"digits training: {name} must be at least 1, not {value}")
        if self.learning_rate <= 0:
            raise ModelError(f"digits training: the learning rate must be positive, not {self.learning_rate}")


@dataclass(frozen=True)
class TrainingResult:
    """A trained network and how it did.

    Attributes:
        model: the trained :class:`DigitsVGG`, eval mode.
        test_accuracy: the fraction of the held-out test digits it classifies right.
        train_accuracy: the same on the training digits.
        seconds: wall-clock training time.
        cpu_seconds: processor time of all threads (the wall time on idle cores, times their number).
        losses: mean training loss per epoch.
    """

    model: DigitsVGG
    test_accuracy: float
    train_accuracy: float
    seconds: float
    cpu_seconds: float
    losses: tuple[float, ...]


@torch.no_grad()
def accuracy(model: nn.Module, digits: DigitsSet, batch_size: int = 256) -> float:
    """The fraction of ``digits`` whose largest logit is their label."""
    correct = 0
    for start in range(0, len(digits), batch_size):
        logits = model(digits.inputs[start : start + batch_size])
        correct += int((logits.argmax(1) == digits.labels[start : start + batch_size]).sum())
    return correct / len(digits)


@torch.no_grad()
def _he_init(model: DigitsVGG, seed: int) -> None:
    for name in DIGITS_VGG_LAYERS:
        layer = model.get_submodule(name)
        weight, bias = cast(torch.Tensor, layer.weight), cast(torch.Tensor, layer.bias)
        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator_for(seed, "digits-training", name))
        nn.init.zeros_(bias)


@keeps_global_rng
def train_digits_vgg(settings: TrainingSettings = TrainingSettings(), progress: bool = True) -> TrainingResult:
    """Train a :class:`DigitsVGG` on the training digits with ``settings``."""
    train, test = load_digits_split("train"), load_digits_split("test")
    if settings.train_images is not None:
        train = train.subset(settings.train_images)
    if settings.label_permutation_seed is not None:
        shuffle = torch.randperm(len(train), generator=generator_for(settings.label_permutation_seed, "digits-labels"))
        train = dataclasses.replace(train, labels=train.labels[shuffle])
    model = DigitsVGG()
    _he_init(model, settings.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(len(train) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / (settings.epochs * steps_per_epoch)))
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    losses = []
    model.train()
    for epoch in tqdm(range(settings.epochs), desc="training the digits VGG", unit="epoch", disable=not progress):
        order = torch.randperm(len(train), generator=generator_for(settings.seed, "digits-shuffle", epoch))
        total = 0.0
        for start in range(0, len(train), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = F.cross_entropy(model(train.inputs[batch]), train.labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        losses.append(total / len(train))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    model.eval()
    permuted = settings.label_permutation_seed
    labels = "" if permuted is None else f", labels permuted (seed {permuted})"
    model.weights_description = f"trained on scikit-learn's digits (seed {settings.seed}{labels})"
    return TrainingResult(model, accuracy(model, test), accuracy(model, train), seconds, cpu_seconds, tuple(losses))


def save_checkpoint(model: DigitsVGG, path: str | os.PathLike) -> int:
    """Write the model's state dict (float32 tensors) to ``path``; returns its size in bytes.

    The bytes depend on the weights only: serialised in memory first (torch.save names the
    archive inside the file after the file, when given a path), then written at once.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to(torch.float32).contiguous().clone() for key, value in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path.write_bytes(buffer.getvalue())
    return path.stat().st_size


def main(argv: Sequence[str] | None = None) -> int:
    """Train with the default settings (or ``--epochs``, ``--seed``) and write the checkpoint."""
    parser = argparse.ArgumentParser(
        prog="python -m backpropvis.models.digits_training", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default=None, help="where to write the checkpoint (default: the shipped one)")
    parser.add_argument("--epochs", type=int, default=TrainingSettings.epochs)
    parser.add_argument("--seed", type=int, default=TrainingSettings.seed)
    parser.add_argument("--train-images", type=int, default=None, help="train on the first N training digits only")
    args = parser.parse_args(argv)
    try:
        settings = TrainingSettings(epochs=args.epochs, seed=args.seed, train_images=args.train_images)
        result = train_digits_vgg(settings)
        out = Path(args.out) if args.out else digits_vgg_checkpoint()
        size = save_checkpoint(result.model, out)
    except (BackpropvisError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(
        f"test accuracy {result.test_accuracy:.4f} (train {result.train_accuracy:.4f}), "
        f"{result.seconds:.1f} s ({result.cpu_seconds:.1f} s of CPU) on {torch.get_num_threads()} threads, "
        f"wrote {out} ({size / 1024:.0f} KiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
