"""The dashboard's stylesheet and script, served by the app itself at `/static/NAME` (no
external assets, and no inline ones: the Content-Security-Policy allows neither).

Pages link them with `?v=` and the first characters of their sha256 (`url_of`), so that a
browser may keep them (`Cache-Control: immutable`) and still fetches a new version at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Asset:
    """A static file: its text and media type, and the version its URLs carry."""

    text: str
    media_type: str
    version: str = field(init=False)

    def __post_init__(self) -> None:
        digest = hashlib.sha256(self.text.encode()).hexdigest()[:16]
        object.__setattr__(self, "version", digest)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
header{background:#1d232a;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header .who{margin-left:auto;opacity:.8}
main{padding:1em 1.2em;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:.5em 0}
td,th{border:1px solid #d5d9de;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #d5d9de;padding:.6em;overflow:auto;max-height:30em}
.status{padding:0 .4em;border-radius:3px;background:#e4e7eb}
.status.failed{background:#f8d4d4}.status.completed{background:#d4f0d9}
.status.running{background:#d4e4f8}.status.cancelled{background:#eee}
form.inline{display:inline}button{margin:.1em}
td.claims.paused{background:#fbe9c6}
.chart rect.completed{fill:#3c9a5f}.chart rect.failed{fill:#d0453b}
.chart line{stroke:#999}.chart{background:#fff;border:1px solid #d5d9de}
.note{color:#5b6570}.error{color:#a8231a}
fieldset{border:1px solid #d5d9de;background:#fff}
"""

LIVE_SCRIPT = """
(function(){
  var live=document.getElementById('live'); if(!live||!window.EventSource) return;
  var source=new EventSource(live.dataset.events);
  source.addEventListener('change',function(ev){
    fetch(live.dataset.fragment,{credentials:'same-origin'}).then(function(r){
      return r.ok?r.text():null;
    }).then(function(html){
      if(html===null) return;
      live.innerHTML=html; live.dataset.event=ev.lastEventId;
    });
  });
})();
"""
"""Reload the `#live` part of a page (its `data-fragment` URL) on each `change` event of its
`data-events` stream; `data-event` names the last event applied (tests wait on it)."""

ASSETS = {
    "dashboard.css": Asset(CSS, "text/css; charset=utf-8"),
    "live.js": Asset(LIVE_SCRIPT, "text/javascript; charset=utf-8"),
}
"""The files under `/static/`, by name: nothing else is served there."""


def url_of(base: str, name: str) -> str:
    """The URL of an asset of the dashboard at `base`, with its version."""
    return f"{base}/static/{name}?v={ASSETS[name].version}"
