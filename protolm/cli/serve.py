"""protolm serve: a trained model behind a local HTTP server (JSON endpoints and a page).

The port is taken before anything heavy is imported or the model loads: a second server on the
same port fails at once, in one line naming the port, instead of after the model's load.
"""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path

from protolm.config.tools import ServeConfig
from protolm.utils.errors import ConfigError
from protolm.utils.extras import require

log = logging.getLogger(__name__)


def serve_command(cfg: ServeConfig) -> None:
    require("serve", "serve.py")
    listening = take_port(cfg.host, int(cfg.port))
    import uvicorn

    from protolm.serving.classifier import load
    from protolm.serving.server import Limits, create_app

    limits = Limits(
        max_texts=cfg.max_texts,
        max_chars=cfg.max_chars,
        max_body_bytes=cfg.max_body_bytes,
        max_waiting=cfg.max_waiting,
        batch_window_ms=cfg.batch_window_ms,
        max_batch_texts=cfg.max_batch_texts,
    )
    edits = Path(cfg.output_dir) if cfg.edits else None
    app = create_app(load(cfg.model, cfg.device), limits, edits)  # loaded before the server answers
    host, port = listening.getsockname()[:2]
    log.info("serving %s on http://%s:%d", cfg.model, host, port)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.host, port=port, log_level=cfg.log_level))
    server.run(sockets=[listening])


def take_port(host: str, port: int) -> socket.socket:
    """A socket listening on ``host:port`` (port 0: a free one), or a one-line error naming the
    port. It listens at once, so that two servers started together cannot both take the port;
    a client that connects while the model loads waits for it."""
    try:
        family, kind, protocol, _, _ = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as err:
        raise ConfigError(f"host={host} is not an address of this machine ({err.strerror})") from None
    # The protocol named (IPPROTO_TCP), not left 0: asyncio switches Nagle's algorithm off only on
    # connections of such a socket; with it on, every response waits ~40 ms for a delayed ACK.
    listening = socket.socket(family, kind, protocol)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: a restart need not wait
    try:
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as err:
        listening.close()
        raise ConfigError(_refused(host, port, err)) from None
    return listening


def _refused(host: str, port: int, err: OSError) -> str:
    """Why the port cannot be had, and what to do, in one line."""
    if err.errno == errno.EADDRINUSE:
        return (
            f"port={port} on {host} is already in use (another server?): "
            "choose another with port=<number>, or port=0 for any free one"
        )
    if err.errno == errno.EACCES:
        return f"port={port} on {host} needs privileges: choose one above 1023 with port=<number>"
    return f"cannot listen on {host}:{port} ({err.strerror}): choose another with host= or port="
