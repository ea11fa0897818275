"""Launch owl_node: `ros2 launch ros2_owl owl.launch.py image_topics:=/camera/image_raw`.

Arguments (all optional):
  namespace      namespace of the node and its relative topics ("" = root)
  params_file    parameter file (default: the installed config/owl.yaml)
  image_topics   comma-separated input topics; a name ending in /compressed is a CompressedImage
  camera_names   comma-separated output namespaces, one per image topic (see README)
  prompt         tree prompt, e.g. "[a person [a face]]"
  model          OWL-ViT / OWLv2 hub id or local directory
  clip_model     CLIP hub id or local directory
  device         torch device, e.g. cuda
  backend        auto | torch | onnxruntime | tensorrt
  tracking       true: track ids across frames (see README)
  autostart      false: the node waits unconfigured for `ros2 lifecycle set` or a lifecycle
                 manager (see README "Lifecycle")
  depth_topics   comma-separated depth topics registered to the colour cameras, one per image
                 topic (3D boxes on detections_3d)
  camera_info_topics  comma-separated CameraInfo topics, one per image topic (default:
                 camera_info beside each image topic)
  target_frame, prompt_topic, publish_markers, publish_image_annotations
                 robot outputs (README "Robot outputs")
  use_sim_time   true: the node's clock follows /clock (simulation, bag replay); default false
  log_level      the node's log level: debug, info (default), warn, error, fatal
  large_images   true: give processes of this launch the Fast DDS profile with a 32 MiB
                 shared-memory segment (needed for 720p+ images between processes; the camera
                 driver needs it too: see README "Large images")
Arguments left empty keep the value from params_file.
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription
from ros2_owl.ros.dds import PROFILE_FILE, fast_dds_major, large_image_env, profile_variables

STRING_OVERRIDES = (
    "prompt",
    "model",
    "clip_model",
    "device",
    "backend",
    "target_frame",
    "prompt_topic",
)
LIST_OVERRIDES = ("image_topics", "camera_names", "depth_topics", "camera_info_topics")
BOOL_OVERRIDES = ("tracking", "autostart", "publish_markers", "publish_image_annotations")
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes", "on")


def _owl_node(context):
    """Build the node with only the overrides that were given (empty = keep params_file)."""
    overrides = {}
    for name in STRING_OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value
    for name in BOOL_OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip().lower()
        if value:
            overrides[name] = _truthy(value)
    for name in LIST_OVERRIDES:
        value = LaunchConfiguration(name).perform(context).strip()
        items = [item.strip() for item in value.split(",") if item.strip()]
        if items:
            overrides[name] = items
    overrides["use_sim_time"] = _truthy(LaunchConfiguration("use_sim_time").perform(context))
    level = LaunchConfiguration("log_level").perform(context).strip().lower() or "info"
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level {level!r}: use one of {', '.join(LOG_LEVELS)}")
    parameters = [LaunchConfiguration("params_file").perform(context), overrides]
    return [
        Node(
            package="ros2_owl",
            executable="owl_node",
            name="owl_node",
            namespace=LaunchConfiguration("namespace").perform(context),
            parameters=parameters,
            ros_arguments=["--log-level", level],
            output="screen",
            emulate_tty=True,
        )
    ]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("ros2_owl")
    arguments = [
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "owl.yaml"]),
            description="owl_node parameter file",
        ),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false", description="follow /clock (simulation)"
        ),
        DeclareLaunchArgument(
            "log_level",
            default_value="info",
            description="node log level: " + ", ".join(LOG_LEVELS),
        ),
        DeclareLaunchArgument(
            "large_images",
            default_value="false",
            description="use the Fast DDS large shared-memory profile (720p and larger images)",
        ),
    ]
    arguments += [
        DeclareLaunchArgument(
            name, default_value="", description=f"{name} (empty: from params_file)"
        )
        for name in (*LIST_OVERRIDES, *STRING_OVERRIDES, *BOOL_OVERRIDES)
    ]
    large = IfCondition(LaunchConfiguration("large_images"))
    return LaunchDescription(
        [
            *arguments,
            # Fast DDS 2 (Humble, Jazzy) and 3 (Kilted) read the profile from different variables
            *(
                SetEnvironmentVariable(
                    name, PathJoinSubstitution([share, "config", PROFILE_FILE]), condition=large
                )
                for name in profile_variables(fast_dds_major())
            ),
            SetEnvironmentVariable(
                "ROS_AUTOMATIC_DISCOVERY_RANGE",
                large_image_env("")["ROS_AUTOMATIC_DISCOVERY_RANGE"],
                condition=large,
            ),
            OpaqueFunction(function=_owl_node),
        ]
    )
