// Draws every <canvas data-chart="ID"> from the JSON config in <script type="application/json" id="ID">.
// The server sends data only (already aggregated in ClickHouse); this adds colours and axis formats.
"use strict";
(function () {
  const palette = ["#2f5bea", "#e8710a", "#1e8e3e", "#d93025", "#9334e6", "#12b5cb", "#f9ab00", "#5f6368", "#b0b7c3"];
  const usd = (v) => "$" + Number(v).toLocaleString(undefined, { maximumFractionDigits: 6 });
  function draw(canvas) {
    const source = document.getElementById(canvas.dataset.chart);
    if (!source || typeof Chart === "undefined") return;
    const cfg = JSON.parse(source.textContent);
    cfg.data.datasets.forEach((ds, i) => {
      const c = ds.label === "(other)" ? "#b0b7c3" : palette[i % palette.length];
      ds.backgroundColor = c; ds.borderColor = c;
      if (cfg.type === "line") {
        ds.fill = false; ds.pointRadius = ds.label.startsWith("spent") ? 2 : 0;
        if (ds.label === "limit") ds.borderDash = [6, 4];
        if (ds.label.startsWith("projected")) ds.borderDash = [2, 3];
      }
    });
    const tick = cfg.money ? { callback: (v) => usd(v) } : {};
    new Chart(canvas, {
      type: cfg.type, data: cfg.data,
      options: {
        responsive: true, maintainAspectRatio: false, animation: false,
        scales: { x: { stacked: cfg.stacked }, y: { stacked: cfg.stacked, beginAtZero: true, ticks: tick } },
        plugins: { tooltip: { callbacks: { label: (ctx) => ctx.dataset.label + ": " + (cfg.money ? usd(ctx.parsed.y) : ctx.parsed.y) } } },
      },
    });
    canvas.dataset.drawn = "1";
  }
  function all() { document.querySelectorAll("canvas[data-chart]").forEach(draw); document.body.dataset.chartsReady = "1"; }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", all); else all();
})();
