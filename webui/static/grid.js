// The DAG page's grid: a task group row or a mapped task row has a toggle button; a row is
// shown only while every row it sits under (its data-ancestors) is expanded. Event delegation,
// so it keeps working after refresh.js swaps <main>; collapsed keys survive the swap.
(function () {
  "use strict";
  var expanded = {};

  function apply(root) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-toggle]"), function (button) {
      var key = button.getAttribute("data-toggle");
      if (key in expanded) {
        button.setAttribute("aria-expanded", expanded[key] ? "true" : "false");
      }
      button.textContent = button.getAttribute("aria-expanded") === "true" ? "▾" : "▸";
    });
    var open = {};
    Array.prototype.forEach.call(root.querySelectorAll("[data-toggle]"), function (button) {
      open[button.getAttribute("data-toggle")] = button.getAttribute("aria-expanded") === "true";
    });
    Array.prototype.forEach.call(root.querySelectorAll("tr[data-ancestors]"), function (row) {
      var keys = row.getAttribute("data-ancestors").split(" ").filter(Boolean);
      row.hidden = keys.some(function (key) { return open[key] === false; });
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-toggle]") : null;
    if (!button) { return; }
    var key = button.getAttribute("data-toggle");
    expanded[key] = button.getAttribute("aria-expanded") !== "true";
    apply(document);
  });

  document.addEventListener("DOMContentLoaded", function () {
    apply(document);
    var main = document.getElementById("main");
    if (main && window.MutationObserver) {
      new MutationObserver(function () { apply(document); })
        .observe(main.parentNode, { childList: true });
    }
  });
})();
