"""protolm serve: a trained model behind a local HTTP server (JSON endpoints and a page)."""

from __future__ import annotations

from protolm.config.tools import ServeConfig
from protolm.utils.extras import require


def serve_command(cfg: ServeConfig) -> None:
    require("serve", "serve.py")
    import uvicorn

    from protolm.serving.classifier import load
    from protolm.serving.server import Limits, create_app

    limits = Limits(cfg.max_texts, cfg.max_chars, cfg.max_body_bytes, cfg.max_waiting)
    app = create_app(load(cfg.model, cfg.device), limits)  # loaded before the server listens
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level=cfg.log_level)
