// The dashboard's live parts. Connector cells follow StatusNotifications and connections as they
// happen; figures, message logs and audits are re-rendered by the server (htmx) shortly after any
// change; a charger page's chart grows with each MeterValues of its running transaction.
(function () {
  "use strict";
  var tokenMeta = document.querySelector('meta[name="csms-socket-token"]');
  var grid = document.getElementById("connector-grid");
  var live = document.getElementById("live");
  if (!tokenMeta || typeof io === "undefined") {
    return;
  }
  // On a charger's page only that charger's events matter; the overview shows every charger.
  var onlyCharger = (grid && grid.dataset.chargerPage) || null;

  function concerns(chargePointId) {
    return onlyCharger === null || onlyCharger === chargePointId;
  }

  function changed() {
    document.body.dispatchEvent(new CustomEvent("csms:changed"));
  }

  function cellsOf(chargePointId) {
    if (!grid) {
      return [];
    }
    return grid.querySelectorAll('[data-charger="' + CSS.escape(chargePointId) + '"]');
  }

  function cellFor(chargePointId, connectorId) {
    var selector = '[data-charger="' + CSS.escape(chargePointId) + '"][data-connector="' + connectorId + '"]';
    var cell = grid.querySelector(selector);
    if (cell) {
      return cell;
    }
    var empty = document.getElementById("no-connectors");
    if (empty) {
      empty.remove();
    }
    cell = document.createElement("div");
    cell.className = "connector online";
    cell.tabIndex = 0;
    cell.dataset.charger = chargePointId;
    cell.dataset.connector = String(connectorId);
    [["cp", chargePointId], ["no", "#" + connectorId], ["st", ""]].forEach(function (part) {
      var span = document.createElement("span");
      span.className = part[0];
      span.textContent = part[1];
      if (part[0] === "st") {
        span.dataset.status = "";
      }
      cell.appendChild(span);
    });
    grid.appendChild(cell);
    return cell;
  }

  function setStatus(cell, status) {
    Array.prototype.slice.call(cell.classList).forEach(function (name) {
      if (name.indexOf("status-") === 0) {
        cell.classList.remove(name);
      }
    });
    cell.classList.add("status-" + status);
    cell.querySelector("[data-status]").textContent = status;
    cell.title = cell.dataset.charger + " #" + cell.dataset.connector + ": " + status;
  }

  var charting = typeof TransactionChart !== "undefined";
  var chart = charting ? TransactionChart.create() : null;
  // A transaction started or stopped: the server re-renders that section, then its chart is drawn.
  function transactionChanged() {
    document.body.dispatchEvent(new CustomEvent("csms:transaction"));
  }
  document.body.addEventListener("htmx:afterSwap", function (event) {
    if (charting && event.detail.target.id === "running") {
      chart = TransactionChart.create();
    }
  });

  // WebSocket transport only: a polling session spans several HTTP requests, which a host running
  // several web processes (csms-web --processes N) may hand to different processes.
  var socket = io({ auth: { token: tokenMeta.content }, transports: ["websocket"] });
  socket.on("connect", function () {
    live.textContent = "live";
    live.classList.add("on");
  });
  socket.on("disconnect", function () {
    live.textContent = "reconnecting…";
    live.classList.remove("on");
  });
  socket.on("connect_error", function (error) {
    live.textContent = "not live: " + error.message;
    live.classList.remove("on");
  });
  socket.on("charger:status:changed", function (event) {
    if (!concerns(event.chargePointId)) {
      return;
    }
    if (grid && event.connectorId > 0) {
      setStatus(cellFor(event.chargePointId, event.connectorId), event.status);
    }
    if (onlyCharger !== null && ["Charging", "Finishing", "Available"].indexOf(event.status) >= 0) {
      transactionChanged();
    }
    changed();
  });
  socket.on("charger:connection:changed", function (event) {
    var relevant = false;
    event.changes.forEach(function (change) {
      if (!concerns(change.chargePointId)) {
        return;
      }
      relevant = true;
      cellsOf(change.chargePointId).forEach(function (cell) {
        cell.classList.toggle("online", change.connected);
        cell.classList.toggle("offline", !change.connected);
      });
      var connection = document.getElementById("connection");
      if (connection && onlyCharger !== null) {
        connection.textContent = change.connected ? "online on " + event.node : "offline";
      }
    });
    if (relevant) {
      changed();
    }
  });
  socket.on("meter:values", function (event) {
    if (!concerns(event.chargePointId)) {
      return;
    }
    if (chart && chart.transactionId === event.transactionId) {
      chart.add(event);
    } else if (onlyCharger !== null && event.transactionId) {
      transactionChanged(); // a transaction this page does not show yet
    }
    changed();
  });
  ["charging:started", "charging:stopped"].forEach(function (name) {
    socket.on(name, function (event) {
      if (concerns(event.chargePointId)) {
        changed();
      }
    });
  });
  socket.on("command:result", function (event) {
    if (concerns(event.chargePointId)) {
      changed();
    }
  });
})();
