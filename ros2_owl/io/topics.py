"""Where a camera's outputs go: the topic naming shared by the node and `ros2-owl bag`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "OUTPUTS",
    "OUTPUT_QOS",
    "OUTPUT_TYPES",
    "OutputQos",
    "is_compressed_topic",
    "output_prefixes",
    "output_topic",
    "resolve_topic",
]

# Every output topic of one camera and its message type (README "Topics").
OUTPUT_TYPES: dict[str, str] = {
    "detections": "vision_msgs/msg/Detection2DArray",
    "tree": "ros2_owl/msg/TreeDetectionArray",
    "classification": "vision_msgs/msg/Classification",
    "label_info": "vision_msgs/msg/LabelInfo",
    "annotated_image": "sensor_msgs/msg/Image",
}
OUTPUTS = tuple(OUTPUT_TYPES)


@dataclass(frozen=True)
class OutputQos:
    """The QoS an output is published with (always reliable, keep last `depth`)."""

    depth: int
    transient_local: bool = False


# README "Topics": label_info is latched so late subscribers (and bag replays) get it.
OUTPUT_QOS: dict[str, OutputQos] = {
    "detections": OutputQos(5),
    "tree": OutputQos(5),
    "classification": OutputQos(5),
    "label_info": OutputQos(1, transient_local=True),
    "annotated_image": OutputQos(2),
}


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
