"""The ROS 2 layer: message conversion, parameters, diagnostics and the OwlNode (needs rclpy)."""
