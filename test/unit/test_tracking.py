"""Track ids on synthetic sequences whose answers are known (moving boxes, gaps, crossings)."""

from __future__ import annotations

import pytest

from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Classification, Detection, LabelScore, TreeResult
from ros2_owl.core.tracking import CameraTracker, Tracking, TrackingConfig

TREE = parse_prompt("[a person [a face], a car]")
LABELS = {text: i for i, text in enumerate(TREE.label_texts)}


def det(det_id, label, box, parent_id=0, classifications=()):
    return Detection(det_id, parent_id, LABELS[label], label, 0.3, box, classifications)


def frame(*detections):
    return TreeResult(TREE, "[a person [a face], a car]", (640, 480), tuple(detections))


def box_at(x, y, w=60.0, h=80.0):
    return (float(x), float(y), float(x + w), float(y + h))


def tracks(result):
    """Detection id -> track id of one tracked result."""
    return {d.id: d.track_id for d in result.detections}


def test_id_persists_through_a_three_frame_gap():
    tracker = CameraTracker(TrackingConfig(max_missed_frames=5))
    seen = []
    for t in range(12):
        if t in (4, 5, 6):  # occluded: not detected for three frames
            tracker.update(frame())
            continue
        seen.append(tracks(tracker.update(frame(det(1, "a person", box_at(100 + 8 * t, 100)))))[1])
    assert seen[0] >= 1
    assert set(seen) == {seen[0]}


def test_track_ends_after_max_missed_frames_and_its_id_is_not_reused():
    tracker = CameraTracker(TrackingConfig(max_missed_frames=2))
    first = [tracks(tracker.update(frame(det(1, "a person", box_at(100, 100)))))[1] for _ in "ab"]
    for _ in range(4):  # longer than max_missed_frames
        tracker.update(frame())
    assert tracker.active_tracks == 0
    again = [tracks(tracker.update(frame(det(1, "a person", box_at(100, 100)))))[1] for _ in "ab"]
    assert first[0] == first[1] >= 1
    assert again[-1] not in (0, first[0])


def test_two_crossing_objects_keep_their_ids():
    tracker = CameraTracker()
    history = []
    for t in range(21):  # A moves right, B moves left; they overlap around t = 10
        a = det(1, "a person", box_at(100 + 20 * t, 200))
        b = det(2, "a person", box_at(500 - 20 * t, 210))
        history.append(tracks(tracker.update(frame(a, b))))
    a_ids = {h[1] for h in history}
    b_ids = {h[2] for h in history}
    assert len(a_ids) == 1 and len(b_ids) == 1
    assert a_ids.isdisjoint(b_ids) and 0 not in a_ids | b_ids


def test_new_object_gets_a_new_id():
    tracker = CameraTracker()
    a_first = tracks(tracker.update(frame(det(1, "a person", box_at(100, 100)))))[1]
    ids = []
    for _ in range(3):
        result = tracker.update(
            frame(det(1, "a person", box_at(100, 100)), det(2, "a person", box_at(400, 300)))
        )
        ids.append(tracks(result))
    assert all(i[1] == a_first for i in ids)
    new = {i[2] for i in ids} - {0}  # ByteTrack confirms a late arrival on its second frame
    assert ids[-1][2] == ids[-2][2] and len(new) == 1 and a_first not in new


def test_labels_are_tracked_separately():
    tracker = CameraTracker()
    person = tracks(tracker.update(frame(det(1, "a person", box_at(100, 100)))))[1]
    car = [tracks(tracker.update(frame(det(1, "a car", box_at(100, 100)))))[1] for _ in range(3)]
    assert person >= 1
    assert person not in car  # the same box under another label is another track
    assert car[-1] >= 1


def test_nested_tracks_follow_their_parent_track():
    tracker = CameraTracker()
    person_ids, face_ids = set(), set()
    for t in range(10):
        x = 50 + 15 * t  # the person walks; the face moves with it
        result = tracker.update(
            frame(
                det(1, "a person", box_at(x, 100, 120, 240)),
                det(2, "a face", box_at(x + 40, 110, 40, 40), parent_id=1),
                det(3, "a person", box_at(450, 100, 120, 240)),
                det(4, "a face", box_at(490, 110, 40, 40), parent_id=3),
            )
        )
        ids = tracks(result)
        person_ids.add((ids[1], ids[3]))
        face_ids.add((ids[2], ids[4]))
    assert len(person_ids) == 1 and len(face_ids) == 1
    (p1, p2), (f1, f2) = person_ids.pop(), face_ids.pop()
    assert len({p1, p2, f1, f2}) == 4 and 0 not in (p1, p2, f1, f2)  # unique per camera


def test_nested_track_is_scoped_to_its_parent():
    """The same face box under another person track is another face track."""
    tracker = CameraTracker(TrackingConfig(max_missed_frames=1))
    face = box_at(140, 110, 40, 40)
    first = tracker.update(frame(det(1, "a person", box_at(100, 100)), det(2, "a face", face, 1)))
    for _ in range(4):  # the first person's track ends
        tracker.update(frame())
    second = None
    for _ in range(3):
        second = tracker.update(
            frame(det(1, "a person", box_at(100, 100)), det(2, "a face", face, 1))
        )
    assert tracks(first)[2] >= 1 and tracks(second)[2] >= 1
    assert tracks(second)[2] != tracks(first)[2]
    assert tracks(second)[1] != tracks(first)[1]


def test_cameras_have_their_own_tracks():
    tracking = Tracking()
    a = tracks(tracking.update("left", frame(det(1, "a person", box_at(100, 100)))))[1]
    b = tracks(tracking.update("right", frame(det(1, "a person", box_at(300, 100)))))[1]
    assert a >= 1 and b >= 1
    assert tracking.active_tracks == {"left": 1, "right": 1}


def test_classification_smoothing_keeps_raw_scores():
    tracker = CameraTracker(TrackingConfig(classification_smoothing=0.5))
    smoothed = []
    for standing in (1.0, 0.0, 0.0):
        cls = Classification(
            4, 1, (LabelScore(4, "standing", standing), LabelScore(5, "sitting", 1 - standing))
        )
        result = tracker.update(frame(det(1, "a person", box_at(100, 100), 0, (cls,))))
        (d,) = result.detections
        assert d.classifications == (cls,)  # raw per-frame scores unchanged
        smoothed.append(d.track_classifications[0].scores[0].score)
    assert smoothed == pytest.approx([1.0, 0.5, 0.25])


def test_config_is_validated():
    with pytest.raises(ValueError, match="max_missed_frames"):
        TrackingConfig(max_missed_frames=-1)
    with pytest.raises(ValueError, match="classification_smoothing"):
        TrackingConfig(classification_smoothing=1.0)
