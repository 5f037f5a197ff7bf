/*
 * Canal's own script: small enhancements only. Every page works without it
 * (menus are <details>, forms post normally); this file makes them nicer.
 * Loaded with `defer` after htmx, so `htmx` exists and the DOM is parsed.
 */
(function () {
  "use strict";

  // --- htmx -------------------------------------------------------------------
  if (window.htmx) {
    // Our CSS styles .htmx-indicator (app.css); htmx's injected <style> would
    // also break a strict Content-Security-Policy.
    htmx.config.includeIndicatorStyles = false;
    // Error responses (4xx/5xx) carry a rendered error fragment for #flash
    // (HX-Retarget from the server): swap it in instead of dropping it.
    htmx.config.responseHandling = [
      { code: "204", swap: false },
      { code: "[23]..", swap: true },
      { code: "[45]..", swap: true, error: true },
      { code: "...", swap: false },
    ];
  }

  // Background requests (the unread-count poll, marked data-quiet-errors) fail
  // silently: an expired session must not flash an error every minute.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var elt = event.detail.elt;
    if (event.detail.isError && elt && elt.closest && elt.closest("[data-quiet-errors]")) {
      event.detail.shouldSwap = false;
    }
  });

  // --- Main menu: always open on wide screens ----------------------------------
  // Browsers with ::details-content show it by CSS alone; for the others open the
  // <details>, and close it again when the window becomes narrow.
  var wide = window.matchMedia("(min-width: 768px)");
  function syncMenu() {
    var menu = document.querySelector("details.site-nav");
    if (menu) menu.open = wide.matches;
  }
  syncMenu();
  if (wide.addEventListener) wide.addEventListener("change", syncMenu);

  // --- Dropdowns: Escape closes, one open at a time ----------------------------
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    var open = document.activeElement && document.activeElement.closest("details.dropdown[open]");
    if (open) {
      open.open = false;
      open.querySelector("summary").focus();
    }
  });

  document.addEventListener("toggle", function (event) {
    var opened = event.target;
    if (!(opened instanceof HTMLDetailsElement) || !opened.open || !opened.classList.contains("dropdown")) return;
    document.querySelectorAll("details.dropdown[open]").forEach(function (other) {
      if (other !== opened) other.open = false;
    });
  }, true);

  // --- Focus: after an htmx swap brings errors in, move focus to them ------------
  document.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail && event.detail.target;
    if (!target) return;
    var summary = target.querySelector(".errors-summary");
    if (summary) summary.focus();
  });

  // --- Charts (components/charts.html) -----------------------------------------
  // Brand colours; dark, larger labels (much larger in care mode) instead of ECharts' light grey.
  var care = document.documentElement.classList.contains("care-mode");
  var label = { color: care ? "#000" : "#1f2329", fontSize: care ? 18 : 13 };
  var chartTheme = {
    color: ["#0b3d7a", "#2f7ed8", "#d97706", "#15803d", "#7c3aed", "#b91c1c", "#0e7490"],
    textStyle: {
      fontFamily: getComputedStyle(document.documentElement).getPropertyValue("--canal-font").trim() || "sans-serif",
      fontSize: label.fontSize,
      color: label.color,
    },
    categoryAxis: { axisLabel: label },
    valueAxis: { axisLabel: label },
    timeAxis: { axisLabel: label },
    legend: { textStyle: label },
  };
  var themeRegistered = false;

  function drawCharts(root) {
    if (!window.echarts) return;
    if (!themeRegistered) {
      echarts.registerTheme("canal", chartTheme);
      themeRegistered = true;
    }
    var nodes = root.querySelectorAll ? root.querySelectorAll("[data-chart]") : [];
    nodes.forEach(function (node) {
      if (node.dataset.chartReady) return;
      node.dataset.chartReady = "1";
      var chart = echarts.init(node, "canal", { renderer: "svg", locale: document.documentElement.lang === "en" ? "EN" : "ZH" });
      chart.setOption(JSON.parse(node.dataset.chart));
      new ResizeObserver(function () { chart.resize(); }).observe(node);
    });
  }
  // Deferred scripts run in order before DOMContentLoaded, so echarts (in
  // head_extra) may load after this file: draw once everything is parsed.
  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:load", function (event) { drawCharts(event.detail.elt); });
})();
