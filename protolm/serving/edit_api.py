"""Edits through the server (issue: debugging through prototypes): ``POST /edit`` runs one edit round
on the served model (:class:`protolm.serving.editing.Editor`) and the page shows its report.

Only for a client on the loopback interface, and only with the server's edit token (on its page and
in its log): a page from elsewhere that posts a form to the local server cannot edit its model.
Each edit writes ``<out_dir>/edits/<n>-<kind>/`` (``edited.ckpt``, ``edit_report.json``,
``edit_report.md``), never over an earlier one; the model the server loaded stays on disk as it was.
While an edit runs the model is held: requests wait for it and then see the edited model.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from protolm.prototypes.edit_report import markdown
from protolm.utils.errors import EditError, ProtoLMError
from protolm.utils.files import write_json

KINDS = ("remove", "replace", "add", "forbid", "allow")


@dataclass
class EditSession:
    """The served model's edits: the editor (made at the first edit: it reads the training data),
    where edits are written, the token a request must carry, and the reports so far."""

    clf: object
    out_dir: Path
    lock: threading.Lock
    token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    reports: list[dict] = field(default_factory=list)
    _editor: object = None

    def editor(self):
        if self._editor is None:
            from protolm.serving.editing import Editor

            self._editor = Editor(self.clf)
        return self._editor

    def run(self, fields: dict) -> dict:
        """One edit round as ``fields`` ask (see :func:`edit_of`); its report, with where it was written."""
        with self.lock:
            editor = self.editor()
            kind, call = edit_of(editor, fields)
            report = call()
            where = self.out_dir / "edits" / f"{len(self.reports) + 1:03d}-{kind}"
            where.mkdir(parents=True, exist_ok=False)
            editor.save(where / "edited.ckpt")
            found = report.to_dict() if hasattr(report, "to_dict") else {"edit": report}
            write_json(where / "edit_report.json", found)
            if hasattr(report, "to_dict"):
                (where / "edit_report.md").write_text(markdown(report), encoding="utf-8")
            self.reports.append(found | {"written_to": str(where)})
            return self.reports[-1]


def _ints(value) -> list[int]:
    values = value if isinstance(value, list) else str(value).replace(",", " ").split()
    try:
        return [int(v) for v in values]
    except ValueError:
        raise EditError(f"prototype ids must be whole numbers, got {value!r}") from None


def _texts(value) -> list[str]:
    values = value if isinstance(value, list) else str(value or "").splitlines()
    return [v.strip() for v in values if v and v.strip()]


def _one_int(fields: dict, key: str) -> int:
    found = _ints(fields.get(key, ""))
    if len(found) != 1:
        raise EditError(f"replace needs one {key} id, got {fields.get(key)!r}")
    return found[0]


def edit_of(editor, fields: dict):
    """(kind, the edit as a call) from a request's fields; a one-line error for a bad one."""
    kind = fields.get("kind")
    if kind not in KINDS:
        raise EditError(f"kind={kind!r} is not one of: {', '.join(KINDS)}")
    if kind in ("remove", "allow"):
        ids = _ints(fields.get("prototypes", ""))
        return kind, (lambda: editor.remove(ids)) if kind == "remove" else (lambda: editor.allow(ids))
    if kind == "replace":
        prototype, example = _one_int(fields, "prototype"), _one_int(fields, "example")
        return kind, lambda: editor.replace(prototype, example=example)
    if kind == "add":
        return kind, lambda: editor.add(_texts(fields.get("texts")), fields.get("class"))
    from protolm.config.tools import ForbidConfig

    tune = str(fields.get("tune_encoder", "")).lower() in ("1", "true", "on", "yes")
    phrases = fields.get("phrases", "")
    phrases = phrases if isinstance(phrases, list) else [p.strip() for p in str(phrases).split(",")]
    settings = ForbidConfig(tune_encoder=tune)
    return kind, lambda: editor.forbid(phrases, _texts(fields.get("texts")), settings)


async def _fields(request: Request) -> tuple[dict, bool]:
    """The request's fields and whether they came from the page's form."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(body or b"{}"), False
    return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(body.decode("utf-8")).items()}, True


def _loopback(request: Request) -> bool:
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except (AttributeError, ValueError):
        return request.client is not None and request.client.host in ("testclient", "localhost")


def install_edit_api(app: FastAPI, session: EditSession) -> None:
    @app.post("/edit")
    async def edit(request: Request):
        if not _loopback(request):
            return JSONResponse({"error": "edits are only taken from this machine (loopback)"}, status_code=403)
        fields, from_form = await _fields(request)
        if fields.get("token") != session.token and request.headers.get("x-protolm-edit-token") != session.token:
            return JSONResponse({"error": "this edit does not carry the server's edit token (see its page)"}, 403)
        try:
            found = await asyncio.to_thread(session.run, fields)
        except ProtoLMError as err:
            if from_form:
                return RedirectResponse(f"/?edit_error={_quoted(str(err))}", status_code=303)
            raise
        if from_form:
            return RedirectResponse(f"/?report={len(session.reports)}#edit-report", status_code=303)
        return found


def _quoted(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:500])
