// Pages showing unfinished runs mark <main data-auto-refresh="SECONDS">. Every few seconds we
// fetch the same URL and swap the <main> element, keeping <details> as they were, and stop once
// the fresh page no longer asks for a refresh. No library; the markup comes from our server,
// where every value is escaped.
(function () {
  "use strict";

  function schedule() {
    var main = document.getElementById("main");
    var seconds = main ? parseFloat(main.getAttribute("data-auto-refresh")) : NaN;
    if (seconds > 0) {
      window.setTimeout(refresh, seconds * 1000);
    }
  }

  function refresh() {
    if (document.hidden) {
      schedule();
      return;
    }
    fetch(window.location.href, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        var main = document.getElementById("main");
        if (!fresh || !main) { return; }
        // Keep each <details> as the reader left it (open or closed).
        var wasOpen = {};
        Array.prototype.forEach.call(main.querySelectorAll("details[id]"), function (el) {
          wasOpen[el.id] = el.open;
        });
        Array.prototype.forEach.call(fresh.querySelectorAll("details[id]"), function (el) {
          if (el.id in wasOpen) { el.open = wasOpen[el.id]; }
        });
        main.replaceWith(document.adoptNode(fresh));
        schedule();
      })
      .catch(schedule);
  }

  document.addEventListener("DOMContentLoaded", schedule);
})();
