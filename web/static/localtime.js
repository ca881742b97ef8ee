// Hours given in UTC (data-utc-hours="start,end") shown in the viewer's own time zone.
// Only numbers are formatted here: no text from the server becomes HTML.
(function () {
  "use strict";
  function local(hour) {
    const d = new Date();
    d.setUTCHours(hour % 24, 0, 0, 0);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
  document.querySelectorAll("[data-utc-hours]").forEach((node) => {
    const [start, end] = node.dataset.utcHours.split(",").map(Number);
    if (start === 0 && end === 24) { node.textContent = "all day"; return; }
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    node.textContent = local(start) + " – " + local(end) + " (" + zone + ")";
  });
})();
