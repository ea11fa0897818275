"""ros2_owl: open-vocabulary tree detection (OWL-ViT / OWLv2 + CLIP) for ROS 2 and plain Python."""

# The colcon build installs generated ros2_owl.msg / ros2_owl.srv into site-packages next to a
# copy of these sources; extend_path lets a source checkout on sys.path still find them.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
