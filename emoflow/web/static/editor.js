// emoflow inspector: the transcript editor on edit.html. Select words on the transcript (click,
// shift-click or drag), set the span's emotion and intensity, hear the words with Preview. The edits
// are written into the word table's own fields (label_N, intensity_N), so saving posts the same form
// that works without this file; the table stays under a <details> for keyboards and screen readers.
"use strict";

(() => {
  const editor = document.getElementById("word-editor");
  const form = document.querySelector("form.editor");
  if (!editor || !form) return;
  editor.hidden = false;
  const table = form.querySelector("details.word-table");
  if (table) table.open = false;

  const tokens = [...editor.querySelectorAll(".tok")];
  const panel = editor.querySelector(".span-panel");
  const labelBox = panel.querySelector(".span-label");
  const intensityBox = panel.querySelector(".span-intensity");
  const intensityShown = panel.querySelector(".span-intensity-shown");
  const previewButton = panel.querySelector(".preview");
  const revertButton = panel.querySelector(".revert");
  const summary = panel.querySelector(".selection");
  const count = form.querySelector(".edit-count");
  const audio = editor.querySelector("audio.speech");
  const plot = {
    height: Number(editor.dataset.plotHeight),
    minBar: Number(editor.dataset.minBar),
    minOpacity: Number(editor.dataset.minOpacity),
  };
  const colors = Object.fromEntries([...labelBox.options].map((o) => [o.value, o.dataset.color]));
  const byIndex = new Map(tokens.map((tok) => [tok.dataset.index, tok]));
  let anchor = null; // where a shift-click or drag extends from
  let from = null; // the selection: tokens[from..to], inclusive
  let to = null;
  let dragging = false;

  // the same class as pages.emotion_class, for page.css's colours
  const emotionClass = (label) => "emo-" + String(label).toLowerCase().replace(/[^a-z0-9_-]/g, "_");
  const clamp01 = (v) => Math.min(1, Math.max(0, v));
  const field = (name) => form.elements.namedItem(name);
  const selection = () => (from === null ? [] : tokens.slice(from, to + 1));
  const bar = (index) => document.querySelector(`svg.curve .word[data-index="${index}"]`);

  // A word's label and intensity on the transcript and the curve plot (not the form).
  function show(tok, label, intensity) {
    const value = clamp01(Number(intensity));
    tok.dataset.label = label;
    tok.dataset.intensity = String(intensity);
    tok.querySelector(".tok-bar").className = `tok-bar ${emotionClass(label)} int-${Math.round(value * 10)}`;
    const edited = label !== tok.dataset.origLabel
      || Math.abs(value - Number(tok.dataset.origIntensity)) > 1e-6;
    tok.classList.toggle("edited", edited);
    const start = Number(tok.dataset.start).toFixed(2);
    const end = Number(tok.dataset.end).toFixed(2);
    tok.title = `#${tok.dataset.index} ${start}-${end} s: ${label} ${value.toFixed(2)}${edited ? " (edited)" : ""}`;
    const group = bar(tok.dataset.index);
    const rect = group && group.querySelector("rect");
    if (rect) {
      const bottom = Number(rect.getAttribute("y")) + Number(rect.getAttribute("height"));
      const h = Math.max(plot.minBar, value * plot.height);
      rect.setAttribute("y", (bottom - h).toFixed(1));
      rect.setAttribute("height", h.toFixed(1));
      rect.setAttribute("fill", colors[label] || "#888888");
      rect.setAttribute("fill-opacity", (plot.minOpacity + (1 - plot.minOpacity) * value).toFixed(2));
      group.dataset.label = label;
    }
    const edits = tokens.filter((t) => t.classList.contains("edited")).length;
    count.textContent = edits ? `${edits} word${edits === 1 ? "" : "s"} changed` : "";
  }

  // ... and in the form the server reads.
  function set(tok, label, intensity) {
    const i = tok.dataset.index;
    field(`label_${i}`).value = label;
    field(`intensity_${i}`).value = String(intensity);
    const out = document.getElementById(`show-${i}`);
    if (out) out.textContent = Number(intensity).toFixed(2);
    show(tok, label, intensity);
  }

  function select(a, b) {
    from = Math.min(a, b);
    to = Math.max(a, b);
    tokens.forEach((tok, i) => {
      const on = i >= from && i <= to;
      tok.classList.toggle("sel", on);
      tok.setAttribute("aria-pressed", String(on));
      const group = bar(tok.dataset.index);
      if (group) group.classList.toggle("sel", on);
    });
    const words = selection();
    const first = words[0];
    labelBox.value = first.dataset.label;
    intensityBox.value = first.dataset.intensity;
    intensityShown.textContent = Number(first.dataset.intensity).toFixed(2);
    [labelBox, intensityBox, previewButton, revertButton].forEach((el) => { el.disabled = false; });
    if (!audio) previewButton.disabled = true;
    const text = words.map((t) => t.querySelector(".tok-text").textContent).join(" ");
    const start = Number(first.dataset.start).toFixed(2);
    const end = Number(words[words.length - 1].dataset.end).toFixed(2);
    const what = words.length === 1 ? `word ${first.dataset.index}` : `${words.length} words`;
    summary.textContent = `${what}: “${text}” (${start}–${end} s)`;
  }

  function pick(i, extend) {
    if (extend && anchor !== null) select(anchor, i);
    else {
      anchor = i;
      select(i, i);
    }
  }

  tokens.forEach((tok, i) => {
    tok.addEventListener("mousedown", (event) => {
      if (event.button !== 0) return;
      event.preventDefault(); // no text selection while dragging across words
      pick(i, event.shiftKey);
      dragging = true;
    });
    tok.addEventListener("mouseenter", () => { if (dragging) select(anchor, i); });
    tok.addEventListener("keydown", (event) => {
      if (event.key !== "Enter" && event.key !== " ") return;
      event.preventDefault();
      pick(i, event.shiftKey);
    });
  });
  document.addEventListener("mouseup", () => { dragging = false; });
  // a bar on the curve plot selects its word too
  document.querySelectorAll("svg.curve .word").forEach((group) => {
    group.addEventListener("click", (event) => {
      const tok = byIndex.get(group.dataset.index);
      if (tok) pick(tokens.indexOf(tok), event.shiftKey);
    });
  });

  labelBox.addEventListener("change", () => {
    selection().forEach((tok) => set(tok, labelBox.value, tok.dataset.intensity));
  });
  intensityBox.addEventListener("input", () => {
    intensityShown.textContent = Number(intensityBox.value).toFixed(2);
    selection().forEach((tok) => set(tok, tok.dataset.label, intensityBox.value));
  });
  revertButton.addEventListener("click", () => {
    selection().forEach((tok) => set(tok, tok.dataset.origLabel, tok.dataset.origIntensity));
    select(from, to);
  });
  // the table, edited by hand, shows on the transcript and the plot as well
  form.addEventListener("input", (event) => onTable(event.target));
  form.addEventListener("change", (event) => onTable(event.target));
  function onTable(target) {
    const found = /^(label|intensity)_(\d+)$/.exec(target.name || "");
    const tok = found && byIndex.get(found[2]);
    if (!tok) return;
    show(tok, field(`label_${found[2]}`).value, field(`intensity_${found[2]}`).value);
  }

  // Preview: play the speech from the selection's first word's start to its last word's end.
  let stopAt = null;
  let watcher = null;
  function stopWatching() {
    stopAt = null;
    if (watcher !== null) clearInterval(watcher);
    watcher = null;
    editor.classList.remove("previewing");
  }
  function watch() {
    if (stopAt === null) return;
    if (audio.currentTime >= stopAt) {
      audio.pause();
      stopWatching();
    } else if (audio.paused) stopWatching(); // paused by hand
  }
  previewButton.addEventListener("click", () => {
    const words = selection();
    if (!audio || !words.length) return;
    const start = Number(words[0].dataset.start);
    stopWatching();
    const go = () => {
      audio.currentTime = start;
      stopAt = Number(words[words.length - 1].dataset.end);
      editor.classList.add("previewing");
      audio.play().catch(stopWatching);
      watcher = setInterval(watch, 20); // timeupdate comes only every 250 ms: too late to stop on a word
    };
    if (audio.readyState >= 1) go();
    else audio.addEventListener("loadedmetadata", go, { once: true });
  });
})();
