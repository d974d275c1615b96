// The live chart of a charger's running transaction: energy delivered (Wh) and power (W) over time,
// drawn with uPlot from the stored samples, then from each MeterValues as it arrives.
var TransactionChart = (function () {
  "use strict";
  var ENERGY = "Energy.Active.Import.Register";
  var POWER = "Power.Active.Import";

  function create() {
    var element = document.getElementById("chart");
    var stored = document.getElementById("chart-data");
    if (!element || !stored || typeof uPlot === "undefined") {
      return null;
    }
    var transactionId = Number(element.dataset.transaction);
    var meterStart = Number(element.dataset.meterStart);
    var energyText = document.getElementById("energy");
    var data = [[], [], []];

    function put(isoTime, measurand, value) {
      var index = measurand === ENERGY ? 1 : measurand === POWER ? 2 : 0;
      if (!index) {
        return;
      }
      var x = Date.parse(isoTime) / 1000;
      var last = data[0].length - 1;
      if (last < 0 || data[0][last] < x) {
        data[0].push(x);
        data[1].push(null);
        data[2].push(null);
        last += 1;
      } else if (data[0][last] !== x) {
        return; // older than what is drawn: a late delivery adds nothing to a live view
      }
      data[index][last] = index === 1 ? value - meterStart : value;
    }

    JSON.parse(stored.textContent).forEach(function (sample) {
      put(sample[0], sample[1], sample[2]);
    });
    var plot = new uPlot(
      {
        width: element.clientWidth || 600,
        height: 260,
        series: [
          {},
          { label: "Energy (Wh)", stroke: "#0b6bcb", width: 2, scale: "Wh", spanGaps: true },
          { label: "Power (W)", stroke: "#1b7f3b", width: 2, scale: "W", spanGaps: true },
        ],
        axes: [{}, { scale: "Wh", label: "Wh", size: 60 }, { scale: "W", side: 1, label: "W", size: 70, grid: { show: false } }],
      },
      data,
      element
    );
    window.addEventListener("resize", function () {
      plot.setSize({ width: element.clientWidth || 600, height: 260 });
    });

    return {
      transactionId: transactionId,
      add: function (event) {
        event.samples.forEach(function (sample) {
          if (!sample.phase) {
            put(sample.timestamp, sample.measurand, Number(sample.value));
          }
        });
        plot.setData(data);
        var energy = event.energyWh;
        if (energy === undefined || energy === null) {
          var drawn = data[1].filter(function (v) { return v !== null; });
          energy = drawn.length ? drawn[drawn.length - 1] : null;
        }
        if (energyText && energy !== null) {
          energyText.textContent = String(Math.round(energy));
        }
      },
    };
  }

  return { create: create };
})();
