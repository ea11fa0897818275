"""Where a camera's outputs go: the topic naming shared by the node and `ros2-owl bag`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OUTPUT_TOPICS",
    "OutputTopic",
    "camera_outputs",
    "is_compressed_topic",
    "output_prefixes",
    "output_topic",
    "resolve_topic",
]


@dataclass(frozen=True)
class OutputTopic:
    """One output of a camera: its message type and QoS (always reliable, keep last `depth`)."""

    type: str  # "package/msg/Name"
    depth: int
    transient_local: bool = False  # latched: late subscribers (and bag replays) get it
    needs_depth: bool = False  # only with depth_topics (3D boxes)


# Every output topic of one camera (README "Topics"): the node's publishers and the bag's
# connections both come from this table.
OUTPUT_TOPICS: dict[str, OutputTopic] = {
    "detections": OutputTopic("vision_msgs/msg/Detection2DArray", 5),
    "tree": OutputTopic("ros2_owl/msg/TreeDetectionArray", 5),
    "classification": OutputTopic("vision_msgs/msg/Classification", 5),
    "label_info": OutputTopic("vision_msgs/msg/LabelInfo", 1, transient_local=True),
    "annotated_image": OutputTopic("sensor_msgs/msg/Image", 2),
    "detections_3d": OutputTopic("vision_msgs/msg/Detection3DArray", 5, needs_depth=True),
    # mono16 label image: pixel = TreeDetection.id whose mask covers it (prompts with {mask})
    "masks": OutputTopic("sensor_msgs/msg/Image", 5),
}


def camera_outputs(with_depth: bool) -> dict[str, OutputTopic]:
    """The outputs a camera has (detections_3d only `with_depth`)."""
    return {n: o for n, o in OUTPUT_TOPICS.items() if with_depth or not o.needs_depth}


def is_compressed_topic(topic: str) -> bool:
    """image_transport's naming: `<base>/compressed` carries sensor_msgs/CompressedImage."""
    return topic.rstrip("/").endswith("/compressed") or topic.rstrip("/") == "compressed"


def output_prefixes(topics: tuple[str, ...], names: tuple[str, ...]) -> list[str]:
    """Where each camera's outputs go (relative to the node namespace unless absolute).

    camera_names win; one camera publishes directly in the node namespace; several cameras
    publish in the namespace of their input topic ('front/image_raw' -> 'front/detections').
    """
    if names:
        if len(names) != len(topics):
            raise ValueError(
                f"camera_names has {len(names)} entries but image_topics has {len(topics)}"
            )
        prefixes = [n.strip("/") if not n.startswith("/") else n.rstrip("/") for n in names]
    elif len(topics) == 1:
        return [""]
    else:
        prefixes = []
        for topic in topics:
            base = topic.rstrip("/")
            if is_compressed_topic(base):
                base = base[: -len("compressed")].rstrip("/")
            prefixes.append(base.rpartition("/")[0])
    if len(set(prefixes)) != len(prefixes) or (len(prefixes) > 1 and "" in prefixes):
        raise ValueError(
            f"image topics {list(topics)} give output namespaces {prefixes}, which are not "
            "distinct: set the camera_names parameter (one output namespace per topic)"
        )
    return prefixes


def output_topic(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name


def resolve_topic(namespace: str, prefix: str, name: str) -> str:
    """The absolute topic of output `name` of a camera with `prefix`, as a node in `namespace`
    publishes it (absolute prefixes ignore the namespace)."""
    relative = output_topic(prefix, name)
    if relative.startswith("/"):
        return relative
    return "/" + "/".join(p for p in (namespace.strip("/"), relative) if p)
