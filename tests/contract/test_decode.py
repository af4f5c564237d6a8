"""contract/decode.py: every way a picture can be wrong gives its error class and code (the service answers
ImageTooLarge 413, UnsupportedImage 415, InvalidImage 422: tests/service/test_image_errors.py); every mode decodes
to 8-bit RGB; a file decodes as its bytes do."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from contract.decode import (
    CORPUS_LIMITS,
    ImageError,
    ImageLimits,
    ImageTooLarge,
    InvalidImage,
    UnsupportedImage,
    decode_bytes,
    decode_file,
    megabytes,
    megapixels,
)
from tests.service.conftest import encode, painting


def _error(data: bytes, limits: ImageLimits | None = None) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_bytes(data, limits)
    return info.value


def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width×height; the pixel data is a few bytes (never decoded)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
def test_accepted_formats_decode_to_rgb(fmt: str) -> None:
    data = encode(painting(1), fmt)
    out = decode_bytes(data)
    assert out.image.mode == "RGB"
    assert out.image.size == (48, 40) == (out.width, out.height)
    assert out.format == fmt
    assert out.sha256 == hashlib.sha256(data).hexdigest()


def test_png_pixels_are_exact() -> None:
    img = painting(2)
    assert np.array_equal(np.asarray(decode_bytes(encode(img, "PNG")).image), np.asarray(img))


def test_zero_bytes() -> None:
    e = _error(b"")
    assert (type(e), e.code) == (InvalidImage, "empty_image")


def test_text_named_jpg_is_unsupported() -> None:
    # the name never matters: only the bytes are looked at
    e = _error(b"this is not a picture, whatever photo.jpg says\n" * 10)
    assert (type(e), e.code) == (UnsupportedImage, "unsupported_format")


def test_format_outside_the_allow_list() -> None:
    e = _error(encode(painting(3), "JPEG"), ImageLimits(formats=frozenset({"PNG"})))
    assert (type(e), e.code) == (UnsupportedImage, "unsupported_format")
    assert "PNG" in e.message


def test_unknown_format_in_limits_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="NOPE"):
        ImageLimits(formats=frozenset({"PNG", "NOPE"}))


def test_byte_limit() -> None:
    data = encode(painting(4), "PNG")
    e = _error(data, ImageLimits(max_bytes=len(data) - 1))
    assert (type(e), e.code) == (ImageTooLarge, "image_too_large")
    assert decode_bytes(data, ImageLimits(max_bytes=len(data))).width == 48


def test_truncated_jpeg() -> None:
    data = encode(painting(5, (64, 64)), "JPEG", quality=95)
    e = _error(data[: len(data) // 2])
    assert (type(e), e.code) == (InvalidImage, "corrupt_image")


def test_truncated_png() -> None:
    data = encode(painting(5, (64, 64)), "PNG")
    e = _error(data[: len(data) - 40])
    assert (type(e), e.code) == (InvalidImage, "corrupt_image")


def test_20000_square_png_is_refused_from_its_header() -> None:
    data = _png_claiming(20000, 20000)
    assert len(data) < 200  # nothing close to 1.2 GB of pixels is ever allocated
    e = _error(data)
    assert (type(e), e.code) == (ImageTooLarge, "image_too_many_pixels")


def test_pixel_limit_is_read_from_the_header_and_named_in_mp() -> None:
    limits = ImageLimits()
    assert limits.max_pixels == 200_000_000
    e = _error(_png_claiming(20_000, 10_001))  # 200.02 MP: one row over
    assert (type(e), e.code) == (ImageTooLarge, "image_too_many_pixels")
    assert e.message.startswith("the image has 200,020,000 pixels (200.02 MP); the limit is 200 MP")
    e = _error(_png_claiming(60, 50), ImageLimits(max_pixels=2999))  # a limit under Pillow's: read from the header
    assert e.message.startswith("the image has 60×50 = 3,000 pixels; the limit is 2,999 pixels")
    assert (megapixels(8200 * 6500), megapixels(200_000_000), megapixels(12_345)) == ("53.3 MP", "200 MP", "0.01 MP")
    # within the limit the header is believed: the (absent) pixel data is what fails, not the size
    assert _error(_png_claiming(20_000, 10_000)).code == "corrupt_image"
    e = _error(encode(painting(6, (40, 40)), "PNG"), ImageLimits(max_pixels=40 * 40 - 1))
    assert e.code == "image_too_many_pixels"


def test_byte_limit_is_named_in_mb() -> None:
    data = encode(painting(4, (600, 400)), "PNG")
    assert len(data) > 200_000
    e = _error(data, ImageLimits(max_bytes=200_000))
    assert e.message == f"the upload is {len(data) / 1e6:.1f} MB; the limit is 0.2 MB"
    assert (megabytes(64_000_000), megabytes(2 * 1024 * 1024), megabytes(10_000)) == ("64 MB", "2.1 MB", "10 kB")


def test_pillows_own_guard_stays_on_and_refuses_at_the_limit() -> None:
    """Pillow's guard refuses above twice MAX_IMAGE_PIXELS while opening (before our header check can run; its WebP
    plugin allocates the canvas then): raised so that it refuses exactly above the service's limit."""
    limits = ImageLimits()
    assert Image.MAX_IMAGE_PIXELS is not None and limits.max_pixels == 2 * Image.MAX_IMAGE_PIXELS
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(_png_claiming(20_000, 10_001)))
    assert Image.open(io.BytesIO(_png_claiming(20_000, 10_000))).size == (20_000, 10_000)


def _smooth(size: tuple[int, int], seed: int = 3) -> Image.Image:
    """A picture whose reduction is predictable: a painting's gradient, blown up (no pixel noise)."""
    return painting(seed, (size[0] // 16, size[1] // 16)).resize(size, Image.Resampling.BILINEAR)


def _close(a: Image.Image, b: Image.Image, tolerance: float) -> bool:
    assert a.size == b.size, (a.size, b.size)
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean()) < tolerance


def test_large_jpeg_is_decoded_reduced_by_dct_scaling() -> None:
    big = _smooth((1600, 1200))
    data = encode(big, "JPEG", quality=92)
    out = decode_bytes(data, ImageLimits(decode_pixels=200_000))  # 1.92 MP: factor 4 (3.1 rounded to a power of 2)
    assert (out.image.size, out.size, out.reduced) == ((400, 300), (1600, 1200), 4)
    assert out.jpeg_quality is not None and abs(out.jpeg_quality - 92) <= 2  # the tables survive the scaling
    assert _close(out.image, big.reduce(4), 3.0)
    unreduced = decode_bytes(data)
    assert (unreduced.image.size, unreduced.size, unreduced.reduced) == ((1600, 1200), (1600, 1200), 1)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF", "WEBP", "BMP"])
def test_large_lossless_scans_are_decoded_then_box_averaged(fmt: str) -> None:
    big = _smooth((900, 600))
    out = decode_bytes(
        encode(big, fmt, **({"lossless": True} if fmt == "WEBP" else {})), ImageLimits(decode_pixels=100_000)
    )
    assert (out.image.size, out.size, out.reduced) == ((300, 200), (900, 600), 3)  # 0.54 MP: factor ceil(2.3)
    assert out.width * out.height <= 100_000
    assert _close(out.image, big.reduce(3), 0.6)


def test_reduction_keeps_16_bit_tones_palettes_and_transparency() -> None:
    limits = ImageLimits(decode_pixels=30 * 30)
    a = np.full((60, 60), 65535, np.uint16)
    a[:, :30] = 32896  # 128 * 257
    grey = np.asarray(decode_bytes(encode(Image.fromarray(a), "PNG"), limits).image)
    assert grey.shape == (30, 30, 3) and grey[0, 0].tolist() == [128] * 3 and grey[0, 29].tolist() == [255] * 3

    pal = Image.new("P", (60, 60), 0)
    pal.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    pal.paste(1, (0, 0, 30, 60))  # left half blue, right half the transparent red
    out = np.asarray(decode_bytes(encode(pal, "PNG", transparency=0), limits).image)
    assert out.shape == (30, 30, 3)
    assert out[0, 20].tolist() == [255, 255, 255] and out[0, 5].tolist() == [0, 0, 255]

    half = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    half.paste((0, 0, 0, 255), (0, 0, 60, 60 // 2))  # top half opaque black, bottom transparent black
    out = np.asarray(decode_bytes(encode(half, "PNG"), ImageLimits(decode_pixels=1)).image)  # factor 60: 1×1
    assert out.shape == (1, 1, 3) and 124 <= out[0, 0, 0] <= 131  # half black on white paper: grey, as unreduced


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_reduced_scans_keep_their_exif_orientation(fmt: str) -> None:
    img = Image.new("RGB", (400, 200), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 100, 200))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # display = rotate 90° clockwise: the left strip on top
    data = encode(img, fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    out = decode_bytes(data, ImageLimits(decode_pixels=10_000))  # 80,000 px: factor 3 (JPEG: scaled by 4)
    factor = 4 if fmt == "JPEG" else 3
    assert out.size == (200, 400) and out.reduced == factor
    assert out.image.size == (-(-200 // factor), -(-400 // factor))
    top, bottom = np.asarray(out.image)[2, 10], np.asarray(out.image)[-3, 10]
    assert top[2] > 200 and top[0] < 60 and bottom[0] > 200 and bottom[2] < 60


def test_concurrent_large_decodes_all_succeed() -> None:
    from concurrent.futures import ThreadPoolExecutor

    datas = [encode(_smooth((640, 480), seed), "PNG") for seed in range(6)]
    limits = ImageLimits(decode_pixels=40_000)
    with ThreadPoolExecutor(6) as pool:
        outs = list(pool.map(lambda d: decode_bytes(d, limits), datas))
    assert [o.reduced for o in outs] == [3] * 6  # 0.31 MP: factor ceil(2.8)
    assert all(_close(o.image, _smooth((640, 480), s).reduce(3), 0.6) for s, o in enumerate(outs))


_BIG_JPEG = """
import io, resource, sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (16384, 12000), (120, 90, 60))
draw = ImageDraw.Draw(im)
for x in range(0, 16384, 512):
    draw.line([(x, 0), (16384 - x, 12000)], fill=(x % 255, 30, 200), width=40)
im.save(sys.argv[1], "JPEG", quality=85)
"""
_DECODE_BIG = """
import json, resource, sys
from contract.decode import decode_file
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
d = decode_file(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"size": d.size, "decoded": d.image.size, "reduced": d.reduced, "grew_kb": after - before}))
"""


def test_a_197_mp_museum_jpeg_is_accepted_in_a_fraction_of_its_memory(tmp_path) -> None:
    """16384×12000 at the default limits: decoded at 1/4 scale by libjpeg, so the process never holds the full
    picture (Pillow keeps RGB in 4 bytes a pixel: 786 MB; its 1/4 scale is 49 MB)."""
    import json
    import subprocess
    import sys

    path = tmp_path / "scan.jpg"
    subprocess.run([sys.executable, "-c", _BIG_JPEG, str(path)], check=True, timeout=120)
    assert path.stat().st_size < ImageLimits().max_bytes
    run = subprocess.run(
        [sys.executable, "-c", _DECODE_BIG, str(path)], check=True, timeout=120, capture_output=True, text=True
    )
    got = json.loads(run.stdout)
    assert (got["size"], got["decoded"], got["reduced"]) == ([16384, 12000], [4096, 3000], 4)
    assert got["grew_kb"] * 1024 < 786_000_000 / 4, got  # well under the full picture


def test_animated_gif() -> None:
    frames = [painting(s, (32, 32)).convert("P") for s in (1, 2, 3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    e = _error(buf.getvalue())
    assert (type(e), e.code) == (UnsupportedImage, "animated_image")


def test_multi_frame_tiff() -> None:
    buf = io.BytesIO()
    painting(1, (32, 32)).save(buf, "TIFF", save_all=True, append_images=[painting(2, (32, 32))])
    e = _error(buf.getvalue())
    assert (type(e), e.code) == (UnsupportedImage, "animated_image")


def test_still_gif_is_fine() -> None:
    assert decode_bytes(encode(painting(1, (32, 32)).convert("P"), "GIF")).image.mode == "RGB"


def test_too_small() -> None:
    e = _error(encode(painting(1, (15, 200)), "PNG"))
    assert (type(e), e.code) == (InvalidImage, "image_too_small")
    assert decode_bytes(encode(painting(1, (16, 16)), "PNG")).width == 16


def test_extreme_aspect_ratio() -> None:
    # checked from the header: 16×100000 would be scaled up to 224×1.4M pixels by preprocessing
    e = _error(_png_claiming(100_000, 16))
    assert (type(e), e.code) == (InvalidImage, "extreme_aspect_ratio")
    assert decode_bytes(encode(painting(1, (400, 16)), "PNG")).width == 400


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))  # pure red in CMYK
    out = decode_bytes(encode(cmyk, "JPEG", quality=95)).image
    r, g, b = np.asarray(out).reshape(-1, 3).mean(axis=0)
    assert out.mode == "RGB" and r > 200 and g < 60 and b < 60


def test_16_bit_grey_png_keeps_tones() -> None:
    a = np.full((20, 20), 65535, np.uint16)
    a[:, :10] = 32896  # 128 * 257
    im = Image.fromarray(a)
    assert im.mode.startswith("I")
    out = np.asarray(decode_bytes(encode(im, "PNG")).image)
    assert out.dtype == np.uint8 and out.shape == (20, 20, 3)
    assert out[0, 0].tolist() == [128, 128, 128]
    assert out[0, 19].tolist() == [255, 255, 255]


def test_float_tiff() -> None:
    a = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    out = np.asarray(decode_bytes(encode(Image.fromarray(a, "F"), "TIFF")).image)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_palette_with_transparency_composites_on_white() -> None:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([255, 0, 0] + [0, 0, 255] * 255)
    im.paste(1, (0, 0, 10, 20))
    im.info["transparency"] = 0  # the red index is transparent
    out = np.asarray(decode_bytes(encode(im, "PNG", transparency=0)).image)
    assert out[0, 15].tolist() == [255, 255, 255]  # transparent → white, not red
    assert out[0, 5].tolist() == [0, 0, 255]


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composites_on_white(mode: str) -> None:
    im = Image.new(mode, (20, 20), (0, 0) if mode == "LA" else (0, 0, 0, 0))
    out = np.asarray(decode_bytes(encode(im, "PNG")).image)
    assert out.min() == 255  # fully transparent black is white paper


def test_half_transparent_black_is_grey() -> None:
    out = np.asarray(decode_bytes(encode(Image.new("RGBA", (20, 20), (0, 0, 0, 128)), "PNG")).image)
    assert 120 <= out[0, 0, 0] <= 130


def test_exif_orientation_applied() -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated; display = rotate 90° clockwise
    out = decode_bytes(encode(img, "JPEG", exif=exif.tobytes(), quality=95)).image
    assert out.size == (20, 40)
    top = np.asarray(out)[2, 10]
    assert top[2] > 200 and top[0] < 60  # the left strip is now on top


def test_paths_are_never_opened(tmp_path) -> None:
    p = tmp_path / "x.png"
    p.write_bytes(encode(painting(1), "PNG"))
    with pytest.raises(TypeError):
        decode_bytes(str(p))  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        decode_bytes(p)  # type: ignore[arg-type]


def test_bytearray_and_memoryview_accepted() -> None:
    data = encode(painting(1), "PNG")
    assert decode_bytes(bytearray(data)).sha256 == decode_bytes(memoryview(data)).sha256


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"])
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_damaged_files_only_ever_give_image_errors(fmt: str) -> None:
    """Truncations and byte flips: an ImageError (a 4xx) or a valid image, never any other exception (a 5xx)."""
    data = encode(painting(1, (40, 40)), fmt)
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(60):
        d = bytearray(data)
        if rng.random() < 0.4:
            d = d[: int(rng.integers(1, len(d)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                d[int(rng.integers(len(d)))] = int(rng.integers(256))
        try:
            out = decode_bytes(bytes(d))
            assert out.image.mode == "RGB"
            outcomes.add("ok")
        except ImageError as e:
            assert type(e) in (ImageTooLarge, UnsupportedImage, InvalidImage) and e.code in type(e).codes
            outcomes.add(e.code)
    assert outcomes - {"ok"}  # the damage was noticed at least sometimes


def test_a_file_decodes_as_its_bytes(tmp_path) -> None:
    data = encode(painting(7), "JPEG", quality=90)
    p = tmp_path / "x.jpg"
    p.write_bytes(data)
    from_file, from_bytes = decode_file(p), decode_bytes(data)
    assert (
        (from_file.sha256, from_file.format)
        == (from_bytes.sha256, from_bytes.format)
        == (
            hashlib.sha256(data).hexdigest(),
            "JPEG",
        )
    )
    assert np.array_equal(np.asarray(from_file.image), np.asarray(from_bytes.image))
    assert decode_file(str(p)).sha256 == from_file.sha256


def test_a_file_is_held_to_the_same_limits(tmp_path) -> None:
    data = encode(painting(4), "PNG")
    p = tmp_path / "x.png"
    p.write_bytes(data)
    with pytest.raises(ImageTooLarge) as info:
        decode_file(p, ImageLimits(max_bytes=len(data) - 1))  # refused from its size
    assert info.value.code == "image_too_large"
    small = tmp_path / "small.png"
    small.write_bytes(encode(painting(1, (15, 200)), "PNG"))
    with pytest.raises(InvalidImage, match="at least 16"):
        decode_file(small)  # the default limits are the service's
    with pytest.raises(FileNotFoundError):
        decode_file(tmp_path / "missing.png")  # not a picture's fault: not an ImageError


def test_error_classes_own_their_codes() -> None:
    assert ImageTooLarge.codes & UnsupportedImage.codes == set() == InvalidImage.codes & ImageTooLarge.codes
    with pytest.raises(ValueError, match="no code"):
        ImageTooLarge("corrupt_image", "a corrupt image is not a large one")
    named = InvalidImage("corrupt_image", "the image could not be read").about("a.png")
    assert (type(named), named.code) == (InvalidImage, "corrupt_image")
    assert named.message == "a.png: the image could not be read"


def test_corpus_limits_lift_only_the_byte_cap(tmp_path) -> None:
    service = ImageLimits()
    assert CORPUS_LIMITS.max_bytes > service.max_bytes
    assert (
        CORPUS_LIMITS.max_pixels,
        CORPUS_LIMITS.decode_pixels,
        CORPUS_LIMITS.min_side,
        CORPUS_LIMITS.max_aspect,
        CORPUS_LIMITS.formats,
    ) == (service.max_pixels, service.decode_pixels, service.min_side, service.max_aspect, service.formats)
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_claiming(20000, 20000))
    with pytest.raises(ImageTooLarge):
        decode_file(p, CORPUS_LIMITS)  # still refused from the header, nothing decoded
