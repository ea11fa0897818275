"""Shared pytest set-up: model fixtures and ROS fixtures live in their own plugin modules."""

pytest_plugins = ["fixtures_models", "fixtures_ros", "fixtures_triton"]
