"""Images: bundled samples, every kind of image file, bad files, ImageNet class names."""

from __future__ import annotations

import io
import pathlib

import numpy as np
import pytest
import torch
from PIL import Image

from backpropvis.core.errors import ImageError
from backpropvis.images.samples import class_name, imagenet_classes, load_image, sample_names
from backpropvis.models.preprocessing import IMAGENET


def rgb_pixels(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_every_sample_loads_as_rgb() -> None:
    names = sample_names()
    assert names[0] == "tabby" and {"astronaut", "coffee", "rocket", "motorcycle"} <= set(names)
    for name in names:
        image = load_image(name)
        assert image.mode == "RGB", name
        assert min(image.size) >= 64, name


def test_tabby_is_scikit_images_chelsea() -> None:
    from skimage import data

    assert np.array_equal(np.asarray(load_image("tabby")), data.chelsea())


def test_png_rgb_is_exact(tmp_path: pathlib.Path) -> None:
    pixels = rgb_pixels(0, 40, 50)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.mode == "RGB" and image.size == (50, 40)
    assert np.array_equal(np.asarray(image), pixels)
    assert np.array_equal(np.asarray(load_image(str(tmp_path / "a.png"))), pixels)  # str paths too


def test_jpeg_loads_close_to_the_original(tmp_path: pathlib.Path) -> None:
    smooth = np.clip(np.add.outer(np.arange(60), np.arange(80))[..., None] * np.array([1, 2, 3]) // 2, 0, 255).astype(
        np.uint8
    )
    Image.fromarray(smooth).save(tmp_path / "a.jpg", quality=95)
    loaded = np.asarray(load_image(tmp_path / "a.jpg")).astype(int)
    assert loaded.shape == (60, 80, 3)
    assert np.abs(loaded - smooth).mean() < 3


def test_grayscale_repeats_over_three_channels(tmp_path: pathlib.Path) -> None:
    gray = rgb_pixels(1, 30, 20)[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    loaded = np.asarray(load_image(tmp_path / "gray.png"))
    assert loaded.shape == (30, 20, 3)
    for channel in range(3):
        assert np.array_equal(loaded[..., channel], gray)


def test_rgba_drops_alpha_and_palette_expands(tmp_path: pathlib.Path) -> None:
    pixels = rgb_pixels(2, 16, 16)
    alpha = np.full((16, 16, 1), 7, dtype=np.uint8)
    Image.fromarray(np.concatenate([pixels, alpha], axis=2), mode="RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "rgba.png")), pixels)
    palette = Image.fromarray(pixels).convert("P")
    palette.save(tmp_path / "palette.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "palette.png")), np.asarray(palette.convert("RGB")))


def test_16_bit_png_is_scaled_by_its_full_range(tmp_path: pathlib.Path) -> None:
    # 16-bit k * 257 is 8-bit k exactly. The levels do not span 0..65535, so scaling by
    # the image's own min and max instead of the 16-bit range would give other values.
    levels = np.array([[257 * 3, 257 * 10, 257 * 128], [257 * 200, 257 * 254, 257 * 90]], dtype=np.uint16)
    Image.fromarray(levels).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as check:
        assert check.mode.startswith("I")  # really stored as 16 bits
    loaded = np.asarray(load_image(tmp_path / "deep.png"))
    assert loaded.shape == (2, 3, 3)
    assert np.array_equal(loaded[..., 0], np.array([[3, 10, 128], [200, 254, 90]]))
    assert np.array_equal(loaded[..., 0], loaded[..., 2])


def test_tiny_and_large_images_load_and_preprocess(tmp_path: pathlib.Path) -> None:
    Image.fromarray(np.array([[[255, 0, 128]]], dtype=np.uint8)).save(tmp_path / "dot.png")
    dot = IMAGENET(load_image(tmp_path / "dot.png"))
    assert dot.shape == (3, 224, 224)
    expected = (torch.tensor([255, 0, 128]) / 255.0 - torch.tensor(IMAGENET.mean)) / torch.tensor(IMAGENET.std)
    torch.testing.assert_close(dot[:, 100, 100], expected.float())  # one colour everywhere
    assert torch.equal(dot.amin(dim=(1, 2)), dot.amax(dim=(1, 2)))

    Image.fromarray(rgb_pixels(3, 2000, 3000)).save(tmp_path / "large.jpg", quality=70)
    large = load_image(tmp_path / "large.jpg")
    assert large.size == (3000, 2000) and large.mode == "RGB"
    assert IMAGENET(large).shape == (3, 224, 224)
    assert IMAGENET.resized(64)(large).shape == (3, 64, 64)


def test_missing_and_unknown_sources(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ImageError, match="neither an image file nor a sample name"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(ImageError, match="tabby"):  # the message lists the sample names
        load_image("zebra")
    with pytest.raises(ImageError, match="not a file"):
        load_image(tmp_path)


def test_files_that_are_not_images(tmp_path: pathlib.Path) -> None:
    (tmp_path / "notes.png").write_text("this is not a picture\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    for name in ("notes.png", "empty.jpg"):
        with pytest.raises(ImageError) as raised:
            load_image(tmp_path / name)
        assert name in str(raised.value) and "\n" not in str(raised.value)


def test_truncated_jpeg_is_an_image_error(tmp_path: pathlib.Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(rgb_pixels(4, 128, 128)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_imagenet_class_names() -> None:
    names = imagenet_classes()
    assert len(names) == 1000 and len(set(names)) == 999
    assert names[134] == names[517] == "crane"  # the bird and the machine: ImageNet's one shared name
    assert names[0] == "tench" and names[281] == "tabby" and names[388] == "giant panda"
    assert names[999] == "toilet tissue"
    assert class_name(281) == "tabby" and class_name(1000) == "class 1000"


def test_a_photo_past_pils_warning_limit_loads_without_its_raw_warning(tmp_path, monkeypatch, recwarn) -> None:
    """A 12000 x 9000 photo (108 million pixels) lies between PIL's warning limit (89 million)
    and its refusal (twice that). The same proportions at 1/90 of the size, with PIL's limit
    scaled alike, keep the test light: the photo loads, exactly, and nothing is printed raw."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    pixels = rgb_pixels(5, 900, 1200)  # 1.08 million pixels: past the limit, under twice it
    Image.fromarray(pixels).save(tmp_path / "large.png")
    assert np.array_equal(np.asarray(load_image(tmp_path / "large.png")), pixels)
    assert not [warning for warning in recwarn if issubclass(warning.category, Image.DecompressionBombWarning)]
    # past twice the limit: one line naming the file and what to do, never PIL's message
    Image.fromarray(rgb_pixels(6, 1500, 1500)).save(tmp_path / "huge.png")
    with pytest.raises(ImageError) as raised:
        load_image(tmp_path / "huge.png")
    message = str(raised.value)
    assert (
        "huge.png" in message
        and "too large" in message
        and "2 million pixels" in message
        and "downscale it first" in message
    )
    assert "\n" not in message and "DOS" not in message
