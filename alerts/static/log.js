// Keeps the alert log current without reloading: asks what changed since the newest event it has seen.
(function () {
  "use strict";
  var table = document.getElementById("log");
  if (!table) return;
  var body = table.tBodies[0];
  var labels = JSON.parse(document.getElementById("labels").innerHTML);
  var cursor = table.dataset.cursor;
  var onFirstPage = table.dataset.page === "1";
  var base = table.dataset.updates;
  var incidentUrl = table.dataset.incident.replace(/0$/, "");
  var every = parseInt(table.dataset.refresh, 10) || 10000;
  var delay = every;

  function label(value) { return labels[value] || value || ""; }
  function cell(tr, text) { var td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }
  function pad(n) { return (n < 10 ? "0" : "") + n; }

  function render(row) {
    var tr = document.createElement("tr");
    tr.id = "i" + row.number;
    tr.className = "sev-" + row.severity + " st-" + row.status + " fresh";
    var a = document.createElement("a");
    a.href = incidentUrl + row.number;
    a.textContent = row.number;
    cell(tr, "").appendChild(a);
    var t = new Date(row.time);
    cell(tr, pad(t.getUTCDate()) + "/" + pad(t.getUTCMonth() + 1) + " " + pad(t.getUTCHours()) + ":" + pad(t.getUTCMinutes()));
    cell(tr, label(row.category)); cell(tr, label(row.severity)); cell(tr, row.place); cell(tr, row.zone);
    cell(tr, String(row.reports)); cell(tr, label(row.status)); cell(tr, row.acknowledged_by || "");
    cell(tr, row.minutes_to_acknowledge === null ? "" : Math.round(row.minutes_to_acknowledge) + " min");
    return tr;
  }

  function apply(rows) {
    rows.slice().reverse().forEach(function (row) {
      var existing = document.getElementById("i" + row.number);
      var tr = render(row);
      if (existing) { body.replaceChild(tr, existing); }
      else if (onFirstPage) {
        var empty = body.querySelector("tr.empty");
        if (empty) body.removeChild(empty);
        body.insertBefore(tr, body.firstChild);
      }
    });
  }

  function poll() {
    var url = base + (base.indexOf("?") < 0 ? "?" : "&") + "cursor=" + encodeURIComponent(cursor);
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
      .then(function (data) {
        cursor = data.cursor;
        apply(data.rows);
        document.getElementById("live").hidden = false;
        delay = every;
      })
      .catch(function () { delay = Math.min(delay * 2, 120000); })
      .then(function () { setTimeout(poll, delay); });
  }
  setTimeout(poll, delay);
})();
