"""Image message conversion: every encoding, padding, endianness, bad frames, compressed data."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg")
from PIL import Image as PILImage  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ros2_owl.io.images import (  # noqa: E402
    SUPPORTED_ENCODINGS,
    ImageConversionError,
    ImageLimits,
    message_to_rgb,
)
from ros2_owl.ros.messages import rgb_to_image_msg  # noqa: E402

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)


def make_msg(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """Pack `pixels` (H x row-bytes array) into an Image with `pad` bytes after every row."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    if pixels.dtype == np.uint16:
        rows = rows.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 0xAB, np.uint8)], axis=1)
    msg = Image()
    msg.height, msg.width = h, pixels.shape[1]
    msg.encoding = encoding
    msg.is_bigendian = int(bigendian)
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


def base(arr: np.ndarray) -> np.ndarray:
    return arr if arr.base is None else base(arr.base)


@pytest.mark.parametrize("pad", [0, 5])
def test_rgb8_is_a_view_of_the_message_bytes(pad):
    msg = make_msg(RGB, "rgb8", pad=pad)
    out = message_to_rgb(msg)
    assert out.shape == (6, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, RGB)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    if pad == 0:
        assert out.flags.c_contiguous


def test_rgba8_drops_alpha_without_copy():
    rgba = np.concatenate([RGB, np.full((6, 8, 1), 9, np.uint8)], axis=2)
    msg = make_msg(rgba, "rgba8", pad=3)
    out = message_to_rgb(msg)
    np.testing.assert_array_equal(out, RGB)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize("encoding", ["bgr8", "8UC3"])
def test_bgr8_channels_are_swapped(encoding):
    out = message_to_rgb(make_msg(RGB[:, :, ::-1].copy(), encoding, pad=1))
    np.testing.assert_array_equal(out, RGB)
    assert out.flags.c_contiguous  # positive strides: safe for torch.from_numpy


def test_bgra8():
    bgra = np.concatenate([RGB[:, :, ::-1], np.zeros((6, 8, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(message_to_rgb(make_msg(bgra, "bgra8")), RGB)


def test_mono8_repeats_grey():
    grey = RGB[:, :, 0].copy()
    out = message_to_rgb(make_msg(grey, "mono8", pad=2))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], grey)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_keeps_high_byte_in_either_byte_order(bigendian):
    grey = np.array([[0x1234, 0xFF00, 0x00FF, 0xABCD]], np.uint16)
    out = message_to_rgb(make_msg(grey, "mono16", pad=2, bigendian=bigendian))
    np.testing.assert_array_equal(out[0, :, 0], [0x12, 0xFF, 0x00, 0xAB])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


@pytest.mark.parametrize("encoding", ["rgb16", "bgr16"])
def test_16bit_colour(encoding):
    px = RGB.astype(np.uint16) * 256 + 77
    src = px if encoding == "rgb16" else px[:, :, ::-1].copy()
    np.testing.assert_array_equal(message_to_rgb(make_msg(src, encoding, bigendian=True)), RGB)


def rgb_to_yuv(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited range, the inverse of the decoder's formula."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    return np.clip(np.round(np.stack([y, u, v], -1)), 0, 255).astype(np.uint8)


# Pairs of pixels share U and V, so use images whose horizontal pairs have the same colour.
FLAT_PAIRS = np.repeat(RNG.integers(30, 220, size=(4, 3, 3), dtype=np.uint8), 2, axis=1)


@pytest.mark.parametrize("encoding", ["uyvy", "yuv422", "yuyv", "yuv422_yuy2"])
def test_yuv422_variants(encoding):
    yuv = rgb_to_yuv(FLAT_PAIRS)
    y, u, v = yuv[..., 0], yuv[:, 0::2, 1], yuv[:, 0::2, 2]
    packed = np.empty((4, 12), np.uint8)
    if encoding in ("uyvy", "yuv422"):
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = (
            u,
            y[:, 0::2],
            v,
            y[:, 1::2],
        )
    else:
        packed[:, 0::4], packed[:, 1::4], packed[:, 2::4], packed[:, 3::4] = (
            y[:, 0::2],
            u,
            y[:, 1::2],
            v,
        )
    msg = make_msg(packed, encoding, pad=4)
    msg.width = 6
    out = message_to_rgb(msg)
    assert out.shape == (4, 6, 3)
    assert np.abs(out.astype(int) - FLAT_PAIRS).max() <= 3


def test_yuv_limited_range_extremes():
    packed = np.array([[128, 16, 128, 235]], np.uint8)  # U Y V Y: black then white
    msg = make_msg(packed, "uyvy")
    msg.width = 2
    out = message_to_rgb(msg)
    assert out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [255, 255, 255])


def bt601_reference(y, u, v) -> np.ndarray:
    """BT.601 limited range in float64, rounded half up (an exact decimal .5 rounds up; the
    1e-9 only absorbs float64's representation error of such ties) and clipped to 0..255."""
    y, u, v = (np.asarray(c, np.float64) for c in (y, u, v))
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.392 * (u - 128) - 0.813 * (v - 128)
    b = 1.164 * (y - 16) + 2.017 * (u - 128)
    return np.clip(np.floor(np.stack([r, g, b], -1) + 0.5 + 1e-9), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("chroma", ["u", "v"])
def test_yuv422_is_exact_for_every_luma_chroma_pair(chroma):
    """All 65,536 (Y, U) pairs (V = 128) or (Y, V) pairs (U = 128), as 256 rows of 256 pixel
    pairs: exact against the float formula (bright Y with high U once overflowed to B = 0)."""
    y = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, 1)  # row = Y
    c = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 256, 0)  # column = U or V
    u, v = (c, np.full_like(c, 128)) if chroma == "u" else (np.full_like(c, 128), c)
    packed = np.stack([u, y, v, y], -1).reshape(256, 256 * 4)  # U Y V Y: two equal pixels
    msg = make_msg(packed, "uyvy")
    msg.width = 512
    out = message_to_rgb(msg)[:, 0::2]
    np.testing.assert_array_equal(out, bt601_reference(y, u, v))
    if chroma == "u":  # the reported overflow: Y 236, U 250 once gave B = 0
        assert out[236, 250, 2] == 255


@pytest.mark.parametrize("encoding", ["nv12", "nv21"])
def test_nv12_nv21(encoding):
    flat = np.repeat(np.repeat(RNG.integers(30, 220, size=(2, 3, 3), dtype=np.uint8), 2, 0), 2, 1)
    yuv = rgb_to_yuv(flat)
    uv = np.empty((2, 6), np.uint8)
    first, second = (1, 2) if encoding == "nv12" else (2, 1)
    uv[:, 0::2], uv[:, 1::2] = yuv[0::2, 0::2, first], yuv[0::2, 0::2, second]
    msg = make_msg(np.concatenate([yuv[..., 0], uv]), encoding)
    msg.height = 4
    out = message_to_rgb(msg)
    assert out.shape == (4, 6, 3)
    assert np.abs(out.astype(int) - flat).max() <= 3


def mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    channel = {"r": 0, "g": 1, "b": 2}
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            raw[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[dy * 2 + dx]]]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_flat_colour_is_exact(pattern, bits):
    colour = np.array([200, 120, 40])
    flat = np.broadcast_to(colour, (7, 9, 3))  # odd sizes exercise the border
    raw = mosaic(flat.astype(np.uint16) * 256 if bits == 16 else flat.astype(np.uint8), pattern)
    out = message_to_rgb(make_msg(raw, f"bayer_{pattern}{bits}", pad=2, bigendian=bits == 16))
    assert out.shape == (7, 9, 3)
    np.testing.assert_array_equal(out, np.broadcast_to(colour, (7, 9, 3)))


@pytest.mark.parametrize("pattern", ["rggb", "gbrg"])
def test_bayer_smooth_gradient_is_close(pattern):
    yy, xx = np.mgrid[0:16, 0:20]
    rgb = np.stack([xx * 10, yy * 12, 255 - xx * 10], -1).astype(np.uint8)
    out = message_to_rgb(make_msg(mosaic(rgb, pattern), f"bayer_{pattern}8"))
    inner = np.abs(out[1:-1, 1:-1].astype(int) - rgb[1:-1, 1:-1])
    assert inner.max() <= 6


def bad(msg, match: str, limits: ImageLimits | None = None):
    with pytest.raises(ImageConversionError, match=match):
        message_to_rgb(msg, limits) if limits else message_to_rgb(msg)


def test_step_smaller_than_row():
    msg = make_msg(RGB, "rgb8")
    msg.step = 20
    msg.data = bytes(20 * 6)
    bad(msg, "step 20 is smaller than the 24 bytes")


@pytest.mark.parametrize("delta", [-1, 1, -24])
def test_data_size_mismatch(delta):
    msg = make_msg(RGB, "rgb8")
    msg.data = bytes(len(msg.data) + delta)
    bad(msg, f"data has {144 + delta} bytes but the header needs 144")


def test_unknown_encoding_lists_the_supported_ones():
    bad(make_msg(RGB, "32FC1"), r"unsupported encoding '32FC1' \(supported: .*bayer_rggb8")
    assert {"rgb8", "yuv422", "bayer_grbg16", "nv12"} <= set(SUPPORTED_ENCODINGS)


@pytest.mark.parametrize("field", ["width", "height"])
def test_zero_size(field):
    msg = make_msg(RGB, "rgb8")
    setattr(msg, field, 0)
    bad(msg, "image is empty")


def test_absurd_size_rejected_before_reading_data():
    msg = Image(width=1_000_000, height=1_000_000, step=3_000_000, encoding="rgb8")
    bad(msg, "image is 1000000x1000000 px; the limit is")
    bad(make_msg(RGB, "rgb8"), "limit is 4 px per side", ImageLimits(max_side=4))


def test_the_converter_uses_the_predictors_one_size_limit():
    """One limit, defined once (settings): a frame the predictor would refuse is refused from
    the header, before its data is read (here it has none at all)."""
    from ros2_owl.core import settings

    assert ImageLimits() == ImageLimits(settings.MAX_IMAGE_SIDE, settings.MAX_IMAGE_PIXELS)
    wide = Image(
        width=settings.MAX_IMAGE_SIDE + 2, height=2, step=3 * (settings.MAX_IMAGE_SIDE + 2)
    )
    wide.encoding = "rgb8"
    bad(wide, f"limit is {settings.MAX_IMAGE_SIDE} px per side")
    side = int(settings.MAX_IMAGE_PIXELS**0.5) + 2  # under MAX_SIDE, over MAX_PIXELS
    big = Image(width=side, height=side, step=3 * side, encoding="rgb8")
    bad(big, "MP in total")
    ihdr = struct.pack(">IIBBBBB", settings.MAX_IMAGE_SIDE + 8, 16, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IEND", b"")  # no pixel data
    bad(compressed(png, "png"), f"image is {settings.MAX_IMAGE_SIDE + 8}x16 px")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_odd_width_yuv_rejected():
    msg = make_msg(np.zeros((2, 6), np.uint8), "yuyv")
    msg.width = 3
    bad(msg, "even width")


def compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = data
    return msg


def encode(arr: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_png_is_lossless():
    np.testing.assert_array_equal(message_to_rgb(compressed(encode(RGB, "PNG"), "png")), RGB)


def test_jpeg_decodes_close():
    smooth = np.broadcast_to(np.array([90, 160, 30], np.uint8), (32, 48, 3)).copy()
    out = message_to_rgb(
        compressed(encode(smooth, "JPEG", quality=95), "rgb8; jpeg compressed bgr8")
    )
    assert out.shape == (32, 48, 3)
    assert np.abs(out.astype(int) - smooth).max() <= 4


def test_grey_and_16bit_png():
    grey = RGB[:, :, 1].copy()
    np.testing.assert_array_equal(
        message_to_rgb(compressed(encode(grey, "PNG"), "png"))[..., 2], grey
    )
    deep = (grey.astype(np.uint16) << 8) | 0x55
    out = message_to_rgb(compressed(encode(deep, "PNG"), "mono16; png compressed"))
    np.testing.assert_array_equal(out[..., 0], grey)


@pytest.mark.parametrize(
    ("data", "fmt", "match"),
    [
        (b"", "jpeg", "empty compressed image"),
        (b"not an image at all", "jpeg", "corrupt or unreadable jpeg"),
        (encode(RGB, "JPEG")[:60], "jpeg", "corrupt or unreadable"),
        (encode(RGB, "PNG")[:-30], "png", "corrupt or unreadable"),
        (b"\x00" * 12 + encode(RGB, "PNG"), "16UC1; compressedDepth png", "compressedDepth"),
    ],
)
def test_bad_compressed(data, fmt, match):
    bad(compressed(data, fmt), match)


def test_compressed_bomb_header_rejected_before_decoding():
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    bad(compressed(png, "png"), "image is too large.*3600000000 pixels")


def test_rgb_to_image_msg_round_trip():
    msg = rgb_to_image_msg(RGB)
    assert (msg.width, msg.height, msg.step, msg.encoding) == (8, 6, 24, "rgb8")
    np.testing.assert_array_equal(message_to_rgb(msg), RGB)
    with pytest.raises(ImageConversionError, match="HxWx3 uint8"):
        rgb_to_image_msg(RGB[:, :, 0])
