"""owl_node's live page (web_port): a prompt typed in the page goes through ~/set_prompt's
path, shows in the `prompt` parameter and in the next Detection2DArray over DDS; with two
cameras each page chooses which one it shows (pages start on web_camera)."""

from __future__ import annotations

import asyncio
import json
import socket
from contextlib import contextmanager
from types import SimpleNamespace

import aiohttp
import pytest
from fixtures_ros import RosHarness, RosProcess, _import_rclpy, child_env
from peers.owl_support import (
    image_msg,
    owl_node_args,
    scene,
    wait_for_log,
    wait_for_service_or_exit,
)

NS = "/owl_web_test"
NODE = f"{NS}/owl_node"
PROMPT = "[a cat, a dog]"
TIMEOUT = 60.0  # a loaded machine; every wait ends when its message arrives
CAMERAS = ("cam", "cam2")  # image topics <name>/image; outputs under <name>/
SHOWN = 1  # web_camera:=cam2: where a page starts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebNode:
    """The node process with its page, a probe node, and DDS in/out of its two cameras."""

    def __init__(self, harness: RosHarness, proc: RosProcess, port: int):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray

        self.ros, self.proc, self.port = harness, proc, port
        self.stamp = 5000
        self.images = [
            harness.publisher(Image, f"{NS}/{cam}/image", qos_profile_sensor_data)
            for cam in CAMERAS
        ]
        self.detections = [
            harness.collector(Detection2DArray, f"{NS}/{cam}/detections") for cam in CAMERAS
        ]

    def frame(self, camera: int = SHOWN):
        """Publish a new frame on `camera` (again until answered: best effort) -> its
        Detection2DArray."""
        self.stamp += 1
        stamp = self.stamp
        msg = image_msg(scene(160, 120, seed=stamp), stamp)
        return self.ros.publish_until(
            self.images[camera],
            msg,
            self.detections[camera],
            lambda m: m.header.stamp.sec == stamp,
            TIMEOUT,
        )

    def get_param(self, name: str):
        from rcl_interfaces.srv import GetParameters
        from rclpy.parameter import parameter_value_to_python

        request = GetParameters.Request(names=[name])
        response = self.ros.call(GetParameters, f"{NODE}/get_parameters", request)
        return parameter_value_to_python(response.values[0])

    def page(self, command: dict | None = None, want_frame: bool = False) -> dict:
        """Open the page's websocket; send `command` and return its answer, or the header of
        the first frame sent after a new DDS frame was processed."""

        async def talk():
            url = f"ws://127.0.0.1:{self.port}/ws"
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(url, max_msg_size=0) as ws:
                    state = json.loads((await ws.receive(timeout=TIMEOUT)).data)
                    assert state["type"] == "state"
                    if command is not None:
                        await ws.send_str(json.dumps(command))
                    else:
                        await asyncio.to_thread(self.frame)
                    while True:
                        msg = await ws.receive(timeout=TIMEOUT)
                        if msg.type == aiohttp.WSMsgType.BINARY and want_frame:
                            from ros2_owl.web.protocol import unpack_frame

                            header = unpack_frame(msg.data)[0]
                            if header["stats"]["frames"] >= 1:
                                return header
                        elif msg.type == aiohttp.WSMsgType.TEXT:
                            data = json.loads(msg.data)
                            if data["type"] == "prompt" and command is not None:
                                return data

        return asyncio.run(asyncio.wait_for(talk(), TIMEOUT * 2))


@contextmanager
def running_web_node(rclpy_context, owlvit_dir, clip_dir, tmp_path_factory, launcher=None):
    """The module's node process with the page (`launcher`: a peer run instead of owl_node)."""
    rclpy, context = rclpy_context
    _import_rclpy()
    log = tmp_path_factory.mktemp("owl_web") / "owl_node.log"
    port = _free_port()
    args = owl_node_args(
        NS,
        model=owlvit_dir,
        clip_model=clip_dir,
        prompt=f'"{PROMPT}"',
        threshold=0.0,
        max_detections=20,
        image_topics=[f"{cam}/image" for cam in CAMERAS],
        web_port=port,
        web_camera=CAMERAS[SHOWN],
    )
    if launcher is not None:
        args[1] = str(launcher)
    proc = RosProcess(args, log, child_env())
    harness = RosHarness(rclpy, context, "probe_web_node")
    try:
        wait_for_service_or_exit(harness.node, proc, f"{NODE}/set_prompt")
        wait_for_log(proc, f"live page on http://127.0.0.1:{port}/")
        yield WebNode(harness, proc, port)
    finally:
        harness.close()
        code = proc.stop()
        assert code == 0, f"owl_node exited {code} on SIGINT:\n{proc.output()[-3000:]}"


@pytest.fixture(scope="module")
def web_node(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory):
    with running_web_node(rclpy_context, tiny_owlvit_dir, tiny_clip_dir, tmp_path_factory) as n:
        yield n


def _labels(detections) -> set[str]:
    return {d.results[0].hypothesis.class_id for d in detections.detections}


def test_page_shows_the_node_frames(web_node):
    header = web_node.page(want_frame=True)
    assert header["result"]["prompt"] == PROMPT
    assert {d["label"] for d in header["result"]["detections"]} == {"a cat", "a dog"}
    assert header["stats"]["source"] == f"camera {NS}/{CAMERAS[SHOWN]}/image"


async def _next_frame(ws) -> dict:
    from ros2_owl.web.protocol import unpack_frame

    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type == aiohttp.WSMsgType.BINARY:
            return unpack_frame(msg.data)[0]
        assert msg.type == aiohttp.WSMsgType.TEXT, msg


async def _next_text(ws) -> dict:
    while True:
        msg = await ws.receive(timeout=TIMEOUT)
        if msg.type == aiohttp.WSMsgType.TEXT:
            return json.loads(msg.data)
        assert msg.type == aiohttp.WSMsgType.BINARY, msg


def test_a_page_switches_camera_and_the_other_page_keeps_its_own(web_node):
    topics = [f"{NS}/{cam}/image" for cam in CAMERAS]

    async def frame(camera: int):  # one DDS frame through the node, from this event loop
        await asyncio.to_thread(web_node.frame, camera)

    async def scenario():
        url = f"ws://127.0.0.1:{web_node.port}/ws"
        async with aiohttp.ClientSession() as session:
            switching = await session.ws_connect(url, max_msg_size=0)
            staying = await session.ws_connect(url, max_msg_size=0)
            for ws in (switching, staying):
                assert (await _next_text(ws))["type"] == "state"
                cameras = await _next_text(ws)  # two cameras: the list, web_camera chosen
                assert cameras["cameras"] == [
                    f"{c} ({t})" for c, t in zip(CAMERAS, topics, strict=True)
                ]
                assert cameras["selected"] == SHOWN
            await frame(SHOWN)
            seen = {}  # the bridge's frame count of the last frame each page got
            for ws in (switching, staying):
                header = await _next_frame(ws)  # the new one or, first, the last one shown
                assert (header["camera"], header["stats"]["source"]) == (1, f"camera {topics[1]}")
                seen[ws] = header["stats"]["frames"]

            # the answer comes after any frame already on its way: from then on, camera 0 only
            await switching.send_str(json.dumps({"cmd": "select_camera", "camera": 0}))
            assert (await _next_text(switching))["selected"] == 0
            await frame(1)  # the staying page's camera first: the switched page must skip it
            await frame(0)
            header = await _next_frame(switching)
            assert (header["camera"], header["stats"]["source"]) == (0, f"camera {topics[0]}")
            seen[switching] = header["stats"]["frames"]
            while (header := await _next_frame(staying))["stats"]["frames"] <= seen[staying]:
                assert header["camera"] == 1
            assert (header["camera"], header["stats"]["source"]) == (1, f"camera {topics[1]}")

            # a camera the node does not have, or not a number: one line, the page still served
            for bad in ({"cmd": "select_camera", "camera": 2}, {"cmd": "select_camera"}):
                await switching.send_str(json.dumps(bad))
                refusal = await _next_text(switching)
                assert refusal["type"] == "error" and "camera" in refusal["message"], refusal
            await frame(0)
            while (header := await _next_frame(switching))["stats"]["frames"] <= seen[switching]:
                assert header["camera"] == 0
            assert (header["camera"], header["stats"]["source"]) == (0, f"camera {topics[0]}")
            await switching.close()
            await staying.close()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT * 4))
    assert web_node.proc.alive()


def test_page_prompt_reaches_the_parameter_and_the_next_detections(web_node):
    assert _labels(web_node.frame()) == {"a cat", "a dog"}
    answer = web_node.page({"cmd": "set_prompt", "prompt": "[a bird, a car]"})
    assert answer["ok"], answer
    assert [x["label"] for x in answer["state"]["labels"]] == ["a bird", "a car"]
    assert web_node.get_param("prompt") == "[a bird, a car]"  # what `ros2 param get` reads
    assert _labels(web_node.frame()) == {"a bird", "a car"}

    # a refused prompt: its column, nothing changes (parameter, detections)
    answer = web_node.page({"cmd": "set_prompt", "prompt": "[a bird, a car)"})
    assert not answer["ok"] and answer["column"] == 14
    assert "unexpected ')'" in answer["message"]
    assert answer["state"]["prompt"] == "[a bird, a car]"
    assert web_node.get_param("prompt") == "[a bird, a car]"
    assert _labels(web_node.frame()) == {"a bird", "a car"}

    # a slider: the label_thresholds parameter and the next frames
    answer = web_node.page({"cmd": "set_threshold", "label": "a car", "value": 1.0})
    assert answer["ok"], answer
    assert web_node.get_param("label_thresholds") == ["a car=1"]
    assert _labels(web_node.frame()) == {"a bird"}
    assert web_node.page({"cmd": "set_prompt", "prompt": PROMPT})["ok"]
    assert web_node.get_param("prompt") == PROMPT


def test_camera_selector():
    from ros2_owl.ros.web_bridge import select_camera

    cams = [
        SimpleNamespace(prefix="front", topic="front/image", resolved_topic="/r/front/image"),
        SimpleNamespace(prefix="back", topic="back/image", resolved_topic="/r/back/image"),
    ]
    assert select_camera(cams, "") is cams[0]
    assert select_camera(cams, "1") is cams[1]
    assert select_camera(cams, "back") is cams[1]
    assert select_camera(cams, "/r/front/image") is cams[0]
    with pytest.raises(ValueError, match="names no camera .*0: front, 1: back"):
        select_camera(cams, "side")
