#!/usr/bin/env python3
"""The test gateway VM's command runner: PID 1 after vm-tests/guest/boot.

Reads one JSON request per line from the virtio-serial port named "xg.ctl" and answers
each with one JSON line carrying the same id:

    {"id": 7, "files": {"/tmp/config/a.yaml": "..."}, "cmd": "ip -j link", "timeout": 60}
    {"id": 7, "rc": 0, "out": "...", "err": "..."}

`files` are written first, then `cmd` runs under /bin/sh (both optional). A command
that starts a daemon redirects its output and puts it in the background (`... &`): the
runner answers when the shell exits. As PID 1 it also reaps orphans between requests.

With --listen ADDR:PORT it serves the same protocol over TCP, one client at a time:
the Vagrant gateway, driven from the peers VM (see the Vagrantfile).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import subprocess
import sys
from pathlib import Path

PORT_NAME = "xg.ctl"


def find_port() -> Path:
    for port in Path("/sys/class/virtio-ports").iterdir():
        if (port / "name").read_text().strip() == PORT_NAME:
            return Path("/dev") / port.name
    raise FileNotFoundError(f"no virtio-serial port named {PORT_NAME}")


def handle(request: dict) -> dict:
    answer = {"id": request.get("id"), "rc": 0, "out": "", "err": ""}
    try:
        for path, text in request.get("files", {}).items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        if request.get("cmd"):
            done = subprocess.run(["/bin/sh", "-c", request["cmd"]], capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=request.get("timeout", 120))
            answer.update(rc=done.returncode, out=done.stdout, err=done.stderr)
    except subprocess.TimeoutExpired as e:
        answer.update(rc=124, out=e.stdout or "", err=f"timed out after {e.timeout} s")
    except OSError as e:
        answer.update(rc=126, err=f"{type(e).__name__}: {e}")
    return answer


def reap_orphans() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(fd: int) -> None:
    """Answer requests on `fd` until it reports end of file."""
    pending = b""
    while True:
        readable, _, _ = select.select([fd], [], [], 1.0)
        reap_orphans()
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            try:
                request = json.loads(line)
            except ValueError:
                continue  # a partial line from a host that reconnected
            reply = (json.dumps(handle(request)) + "\n").encode()
            view = memoryview(reply)
            while view:
                view = view[os.write(fd, view):]


def call(address: str, command: str) -> int:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as conn:
        conn.sendall((json.dumps({"id": 1, "cmd": command, "timeout": 7200}) + "\n").encode())
        answer = json.loads(conn.makefile("rb").readline())
    sys.stdout.write(answer["out"])
    sys.stderr.write(answer["err"])
    return answer["rc"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", metavar="ADDR:PORT",
                        help="serve TCP instead of the virtio-serial port (the Vagrant gateway, "
                             "on its private management network only)")
    parser.add_argument("--call", nargs=2, metavar=("ADDR:PORT", "COMMAND"),
                        help="be the client: run COMMAND on the runner at ADDR:PORT, print its output")
    args = parser.parse_args()
    if args.call:
        sys.exit(call(*args.call))
    if args.listen:
        host, port = args.listen.rsplit(":", 1)
        with socket.create_server((host, int(port))) as server:
            while True:
                conn, _ = server.accept()
                with conn:
                    serve(conn.fileno())
    fd = os.open(find_port(), os.O_RDWR)
    while True:
        serve(fd)  # end of file: the host is not connected; wait for it
        select.select([], [], [], 0.5)


if __name__ == "__main__":
    main()
