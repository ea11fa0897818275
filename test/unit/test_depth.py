"""3D boxes from synthetic depth images with known geometry, and depth/colour stamp pairing."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ros2_owl.core.depth import (
    Box3D,
    DepthConfig,
    DepthPairer,
    PinholeIntrinsics,
    boxes_3d,
    depth_in_metres,
    percentiles,
)

K = (525.0, 0.0, 319.5, 0.0, 525.0, 239.5, 0.0, 0.0, 1.0)
CAMERA = PinholeIntrinsics.from_k(K, 640, 480)
BLOCK = (300, 200, 380, 280)  # columns 300..379, rows 200..279 in pixel edges (x0, y0, x1, y1)


def scene_m() -> np.ndarray:
    """A wall at 2.0 m with a 80x80-pixel box face at 1.2 m in front of it (32FC1, metres)."""
    depth = np.full((480, 640), 2.0, dtype=np.float32)
    x0, y0, x1, y1 = BLOCK
    depth[y0:y1, x0:x1] = 1.2
    return depth


def expected_centre(box, z):
    """Pinhole deprojection of the box centre, written out by hand for the test."""
    u = (box[0] + box[2]) / 2 - 0.5  # pixel-edge box -> pixel-centre coordinates
    v = (box[1] + box[3]) / 2 - 0.5
    return ((u - 319.5) * z / 525.0, (v - 239.5) * z / 525.0, z)


def test_box_in_front_of_a_wall_gives_its_known_centre_within_1cm():
    detection = (290.0, 190.0, 390.0, 290.0)  # a detector's box, a bit larger than the object
    (box,) = boxes_3d([detection], scene_m(), "32FC1", CAMERA)
    assert isinstance(box, Box3D)
    want = expected_centre(BLOCK, 1.2)
    assert np.abs(np.subtract(box.center, want)).max() < 0.01
    assert box.size[0] == pytest.approx(100 * 1.2 / 525.0)
    assert box.size[2] == pytest.approx(0.0, abs=1e-6)  # a flat face has no depth spread


def test_wall_box_and_depth_spread():
    """A box straddling object and wall: the median picks the majority, the spread spans both."""
    (wall,) = boxes_3d([(40.0, 40.0, 120.0, 120.0)], scene_m(), "32FC1", CAMERA)
    assert wall.center[2] == pytest.approx(2.0)
    straddle = (300.0, 180.0, 380.0, 280.0)  # rows 180-199 wall, 200-279 the 1.2 m face
    (box,) = boxes_3d([straddle], scene_m(), "32FC1", CAMERA, DepthConfig(central_fraction=1.0))
    assert box.center[2] == pytest.approx(1.2)
    assert box.size[2] == pytest.approx(0.8)


def test_millimetres_and_metres_agree():
    metres = scene_m()
    millimetres = np.round(metres * 1000).astype(np.uint16)
    boxes = [(290.0, 190.0, 390.0, 290.0), (10.0, 10.0, 200.0, 100.0)]
    got_m = boxes_3d(boxes, metres, "32FC1", CAMERA)
    got_mm = boxes_3d(boxes, millimetres, "16UC1", CAMERA)
    for a, b in zip(got_m, got_mm, strict=True):
        np.testing.assert_allclose(a.center, b.center, atol=1e-6)
        np.testing.assert_allclose(a.size, b.size, atol=1e-6)


def test_holes_are_ignored():
    depth = scene_m()
    rng = np.random.default_rng(0)
    holes = rng.random(depth.shape) < 0.5
    depth[holes] = rng.choice([0.0, np.nan, np.inf, 50.0], size=int(holes.sum()))
    (box,) = boxes_3d([(290.0, 190.0, 390.0, 290.0)], depth, "32FC1", CAMERA)
    assert box.valid_pixels < 0.6 * 50 * 50  # about half of the 50x50 central pixels
    assert np.abs(np.subtract(box.center, expected_centre(BLOCK, 1.2))).max() < 0.01


def test_all_invalid_or_too_few_valid_gives_no_3d():
    depth = scene_m()
    depth[200:280, 300:380] = 0.0  # the object returns no depth at all
    mm = np.zeros((480, 640), dtype=np.uint16)
    mm[240, 340] = 1200  # one valid pixel out of 2500 sampled
    (none_m,) = boxes_3d([(300.0, 200.0, 380.0, 280.0)], depth, "32FC1", CAMERA)
    (none_mm,) = boxes_3d([(290.0, 190.0, 390.0, 290.0)], mm, "16UC1", CAMERA)
    (outside,) = boxes_3d([(700.0, 500.0, 800.0, 600.0)], scene_m(), "32FC1", CAMERA)
    assert none_m is None and none_mm is None and outside is None


def test_half_resolution_depth_is_sampled_at_scaled_positions():
    half = scene_m()[::2, ::2].copy()  # registered depth at 320x240 for a 640x480 colour image
    (box,) = boxes_3d([(290.0, 190.0, 390.0, 290.0)], half, "32FC1", CAMERA)
    assert np.abs(np.subtract(box.center, expected_centre(BLOCK, 1.2))).max() < 0.01


def test_bad_inputs_are_one_clear_error():
    with pytest.raises(ValueError, match="not supported"):
        depth_in_metres(np.zeros((4, 4), np.uint8), "8UC1")
    with pytest.raises(ValueError, match="16UC1 depth must be"):
        depth_in_metres(np.zeros((4, 4), np.float32), "16UC1")
    with pytest.raises(ValueError, match="focal"):
        PinholeIntrinsics.from_k([0.0] * 9, 640, 480)


def test_scaled_intrinsics_keep_the_same_rays():
    half = CAMERA.scaled_to(320, 240)
    # full-res pixel centre 339.5 (edge 340) is half-res edge 170, pixel centre 169.5
    full = CAMERA.deproject(339.5, 239.5, 1.0)
    assert half.deproject((339.5 + 0.5) / 2 - 0.5, (239.5 + 0.5) / 2 - 0.5, 1.0) == pytest.approx(
        full
    )


def test_pairing_takes_the_latest_depth_at_or_before_the_image():
    pairer: DepthPairer[str] = DepthPairer(tolerance_ns=50_000_000)
    for stamp in (100, 133, 166):  # ms
        pairer.add(stamp * 1_000_000, f"depth@{stamp}")
    assert pairer.pair(170_000_000) == "depth@166"
    assert pairer.pair(166_000_000) == "depth@166"  # same stamp pairs
    assert pairer.pair(140_000_000) == "depth@133"  # the one after the image is not used
    assert pairer.pair(300_000_000) is None  # newest depth 134 ms older: beyond tolerance
    assert pairer.pair(50_000_000) is None  # no depth at or before the image
    assert (pairer.paired, pairer.unpaired) == (3, 2)


def test_pairing_accepts_out_of_order_depth_and_is_thread_safe():
    pairer: DepthPairer[int] = DepthPairer(tolerance_ns=10, history=1000)

    def feed(start):
        for stamp in range(start, 2000, 2):
            pairer.add(stamp, stamp)

    threads = [threading.Thread(target=feed, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert pairer.pair(1500) == 1500
    assert pairer.pair(5000) is None
    assert (pairer.paired, pairer.unpaired) == (1, 1)


@pytest.mark.parametrize("n", [1, 2, 7, 400, 9999])
def test_percentiles_match_numpy(n):
    values = np.random.default_rng(n).integers(0, 5000, n).astype(np.uint16)
    qs = (0.0, 10.0, 50.0, 90.0, 100.0)
    np.testing.assert_allclose(percentiles(values, qs), np.percentile(values, qs))


def test_boxes_are_clipped_to_the_image_like_the_2d_message():
    depth = np.full((480, 640), 2.0, dtype=np.float32)
    (clipped,) = boxes_3d([(600.0, 400.0, 700.0, 520.0)], depth, "32FC1", CAMERA)
    (inside,) = boxes_3d([(600.0, 400.0, 640.0, 480.0)], depth, "32FC1", CAMERA)
    assert clipped == inside
