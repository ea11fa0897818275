"""transforms.py: tf2's lookup semantics without ROS (chain through the tree, static and timed
links, interpolation with slerp), checked against scipy's Rotation and Slerp."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from ros2_owl.core.transforms import Transform, TransformBuffer, TransformError, slerp

S = 1_000_000_000  # ns per second


def quat(axis: str, degrees: float) -> np.ndarray:
    return Rotation.from_euler(axis, degrees, degrees=True).as_quat()  # (x, y, z, w)


def same_rotation(a, b) -> bool:
    return np.allclose(a, b, atol=1e-9) or np.allclose(a, -np.asarray(b), atol=1e-9)


def test_slerp_matches_scipy_including_the_long_way_round():
    rng = np.random.default_rng(0)
    for _ in range(50):
        q0, q1 = Rotation.random(2, random_state=rng.integers(1 << 31)).as_quat()
        t = float(rng.uniform())
        ref = Slerp([0.0, 1.0], Rotation.from_quat([q0, q1]))([t]).as_quat()[0]
        assert same_rotation(slerp(q0, q1, t), ref)
        assert same_rotation(slerp(q0, -q1, t), ref)  # -q1 is the same rotation
    q = quat("z", 10)
    assert same_rotation(slerp(q, q, 0.3), q)


def test_compose_and_invert_match_scipy():
    a = Transform.of((1.0, 2.0, 3.0), quat("z", 90))
    b = Transform.of((0.5, 0.0, -1.0), quat("x", 30))
    p = np.array([0.3, -0.2, 2.0])
    ref = (
        Rotation.from_quat(a.rotation).apply(
            Rotation.from_quat(b.rotation).apply(p) + b.translation
        )
        + a.translation
    )
    assert np.allclose((a * b).apply(p), ref)
    assert np.allclose((a.inverse() * a).apply(p), p)


def test_chain_through_the_tree_with_static_and_dynamic_links():
    buf = TransformBuffer()
    # map -> odom (dynamic), odom -> base_link (dynamic), base_link -> camera (static)
    buf.set_transform("base_link", "camera", 0, (0.1, 0.0, 0.5), quat("y", 90), static=True)
    buf.set_transform("map", "odom", 10 * S, (0.0, 0.0, 0.0), quat("z", 0), static=False)
    buf.set_transform("map", "odom", 12 * S, (0.0, 0.0, 0.0), quat("z", 0), static=False)
    buf.set_transform("odom", "base_link", 10 * S, (0.0, 0.0, 0.0), quat("z", 0), static=False)
    buf.set_transform("odom", "base_link", 12 * S, (2.0, 0.0, 0.0), quat("z", 90), static=False)
    p = np.array([0.0, 0.0, 1.0])  # 1 m in front of the camera (optical z)
    # at 11 s: base_link half way (x = 1) and turned 45 degrees
    got = buf.lookup("map", "camera", 11 * S).apply(p)
    cam_in_base = Rotation.from_quat(quat("y", 90)).apply(p) + [0.1, 0.0, 0.5]
    ref = Rotation.from_quat(quat("z", 45)).apply(cam_in_base) + [1.0, 0.0, 0.0]
    assert np.allclose(got, ref)
    # static-only chain works at any time; the reverse lookup is the inverse
    assert np.allclose(buf.lookup("base_link", "camera", 999 * S).apply(p), cam_in_base)
    back = buf.lookup("camera", "map", 11 * S)
    assert np.allclose(back.apply(got), p)
    # time 0: the newest common time (12 s)
    newest = buf.lookup("map", "camera", 0).apply(p)
    assert np.allclose(newest, Rotation.from_quat(quat("z", 90)).apply(cam_in_base) + [2, 0, 0])


def test_lookups_that_cannot_answer_say_why_in_one_line():
    buf = TransformBuffer(cache_s=5.0)
    buf.set_transform("odom", "base_link", 10 * S, (0, 0, 0), (0, 0, 0, 1), static=False)
    buf.set_transform("odom", "base_link", 11 * S, (1, 0, 0), (0, 0, 0, 1), static=False)
    buf.set_transform("world", "tree", 0, (0, 0, 0), (0, 0, 0, 1), static=True)
    cases = {
        ("nowhere", "base_link", 10 * S): "frame 'nowhere' is not known",
        ("odom", "base_link", 12 * S): "after the newest",
        ("odom", "base_link", 9 * S): "before the oldest",
        ("world", "base_link", 10 * S): "are not connected",
    }
    for (target, source, stamp), words in cases.items():
        with pytest.raises(TransformError, match=words) as info:
            buf.lookup(target, source, stamp)
        assert "\n" not in str(info.value)
    # samples older than the cache window are dropped
    buf.set_transform("odom", "base_link", 20 * S, (2, 0, 0), (0, 0, 0, 1), static=False)
    with pytest.raises(TransformError, match="before the oldest"):
        buf.lookup("odom", "base_link", 11 * S)


def test_bad_transforms_are_refused_and_identity_needs_no_tree():
    buf = TransformBuffer()
    for args in [
        ("a", "a", (0, 0, 0), (0, 0, 0, 1)),
        ("a", "b", (0, 0, 0), (0, 0, 0, 0)),
        ("a", "b", (float("nan"), 0, 0), (0, 0, 0, 1)),
    ]:
        parent, child, t, q = args
        with pytest.raises(ValueError):
            buf.set_transform(parent, child, 0, t, q, static=True)
    assert buf.frames() == set()
    assert np.allclose(buf.lookup("cam", "/cam", 5).apply((1, 2, 3)), (1, 2, 3))
