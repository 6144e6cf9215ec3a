/* artifact lake UI: charts (uPlot), sortable tables. Served from the package; nothing from the internet. */
(function () {
  "use strict";
  var COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a"];

  function money(u, v) { return v == null ? "-" : v.toLocaleString(undefined, {maximumFractionDigits: 2}); }
  function pct(u, v) { return v == null ? "-" : (v * 100).toFixed(2) + "%"; }
  function width(el) { return Math.max(320, el.clientWidth || 900); }

  function lineChart(el, title, ts, series, fmt, height, sync) {
    var opts = {
      title: title,
      width: width(el),
      height: height,
      cursor: {sync: {key: sync}, drag: {x: true, y: false}},
      scales: {x: {time: true}},
      series: [{}].concat(series.map(function (s, i) {
        return {label: s.label, stroke: COLOURS[i % COLOURS.length], width: 1.4, value: fmt};
      })),
      axes: [{}, {values: function (u, vals) { return vals.map(function (v) { return fmt(u, v); }); }, size: 80}],
    };
    var data = [ts].concat(series.map(function (s) { return s.values; }));
    var chart = new uPlot(opts, data, el);
    el.dataset.drawn = String(ts.length);
    window.addEventListener("resize", function () { chart.setSize({width: width(el), height: height}); });
    return chart;
  }

  function linkZoom(a, b) {
    [[a, b], [b, a]].forEach(function (pair) {
      pair[0].hooks = pair[0].hooks || {};
    });
    var busy = false;
    function follow(src, dst) {
      return function () {
        if (busy) return;
        busy = true;
        dst.setScale("x", {min: src.scales.x.min, max: src.scales.x.max});
        busy = false;
      };
    }
    a.over.addEventListener("mouseup", function () { setTimeout(follow(a, b), 0); });
    a.over.addEventListener("dblclick", function () { setTimeout(follow(a, b), 0); });
    b.over.addEventListener("mouseup", function () { setTimeout(follow(b, a), 0); });
    b.over.addEventListener("dblclick", function () { setTimeout(follow(b, a), 0); });
  }

  function equity(el) {
    var q = new URLSearchParams({run: el.dataset.run, symbol: el.dataset.symbol});
    if (el.dataset.combos) { el.dataset.combos.split(",").forEach(function (c) { q.append("combo", c); }); }
    fetch("/data/equity.json?" + q.toString()).then(function (r) { return r.json(); }).then(function (d) {
      if (!d.series.length) { el.textContent = "no equity for this selection"; return; }
      var eq = lineChart(el, "equity", d.ts, d.series.map(function (s) { return {label: s.label, values: s.equity}; }), money, 300, "eq");
      var ddEl = document.getElementById("drawdown-chart");
      var dd = lineChart(ddEl, "drawdown", d.ts, d.series.map(function (s) { return {label: s.label, values: s.drawdown}; }), pct, 180, "eq");
      linkZoom(eq, dd);
      var exEl = document.getElementById("exposure-chart");
      if (exEl && d.series[0].gross_exposure) {  // a portfolio: gross and net exposure, as fractions of equity
        var ex = [];
        d.series.forEach(function (s) {
          ex.push({label: s.label + " gross", values: s.gross_exposure});
          ex.push({label: s.label + " net", values: s.net_exposure});
        });
        linkZoom(eq, lineChart(exEl, "exposure (gross, net)", d.ts, ex, pct, 180, "eq"));
      }
    });
  }

  function curve(el) {
    fetch("/data/curve.json?run=" + encodeURIComponent(el.dataset.run)).then(function (r) { return r.json(); }).then(function (d) {
      var opts = {
        title: "training curve", width: width(el), height: 260, scales: {x: {time: false}},
        series: [{label: "steps"}, {label: "mean episodic return", stroke: COLOURS[0], width: 1.4, points: {show: true}}],
      };
      new uPlot(opts, [d.steps, d.episodic_return], el);
      el.dataset.drawn = String(d.steps.length);
    });
  }

  function compare(el) {
    var overlay = JSON.parse(el.dataset.overlay || "[]");
    Promise.all(overlay.map(function (o) {
      var q = new URLSearchParams({run: o.run, symbol: o.symbol, combo: String(o.combo)});
      return fetch("/data/equity.json?" + q.toString()).then(function (r) { return r.json(); });
    })).then(function (all) {
      var tables = [], series = [{}];
      all.forEach(function (d, i) {
        if (!d.series.length) return;
        var s = d.series[0];
        var base = s.equity[0] || 1;
        tables.push([d.ts, s.equity.map(function (v) { return v / base; })]);
        series.push({label: overlay[i].label + " " + s.label, stroke: COLOURS[(series.length - 1) % COLOURS.length], width: 1.4,
                     value: function (u, v) { return v == null ? "-" : ((v - 1) * 100).toFixed(2) + "%"; }});
      });
      if (!tables.length) { el.textContent = "no equity to overlay"; return; }
      var data = uPlot.join(tables);
      new uPlot({title: "equity, relative to each start", width: width(el), height: 320, cursor: {drag: {x: true, y: false}},
                 scales: {x: {time: true}}, series: series,
                 axes: [{}, {values: function (u, vals) { return vals.map(function (v) { return ((v - 1) * 100).toFixed(1) + "%"; }); }, size: 70}]},
                data, el);
      el.dataset.drawn = String(data[0].length);
    });
  }

  function sortable(table) {
    table.querySelectorAll("thead th").forEach(function (th, col) {
      th.classList.add("sort");
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var numeric = th.dataset.type === "num";
        var dir = th.dataset.dir === "desc" ? 1 : -1;
        table.querySelectorAll("thead th").forEach(function (o) { delete o.dataset.dir; });
        th.dataset.dir = dir === 1 ? "asc" : "desc";
        rows.sort(function (a, b) {
          var x = a.cells[col], y = b.cells[col];
          var vx = x.dataset.v !== undefined ? x.dataset.v : x.textContent;
          var vy = y.dataset.v !== undefined ? y.dataset.v : y.textContent;
          if (numeric) {
            var nx = vx === "" ? -Infinity : parseFloat(vx), ny = vy === "" ? -Infinity : parseFloat(vy);
            return (nx - ny) * dir;
          }
          return vx.localeCompare(vy) * dir;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  }

  function init() {
    var el = document.getElementById("equity-chart");
    if (el) equity(el);
    el = document.getElementById("curve-chart");
    if (el) curve(el);
    el = document.getElementById("compare-chart");
    if (el) compare(el);
    document.querySelectorAll("table.sortable").forEach(sortable);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init); else init();
})();
