// resmon's charts: every [data-chart] element gets a uPlot chart from the JSON block it
// names (written by the server: {id, title, unit, x, series: [{label, values, style}]}).
// No inline script: the page's CSP allows only files of its own origin.
(function () {
  "use strict";

  function css(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

  function bytes(v) {
    if (v == null) return "–";
    var i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return (i < 2 ? v.toFixed(0) : v.toFixed(v < 10 ? 1 : 0)) + " " + UNITS[i];
  }

  function formatter(unit) {
    if (unit === "bytes") return bytes;
    if (unit === "hours") return function (v) { return v == null ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " h"; };
    if (unit === "percent") return function (v) { return v == null ? "–" : v.toFixed(0) + " %"; };
    return function (v) { return v == null ? "–" : (v < 10 ? v.toFixed(2) : v.toFixed(1)); };
  }

  // Series of groups (usage by organisation, repository...): told apart by colour;
  // these read on both the light and the dark background.
  var PALETTE = ["#2f81f7", "#e8590c", "#2b9a66", "#c2255c", "#8c6bd1", "#b08800", "#0b98b8", "#d6336c", "#5c940d", "#868e96"];

  // Time ticks in UTC, 24-hour: days as MM-DD, else HH:MM (HH:MM:SS under a minute),
  // the first tick of a day with its date.
  function timeTicks(u, splits, axisIdx, space, incr) {
    var lastDay = null;
    return splits.map(function (ts) {
      var iso = new Date(ts * 1e3).toISOString();
      var day = iso.slice(5, 10);
      if (incr >= 86400) return day;
      var time = incr < 60 ? iso.slice(11, 19) : iso.slice(11, 16);
      var label = day !== lastDay ? day + " " + time : time;
      lastDay = day;
      return label;
    });
  }

  function seriesOptions(s, i) {
    if (s.style === "group") {
      var c = PALETTE[i % PALETTE.length];
      return { label: s.label, stroke: c, width: 1.5, spanGaps: false, points: { show: true, size: 5, fill: c } };
    }
    var colour = {
      p95: css("--avg"), avg: css("--avg"), peak: css("--peak"), max: css("--peak"),
      limit: css("--limit"), flag: css("--flag")
    }[s.style] || css("--accent");
    var opts = { label: s.label, stroke: colour, width: 1.5, spanGaps: false };
    if (s.style === "limit") { opts.dash = [6, 4]; opts.width = 1.2; opts.points = { show: false }; }
    if (s.style === "peak" || s.style === "max") { opts.width = 1; }
    if (s.style === "flag") {
      opts.paths = function () { return null; };
      opts.points = { show: true, size: 9, fill: colour, stroke: colour, width: 1 };
    }
    return opts;
  }

  function draw(holder) {
    var block = document.getElementById(holder.getAttribute("data-chart"));
    if (!block || typeof uPlot === "undefined") return;
    var spec;
    try { spec = JSON.parse(block.textContent); } catch (e) { return; }
    if (!spec.series || !spec.series.length || !spec.x || spec.x.length === 0) return;
    var fmt = formatter(spec.unit);
    var axis = { stroke: css("--muted"), grid: { stroke: css("--line"), width: 1 }, ticks: { stroke: css("--line") } };
    var yAxis = Object.assign({}, axis, {
      size: spec.unit === "bytes" ? 72 : (spec.unit === "hours" ? 64 : 50),
      values: function (u, vals) { return vals.map(fmt); }
    });
    var opts = {
      width: Math.max(holder.clientWidth, 200),
      height: holder.clientWidth < 500 ? 180 : 220,
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } } },
      axes: [Object.assign({}, axis, { space: 70, values: timeTicks }), yAxis],
      series: [{ label: "time", value: "{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}" }].concat(spec.series.map(function (s, i) {
        var o = seriesOptions(s, i);
        o.value = function (u, v) { return fmt(v); };
        return o;
      })),
      legend: { live: true },
      cursor: { points: { size: 6 } },
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
    };
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    holder.textContent = "";
    var chart = new uPlot(opts, data, holder);
    holder.setAttribute("data-drawn", "true");
    var last = holder.clientWidth;
    if (typeof ResizeObserver !== "undefined") {
      new ResizeObserver(function () {
        if (Math.abs(holder.clientWidth - last) < 4) return;
        last = holder.clientWidth;
        chart.setSize({ width: Math.max(last, 200), height: last < 500 ? 180 : 220 });
      }).observe(holder);
    }
  }

  function copyButtons() {
    var buttons = document.querySelectorAll("button[data-copy]");
    Array.prototype.forEach.call(buttons, function (button) {
      if (!navigator.clipboard) return;
      button.hidden = false;
      button.addEventListener("click", function () {
        var source = document.getElementById(button.getAttribute("data-copy"));
        navigator.clipboard.writeText(source.textContent).then(function () {
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = "Copy"; }, 1500);
        });
      });
    });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
    copyButtons();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
