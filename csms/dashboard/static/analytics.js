// The analytics chart: energy (kWh) as bars and utilization (%) as a line, one point per group
// (a day, a station or a charger), labelled on the x axis.
(function () {
  "use strict";
  var element = document.getElementById("analytics-chart");
  var stored = document.getElementById("analytics-data");
  if (!element || !stored || typeof uPlot === "undefined") {
    return;
  }
  var chart = JSON.parse(stored.textContent);
  var xs = chart.labels.map(function (_, index) { return index; });
  function label(index) {
    return chart.labels[index] === undefined ? "" : chart.labels[index];
  }
  var plot = new uPlot(
    {
      width: element.clientWidth || 600,
      height: 280,
      scales: { x: { time: false, range: [-0.5, Math.max(xs.length - 0.5, 0.5)] } },
      series: [
        { label: "Group", value: function (_, index) { return label(index); } },
        {
          label: "Energy (kWh)", scale: "kWh", fill: "rgba(11,107,203,0.35)", stroke: "#0b6bcb",
          paths: uPlot.paths.bars({ size: [0.6, 60] }), points: { show: false },
        },
        { label: "Utilization (%)", scale: "%", stroke: "#b42318", width: 2 },
      ],
      axes: [
        { values: function (_, ticks) { return ticks.map(function (t) { return Number.isInteger(t) ? label(t) : ""; }); } },
        { scale: "kWh", label: "kWh" },
        { scale: "%", side: 1, label: "%", grid: { show: false } },
      ],
    },
    [xs, chart.energyKwh, chart.utilization],
    element
  );
  window.addEventListener("resize", function () {
    plot.setSize({ width: element.clientWidth || 600, height: 280 });
  });
})();
