"""The ROS-free core: settings, the prompt language, image ops, the predictor and its results."""
