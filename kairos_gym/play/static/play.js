// kairos-gym play: the page's side of the protocol in kairos_gym/play/protocol.py.
//
// The page owns the controls and the step clock; the server owns the episodes. One step is
// in flight at a time (the next waits for its frame), so a slow model or simulator slows
// the page down instead of queueing actions.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  hello: null,
  ws: null,
  nextId: 1,
  inflight: false,     // a step was sent and its frame has not arrived
  running: false,      // play mode: step continuously at the step rate
  held: new Set(),     // movement keys held down (osc7 mode)
  pulse: null,         // an action to send once (a key tapped while a step was in flight)
  gripper: -1,         // osc7: -1 open, +1 closed
  sliders: [],         // sliders mode: the action itself
  selected: 0,         // sliders mode: the dimension the arrow keys move
  lastSent: 0,         // time of the last step sent (ms)
  lastFrames: [],      // arrival times of recent frames, for the steps/s readout
  ended: true,
  recording: false,
  snapshots: [],
  episode: -1,
  history: [],         // per step of the shown episode: {reward, success, done, realReward, psnr}
};

// --- connection ---------------------------------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => setConnection("connected", true);
  ws.onclose = (event) => {
    setConnection(`disconnected (${event.code}${event.reason ? ": " + event.reason : ""}); reload`, false);
    state.running = false;
    updatePlayButton();
  };
  ws.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch (err) {
      showMessage(`unreadable message from the server: ${err}`, true);
      return;
    }
    const handler = HANDLERS[msg.type];
    if (handler) handler(msg);
  };
}

function send(msg) {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
  state.ws.send(JSON.stringify({ ...msg, id: state.nextId++ }));
  return true;
}

function setConnection(text, good) {
  const el = $("connection");
  el.textContent = text;
  el.className = good ? "good" : "bad";
}

function showMessage(text, isError) {
  const el = $("message");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

// --- messages from the server ------------------------------------------------------------
const HANDLERS = {
  hello(msg) {
    state.hello = msg;
    $("env-id").textContent = msg.env_id;
    $("instruction").textContent = `"${msg.instruction}"`;
    document.body.dataset.session = msg.session;
    $("real-view").hidden = !msg.real;
    for (const el of document.querySelectorAll(".real-only")) el.hidden = !msg.real;
    $("stored-starts").hidden = msg.real;
    const select = $("reset-index");
    for (let i = 0; i < Math.min(msg.num_resets, 500); i++) {
      select.add(new Option(String(i), String(i)));
    }
    $("gain-label").hidden = msg.control !== "osc7";
    const rate = $("rate");
    const wanted = String(Math.round(msg.control_freq));
    if ([...rate.options].some((o) => o.value === wanted)) rate.value = wanted;
    buildActionPanel();
    buildKeyTable();
    setConnection(`connected: session ${msg.session}`, true);
    resetNext();
  },

  frame(msg) {
    if (msg.start) {
      // A reset starts a new chart; a rewind within the shown episode keeps its past.
      const same = msg.rewound_to !== undefined && msg.episode === state.episode;
      state.history.length = same ? Math.min(state.history.length, msg.step) : 0;
      applyHoldAction(msg.hold_action);
    } else {
      state.history.length = Math.min(state.history.length, msg.step - 1);
      state.history[msg.step - 1] = {
        reward: msg.reward, success: msg.success_prob, done: msg.done_prob,
        realReward: msg.real_reward, psnr: msg.psnr,
      };
      // The rate of the current run of steps: a pause between key presses starts a new one.
      const now = performance.now();
      const times = state.lastFrames;
      if (times.length && now - times[times.length - 1] > 1000) times.length = 0;
      times.push(now);
      while (times.length > 10) times.shift();
    }
    state.episode = msg.episode;
    state.inflight = false;
    state.ended = msg.ended;
    const img = $("imagined-frame");
    img.src = msg.imagined;
    img.dataset.step = String(msg.step);
    img.dataset.episode = String(msg.episode);
    if (msg.real) $("real-frame").src = msg.real;
    $("episode").textContent = msg.episode;
    $("step").textContent = msg.step + (state.hello.max_episode_steps ? ` / ${state.hello.max_episode_steps}` : "");
    $("seed").textContent = msg.reset_index !== null ? `${msg.seed} (stored start ${msg.reset_index})` : msg.seed;
    $("reward").textContent = fmt(msg.reward, 3);
    $("success").textContent = msg.success_prob === null ? "-" : `${fmt(msg.success_prob, 2)}${msg.success ? " (success)" : ""}`;
    $("success-bar").style.width = `${100 * (msg.success_prob || 0)}%`;
    $("done").textContent = fmt(msg.done_prob, 2);
    $("done-bar").style.width = `${100 * (msg.done_prob || 0)}%`;
    $("real-reward").textContent = fmt(msg.real_reward, 3);
    $("real-success").textContent = msg.real_success === null ? "-" : msg.real_success ? "yes" : "no";
    $("psnr").textContent = msg.psnr === null ? "-" : `${msg.psnr.toFixed(1)} dB`;
    updateSpeed(msg.ms);
    const banner = $("banner");
    banner.hidden = !msg.ended;
    banner.textContent = msg.ended ? `episode over (${msg.ended_by.join(", ")}): N to reset, Z to rewind` : "";
    if (msg.ended && state.running) {
      state.running = false;
      updatePlayButton();
    }
    if (msg.rewound_to !== undefined) {
      const exact = msg.real_replay_exact === false ? " (the real replay differed!)" : "";
      showMessage(`rewound to snapshot ${msg.rewound_to} (episode ${msg.episode}, step ${msg.step})${exact}`, msg.real_replay_exact === false);
    }
    setRecording(msg.recording, msg.recorded_steps);
    drawChart();
  },

  forked(msg) {
    state.snapshots = msg.snapshots;
    renderSnapshots();
    showMessage(`snapshot ${msg.snapshot} at episode ${msg.episode}, step ${msg.step}`, false);
  },

  recording(msg) {
    setRecording(msg.on, msg.recorded_steps);
    showMessage(msg.on ? `recording into ${msg.directory}` : "recording stopped", false);
  },

  recorded(msg) {
    const li = document.createElement("li");
    li.textContent = `${msg.episode}: ${msg.steps} steps (${msg.reason}) -> ${msg.imagined}` +
      (msg.real ? `, ${msg.real}` : "") + `, ${msg.video}`;
    li.dataset.episode = msg.episode;
    li.dataset.imagined = msg.imagined;
    li.dataset.real = msg.real || "";
    li.dataset.video = msg.video;
    $("recorded").prepend(li);
    showMessage(`wrote ${msg.episode} (${msg.steps} steps)`, false);
  },

  error(msg) {
    if (msg.request === "step" || msg.request === "rewind") state.inflight = false;
    if (msg.request === "step" && state.running) {
      state.running = false;
      updatePlayButton();
    }
    showMessage(`${msg.error}: ${msg.message}`, true);
  },
};

function fmt(value, digits) {
  return value === null || value === undefined ? "-" : Number(value).toFixed(digits);
}

function updateSpeed(ms) {
  const parts = [];
  const times = state.lastFrames;
  if (times.length > 1) {
    const rate = (times.length - 1) / ((times[times.length - 1] - times[0]) / 1000);
    parts.push(`${rate.toFixed(1)} steps/s`);
  }
  if (ms && ms.imagined !== null) parts.push(`model ${ms.imagined.toFixed(0)} ms`);
  if (ms && ms.real !== null) parts.push(`simulator ${ms.real.toFixed(0)} ms`);
  $("speed").textContent = parts.join(", ") || "-";
}

function setRecording(on, steps) {
  state.recording = on;
  const button = $("record");
  button.classList.toggle("on", on);
  button.textContent = on ? "stop recording (T)" : "record (T)";
  $("record-status").textContent = on ? `recording: ${steps} steps` : "off";
}

// --- commands ----------------------------------------------------------------------------
function reset(seed) {
  state.running = false;
  updatePlayButton();
  send({ type: "reset", seed });
}

function resetNext() {
  const box = $("seed-input");
  const seed = Math.max(0, Math.floor(Number(box.value) || 0));
  reset(seed);
  box.value = String(seed + 1);
}

function currentAction() {
  const h = state.hello;
  if (h.control !== "osc7") return state.sliders.slice();
  const gain = Number($("gain").value);
  const action = new Array(7).fill(0);
  for (const entry of h.keys) {
    if (entry.dim !== h.gripper_dim && state.held.has(entry.key)) action[entry.dim] += entry.value * gain;
  }
  for (let i = 0; i < 6; i++) action[i] = Math.max(-1, Math.min(1, action[i]));
  action[h.gripper_dim] = state.gripper;
  return action;
}

function sendStep(action) {
  if (state.inflight || state.ended) return false;
  if (send({ type: "step", action })) {
    state.inflight = true;
    state.lastSent = performance.now();
    return true;
  }
  return false;
}

// The step clock: in play mode, or while a movement key is held, one step per period.
function tick() {
  if (state.hello && !state.inflight && !state.ended) {
    const period = 1000 / Number($("rate").value);
    const due = performance.now() - state.lastSent >= period;
    if (state.pulse) {
      if (due && sendStep(state.pulse)) state.pulse = null;
    } else if (due && (state.running || state.held.size > 0)) {
      sendStep(currentAction());
    }
  }
  renderAction();
}

function updatePlayButton() {
  const button = $("play");
  button.classList.toggle("on", state.running);
  button.textContent = state.running ? "pause (P)" : "play (P)";
}

function togglePlay() {
  state.running = !state.running && !state.ended;
  updatePlayButton();
}

function fork() { send({ type: "fork" }); }

function rewind(snapshot) {
  state.running = false;
  updatePlayButton();
  state.pulse = null;
  if (send({ type: "rewind", snapshot })) state.inflight = true;
}

function rewindLatest() {
  if (state.snapshots.length === 0) {
    showMessage("no snapshot yet: fork (X) first", true);
    return;
  }
  rewind(state.snapshots[state.snapshots.length - 1].snapshot);
}

function toggleRecord() { send({ type: "record", on: !state.recording }); }

// --- keyboard ----------------------------------------------------------------------------
function movementEntry(key) {
  const h = state.hello;
  if (!h || h.control !== "osc7") return null;
  return h.keys.find((e) => e.key === key) || null;
}

function onKeyDown(event) {
  if (!state.hello || event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  if (target && (target.tagName === "INPUT" || target.tagName === "SELECT") && event.key !== "Escape") return;
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  const entry = movementEntry(key);
  let handled = true;
  if (entry && entry.dim === state.hello.gripper_dim) {
    if (!event.repeat) {
      state.gripper = -state.gripper;
      // A gripper toggle is a step of its own, as a tapped movement key is.
      state.pulse = currentAction();
    }
  } else if (entry) {
    if (!event.repeat && !state.held.has(key)) {
      state.held.add(key);
      if (!state.running) state.pulse = currentAction();
    }
  } else if (key === "Enter") {
    state.pulse = currentAction();
  } else if (key === "p") {
    togglePlay();
  } else if (key === "n") {
    resetNext();
  } else if (key === "x") {
    fork();
  } else if (key === "z") {
    rewindLatest();
  } else if (key === "t") {
    if (!event.repeat) toggleRecord();
  } else if (state.hello.control !== "osc7" && (key === "[" || key === "]")) {
    const n = state.sliders.length;
    state.selected = (state.selected + (key === "]" ? 1 : n - 1)) % n;
  } else if (state.hello.control !== "osc7" && (key === "ArrowUp" || key === "ArrowDown")) {
    const i = state.selected;
    const low = state.hello.action_low[i];
    const high = state.hello.action_high[i];
    const delta = (key === "ArrowUp" ? 0.05 : -0.05) * (high - low);
    state.sliders[i] = Math.max(low, Math.min(high, state.sliders[i] + delta));
    syncSliders();
    if (!state.running) state.pulse = currentAction();
  } else {
    handled = false;
  }
  if (handled) event.preventDefault();
}

function onKeyUp(event) {
  const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
  state.held.delete(key);
}

// --- panels ------------------------------------------------------------------------------
const OSC_NAMES = ["dx", "dy", "dz", "rx", "ry", "rz", "grip"];

function buildActionPanel() {
  const h = state.hello;
  const panel = $("action");
  panel.replaceChildren();
  const dims = h.action_low.length;
  state.sliders = h.action_low.map((low, i) => (low + h.action_high[i]) / 2);
  for (let i = 0; i < dims; i++) {
    const name = document.createElement("span");
    name.textContent = h.control === "osc7" ? OSC_NAMES[i] : `a${i}`;
    name.id = `action-name-${i}`;
    const value = document.createElement("span");
    value.id = `action-value-${i}`;
    let widget;
    if (h.control === "osc7") {
      widget = document.createElement("div");
      widget.className = "bar";
      widget.append(document.createElement("span"));
    } else {
      widget = document.createElement("input");
      widget.type = "range";
      widget.min = String(h.action_low[i]);
      widget.max = String(h.action_high[i]);
      widget.step = String((h.action_high[i] - h.action_low[i]) / 200);
      widget.addEventListener("input", () => {
        state.sliders[i] = Number(widget.value);
        state.selected = i;
      });
      widget.addEventListener("change", () => widget.blur());  // the keys drive again
    }
    widget.id = `action-widget-${i}`;
    panel.append(name, widget, value);
  }
}

function applyHoldAction(hold) {
  if (!hold || !state.hello) return;
  if (state.hello.control === "osc7") {
    state.gripper = hold[state.hello.gripper_dim];
  } else {
    state.sliders = hold.slice();
    syncSliders();
  }
}

function syncSliders() {
  state.sliders.forEach((v, i) => {
    const widget = $(`action-widget-${i}`);
    if (widget && widget.tagName === "INPUT") widget.value = String(v);
  });
}

function renderAction() {
  const h = state.hello;
  if (!h) return;
  const action = currentAction();
  action.forEach((v, i) => {
    const value = $(`action-value-${i}`);
    if (value) value.textContent = v.toFixed(2);
    const name = $(`action-name-${i}`);
    if (name) name.className = h.control !== "osc7" && i === state.selected ? "selected" : "";
    if (h.control === "osc7") {
      const bar = $(`action-widget-${i}`).firstChild;
      const frac = (v - h.action_low[i]) / (h.action_high[i] - h.action_low[i]);
      bar.style.left = `${Math.min(50, 100 * frac)}%`;
      bar.style.width = `${Math.abs(100 * frac - 50)}%`;
    }
  });
}

function buildKeyTable() {
  const h = state.hello;
  const grid = $("keys");
  grid.replaceChildren();
  const name = (key) => (key === " " ? "Space" : key.length === 1 ? key.toUpperCase() : key);
  for (const entry of [...h.keys, ...h.common_keys]) {
    const key = document.createElement("kbd");
    key.textContent = name(entry.key);
    const what = document.createElement("span");
    what.textContent = entry.what;
    grid.append(key, what);
  }
}

function renderSnapshots() {
  const list = $("snapshots");
  list.replaceChildren();
  for (const snap of state.snapshots) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = `rewind to #${snap.snapshot}`;
    button.addEventListener("click", () => rewind(snap.snapshot));
    li.append(button, ` episode ${snap.episode}, step ${snap.step}`);
    list.append(li);
  }
}

// Reward, success and done probability (and real reward, PSNR) over the shown episode.
const SERIES = [
  { key: "reward", label: "predicted reward", color: "#5fb3ff", scale: "reward" },
  { key: "success", label: "success prob", color: "#5fd38d", scale: "unit" },
  { key: "done", label: "done prob", color: "#c49bff", scale: "unit" },
  { key: "realReward", label: "real reward", color: "#ffb15f", scale: "reward", real: true },
  { key: "psnr", label: "PSNR (0-40 dB)", color: "#ff6b6b", scale: "psnr", real: true },
];

function drawChart() {
  const canvas = $("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width;
  const hgt = canvas.height;
  ctx.clearRect(0, 0, w, hgt);
  const series = SERIES.filter((s) => !s.real || state.hello.real);
  const legend = $("legend");
  if (legend.childElementCount === 0) {
    for (const s of series) {
      const span = document.createElement("span");
      span.textContent = `\u2014 ${s.label}`;
      span.style.color = s.color;
      legend.append(span);
    }
  }
  const hist = state.history;
  const limit = Math.max(state.hello.max_episode_steps || 0, hist.length, 10);
  let rewardMax = 1e-6;
  for (const p of hist) {
    if (!p) continue;
    for (const k of ["reward", "realReward"]) if (p[k] !== null && p[k] > rewardMax) rewardMax = p[k];
  }
  const yOf = (s, v) => {
    const frac = s.scale === "unit" ? v : s.scale === "psnr" ? v / 40 : v / rewardMax;
    return hgt - 4 - Math.max(0, Math.min(1, frac)) * (hgt - 8);
  };
  ctx.strokeStyle = "#333";
  ctx.beginPath();
  ctx.moveTo(0, hgt - 4);
  ctx.lineTo(w, hgt - 4);
  ctx.stroke();
  for (const s of series) {
    ctx.strokeStyle = s.color;
    ctx.beginPath();
    let drawing = false;
    hist.forEach((p, t) => {
      const v = p ? p[s.key] : null;
      if (v === null || v === undefined) {
        drawing = false;
        return;
      }
      const x = ((t + 1) / limit) * w;
      if (drawing) ctx.lineTo(x, yOf(s, v));
      else ctx.moveTo(x, yOf(s, v));
      drawing = true;
    });
    ctx.stroke();
  }
}

// --- wiring ------------------------------------------------------------------------------
function bind(id, handler) {
  $(id).addEventListener("click", (event) => {
    event.currentTarget.blur();  // keep Space and Enter for the keyboard controls
    handler();
  });
}

window.addEventListener("DOMContentLoaded", () => {
  bind("play", togglePlay);
  bind("step-once", () => { state.pulse = currentAction(); });
  bind("reset", resetNext);
  bind("reset-stored", () => {
    state.running = false;
    updatePlayButton();
    send({ type: "reset", reset_index: Number($("reset-index").value) });
  });
  bind("fork", fork);
  bind("rewind-latest", rewindLatest);
  bind("record", toggleRecord);
  $("gain").addEventListener("input", () => { $("gain-value").textContent = Number($("gain").value).toFixed(2); });
  // A focused select or slider would take the keys: hand them back once a value is chosen.
  for (const id of ["rate", "gain", "reset-index"]) {
    $(id).addEventListener("change", (event) => event.currentTarget.blur());
  }
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", () => state.held.clear());
  connect();
  // A timer, not requestAnimationFrame: the clock keeps running in a background tab.
  setInterval(tick, 10);
});
