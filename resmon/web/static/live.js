// The live page: rows for running runs, kept current from the event stream
// (/api/v1/events: run_started, snapshot, run_finished, run_lost) without reloading.
(function () {
  "use strict";

  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];
  function bytes(v) {
    if (typeof v !== "number") return "–";
    var i = 0;
    while (Math.abs(v) >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    return (i < 2 ? v.toFixed(0) : v.toFixed(1)) + " " + UNITS[i];
  }
  function cores(v) { return typeof v === "number" ? (v < 10 ? v.toFixed(2) : v.toFixed(1)) + " cores" : "–"; }
  function when(t) {
    if (!t) return "–";
    var d = new Date(t);
    if (isNaN(d.getTime())) return "–";
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  function cell(text, cls, field) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (field) td.setAttribute("data-field", field);
    td.textContent = text;
    return td;
  }
  function link(href, text) {
    var td = document.createElement("td");
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    td.appendChild(a);
    return td;
  }

  function init() {
    var table = document.getElementById("live-table");
    if (!table || typeof EventSource === "undefined") return;
    var body = document.getElementById("live-runs");
    var empty = document.getElementById("live-empty");
    var status = document.getElementById("live-status");
    var runUrl = table.getAttribute("data-run-url");
    var jobUrl = table.getAttribute("data-job-url");

    function row(id) { return body.querySelector('tr[data-run="' + id + '"]'); }
    function refreshEmpty() { empty.hidden = body.querySelectorAll("tr[data-run]").length > 0; }

    function addRow(ev) {
      var id = ev.run_pk;
      var existing = row(id);
      if (existing) return existing;
      var data = ev.data || {};
      var tr = document.createElement("tr");
      tr.setAttribute("data-run", id);
      tr.setAttribute("data-host", data.host || "");
      tr.className = "fresh";
      var q = new URLSearchParams({ org: ev.organization, repo: ev.repository, workflow: ev.workflow, job: ev.job });
      tr.appendChild(link(jobUrl + "?" + q.toString(), ev.repository + " · " + ev.workflow + " · " + ev.job));
      tr.appendChild(link(runUrl + id, data.run_id || String(id)));
      tr.appendChild(cell(data.host || "–"));
      tr.appendChild(cell(when(data.start_time)));
      tr.appendChild(cell("–", "num", "cpu"));
      tr.appendChild(cell("–", "num", "memory"));
      tr.appendChild(cell("–", null, "t"));
      body.insertBefore(tr, empty);
      refreshEmpty();
      return tr;
    }

    function update(ev) {
      var tr = row(ev.run_pk) || addRow(ev);
      var snap = ev.data || {};
      var job = snap.job || {};
      tr.querySelector('[data-field="cpu"]').textContent = cores(job.cpu_cores);
      tr.querySelector('[data-field="memory"]').textContent = bytes(job.memory_bytes);
      tr.querySelector('[data-field="t"]').textContent = when(snap.t);
      updateHost(tr.getAttribute("data-host"), snap.host_stats);
    }

    // The host's latest figures, from the snapshot of any run on it.
    function updateHost(host, stats) {
      if (!host || !stats) return;
      var rows = document.querySelectorAll("tr[data-host-row]");
      for (var i = 0; i < rows.length; i++) {
        if (rows[i].getAttribute("data-host-row") !== host) continue;
        if (typeof stats.cpu_percent === "number") {
          rows[i].querySelector('[data-field="cpu"]').textContent = stats.cpu_percent.toFixed(1) + " %";
        }
        if (typeof stats.mem_used_bytes === "number") {
          rows[i].querySelector('[data-field="memory"]').textContent = bytes(stats.mem_used_bytes) +
            (typeof stats.mem_total_bytes === "number" ? " of " + bytes(stats.mem_total_bytes) : "");
        }
      }
    }

    function end(ev, word) {
      var tr = row(ev.run_pk);
      if (tr) tr.remove();
      refreshEmpty();
      status.textContent = "Run " + ev.run_pk + " of " + ev.job + " " + word + " at " + when(ev.created_at) + ".";
    }

    function parse(e) { try { return JSON.parse(e.data); } catch (err) { return null; } }

    var source = new EventSource(table.getAttribute("data-events"));
    source.addEventListener("open", function () { status.textContent = "Live: updating as runs start, stream and end."; });
    source.addEventListener("error", function () { status.textContent = "Reconnecting to the event stream…"; });
    source.addEventListener("run_started", function (e) { var ev = parse(e); if (ev) addRow(ev); });
    source.addEventListener("snapshot", function (e) { var ev = parse(e); if (ev) update(ev); });
    source.addEventListener("run_finished", function (e) { var ev = parse(e); if (ev) end(ev, "finished"); });
    source.addEventListener("run_lost", function (e) { var ev = parse(e); if (ev) end(ev, "was lost"); });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
