"""pip install . gives the ROS-free core (prompt, predictor, backends, `ros2-owl` CLI).

ROS users build the same sources with colcon (CMakeLists.txt): that path also generates the
ros2_owl.msg / ros2_owl.srv interfaces, which pip cannot build.
"""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="ros2-owl",
    version="0.1.0",
    description="Open-vocabulary tree detection (OWL-ViT / OWLv2 + CLIP), with a ROS 2 node",
    long_description=(Path(__file__).parent / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["ros2_owl", "ros2_owl.*"]),
    # the live page's HTML/JS/CSS ship inside the package (no build step, no CDN)
    package_data={
        "ros2_owl.web": ["static/*.html", "static/*.js", "static/*.css"],
        # the vision_msgs definitions `ros2-owl bag` writes with, for machines without ROS
        "ros2_owl.io": ["interfaces/vision_msgs/msg/*.msg"],
    },
    install_requires=[
        "numpy>=1.24",
        "pillow>=9",
        # Install torch yourself first if you need a specific (CPU or CUDA) build.
        "torch>=2.1",
        "transformers>=5.0",
        "safetensors",
    ],
    extras_require={
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "owlv2": ["scipy"],
        # `ros2-owl serve` and the node's web_port: the page's server, camera/video input
        "web": ["aiohttp", "av"],
        # ros2-owl bag / video
        "recordings": ["rosbags>=0.11", "mcap>=1.2", "av>=14"],
        # colcon with new setuptools ignores tests_require: declare test deps as an extra.
        "test": ["pytest", "hypothesis", "ruff", "playwright"],
    },
    # ros2_owl's message definitions `ros2-owl bag` writes with, for machines without ROS
    # (ros2_owl/io/bag_messages.py looks for them under <prefix>/share/ros2_owl/interfaces)
    data_files=[
        ("share/ros2_owl/interfaces/ros2_owl/msg", sorted(glob("msg/*.msg"))),
    ],
    entry_points={"console_scripts": ["ros2-owl = ros2_owl.cli:main"]},
)
