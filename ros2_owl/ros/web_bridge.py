"""The live page served by owl_node itself (opt-in `web_port`), on the node's own frames.

Thin: the page and its server are ros2_owl.web's. This module only gives the server every
camera's frames (each page chooses one; `web_camera` is where pages start) and a PromptControl that changes the node's prompt through the same
method as ~/set_prompt (OwlNode.apply_prompt: validation, one atomic swap, and the `prompt` /
`label_thresholds` parameters updated), so the page has no rule of its own.
"""

from __future__ import annotations

import collections
import os
import time
from typing import Any

import numpy as np

from ros2_owl.core.results import TreeResult
from ros2_owl.web import TOKEN_ENV
from ros2_owl.web.control import PromptOutcome, PromptView, prompt_view
from ros2_owl.web.server import FrameStats, ServerConfig, WebServer

# The node imports this module, never the other way round: the node and its cameras are
# typed as Any here (an OwlNode; ros.cameras.Camera).
OwlNode = Camera = Any

__all__ = [
    "TOKEN_ENV",
    "NodePromptControl",
    "WebBridge",
    "camera_label",
    "select_camera",
    "start_web_bridge",
]


def select_camera(cameras: list[Camera], selector: str) -> Camera:
    """The camera the page shows: '' = the first; else an index, a camera name or a topic."""
    if not selector:
        return cameras[0]
    if selector.isdigit() and int(selector) < len(cameras):
        return cameras[int(selector)]
    for cam in cameras:
        if selector in (cam.prefix, cam.topic, cam.resolved_topic):
            return cam
    known = ", ".join(f"{i}: {c.prefix or c.topic}" for i, c in enumerate(cameras))
    raise ValueError(f"web_camera {selector!r} names no camera (cameras: {known})")


def camera_label(cam: Camera) -> str:
    """How the page's camera list names a camera: its output namespace and its topic."""
    return f"{cam.prefix} ({cam.resolved_topic})" if cam.prefix else cam.resolved_topic


class NodePromptControl:
    """The page's PromptControl over an OwlNode: every change is OwlNode.apply_prompt."""

    def __init__(self, node: OwlNode):
        self._node = node

    def view(self) -> PromptView:
        active = self._node.active  # one read: state and config of the same swap
        return prompt_view(active.state, active.config)

    def set_prompt(self, prompt: str) -> PromptOutcome:
        return self._outcome(prompt, self._node.apply_prompt(prompt))

    def set_label_threshold(self, label: str, value: float) -> PromptOutcome:
        node = self._node
        settings = node.settings
        overrides = {**settings.label_threshold_map(), label: float(value)}
        return self._outcome(settings.prompt, node.apply_prompt(settings.prompt, overrides))

    def _outcome(self, prompt: str, change) -> PromptOutcome:
        return PromptOutcome(change.ok, change.message, self.view(), change.column, prompt)


class WebBridge:
    """Starts the page's server for a node and feeds it every camera's processed frames."""

    def __init__(self, node: OwlNode, cameras: list[Camera], first: Camera, config: ServerConfig):
        self.camera = first  # where a new page starts
        self._index = {id(cam): i for i, cam in enumerate(cameras)}
        self.server = WebServer(
            NodePromptControl(node),
            config,
            cameras=[camera_label(cam) for cam in cameras],
            initial_camera=self._index[id(first)],
        )
        self._done = [collections.deque(maxlen=30) for _ in cameras]  # per camera
        self._frames = [0] * len(cameras)

    def start(self) -> str:
        """Bind (WebServerError when it cannot) and return the page's address."""
        self.server.start()
        return self.server.url

    def frame_done(
        self,
        camera: Camera,
        image: np.ndarray,
        result: TreeResult,
        received: float,
        inference_ms: float,
    ) -> None:
        """Inference thread, after publishing: O(1), the server does the rest on its threads."""
        index = self._index.get(id(camera))
        if index is None:
            return
        now, done = time.monotonic(), self._done[index]
        self._frames[index] += 1
        done.append(now)
        span = done[-1] - done[0]
        fps = (len(done) - 1) / span if span > 0 else 0.0
        stats = FrameStats(
            fps=round(fps, 2),
            latency_ms=round((now - received) * 1000.0, 1),
            inference_ms=round(inference_ms, 1),
            frames=self._frames[index],
            dropped=camera.stats.dropped,
            source=f"camera {camera.resolved_topic}",
        )
        self.server.publish(image, result, stats, camera=index)

    def stop(self) -> None:
        self.server.stop()


def start_web_bridge(node: OwlNode, settings) -> WebBridge:
    """The node's page on web_host:web_port, starting on web_camera (ValueError/WebServerError)."""
    camera = select_camera(node.cameras, settings.web_camera)
    config = ServerConfig(
        host=settings.web_host,
        port=settings.web_port,
        token=os.environ.get(TOKEN_ENV) or None,
        max_viewers=settings.web_max_viewers,
    )
    bridge = WebBridge(node, node.cameras, camera, config)
    bridge.start()
    return bridge
