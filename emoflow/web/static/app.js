// emoflow inspector: small progressive enhancements; every page works without this file.
"use strict";

// Runs list: filter rows as you type (the server-side filter still works on submit).
document.querySelectorAll("input[data-filter]").forEach((input) => {
  const table = document.querySelector(input.dataset.filter);
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    table.querySelectorAll("tbody tr").forEach((row) => {
      row.hidden = needle !== "" && !row.textContent.toLowerCase().includes(needle);
    });
  });
});

// Runs list: pick exactly two runs to compare.
const compare = document.getElementById("compare-form");
if (compare) {
  const button = document.getElementById("compare-button");
  const picked = () => [...compare.querySelectorAll("input.pick:checked")].map((box) => box.value);
  compare.addEventListener("change", () => { button.disabled = picked().length !== 2; });
  compare.addEventListener("submit", () => {
    const [a, b] = picked();
    compare.elements.a.value = a;
    compare.elements.b.value = b;
  });
}

// Curve plot: clicking a word's bar highlights its row (evidence table or editor) and scrolls to it.
document.querySelectorAll("svg.curve .word").forEach((bar) => {
  bar.addEventListener("click", () => {
    const section = bar.closest("section") || document;
    section.querySelectorAll(".selected").forEach((el) => el.classList.remove("selected"));
    bar.classList.add("selected");
    const row = section.querySelector(`tr[data-index="${bar.dataset.index}"]`);
    if (row) {
      row.classList.add("selected");
      row.scrollIntoView({ block: "center", behavior: "smooth" });
    }
  });
});

// Curve editor: show each intensity slider's value.
document.querySelectorAll("input[data-show]").forEach((slider) => {
  const out = document.querySelector(slider.dataset.show);
  slider.addEventListener("input", () => { out.textContent = Number(slider.value).toFixed(2); });
});

// Run page: follow a running run's server-sent events, one bar per stage; reload once it has ended,
// so the page shows its result (or its error and the retry button). Without this the page refreshes.
const live = document.querySelector("[data-events]");
if (live && window.EventSource) {
  const source = new EventSource(live.dataset.events);
  source.addEventListener("progress", (event) => showProgress(live, JSON.parse(event.data)));
  source.addEventListener("end", () => {
    source.close(); // else EventSource reconnects to a finished stream
    window.location.reload();
  });
}

function showProgress(panel, doc) {
  doc.stages.forEach((row) => {
    const item = [...panel.querySelectorAll("[data-stage]")].find((el) => el.dataset.stage === row.stage);
    if (!item) return;
    item.className = `stage-row stage-${row.status}`;
    const bar = item.querySelector("progress");
    if (row.fraction === null) bar.removeAttribute("value"); // indeterminate: running, no fraction reported
    else bar.value = row.fraction;
    let note = row.status;
    if (row.status === "running" && row.fraction !== null) note += ` ${Math.round(row.fraction * 100)}%`;
    else if (row.seconds !== null && row.status !== "cached") note += ` ${row.seconds.toFixed(1)} s`;
    item.querySelector(".note").textContent = note;
  });
  const status = panel.querySelector("[data-field=status] .status");
  status.className = `status status-${doc.status}`;
  status.textContent = doc.status;
  panel.querySelector("[data-field=done]").textContent = doc.done;
  panel.querySelector("[data-field=note]").textContent = doc.cancelling
    ? "Cancel requested: the run stops before its next stage."
    : doc.stalled ? "Its worker has stopped renewing the job's lease: it has probably died." : "";
  panel.dataset.seen = String(Number(panel.dataset.seen || 0) + 1); // tests count the events shown
}
