// emoflow inspector: "play both" on compare.html. The two runs' media start together, pause and seek
// together, and B follows A: drift under HARD_DRIFT is taken up by nudging B's playback rate, more by
// a seek. What differs between the runs is worked out on the server; this file only plays.
"use strict";

(() => {
  const box = document.querySelector("[data-sync]");
  if (!box) return;
  const [a, b] = box.querySelectorAll(".sync-media");
  if (!a || !b) return; // one run has nothing to play: each element keeps its own controls
  const controls = box.querySelector(".sync-controls");
  const button = controls.querySelector(".play-both");
  const drift = controls.querySelector(".drift");
  const HARD_DRIFT = 0.1; // s: apart by more than this, B seeks to A
  const SOFT_DRIFT = 0.02; // s: apart by more than this, B plays a little faster or slower
  controls.hidden = false;

  const other = (el) => (el === a ? b : a);
  const showDrift = () => { drift.textContent = Math.abs(a.currentTime - b.currentTime).toFixed(2); };
  const label = () => { button.textContent = a.paused && b.paused ? "Play both" : "Pause both"; };

  button.addEventListener("click", () => {
    if (!a.paused || !b.paused) {
      a.pause();
      b.pause();
      return;
    }
    const at = a.ended || b.ended ? 0 : a.currentTime;
    a.currentTime = at;
    b.currentTime = at;
    b.playbackRate = 1;
    Promise.all([a.play(), b.play()]).catch(() => { a.pause(); b.pause(); });
  });

  // Each handler acts only when the other element is not yet in the same state, so the echo of
  // its own change does nothing.
  [a, b].forEach((el) => {
    el.addEventListener("play", () => {
      const peer = other(el);
      if (peer.paused && !peer.ended) {
        peer.currentTime = el.currentTime;
        peer.play().catch(() => {});
      }
      label();
    });
    el.addEventListener("pause", () => {
      const peer = other(el);
      if (!peer.paused) peer.pause();
      b.playbackRate = 1;
      label();
    });
    el.addEventListener("seeked", () => {
      const peer = other(el);
      if (Math.abs(peer.currentTime - el.currentTime) > HARD_DRIFT) peer.currentTime = el.currentTime;
      showDrift();
    });
  });

  // drift: B follows A while both play
  a.addEventListener("timeupdate", () => {
    showDrift();
    if (a.paused || b.paused || b.seeking) return;
    const ahead = a.currentTime - b.currentTime; // > 0: B is behind
    if (Math.abs(ahead) > HARD_DRIFT) {
      b.currentTime = a.currentTime;
      b.playbackRate = 1;
    } else if (Math.abs(ahead) > SOFT_DRIFT) {
      b.playbackRate = 1 + Math.max(-0.1, Math.min(0.1, ahead)); // closes the gap in about a second
    } else {
      b.playbackRate = 1;
    }
  });
  b.addEventListener("timeupdate", showDrift);
  label();
})();
