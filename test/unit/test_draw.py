"""draw_result: boxes in label colours, nesting drawn inside, captions, no change to the input."""

from __future__ import annotations

import numpy as np
import pytest

from ros2_owl.core.draw import draw_result, label_colour
from ros2_owl.core.prompt import parse_prompt
from ros2_owl.core.results import Classification, Detection, LabelScore, TreeResult

TREE = parse_prompt("[a person [a face]] (indoor, outdoor)")


def result(detections=(), image_cls=()) -> TreeResult:
    return TreeResult(TREE, "p", (200, 150), tuple(detections), tuple(image_cls))


PERSON = Detection(1, 0, 1, "a person", 0.91, (20.0, 30.0, 120.0, 140.0))
FACE = Detection(
    2,
    1,
    2,
    "a face",
    0.55,
    (50.0, 60.0, 80.0, 90.0),
    (Classification(1, 2, (LabelScore(3, "indoor", 0.2), LabelScore(4, "outdoor", 0.8))),),
)


def grey(h: int = 150, w: int = 200) -> np.ndarray:
    return np.full((h, w, 3), 128, np.uint8)


def test_label_colours_are_stable_and_distinct():
    colours = [label_colour(i) for i in range(1, 9)]
    assert label_colour(3) == label_colour(3)
    assert len(set(colours)) == 8
    assert all(0 <= c <= 255 for rgb in colours for c in rgb)


def test_boxes_are_drawn_in_label_colours_and_nested_boxes_are_thinner():
    image = grey()
    out = draw_result(image, result([PERSON, FACE]), line_width=3)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (image == 128).all(), "the input image must not be modified"
    # outer box: 3 px wide bottom edge in the person's colour (away from any caption)
    np.testing.assert_array_equal(out[140, 60], label_colour(1))
    np.testing.assert_array_equal(out[138, 60], label_colour(1))
    # nested box: 2 px right edge in the face's colour
    np.testing.assert_array_equal(out[80, 80], label_colour(2))
    np.testing.assert_array_equal(out[80, 79], label_colour(2))
    assert (out[80, 77] == 128).all()
    # inside both boxes, away from edges and captions: untouched
    assert (out[120, 100] == 128).all()


def test_captions_show_label_score_and_best_classification():
    out = draw_result(grey(), result([PERSON, FACE]))
    # the person's caption sits above its box in its colour; the face's inside the person box
    above = out[10:30, 20:120]
    assert (above == label_colour(1)).all(axis=2).sum() > 50
    assert (above != label_colour(1)).any(axis=2).sum() > 20  # text pixels on the fill
    near_face = out[40:60, 50:160]
    assert (near_face == label_colour(2)).all(axis=2).sum() > 50


def test_whole_image_classification_is_listed_top_left():
    cls = Classification(0, 0, (LabelScore(3, "indoor", 0.7), LabelScore(4, "outdoor", 0.3)))
    out = draw_result(grey(), result(image_cls=[cls]))
    corner = out[0:20, 0:80]
    assert (corner == label_colour(3)).all(axis=2).sum() > 50  # the best label's colour


def test_boxes_outside_the_image_are_clipped_and_empty_results_copy():
    far = Detection(1, 0, 1, "a person", 0.5, (-50.0, -40.0, 500.0, 400.0))
    out = draw_result(grey(), result([far]), line_width=2)
    np.testing.assert_array_equal(out[75, 0], label_colour(1))
    np.testing.assert_array_equal(out[75, 199], label_colour(1))
    empty = draw_result(grey(), result())
    assert (empty == 128).all()


def test_tiny_images_and_bad_input():
    out = draw_result(grey(8, 8), result([PERSON, FACE]))
    assert out.shape == (8, 8, 3)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        draw_result(np.zeros((10, 10), np.uint8), result())


def test_caption_shows_the_track_id():
    from dataclasses import replace

    def caption_width(det) -> int:
        above = draw_result(grey(), result([det]))[10:30]
        return int((above == label_colour(1)).all(axis=2).any(axis=0).sum())

    plain, tracked = caption_width(PERSON), caption_width(replace(PERSON, track_id=12))
    assert tracked > plain + 10  # "#12 " drawn before the label
