"""The live page in a real browser: Debian's chromium driven by Playwright (no downloaded
browser). Serves a short video with tiny random models and uses the page as a person would."""

from __future__ import annotations

import os
import shutil
import threading

import pytest
from fixtures_web import sample_frames, serving, write_synthetic_video

CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed here (tools/setup.sh installs it as root: "
    "apt-get install -y --no-install-recommends chromium)",
)
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 60_000  # a loaded 2-core machine; every wait ends as soon as its condition holds


@pytest.fixture
def browser_page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


@pytest.fixture
def served_video(tmp_path, tiny_owlvit_dir, tiny_clip_dir):
    from ros2_owl.core.predictor import PredictorConfig, TreePredictor
    from ros2_owl.web.server import ServerConfig
    from ros2_owl.web.sources import open_source

    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir))
    video = write_synthetic_video(tmp_path / "clip.mp4")
    source = open_source(video=str(video), fps=8)
    config = PredictorConfig(threshold=0.0)
    server_config = ServerConfig(port=0, token="s3cret token")
    with serving(predictor, "[a cat (sleeping, awake), a dog]", source, server_config, config) as (
        server,
        _control,
        _loop,
    ):
        yield server


def _tree_labels(page) -> set[str]:
    return set(page.eval_on_selector_all("#tree li.det", "els => els.map(e => e.dataset.label)"))


def _wait_tree_after(page, seq: int, condition: str) -> None:
    """Wait for a frame newer than `seq` whose tree satisfies `condition` (JS, `labels`)."""
    page.wait_for_function(
        f"""() => {{
            const tree = document.getElementById('tree');
            if (Number(tree.dataset.seq || 0) <= {seq}) return false;
            const labels = [...tree.querySelectorAll('li.det')].map(e => e.dataset.label);
            return {condition};
        }}"""
    )


def _seq(page) -> int:
    return int(page.get_attribute("#tree", "data-seq") or 0)


def test_page_stream_prompt_error_slider_screenshot(browser_page, served_video, tmp_path):
    page = browser_page
    page.goto(served_video.url)  # the url carries ?token=...

    # frames arrive: the image element is updated again and again
    page.wait_for_function("() => Number(document.getElementById('frame').dataset.shown) >= 5")
    assert page.input_value("#prompt") == "[a cat (sleeping, awake), a dog]"
    assert {"a cat", "a dog"} <= _tree_labels(page)
    assert page.locator("#tree .bar[data-label='sleeping']").count() >= 1  # classification bars
    assert float(page.inner_text("#fps")) > 0
    assert page.locator("#camera-choice").is_hidden()  # one source: nothing to choose

    # a valid prompt: its labels appear in the tree of the following frames
    page.fill("#prompt", "[a bird, a car (red, blue)]")
    seq = _seq(page)
    page.click("#apply")
    _wait_tree_after(page, seq, "labels.includes('a bird') && !labels.includes('a cat')")
    assert _tree_labels(page) <= {"a bird", "a car"}
    sliders = page.eval_on_selector_all(
        "#sliders input[type=range]", "e => e.map(x => x.dataset.label)"
    )
    assert sliders == ["a bird", "a car"]

    # a bad prompt: the error with its column, the old prompt keeps running
    page.fill("#prompt", "[a bird, a car)")
    page.click("#apply")
    page.wait_for_selector("#prompt-error:not([hidden])")
    assert "column 14" in page.inner_text("#error-where")
    assert page.inner_text("#error-where mark") == ")"
    assert "unexpected ')'" in page.inner_text("#error-message")
    assert "invalid" in (page.get_attribute("#prompt", "class") or "")
    seq = _seq(page)
    _wait_tree_after(page, seq + 1, "labels.includes('a bird')")
    assert _tree_labels(page) <= {"a bird", "a car"}

    # a slider: 'a car' at 1.0 removes cars from the next frames, at 0 brings them back
    car = page.locator("#sliders input[data-label='a car']")
    car.focus()
    page.keyboard.press("End")
    page.wait_for_function(
        "() => document.querySelector(\"#sliders input[data-label='a car']\").value === '1'"
    )
    seq = _seq(page)
    _wait_tree_after(page, seq + 1, "labels.includes('a bird') && !labels.includes('a car')")
    car = page.locator("#sliders input[data-label='a car']")  # rebuilt with the new state
    car.focus()
    page.keyboard.press("Home")
    seq = _seq(page)
    _wait_tree_after(page, seq + 1, "labels.includes('a car')")

    # the screenshot: a readable prompt, then a refused edit of it with its column marked
    page.fill("#prompt", "[a cup@0.52 (full, empty), a spoon@0.5] (indoors, outdoors)")
    seq = _seq(page)
    page.click("#apply")
    _wait_tree_after(page, seq, "!labels.includes('a bird') && !labels.includes('a car')")
    page.fill("#prompt", "[a cup@0.52 (full, empty), a spoon@5] (indoors, outdoors)")
    page.click("#apply")
    page.wait_for_function(
        "() => document.getElementById('error-message').textContent.includes('out of range')"
    )
    page.wait_for_function("() => Number(document.getElementById('frame').dataset.shown) >= 10")
    shot = tmp_path / "live_page.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    readme_copy = os.environ.get("ROS2_OWL_SCREENSHOT")  # how docs/live_page.png was made
    if readme_copy:
        from PIL import Image

        with Image.open(shot) as image:  # the page's upper part, 128 colours: a small PNG
            small = image.convert("RGB").crop((0, 0, 1280, 660)).quantize(128)
            small.save(readme_copy, optimize=True)


@pytest.fixture
def two_cameras(tiny_owlvit_dir, tiny_clip_dir):
    """A server with two cameras (as the node's), each fed its own frames at 8 fps."""
    from ros2_owl.core.predictor import PredictorConfig, TreePredictor
    from ros2_owl.web.control import PredictorPromptControl
    from ros2_owl.web.server import FrameStats, ServerConfig, WebServer

    predictor = TreePredictor.from_pretrained(str(tiny_owlvit_dir), str(tiny_clip_dir))
    control = PredictorPromptControl(predictor, "[a cat, a dog]", PredictorConfig(threshold=0.0))
    names = ["front (/robot/front/image)", "back (/robot/back/image)"]
    server = WebServer(control, ServerConfig(port=0), cameras=names, initial_camera=0)
    frames = [sample_frames(8), sample_frames(16)[8:]]  # different pictures per camera
    stop = threading.Event()

    def produce() -> None:
        count = 0
        while not stop.wait(0.125):  # the cameras' rate, not synchronisation
            count += 1
            for camera, topic in enumerate(("/robot/front/image", "/robot/back/image")):
                image = frames[camera][count % 8]
                result = predictor.predict(image, control.state, control.config)
                stats = FrameStats(1.0, 1.0, 1.0, count, 0, f"camera {topic}")
                server.publish(image, result, stats, camera=camera)

    server.start()
    thread = threading.Thread(target=produce, name="test_two_cameras", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=10)
        server.stop()


def _wait_source(page, source: str, camera: int) -> None:
    """Wait until the page shows `camera`'s frames: the source line and a loaded image."""
    page.wait_for_function(
        f"""() => document.getElementById('source').textContent === {source!r}
              && document.getElementById('frame').dataset.camera === '{camera}'"""
    )


def test_page_camera_selector_switches_this_page_only(browser_page, two_cameras):
    page = browser_page
    page.goto(two_cameras.url)
    page.wait_for_selector("#camera-choice:not([hidden])")
    options = page.eval_on_selector_all("#camera option", "os => os.map(o => o.textContent)")
    assert options == ["front (/robot/front/image)", "back (/robot/back/image)"]
    assert page.input_value("#camera") == "0"
    _wait_source(page, "camera /robot/front/image", 0)

    page.select_option("#camera", "1")
    _wait_source(page, "camera /robot/back/image", 1)
    shown = int(page.get_attribute("#frame", "data-shown"))
    page.wait_for_function(  # it keeps streaming the back camera
        f"() => Number(document.getElementById('frame').dataset.shown) >= {shown + 3}"
    )
    assert page.inner_text("#source") == "camera /robot/back/image"

    # a reconnect: the server starts the new socket on its default camera, the page asks again
    page.evaluate(
        """() => { page.ws.close(); document.getElementById('source').textContent = '';
                   document.getElementById('frame').dataset.camera = ''; }"""
    )
    _wait_source(page, "camera /robot/back/image", 1)
    assert page.input_value("#camera") == "1"

    other = page.context.browser.new_page()  # another viewer starts on the initial camera
    other.set_default_timeout(WAIT_MS)
    other.goto(two_cameras.url)
    _wait_source(other, "camera /robot/front/image", 0)
    assert page.input_value("#camera") == "1"
    assert page.inner_text("#source") == "camera /robot/back/image"

    page.select_option("#camera", "0")
    _wait_source(page, "camera /robot/front/image", 0)
    assert two_cameras.counters().refused_messages == 0
