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
