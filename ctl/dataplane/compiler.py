"""Compiling in a short-lived child process, so clang/LLVM never enters the agent.

bcc links clang and LLVM into the process that imports it: 86 MiB of code and about
40 MiB of heap stay resident for the process's life after one compile. The agent
instead runs `python -m ctl.dataplane.compiler`, which compiles and loads the programs
(creating or reusing the pinned maps and running the ABI check, exactly as in-process),
records them in the program cache when the spec names one (progcache.py), sends the
three program fds back over a socketpair (SCM_RIGHTS) and exits. A failure
comes back as the same exception the in-process compile raises, after the child's
stderr (bcc's and clang's messages) is passed on to ours, where an in-process compile
would have printed it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from . import abicheck, headers, loader, progcache

log = logging.getLogger(__name__)

# The errors a user can act on, by name: re-raised in the agent as themselves.
_ERRORS: dict[str, type[Exception]] = {
    cls.__name__: cls for cls in (loader.CompileError, loader.PinnedMapMismatch, abicheck.AbiMismatch,
                                  headers.NoKernelHeaders)
}
_FDS = 3  # xdp, tc ingress, tc egress
_STDERR_TAIL = 8000  # characters of a successful compile's warnings kept in the debug log


def spec_argument(spec: loader.DataplaneSpec) -> str:
    cache = None if spec.program_cache is None else str(spec.program_cache)
    return json.dumps({**asdict(spec), "pin_dir": str(spec.pin_dir), "program_cache": cache})


def _spec_from_argument(text: str) -> loader.DataplaneSpec:
    fields = json.loads(text)
    cache = fields.get("program_cache")
    return loader.DataplaneSpec(**{**fields, "pin_dir": Path(fields["pin_dir"]),
                                   "program_cache": None if cache is None else Path(cache)})


def compile_in_child(spec: loader.DataplaneSpec, build: str = "") -> tuple[int, int, int]:
    """(xdp, tc ingress, tc egress) fds of freshly compiled programs, owned by the caller;
    recorded in spec.program_cache under `build` (the caller's digest) if both are given."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with ours:
        with theirs:
            child = subprocess.Popen(
                [sys.executable, "-m", "ctl.dataplane.compiler", str(theirs.fileno()), spec_argument(spec), build],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, text=True, errors="replace")
        # The reply waits in the socket after the child exits (fds in flight stay open), so
        # reading stderr to the end first cannot deadlock on a full pipe.
        _, stderr = child.communicate()
        ours.setblocking(False)
        try:
            message, fds, _, _ = socket.recv_fds(ours, 1 << 16, _FDS)
        except BlockingIOError:
            message, fds = b"", []
    said = stderr.strip()
    reply = json.loads(message) if message else {}
    if reply.get("ok") and len(fds) == _FDS:
        if said:
            log.debug("compiler said: %s", said[-_STDERR_TAIL:])
        if reply.get("cache_error"):
            log.warning("could not write the program cache entry: %s (the next start without pinned programs "
                        "compiles again)", reply["cache_error"], extra={"event": "program_cache_unwritten"})
        elif reply.get("cached"):
            log.info("recorded the programs in the program cache",
                     extra={"event": "program_cache_written", "file": reply["cached"]})
        return fds[0], fds[1], fds[2]
    for fd in fds:
        os.close(fd)
    if said:
        print(said, file=sys.stderr, flush=True)
    error = _ERRORS.get(reply.get("error", ""), loader.CompileError)
    how = (f"was killed by signal {-child.returncode}" if child.returncode < 0
           else f"exited with status {child.returncode}")
    raise error(reply.get("message") or f"the compiler process ({sys.executable} -m ctl.dataplane.compiler) "
                                        f"{how} without an answer (bcc crashes on some compile errors, "
                                        f"e.g. unusable kernel headers); its messages are above")


def _record(spec: loader.DataplaneSpec, programs: loader.Programs, build: str) -> dict[str, str]:
    """Writes the cache entry; what the reply says about it. Failing to write is no reason
    to fail the start: the programs are loaded."""
    if spec.program_cache is None or not build:
        return {}
    try:
        return {"cached": str(progcache.write(spec.program_cache, progcache.record(spec, programs, build)))}
    except (OSError, progcache.Unrecordable) as error:
        return {"cache_error": f"{spec.program_cache}: {error}"}


def _serve(sock: socket.socket, spec: loader.DataplaneSpec, build: str) -> int:
    try:
        programs = loader.compile_programs(spec)
    except tuple(_ERRORS.values()) as error:
        sys.stderr.flush()
        sock.send(json.dumps({"error": type(error).__name__, "message": str(error)}).encode())
        return 1
    socket.send_fds(sock, [json.dumps({"ok": True, **_record(spec, programs, build)}).encode()],
                    [programs.xdp_fd, programs.tc_ingress_fd, programs.tc_egress_fd])
    return 0


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    fd, spec_text, build = int(argv[0]), argv[1], argv[2] if len(argv) > 2 else ""
    with socket.socket(fileno=fd) as sock:
        return _serve(sock, _spec_from_argument(spec_text), build)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
