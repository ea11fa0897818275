"""`ros2-owl bag`: bags in both storage formats, two cameras (raw and compressed) in, the node's
outputs out, read back with the same library; bad input gives one line and an exit code."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_recordings import FRONT, REAR, read_bag, write_bag

from ros2_owl.cli import app as cli
from ros2_owl.io import result_messages
from ros2_owl.io.bag_messages import bag_messages
from ros2_owl.io.recordings import EXIT_INCOMPLETE

PROMPT = "[a box [a corner]] (red, blue)"


@pytest.fixture
def models(tiny_owlvit_dir, tiny_clip_dir):
    return ["--model", str(tiny_owlvit_dir), "--clip-model", str(tiny_clip_dir)]


def _outputs(prefix: str) -> dict[str, str]:
    return {
        f"{prefix}/detections": "vision_msgs/msg/Detection2DArray",
        f"{prefix}/tree": "ros2_owl/msg/TreeDetectionArray",
        f"{prefix}/classification": "vision_msgs/msg/Classification",
        f"{prefix}/label_info": "vision_msgs/msg/LabelInfo",
    }


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_writes_the_node_topics_per_camera(storage, tmp_path, models, capsys):
    written = write_bag(tmp_path / "in", storage, frames=3, bad_frame=1)
    out = tmp_path / "out"
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--topic", REAR, "--out", str(out)]
    code = cli.main(argv + ["--prompt", PROMPT, "--copy-images", "--quiet"] + models)
    err = capsys.readouterr().err
    # one FRONT frame has an unknown encoding: skipped, counted, the rest written
    assert code == EXIT_INCOMPLETE, err
    assert "wrote 5 of 6 frames" in err
    assert "skipped 1 frame: /front/image_raw: unsupported encoding 'weird16'" in err

    messages, kinds = read_bag(out)
    expected = {**_outputs("/front"), **_outputs("/rear"), FRONT: "sensor_msgs/msg/Image"}
    expected[REAR] = "sensor_msgs/msg/CompressedImage"
    assert kinds == expected
    for camera, topic in (("/front", FRONT), ("/rear", REAR)):
        frames = [w for w in written if w.topic == topic and w.decodable]
        for name in ("detections", "tree", "classification"):
            got = messages[f"{camera}/{name}"]
            assert len(got) == len(frames)
            for (ts, msg), frame in zip(got, frames, strict=True):
                assert ts == frame.timestamp  # the bag's receive time is preserved
                assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == frame.stamp
                assert msg.header.frame_id == frame.frame_id
        (ts, info), = messages[f"{camera}/label_info"]  # fmt: skip
        assert ts == frames[0].timestamp
        assert [c.class_name for c in info.class_map] == [
            "image",
            "a box",
            "a corner",
            "red",
            "blue",
        ]
        tree = messages[f"{camera}/tree"][0][1]
        assert tree.prompt == PROMPT and tree.detections and tree.image_classifications
    # copied images are the input messages, bad one included
    assert len(messages[FRONT]) == 3 and len(messages[REAR]) == 3
    assert (out / "metadata.yaml").is_file()
    assert any(out.glob("*.mcap" if storage == "mcap" else "*.db3"))


def test_bag_contents_equal_the_node_mapping(tmp_path, tiny_owlvit_dir, capsys):
    """Every output message is byte for byte what result_messages builds for the predictor's
    result on that frame (the mapping the node publishes with)."""
    from ros2_owl.core.predictor import TreePredictor
    from ros2_owl.io.images import message_to_rgb

    write_bag(tmp_path / "in", "sqlite3", frames=2)
    out = tmp_path / "out"
    argv = ["bag", str(tmp_path / "in"), "--topic", REAR, "--out", str(out), "--quiet"]
    argv += ["--prompt", "[a box, a ball]", "--no-clip", "--model", str(tiny_owlvit_dir)]
    assert cli.main(argv + ["--threshold", "0.05", "--annotated-image"]) == 0
    types = bag_messages()
    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), None)
    state = predictor.prepare("[a box, a ball]", threshold=0.05)
    inputs, _ = read_bag(tmp_path / "in")
    outputs, kinds = read_bag(out)
    assert set(kinds) == {"/detections", "/tree", "/label_info", "/annotated_image"}
    for i, (_, msg) in enumerate(inputs[REAR]):
        image = message_to_rgb(msg)
        result = predictor.predict(image, state)
        assert result.detections
        for name, build in (
            ("detections", result_messages.detection_array),
            ("tree", result_messages.tree_array),
        ):
            expected = types.serialize(build(types, result, msg.header))
            assert types.serialize(outputs[f"/{name}"][i][1]) == expected
        annotated = outputs["/annotated_image"][i][1]
        assert (annotated.width, annotated.height, annotated.encoding) == (80, 60, "rgb8")


def test_bag_slice_and_storage_choice(tmp_path, models, capsys):
    written = write_bag(tmp_path / "in", "mcap", frames=5)
    out = tmp_path / "out"
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--out", str(out), "--quiet"]
    argv += ["--prompt", "[a box]", "--start", "0.1", "--end", "0.35", "--storage", "sqlite3"]
    assert cli.main(argv + models) == 0
    messages, _ = read_bag(out)
    kept = [w.timestamp for w in written if w.topic == FRONT][1:4]  # 0.1, 0.2, 0.3 s
    assert [ts for ts, _ in messages["/detections"]] == kept
    assert any(out.glob("*.db3"))
    assert "wrote 3 of 3 frames (up to 0.300 s)" in capsys.readouterr().err


def test_bag_bad_input_is_one_line(tmp_path, models, capsys):
    write_bag(tmp_path / "in", "sqlite3", frames=1)
    base = ["--prompt", "[a box]", "--quiet"] + models

    def run(*argv) -> tuple[int, str]:
        code = cli.main(["bag", *argv] + base)
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: "), err
        return code, err

    code, err = run(str(tmp_path / "missing"), "--topic", FRONT, "--out", str(tmp_path / "o"))
    assert code == 1 and "does not exist" in err
    code, err = run(str(tmp_path / "in"), "--topic", "/nope", "--out", str(tmp_path / "o"))
    assert code == 1 and "has no image topic /nope" in err
    assert f"{FRONT} (Image), {REAR} (CompressedImage)" in err and "/chatter" not in err
    (tmp_path / "exists").mkdir()
    code, err = run(str(tmp_path / "in"), "--topic", FRONT, "--out", str(tmp_path / "exists"))
    assert code == 1 and "exists: choose another path or pass --overwrite" in err
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--out", str(tmp_path / "exists")]
    assert cli.main(argv + base + ["--overwrite"]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_truncated_bag_processes_what_is_readable(storage, tmp_path, models, capsys):
    write_bag(tmp_path / "in", storage, frames=40, size=(320, 240))  # MCAP: ~9 chunks
    (data,) = [p for p in (tmp_path / "in").iterdir() if p.suffix in (".db3", ".mcap")]
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    out = tmp_path / "out"
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--out", str(out), "--quiet"]
    code = cli.main(argv + ["--prompt", "[a box]"] + models)
    err = capsys.readouterr().err
    assert code == EXIT_INCOMPLETE, err
    assert "is damaged" in err and "input ended early: " in err and "after " in err
    done = int(err.split("wrote ")[1].split(" of ")[0])
    assert 0 < done < 40
    messages, _ = read_bag(out)
    assert len(messages["/detections"]) == done


def test_bag_frames_are_decoded_like_the_node(tmp_path):
    """Raw and JPEG frames from the bag decode to the pixels that were written."""
    from fixtures_recordings import scene

    from ros2_owl.io.images import message_to_rgb

    write_bag(tmp_path / "in", "mcap", frames=1)
    messages, _ = read_bag(tmp_path / "in")
    assert np.array_equal(message_to_rgb(messages[FRONT][0][1]), scene(0))
    jpeg = message_to_rgb(messages[REAR][0][1]).astype(int)
    assert np.abs(jpeg - scene(7)).mean() < 4


def test_bag_track_puts_track_ids_in_the_detections(tmp_path, models, capsys):
    """--track: one tracker per input topic; Detection2D.id carries the track id as the node's
    does (empty without --track)."""
    write_bag(tmp_path / "in", "sqlite3", frames=3, bad_frame=None)
    argv = ["bag", str(tmp_path / "in"), "--topic", FRONT, "--topic", REAR, "--quiet"]
    argv += ["--prompt", PROMPT, *models]
    assert cli.main([*argv, "--out", str(tmp_path / "tracked"), "--track"]) == 0
    assert cli.main([*argv, "--out", str(tmp_path / "plain")]) == 0
    capsys.readouterr()
    tracked, _ = read_bag(tmp_path / "tracked")
    plain, _ = read_bag(tmp_path / "plain")
    for camera in ("/front", "/rear"):
        first = tracked[f"{camera}/detections"][0][1].detections
        tree = tracked[f"{camera}/tree"][0][1].detections
        assert first and all(t.track_id >= 1 for t in tree)  # a first frame confirms all
        assert [d.id for d in first] == [str(t.track_id) for t in tree]
        for (_, dets), (_, trees) in zip(
            plain[f"{camera}/detections"], plain[f"{camera}/tree"], strict=True
        ):  # without --track: the per-frame instance ids, no track ids
            assert [d.id for d in dets.detections] == [str(t.id) for t in trees.detections]
            assert all(t.track_id == 0 for t in trees.detections)


def test_bag_masks_topic_is_a_label_image_of_the_tree_ids(
    tmp_path, tiny_owlvit_dir, tiny_sam_dir, capsys
):
    write_bag(tmp_path / "in", "sqlite3", frames=2, bad_frame=None)
    argv = [
        "bag",
        str(tmp_path / "in"),
        "--topic",
        FRONT,
        "--quiet",
        "--out",
        str(tmp_path / "out"),
    ]
    argv += ["--model", str(tiny_owlvit_dir), "--no-clip", "--sam-model", str(tiny_sam_dir)]
    assert cli.main([*argv, "--prompt", "[a box {mask} [a corner]]"]) == 0, capsys.readouterr().err
    messages, kinds = read_bag(tmp_path / "out")
    assert kinds["/masks"] == "sensor_msgs/msg/Image"
    assert len(messages["/masks"]) == len(messages["/tree"]) == 2
    for (_, image), (_, tree) in zip(messages["/masks"], messages["/tree"], strict=True):
        assert image.header.stamp == tree.header.stamp and image.encoding == "mono16"
        assert (image.width, image.height) == (80, 60) and image.step == 160
        labels = np.frombuffer(bytes(image.data), "<u2").reshape(60, 80)
        masked = {d.id for d in tree.detections if d.has_mask}
        assert masked and set(np.unique(labels)) - {0} <= masked
        assert all(d.has_mask == (d.class_id == "a box") for d in tree.detections)
