"""The node's own settings: lifecycle start, camera inputs, outputs and reports, the live page,
track ids, 3D boxes from depth and the robot outputs."""

from __future__ import annotations

from dataclasses import dataclass

from .schema import check_optional_topics, check_topics, setting

__all__ = [
    "DepthSettings",
    "InputSettings",
    "NodeSettings",
    "OutputSettings",
    "RobotSettings",
    "TrackingSettings",
    "WebSettings",
]


@dataclass(frozen=True)
class NodeSettings:
    """The managed node."""

    autostart: bool = setting(
        True,
        "Configure and activate at start (as a plain node); false: wait, unconfigured, for a "
        "lifecycle manager or `ros2 lifecycle set`. Read at process start only.",
        live=False,
    )


@dataclass(frozen=True)
class InputSettings:
    """The camera inputs (configure)."""

    image_topics: tuple[str, ...] = setting(
        ("image",),
        "Input topics, relative to the node namespace. A name ending in '/compressed' is subscribed"
        " as sensor_msgs/CompressedImage, any other as sensor_msgs/Image.",
        live=False,
        check=check_topics,
    )
    camera_names: tuple[str, ...] = setting(
        (),
        "Output namespace per image topic (same length). Default: none for one camera; the topic's "
        "namespace for several (e.g. 'front/image_raw' -> 'front').",
        live=False,
    )
    input_reliability: str = setting(
        "best_effort",
        "Input QoS reliability; best_effort (SensorDataQoS) also receives from reliable publishers.",
        live=False,
        choices=("best_effort", "reliable"),
    )
    input_depth: int = setting(
        5,
        "Input QoS history depth.",
        live=False,
        range=(1, 100),
    )


@dataclass(frozen=True)
class OutputSettings:
    """The outputs and the node's own reports."""

    publish_annotated: bool = setting(
        True,
        "Publish annotated_image (drawn only while it has subscribers).",
    )
    max_rate: float = setting(
        0.0,
        "Most frames per second processed per camera; 0 = as fast as the model runs.",
        range=(0.0, 1000.0),
    )
    no_frame_warning: float = setting(
        5.0,
        "Seconds without any frame before a warning naming topic and QoS; 0 = never.",
        live=False,
        range=(0.0, 3600.0),
    )
    diagnostics_period: float = setting(
        1.0,
        "Seconds between /diagnostics messages.",
        live=False,
        range=(0.05, 60.0),
    )


@dataclass(frozen=True)
class WebSettings:
    """The node's live page (configure; `ros2-owl serve` has its own --port/--host/--max-viewers)."""

    web_port: int = setting(
        0,
        "Port of the live page (stream, tree, prompt box) served by the node; 0 = off.",
        live=False,
        range=(0, 65535),
    )
    web_host: str = setting(
        "127.0.0.1",
        "Address the live page binds; 0.0.0.0 makes it reachable from the network (then set "
        "ROS2_OWL_WEB_TOKEN in the node's environment to require a token).",
        live=False,
    )
    web_camera: str = setting(
        "",
        "Camera a live page starts on (with several, each page can switch): '' = the first, else "
        "its index, name or topic.",
        live=False,
    )
    web_max_viewers: int = setting(
        4,
        "Most pages open at once.",
        live=False,
        range=(1, 100),
    )


@dataclass(frozen=True)
class TrackingSettings:
    """Track ids across frames (core/tracking.py)."""

    tracking: bool = setting(
        False,
        "Track ids across frames for every detection, root and nested (Detection2D.id, the tree's "
        "track_id, '#id' on the annotated image).",
        live=False,
        cli="--track",
    )
    track_max_missed_frames: int = setting(
        30,
        "Frames a lost track waits for its object before its id ends.",
        live=False,
        range=(0, 10000),
        cli="--track-max-missed",
    )
    classification_smoothing: float = setting(
        0.0,
        "Running-mean weight of a track's past classify scores (s = a*s_prev + (1-a)*score), shown "
        "on the annotated image; 0 = off. Messages keep the raw scores.",
        live=False,
        range=(0.0, 0.99),
        cli=True,
    )


@dataclass(frozen=True)
class DepthSettings:
    """3D boxes from depth (core/depth.py)."""

    depth_topics: tuple[str, ...] = setting(
        (),
        "Depth images registered to the colour cameras (16UC1 mm or 32FC1 m), one per image topic; "
        "3D boxes go to detections_3d. [] = no 3D.",
        live=False,
        check=check_optional_topics,
    )
    camera_info_topics: tuple[str, ...] = setting(
        (),
        "CameraInfo of each colour camera, one per image topic; [] = 'camera_info' beside each "
        "image topic (cam/image_raw -> cam/camera_info).",
        live=False,
        check=check_optional_topics,
    )
    depth_tolerance: float = setting(
        0.05,
        "Seconds a depth frame may be older than the colour frame it is paired with.",
        live=False,
        range=(0.0, 10.0),
    )


TRANSFORM_MISSING = ("untransformed", "skip")


@dataclass(frozen=True)
class RobotSettings:
    """What a robot team wires next: RViz, Foxglove, target frame, prompt topic
    (ros/robot_outputs.py)."""

    publish_markers: bool = setting(
        False,
        "Publish markers (visualization_msgs/MarkerArray) for RViz: a box and a label per 3D "
        "detection (needs depth_topics), ids kept with tracking, DELETEALL on a prompt change.",
        live=False,
    )
    publish_image_annotations: bool = setting(
        False,
        "Publish image_annotations (foxglove_msgs/ImageAnnotations) stamped like the input "
        "image: boxes and 'label score' texts, nested ones too, for Foxglove's image panel.",
        live=False,
    )
    target_frame: str = setting(
        "",
        "Frame that detections_3d and markers are given in (e.g. base_link, map), transformed "
        "with /tf and /tf_static at the image stamp; '' = the camera's own frame.",
        live=False,
    )
    transform_missing: str = setting(
        TRANSFORM_MISSING[0],
        "When no transform to target_frame exists at a frame's stamp: 'untransformed' publishes "
        "it in the camera frame, 'skip' publishes no 3D for it; counted in diagnostics.",
        live=False,
        choices=TRANSFORM_MISSING,
    )
    prompt_topic: str = setting(
        "",
        "std_msgs/String topic that sets the prompt like ~/set_prompt (e.g. 'prompt', for "
        "Foxglove's Publish panel); answers on ~/prompt_status. '' = none.",
        live=False,
    )
