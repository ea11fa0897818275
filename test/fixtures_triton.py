"""A real Triton server for the remote-backend tests (PyTriton's tritonserver in its own venv).

tools/setup_triton_server.sh builds the venv (idempotent, also run by tools/setup.sh); the tests
skip, saying why, only when it could not install the nvidia-pytriton wheel here. The server
runs tools/triton_server.py on a model repository written by ros2_owl's repository writer.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ros2_owl.backends.cache import ArtefactCache
from ros2_owl.backends.export import export_cached, on_device
from ros2_owl.backends.triton_repo import BatchingOptions, ServedEncoder, write_repository

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 240.0  # three models on a loaded 2-core machine
STOP_TIMEOUT_S = 60.0  # PyTriton's shutdown can take ~30 s
ACCESS_TOKEN = "ros2-owl-test-token"
# the gRPC metadata a restricted endpoint (statistics, ...) of the test server demands
TOKEN_HEADER = ("triton-grpc-protocol-triton-access-token", ACCESS_TOKEN)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TritonServer:
    """tools/triton_server.py as a child process group: start, wait ready, stop or kill."""

    def __init__(self, python: str, repo: Path, log: Path, restrict: str = "", extra=()):
        self.python, self.repo, self.log_path = python, repo, log
        self.restrict, self.extra = restrict, list(extra)  # extra: more triton_server.py options
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"localhost:{self.grpc_port}"

    def start(self) -> TritonServer:
        env = dict(os.environ)
        # a pyenv-built Python: the backend stub links libpython from this lib/ dir
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p
        )
        cmd = (
            [
                self.python,
                str(REPO_ROOT / "tools" / "triton_server.py"),
                "--repo",
                str(self.repo),
                "--grpc-port",
                str(self.grpc_port),
                "--http-port",
                str(self.http_port),
                "--metrics-port",
                str(self.metrics_port),
                "--threads",
                "1",
                "--access-token",
                ACCESS_TOKEN,
            ]
            + (["--restrict", self.restrict] if self.restrict else [])
            + self.extra
        )
        log = open(self.log_path, "a")  # noqa: SIM115 - owned by the process's lifetime
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, env=env, start_new_session=True
        )
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                # tritonserver shares this stdout: its partial lines can run into ours
                if f"READY {self.grpc_port} " in line:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ready.wait(0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                tail = self.log_path.read_text()[-3000:]
                raise RuntimeError(f"Triton server did not start (log {self.log_path}):\n{tail}")
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (a crashed server)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=STOP_TIMEOUT_S)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL the group."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()


@pytest.fixture(scope="session")
def triton_python() -> str:
    """The Triton server venv's python (built by tools/setup_triton_server.sh)."""
    script = REPO_ROOT / "tools" / "setup_triton_server.sh"
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=1800)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        pytest.fail(f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not lines or not Path(lines[-1]).is_file():
        pytest.skip(f"the nvidia-pytriton wheel cannot be installed here: {done.stdout.strip()}")
    return lines[-1]


QUEUE_DELAY_US = 50_000  # long enough that two clients' requests meet in one batch here


def served(name, module, model_id, preprocessor, cache, wire):
    import torch

    cpu = on_device(module, torch.device("cpu"), torch.float32)
    entry = export_cached(cpu, model_id=model_id, cache=cache, max_batch=4)
    return ServedEncoder(name, entry.path, module.image_size, tuple(module.output_names),
                         tuple(preprocessor.mean), tuple(preprocessor.std), wire, model_id)  # fmt: skip


@pytest.fixture(scope="session")
def triton_repo(tmp_path_factory, model_cache_dir, tiny_owlvit_dir, tiny_owlv2_dir, tiny_clip_dir):
    """OWL-ViT (uint8 wire), OWLv2 and CLIP (float16 wire) served side by side."""
    from ros2_owl.models.clip import ClipModel
    from ros2_owl.models.owl import OwlModel

    cache = ArtefactCache(model_cache_dir / "artefacts")
    owlvit, owlv2 = OwlModel.load(str(tiny_owlvit_dir)), OwlModel.load(str(tiny_owlv2_dir))
    clip = ClipModel.load(str(tiny_clip_dir))
    encoders = [
        served("owl_image_encoder", owlvit.encoder, str(tiny_owlvit_dir), owlvit.preprocessor,
               cache, "uint8"),
        served("owlv2_image_encoder", owlv2.encoder, str(tiny_owlv2_dir), owlv2.preprocessor,
               cache, "float16"),
        served("clip_image_encoder", clip.encoder, str(tiny_clip_dir), clip.preprocess_region,
               cache, "float16"),
    ]  # fmt: skip
    root = tmp_path_factory.mktemp("triton-models")
    opts = BatchingOptions(max_batch_size=4, max_queue_delay_us=QUEUE_DELAY_US,
                           instance_kind="KIND_CPU")  # fmt: skip
    write_repository(root, encoders, opts)
    return root


def start_server(python: str, repo: Path, log: Path, restrict: str = "", extra=()) -> TritonServer:
    return TritonServer(python, repo, log, restrict, extra).start()


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a test PKI: a CA, a server and a client certificate it signed, and a second
    CA that signed nothing here (a root the server's certificate does not chain to)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def _make_ca(folder: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2",
             "-subj", f"/CN=ros2_owl test {name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=folder)  # fmt: skip


def _make_leaf(folder: Path, name: str, usage: str) -> None:
    """A certificate for localhost signed by ca.pem (usage: serverAuth or clientAuth)."""
    ext = folder / f"{name}.ext"
    ext.write_text(f"subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage={usage}\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", "/CN=localhost",
             cwd=folder)  # fmt: skip
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name,
             cwd=folder)  # fmt: skip


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TlsFiles:
    """Real certificates made with the openssl command (skips, saying so, where it is missing)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: the TLS tests make certificates with it")
    folder = tmp_path_factory.mktemp("tls")
    _make_ca(folder, "ca")
    _make_ca(folder, "other_ca")
    _make_leaf(folder, "server", "serverAuth")
    _make_leaf(folder, "client", "clientAuth")
    return TlsFiles(*(folder / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                           "client.key", "other_ca.pem")))  # fmt: skip


__all__ = ["TOKEN_HEADER", "TlsFiles", "TritonServer", "free_port", "start_server"]
