"""runtime/spatial.py: a camera's depth pairs its colour frames by stamp, gives 3D boxes and
counts what did not pair; the session's spatial step puts them on the result of any front end."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_owl.core.depth import PinholeIntrinsics
from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Detection, TreeResult
from ros2_owl.core.settings import Settings
from ros2_owl.runtime.session import FrameSession, SessionFrame
from ros2_owl.runtime.spatial import CameraDepth

W, H = 160, 120
K = [100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0]
PERSON = Detection(1, 0, 1, "a person", 0.8, (40.0, 20.0, 120.0, 100.0))
FACE = Detection(2, 1, 2, "a face", 0.4, (70.0, 30.0, 90.0, 50.0))
CORNER = Detection(3, 0, 1, "a person", 0.3, (0.0, 0.0, 10.0, 10.0))
S = 1_000_000_000


def plane() -> np.ndarray:
    depth = np.full((H, W), 2000, np.uint16)  # 2 m
    depth[:12, :12] = 0  # no depth under CORNER
    return depth


def as_16uc1(frame):
    return frame, "16UC1"


def test_camera_depth_pairs_computes_and_counts():
    depth = CameraDepth(tolerance_s=0.05, to_array=as_16uc1)
    boxes = [PERSON.box, FACE.box, CORNER.box]
    depth.add_depth(5 * S, plane())
    assert depth.boxes_3d(5 * S + 10_000_000, boxes, (W, H)) is None  # no intrinsics yet
    depth.intrinsics_problem("camera_info: focal length must be > 0")
    depth.set_intrinsics(PinholeIntrinsics.from_k(K, W, H))
    person, face, none = depth.boxes_3d(5 * S + 20_000_000, boxes, (W, H))
    assert person.center == pytest.approx((0.0, 0.0, 2.0))
    assert face is not None and none is None
    assert depth.boxes_3d(6 * S, boxes, (W, H)) is None  # depth 1 s older: unpaired
    values = depth.values()
    assert values["frames_paired_with_depth"] == 2 and values["frames_without_depth"] == 1
    assert values["frames_without_camera_info"] == 1 and values["detections_without_3d"] == 1
    assert values["depth_frames_received"] == 1 and "focal" in values["last_depth_problem"]


def test_unreadable_depth_is_counted_not_raised():
    def refuse(_frame):
        raise ValueError("depth encoding 'rgb8' is not supported")

    depth = CameraDepth(tolerance_s=0.05, to_array=refuse)
    depth.set_intrinsics(PinholeIntrinsics.from_k(K, W, H))
    depth.add_depth(S, object())
    assert depth.boxes_3d(S, [PERSON.box], (W, H)) is None
    values = depth.values()
    assert values["depth_frames_bad"] == 1 and "rgb8" in values["last_depth_problem"]


class _Predictor:
    """Two fixed detections for any image: what the spatial step does is under test."""

    def prepare(self, prompt, label_thresholds=None):
        return "state"

    def predict(self, image, state, config=None):
        tree = parse_prompt("[a person [a face]]")
        return TreeResult(tree, "[a person [a face]]", (W, H), (PERSON, FACE))


def test_the_session_step_gives_3d_only_to_stamped_frames_of_cameras_with_depth():
    session = FrameSession(_Predictor(), Settings(), prompt="[a person [a face]]")
    depth = session.add_depth("cam", CameraDepth(0.05, as_16uc1))
    depth.set_intrinsics(PinholeIntrinsics.from_k(K, W, H))
    depth.add_depth(5 * S, plane())
    image = np.zeros((H, W, 3), np.uint8)
    paired = session.process([SessionFrame("cam", image, stamp_ns=5 * S + 1)])[0].result
    assert len(paired.boxes_3d) == 2 and paired.boxes_3d[0].center[2] == pytest.approx(2.0)
    late = session.process([SessionFrame("cam", image, stamp_ns=9 * S)])[0].result
    unstamped = session.process([SessionFrame("cam", image)])[0].result
    other = session.process([SessionFrame("other", image, stamp_ns=5 * S)])[0].result
    assert late.boxes_3d is None and unstamped.boxes_3d is None and other.boxes_3d is None
    assert depth.values()["frames_paired_with_depth"] == 1
    assert depth.values()["frames_without_depth"] == 1  # unstamped and other never asked
