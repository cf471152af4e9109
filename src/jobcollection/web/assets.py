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
.status.paused{background:#fbe9c6}.status.ready{background:#fff3c4}
#progress progress{width:24em;vertical-align:middle}
.graph-wrap{overflow:auto;max-height:75vh;background:#fff;border:1px solid #d5d9de}
.graph{display:block}.graph text{font:12px system-ui,sans-serif;fill:#1d232a}
.graph text.detail{font-size:11px;fill:#5b6570}
.graph rect.box,.graph rect.stack{fill:#f6f7f9;stroke:#8a939c}
.graph .completed rect.box{fill:#d4f0d9;stroke:#3c9a5f}
.graph .failed rect.box{fill:#f8d4d4;stroke:#d0453b}
.graph .running rect.box{fill:#d4e4f8;stroke:#3b6fd0}
.graph .ready rect.box{fill:#fff3c4;stroke:#b8962e}
.graph .paused rect.box{fill:#fbe9c6;stroke:#c88a1a}
.graph .cancelled rect.box{fill:#eee;stroke:#999;stroke-dasharray:4 2}
.graph a:hover rect.box{stroke-width:2.5}
.graph rect.bar{fill:#c9ced4}.graph rect.bar.completed{fill:#3c9a5f}
.graph rect.bar.failed{fill:#d0453b}.graph rect.bar.running{fill:#3b6fd0}
.graph rect.bar.ready{fill:#b8962e}.graph rect.bar.paused{fill:#c88a1a}
.graph .edge path{fill:none;stroke:#8a939c;stroke-width:1.3}
.graph .edge.policy-ignore path,.graph .edge.policy-remove path,.graph .edge.dropped path{
stroke-dasharray:5 3}
.graph .edge.policy-fail path{stroke:#d0453b}
.graph .edge-label{font-size:11px;fill:#5b6570;text-anchor:middle}
.graph marker path{fill:#8a939c}
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
