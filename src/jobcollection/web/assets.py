"""The dashboard's stylesheet and scripts, served by the app itself at `/static/NAME` (no
external assets, and no inline ones: the Content-Security-Policy allows neither).

The charts are drawn by uPlot (npm `uplot` 1.6.32, MIT, vendored in vendor/ with its licence
header and LICENSE): 50 KB minified with no dependencies, canvas-drawn time series with axes,
legends and log scales, fast with thousands of points, and it sets styles only through the
CSSOM (no `style` attributes or elements), which the CSP allows. Chart.js is four times the
size, and htmx adds nothing the live script does not already do here.

Pages link them with `?v=` and the first characters of their sha256 (`url_of`), so that a
browser may keep them (`Cache-Control: immutable`) and still fetches a new version at once."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources


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
:root{color-scheme:light;--bg:#f6f7f9;--fg:#1d232a;--muted:#5b6570;--panel:#fff;--line:#d5d9de;
--head:#1d232a;--head-fg:#fff;--link:#1f5fbf;--ok:#d4f0d9;--bad:#f8d4d4;--run:#d4e4f8;
--wait:#fff3c4;--hold:#fbe9c6;--off:#eee;--err:#a8231a;--grid:#e4e7eb;--focus:#1f5fbf}
:root[data-theme=dark]{color-scheme:dark;--bg:#14181d;--fg:#e3e7ec;--muted:#9aa4ae;
--panel:#1d232a;--line:#38414b;--head:#0b0e11;--head-fg:#e3e7ec;--link:#7fb0ff;--ok:#1f4a2c;
--bad:#5a2323;--run:#1f3658;--wait:#4d4318;--hold:#523d14;--off:#2c333b;--err:#ff8f85;
--grid:#2c333b;--focus:#7fb0ff}
@media (prefers-color-scheme:dark){:root:not([data-theme=light]){color-scheme:dark;
--bg:#14181d;--fg:#e3e7ec;--muted:#9aa4ae;--panel:#1d232a;--line:#38414b;--head:#0b0e11;
--head-fg:#e3e7ec;--link:#7fb0ff;--ok:#1f4a2c;--bad:#5a2323;--run:#1f3658;--wait:#4d4318;
--hold:#523d14;--off:#2c333b;--err:#ff8f85;--grid:#2c333b;--focus:#7fb0ff}}
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:var(--fg);background:var(--bg)}
a{color:var(--link)}
header{background:var(--head);color:var(--head-fg);padding:.6em 1.2em;display:flex;
flex-wrap:wrap;gap:.4em 1.2em;align-items:center}
header a{color:var(--head-fg);text-decoration:none}header .who{margin-left:auto;opacity:.8}
header button{background:transparent;color:var(--head-fg);border:1px solid var(--muted);
border-radius:3px}
:focus-visible{outline:2px solid var(--focus);outline-offset:2px}
main{padding:1em 1.2em;max-width:1200px}
h1,h2{overflow-wrap:anywhere}
input,select{max-width:100%;box-sizing:border-box}
table{border-collapse:collapse;background:var(--panel);margin:.5em 0}
td,th{border:1px solid var(--line);padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.table-wrap{overflow-x:auto;max-width:100%}
pre{background:var(--panel);border:1px solid var(--line);padding:.6em;overflow:auto;
max-height:30em;white-space:pre}
.status{padding:0 .4em;border-radius:3px;background:var(--grid)}
.status.failed{background:var(--bad)}.status.completed{background:var(--ok)}
.status.running{background:var(--run)}.status.cancelled{background:var(--off)}
form.inline{display:inline}button{margin:.1em}
td.claims.paused{background:var(--hold)}td.limit.full,td.state.paused{background:var(--hold)}
.note{color:var(--muted)}.error{color:var(--err)}
fieldset{border:1px solid var(--line);background:var(--panel);min-width:0}
.status.paused{background:var(--hold)}.status.ready{background:var(--wait)}
#progress progress{width:24em;max-width:100%;vertical-align:middle}
.charts{display:flex;flex-wrap:wrap;gap:.8em;margin:.6em 0}
.chart-box{margin:0;flex:1 1 340px;min-width:0;background:var(--panel);
border:1px solid var(--line);padding:.4em}
.chart-box figcaption{font-weight:600;margin-bottom:.2em}.chart{min-height:180px}
.uplot{color:var(--fg)}.u-legend{font-size:12px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;background:var(--panel);
border:1px solid var(--line);padding:.6em;margin:.5em 0}
dl.facts dt{font-weight:600}dl.facts dd{margin:0}
.traceback .exception{font-weight:700;color:var(--err)}
.copy{float:right}
.log-danger td{color:var(--err)}.log-warning td.level{color:#b8862e}
.log-success td.level{color:#3c9a5f}
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
@media (max-width:640px){main{padding:.6em}
table.stack thead{display:none}table.stack,table.stack tbody,table.stack tr,table.stack td,
table.stack th{display:block;width:auto}table.stack tr{border:1px solid var(--line);
margin:.4em 0}table.stack td,table.stack th{border:0;border-bottom:1px solid var(--grid)}
table.stack td[data-label]::before{content:attr(data-label) ": ";font-weight:600;
display:inline-block;min-width:5.5em}table.stack td:empty{display:none}
table.stack td.n{text-align:right}
dl.facts{grid-template-columns:1fr}}
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

THEME_SCRIPT = """
(function(){
  var root=document.documentElement, key='jobcollection-theme';
  try{var saved=localStorage.getItem(key); if(saved) root.dataset.theme=saved;}catch(e){}
  function dark(){
    return root.dataset.theme?root.dataset.theme==='dark':
      !!(window.matchMedia&&matchMedia('(prefers-color-scheme: dark)').matches);
  }
  document.addEventListener('click',function(ev){
    var button=ev.target.closest&&ev.target.closest('button');
    if(!button) return;
    if(button.id==='theme'){
      root.dataset.theme=dark()?'light':'dark';
      try{localStorage.setItem(key,root.dataset.theme);}catch(e){}
      button.setAttribute('aria-pressed',String(dark()));
      document.dispatchEvent(new Event('jobcollection-theme'));
    } else if(button.classList.contains('copy')&&navigator.clipboard){
      var target=document.getElementById(button.dataset.copy);
      if(target) navigator.clipboard.writeText(target.textContent).then(function(){
        button.textContent='Copied';
      });
    }
  });
  document.addEventListener('DOMContentLoaded',function(){
    var button=document.getElementById('theme');
    if(button){button.hidden=false; button.setAttribute('aria-pressed',String(dark()));}
  });
})();
"""
"""Set the page's theme from what was chosen before (before it is drawn), and answer the
theme toggle (`#theme`: light or dark, kept in localStorage; unset, the system's choice) and
the copy buttons (`button.copy` copies the text of the element `data-copy` names)."""

CHARTS_SCRIPT = """
(function(){
  if(!window.uPlot) return;
  var palette=['#3c9a5f','#d0453b','#3b6fd0','#b8862e','#8e44ad','#16a0a0','#c0392b','#7f8c8d'];
  var charts=[];
  function css(name){
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }
  function draw(box){
    var data=JSON.parse(box.dataset.chart), fg=css('--fg'), grid=css('--grid');
    var ms=data.kind==='ms';
    var series=[{label:'time'}];
    data.series.forEach(function(s,i){
      series.push({label:s.label,stroke:palette[i%palette.length],width:1.5,
        dash:ms&&s.label.indexOf('run')===0?[5,3]:undefined,spanGaps:false,
        points:{show:true,size:4}});
    });
    var axis={stroke:fg,grid:{stroke:grid,width:1},ticks:{stroke:grid,width:1}};
    var y=Object.assign({},axis,{label:ms?'ms':'jobs',size:60});
    var options={width:Math.max(260,box.clientWidth),height:180,series:series,
      axes:[Object.assign({},axis),y],
      scales:{x:{time:true},
        y:ms?{distr:3}:{range:function(u,min,max){return [0,Math.max(1,max)];}}},
      legend:{live:true}};
    var rows=[data.x].concat(data.series.map(function(s){return s.values;}));
    box.textContent='';
    charts.push({box:box,plot:new uPlot(options,rows,box)});
  }
  function all(){
    charts.forEach(function(c){c.plot.destroy();}); charts=[];
    document.querySelectorAll('.chart[data-chart]').forEach(draw);
  }
  all();
  document.addEventListener('jobcollection-theme',all);
  var pending=null;
  window.addEventListener('resize',function(){
    clearTimeout(pending);
    pending=setTimeout(function(){
      charts.forEach(function(c){
        c.plot.setSize({width:Math.max(260,c.box.clientWidth),height:180});
      });
    },150);
  });
})();
"""
"""Draw every `.chart` element's `data-chart` (title, kind `count` or `ms`, x as epoch
seconds, series of labels and values) with uPlot, in the theme's colors (drawn again when the
theme changes); times on a log scale."""

_VENDOR = resources.files(__package__) / "vendor"


def _vendored(name: str) -> str:
    """A vendored file's text (licence header kept)."""
    return (_VENDOR / name).read_text(encoding="utf-8")


ASSETS = {
    "dashboard.css": Asset(CSS, "text/css; charset=utf-8"),
    "live.js": Asset(LIVE_SCRIPT, "text/javascript; charset=utf-8"),
    "theme.js": Asset(THEME_SCRIPT, "text/javascript; charset=utf-8"),
    "charts.js": Asset(CHARTS_SCRIPT, "text/javascript; charset=utf-8"),
    "uPlot.min.css": Asset(_vendored("uPlot.min.css"), "text/css; charset=utf-8"),
    "uPlot.iife.min.js": Asset(_vendored("uPlot.iife.min.js"), "text/javascript; charset=utf-8"),
}
"""The files under `/static/`, by name: nothing else is served there."""


def url_of(base: str, name: str) -> str:
    """The URL of an asset of the dashboard at `base`, with its version."""
    return f"{base}/static/{name}?v={ASSETS[name].version}"
