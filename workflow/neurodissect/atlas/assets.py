"""The site's own stylesheet and script (written to ``site/atlas.css`` / ``site/atlas.js``).

Nothing is loaded from a CDN: the atlas opens from disk and works offline. Kept in a
Python module (not loose files) so that editing them reruns the atlas rule.

Script: index filter (name search, group, significant only) and column sort; heat-map
overlays drawn on ``canvas.heat`` from their ``data-heat`` bytes; keyboard shortcuts
("/" focuses the search, ←/→ previous / next unit); light / dark theme toggle.
"""

CSS = """\
:root{--bg:#fdfdfc;--fg:#1b1b1f;--muted:#55585f;--line:#d5d7dc;--accent:#0b57d0;
--row:#f2f4f7;--pos:#1a7f37;--neg:#b3261e;--bar:#0b57d0;--mark:#ffe08a;color-scheme:light}
@media (prefers-color-scheme:dark){:root:not([data-theme=light]){--bg:#16171a;--fg:#e8e9ec;
--muted:#a9adb6;--line:#3a3d44;--accent:#8ab4f8;--row:#202227;--pos:#6fdc8c;--neg:#ff8a80;
--bar:#8ab4f8;--mark:#6b5a00;color-scheme:dark}}
:root[data-theme=dark]{--bg:#16171a;--fg:#e8e9ec;--muted:#a9adb6;--line:#3a3d44;
--accent:#8ab4f8;--row:#202227;--pos:#6fdc8c;--neg:#ff8a80;--bar:#8ab4f8;--mark:#6b5a00;
color-scheme:dark}
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
a{color:var(--accent)}
a:focus-visible,button:focus-visible,input:focus-visible,select:focus-visible,
summary:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:8px;top:8px;background:var(--bg);padding:4px}
header{display:flex;gap:1.2em;align-items:center;padding:.6em 1em;border-bottom:1px solid var(--line)}
header .title{font-weight:600}header nav{display:flex;gap:1em;flex:1}
main{padding:1em;max-width:1400px}
h1{font-size:1.35em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}
.muted{color:var(--muted)}
button{font:inherit;color:var(--fg);background:var(--row);border:1px solid var(--line);
border-radius:4px;padding:.2em .6em;cursor:pointer}
.controls{display:flex;flex-wrap:wrap;gap:1em;align-items:center;margin-bottom:.6em}
input[type=search],select{font:inherit;color:var(--fg);background:var(--bg);
border:1px solid var(--line);border-radius:4px;padding:.25em .5em}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:.25em .6em;border-bottom:1px solid var(--line);text-align:left}
td.n{text-align:right}
th button{background:none;border:0;padding:0;font-weight:600}
th[aria-sort=ascending] button::after{content:" \\25B2"}
th[aria-sort=descending] button::after{content:" \\25BC"}
tbody tr:nth-child(even){background:var(--row)}
.flag{color:var(--neg)}.ok{color:var(--pos)}
dl.stats{display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:0}
dl.stats dt{color:var(--muted)}dl.stats dd{margin:0}
.grid{display:flex;flex-wrap:wrap;gap:.8em;padding:0;margin:0;list-style:none}
figure{margin:0}
.frame{position:relative;width:128px;height:128px;border:1px solid var(--line)}
.frame img{width:128px;height:128px;display:block;image-rendering:pixelated}
.frame canvas,.frame svg{position:absolute;left:0;top:0;width:128px;height:128px;pointer-events:none}
.frame svg rect{fill:none;stroke:#00e5ff;stroke-width:2;vector-effect:non-scaling-stroke}
body.noheat canvas.heat{display:none}
figcaption{font-size:.85em;color:var(--muted);max-width:128px}
.bar{display:inline-block;height:.8em;background:var(--bar);vertical-align:middle}
.bar.neg{background:var(--neg)}
.pager{display:flex;gap:1.5em;margin:.5em 0}
blockquote{margin:.3em 0;padding:.2em .8em;border-left:3px solid var(--line)}
mark{background:var(--mark);color:inherit}
.cards{display:flex;flex-wrap:wrap;gap:1.2em}
.card{border:1px solid var(--line);border-radius:6px;padding:.6em;max-width:420px}
.card .row{display:flex;gap:.8em}
"""

JS = """\
"use strict";
(function () {
  var root = document.documentElement;
  var saved = null;
  try { saved = window.localStorage.getItem("atlas-theme"); } catch (e) { saved = null; }
  if (saved) { root.setAttribute("data-theme", saved); }

  function onReady(fn) {
    if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", fn); }
    else { fn(); }
  }

  function themeToggle() {
    var btn = document.getElementById("theme");
    if (!btn) { return; }
    btn.addEventListener("click", function () {
      var dark = root.getAttribute("data-theme") === "dark" ||
        (!root.getAttribute("data-theme") &&
         window.matchMedia("(prefers-color-scheme: dark)").matches);
      var next = dark ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.localStorage.setItem("atlas-theme", next); } catch (e) { /* file:// */ }
    });
  }

  // -- index: filter and sort ------------------------------------------------
  function indexTable() {
    var table = document.getElementById("units");
    if (!table) { return; }
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var q = document.getElementById("q");
    var group = document.getElementById("group");
    var sig = document.getElementById("sig");
    var count = document.getElementById("count");
    var names = rows.map(function (r) { return r.getAttribute("data-name"); });

    function filter() {
      var text = q.value.trim().toLowerCase();
      var g = group.value;
      var onlySig = sig.checked;
      var shown = 0;
      for (var i = 0; i < rows.length; i++) {
        var r = rows[i];
        var keep = (!text || names[i].indexOf(text) >= 0) &&
          (!g || r.getAttribute("data-group") === g) &&
          (!onlySig || r.getAttribute("data-sig") === "1");
        r.hidden = !keep;
        if (keep) { shown++; }
      }
      count.textContent = shown + " of " + rows.length + " units";
    }

    function sortBy(th) {
      var col = th.cellIndex;
      var numeric = th.getAttribute("data-type") === "num";
      var asc = th.getAttribute("aria-sort") !== "ascending";
      var ths = table.tHead.rows[0].cells;
      for (var k = 0; k < ths.length; k++) { ths[k].removeAttribute("aria-sort"); }
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var keyed = rows.map(function (r, i) {
        var v = r.cells[col].getAttribute("data-v");
        if (v === null) { v = r.cells[col].textContent; }
        if (numeric) { v = v === "" ? (asc ? Infinity : -Infinity) : parseFloat(v); }
        return [v, i, r];
      });
      keyed.sort(function (a, b) {
        var d = a[0] < b[0] ? -1 : (a[0] > b[0] ? 1 : 0);
        return (asc ? d : -d) || a[1] - b[1];
      });
      var frag = document.createDocumentFragment();
      keyed.forEach(function (k) { frag.appendChild(k[2]); });
      body.appendChild(frag);
    }

    q.addEventListener("input", filter);
    group.addEventListener("change", filter);
    sig.addEventListener("change", filter);
    Array.prototype.forEach.call(table.querySelectorAll("th[data-type] button"), function (b) {
      b.addEventListener("click", function () { sortBy(b.parentNode); });
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "/" && document.activeElement !== q) { ev.preventDefault(); q.focus(); }
    });
    filter();
  }

  // -- unit pages: heat maps and paging -----------------------------------------
  function heatColour(v) {
    // dark blue -> red -> yellow, alpha rising with the value
    var t = v / 255;
    var r = Math.round(255 * Math.min(1, 2 * t));
    var g = Math.round(255 * Math.max(0, 2 * t - 1));
    var b = Math.round(160 * Math.max(0, 1 - 2 * t));
    return [r, g, b, Math.round(140 * t)];
  }

  function drawHeat(canvas) {
    var parts = canvas.getAttribute("data-heat").split(" ");
    var h = parseInt(parts[0], 10), w = parseInt(parts[1], 10), hex = parts[2];
    var small = document.createElement("canvas");
    small.width = w; small.height = h;
    var sctx = small.getContext("2d");
    var img = sctx.createImageData(w, h);
    for (var i = 0; i < w * h; i++) {
      var c = heatColour(parseInt(hex.substr(2 * i, 2), 16));
      img.data[4 * i] = c[0]; img.data[4 * i + 1] = c[1];
      img.data[4 * i + 2] = c[2]; img.data[4 * i + 3] = c[3];
    }
    sctx.putImageData(img, 0, 0);
    var ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = true;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    // one map cell covers 1/w of the image: sample at the cell centres (bilinear)
    ctx.drawImage(small, 0, 0, w, h, 0, 0, canvas.width, canvas.height);
  }

  function unitPage() {
    var heats = document.querySelectorAll("canvas.heat");
    Array.prototype.forEach.call(heats, drawHeat);
    var toggle = document.getElementById("heat-toggle");
    if (toggle) {
      toggle.addEventListener("change", function () {
        document.body.classList.toggle("noheat", !toggle.checked);
      });
    }
    document.addEventListener("keydown", function (ev) {
      var tag = (document.activeElement && document.activeElement.tagName) || "";
      if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA") { return; }
      var rel = ev.key === "ArrowLeft" ? "prev" : (ev.key === "ArrowRight" ? "next" : null);
      var link = rel && document.querySelector("a[rel=" + rel + "]");
      if (link) { window.location.href = link.href; }
    });
  }

  onReady(function () {
    themeToggle();
    indexTable();
    unitPage();
    window.atlasReady = performance.now();
  });
})();
"""
