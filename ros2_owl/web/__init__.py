"""The live page: a camera stream with boxes, the result tree and a prompt box (aiohttp).

ROS-free: `ros2-owl serve` (web/serve.py) feeds it from a camera, video or image folder, and the
ROS node's web bridge (ros/web_bridge.py) feeds it the node's frames. Both hand the server a
PromptControl, so a prompt typed in the page is validated and swapped the way its owner does it.
"""

# the page token comes from the environment: a secret is never an option or a parameter anyone
# can read back (`serve --token` defaults to it; the node reads only it)
TOKEN_ENV = "ROS2_OWL_WEB_TOKEN"
