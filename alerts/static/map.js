// Open incidents and zones on a plain background; tiles only when an operator configured them.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || !window.L) return;
  var map = L.map(el, { preferCanvas: true }).setView([-1.2, 29.0], 8);
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 17, attribution: el.dataset.attribution || "" }).addTo(map);
  }
  var colours = { critical: "#b00020", high: "#e07000", medium: "#d4b000", low: "#8a8a8a", unknown: "#8a8a8a" };
  var base = el.dataset.incident.replace(/0$/, "");
  fetch(el.dataset.source, { credentials: "same-origin" }).then(function (r) { return r.json(); }).then(function (data) {
    var bounds = [];
    data.zones.forEach(function (z) {
      var shape = z.polygon ? L.polygon(z.polygon, { color: "#1f3a5f", weight: 1, fillOpacity: 0.05 })
                            : L.circle([z.lat, z.lon], { radius: z.radius_km * 1000, color: "#1f3a5f", weight: 1, fillOpacity: 0.05 });
      shape.addTo(map).bindTooltip(z.name, { permanent: true, direction: "center", className: "zone-label" });
      bounds.push([z.lat, z.lon]);
    });
    data.incidents.forEach(function (i) {
      var marker = L.circleMarker([i.lat, i.lon], { radius: 8, color: colours[i.severity] || "#333", fillOpacity: 0.8 }).addTo(map);
      marker.bindTooltip("#" + i.number + " " + i.category + " " + (i.place || ""), { permanent: true, direction: "right" });
      marker.on("click", function () { window.location.href = base + i.number; });
      bounds.push([i.lat, i.lon]);
    });
    if (bounds.length) map.fitBounds(bounds, { padding: [20, 20] });
  });
})();
