"""
The third-party programs the proxy benchmarks compare against or need
(HAProxy, socat, nginx, ApacheBench): installed with apt-get when missing
and this process can (as root, as CI runs), and started on free loopback
ports.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import psutil

#: The Debian package that provides each command.
PACKAGES: Dict[str, str] = {
    "haproxy": "haproxy",
    "socat": "socat",
    "nginx": "nginx-light",
    "ab": "apache2-utils",
    "strace": "strace",
}

_updated = False


def which(command: str) -> Optional[str]:
    """
    The path of C{command}, looking in the sbin directories too (where
    Debian puts haproxy and nginx, not always on a user's PATH).
    """
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    return shutil.which(command, path=path)


def ensure(*commands: str) -> Dict[str, Optional[str]]:
    """
    The path of each command, installing the missing ones with apt-get if
    this process is root and apt-get is there; a line on standard output
    says what was installed, or why not.
    """
    global _updated
    missing = [c for c in commands if which(c) is None]
    if missing:
        packages = sorted({PACKAGES[c] for c in missing})
        if os.geteuid() == 0 and shutil.which("apt-get"):
            sys.stdout.write(f"installing {' '.join(packages)} with apt-get\n")
            quiet = subprocess.DEVNULL
            if not _updated:
                subprocess.run(
                    ["apt-get", "update", "-q"], check=False, stdout=quiet, stderr=quiet
                )
                _updated = True
            subprocess.run(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *packages,
                ],
                check=False,
                env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
                stdout=quiet,
                stderr=quiet,
            )
        else:
            sys.stdout.write(
                f"not root or no apt-get: {' '.join(packages)} not installed "
                f"(apt-get install {' '.join(packages)})\n"
            )
    return {c: which(c) for c in commands}


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def peakRss(pid: int) -> int:
    """
    The peak resident set size of process C{pid}, in bytes.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def stopProcess(process: subprocess.Popen[bytes]) -> None:
    """
    Terminate C{process} and reap it; kill it if it will not go.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait(timeout=30)


def waitListening(
    port: int, process: subprocess.Popen[bytes], seconds: float = 30
) -> None:
    """
    Wait until something accepts connections on C{port}, failing if
    C{process} ends first.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        for conn in psutil.net_connections("tcp"):
            if conn.status == "LISTEN" and conn.laddr.port == port:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


class Server:
    """
    A program listening on C{port} on 127.0.0.1, in a directory of its own.
    """

    def __init__(self, args: List[str], port: int, directory: str) -> None:
        self.port = port
        self.directory = directory
        self.process = subprocess.Popen(
            args, cwd=directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            waitListening(port, self.process)
        except RuntimeError:
            self.stop()
            raise
        self.ps = psutil.Process(self.process.pid)

    def cpu(self) -> float:
        """
        CPU seconds used so far, by the process and its children.
        """
        total = 0.0
        for process in [self.ps, *self.ps.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            total += times.children_user + times.children_system
        return total

    def peakRss(self) -> int:
        return peakRss(self.process.pid)

    def stop(self) -> None:
        stopProcess(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


HAPROXY_CONFIG = """\
global
    maxconn 4096
    nbthread 1
defaults
    mode tcp
    timeout connect 10s
    timeout client 60s
    timeout server 60s
listen bench
    bind 127.0.0.1:{port}
    {splice}
    server upstream 127.0.0.1:{upstream}
"""


#: The HAProxy options for each splice mode of L{haproxy}.
SPLICE_OPTIONS = {
    "auto": "option splice-auto",
    "always": "option splice-request\n    option splice-response",
    "never": "",
}


#: The HAProxy rows of the benchmarks, and their splice modes.
HAPROXY_ROUTES = {
    "haproxy, splice": "always",
    "haproxy, splice-auto": "auto",
    "haproxy, no splice": "never",
}


def haproxy(upstream: int, splice: str) -> Server:
    """
    HAProxy in TCP mode, one process of one thread, forwarding to
    C{upstream}; C{splice} is C{"auto"} (C{option splice-auto}, which
    splices when its heuristics think it pays), C{"always"} (C{option
    splice-request} and C{splice-response}) or C{"never"}.
    """
    directory = tempfile.mkdtemp(prefix="bench-haproxy-")
    port = freePort()
    config = os.path.join(directory, "haproxy.cfg")
    with open(config, "w") as f:
        f.write(
            HAPROXY_CONFIG.format(
                port=port,
                upstream=upstream,
                splice=SPLICE_OPTIONS[splice],
            )
        )
    command = which("haproxy")
    assert command is not None
    return Server([command, "-f", config, "-db"], port, directory)


NGINX_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
error_log {directory}/error.log;
pid {directory}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_timeout 0;
    client_body_temp_path {directory};
    proxy_temp_path {directory};
    fastcgi_temp_path {directory};
    uwsgi_temp_path {directory};
    scgi_temp_path {directory};
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        root {directory};
    }}
}}
"""


def nginx(files: Dict[str, bytes]) -> Server:
    """
    nginx serving C{files} (name to content), one process, no keep-alive.
    """
    directory = tempfile.mkdtemp(prefix="bench-nginx-")
    for name, content in files.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(content)
    port = freePort()
    config = os.path.join(directory, "nginx.conf")
    with open(config, "w") as f:
        f.write(NGINX_CONFIG.format(port=port, directory=directory))
    command = which("nginx")
    assert command is not None
    return Server([command, "-c", config, "-p", directory], port, directory)


def twistd(args: List[str], port: int) -> Server:
    """
    C{twistd -n ARGS} from this Python, logging to a file as a service
    would, listening on C{port}.
    """
    directory = tempfile.mkdtemp(prefix="bench-twistd-")
    command = [
        sys.executable,
        "-c",
        "from twisted.scripts.twistd import run; run()",
        "-n",
        "--pidfile=",
        f"--logfile={os.path.join(directory, 'twistd.log')}",
        *args,
    ]
    return Server(command, port, directory)
