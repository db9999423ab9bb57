"""A TLS dial from the client namespace: TCP connect, then a handshake with the given SNI
(certificates not checked: this tells whether the gateway passes the handshake through).

    python -m lab.tlsclient --addr A --port P --sni NAME

Prints {"tcp": "connected"|error, "tls": "handshake"|"closed"|"reset"|"timeout"|error}.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys


def dial(addr: str, port: int, sni: str, timeout: float) -> dict[str, str]:
    try:
        sock = socket.create_connection((addr, port), timeout=timeout)
    except OSError as error:
        return {"tcp": repr(error), "tls": "not tried"}
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with context.wrap_socket(sock, server_hostname=sni):
            return {"tcp": "connected", "tls": "handshake"}
    except ConnectionResetError:
        return {"tcp": "connected", "tls": "reset"}
    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return {"tcp": "connected", "tls": "closed"}
    except ssl.SSLError as error:
        return {"tcp": "connected", "tls": "closed" if "EOF" in str(error) else repr(error)}
    except socket.timeout:
        return {"tcp": "connected", "tls": "timeout"}
    except OSError as error:
        return {"tcp": "connected", "tls": repr(error)}
    finally:
        sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sni", required=True)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    print(json.dumps(dial(args.addr, args.port, args.sni, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
