"""Frames in and results out without ROS: images, message layouts, topic names, bags, videos."""
