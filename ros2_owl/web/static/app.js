// ros2_owl live page: frames and state from the websocket, prompt and thresholds back to it.
// Protocol: ros2_owl/web/protocol.py. No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get("token");
const page = { ws: null, lastSeq: 0, droppedPage: 0, url: null, state: null, retry: 1000,
  camera: null, wanted: null };  // camera: the one the server sends; wanted: the one chosen here

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return `${scheme}//${location.host}/ws${query}`;
}

function connect() {
  const ws = new WebSocket(wsUrl());
  ws.binaryType = "arraybuffer";
  page.ws = ws;
  ws.onopen = () => { setConnection("connected", "up"); page.retry = 1000; };
  ws.onmessage = (event) => {
    if (typeof event.data === "string") onText(JSON.parse(event.data));
    else onFrame(event.data);
  };
  ws.onclose = (event) => {
    const why = event.reason ? `: ${event.reason}` : "";
    setConnection(`disconnected (${event.code}${why}); retrying`, "down");
    setTimeout(connect, page.retry);
    page.retry = Math.min(page.retry * 2, 15000);
  };
}

function setConnection(text, kind) {
  const el = $("connection");
  el.textContent = text;
  el.className = `connection ${kind}`;
}

function send(message) {
  if (page.ws && page.ws.readyState === WebSocket.OPEN) page.ws.send(JSON.stringify(message));
}

// ----- frames ---------------------------------------------------------------------------
function onFrame(buffer) {
  const size = new DataView(buffer).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, size)));
  if (page.camera !== null && header.camera !== page.camera) return;  // sent before a switch
  const jpeg = new Blob([new Uint8Array(buffer, 4 + size)], { type: "image/jpeg" });
  if (page.lastSeq && header.seq > page.lastSeq + 1) page.droppedPage += header.seq - page.lastSeq - 1;
  page.lastSeq = header.seq;
  const img = $("frame");
  const old = page.url;
  page.url = URL.createObjectURL(jpeg);
  img.onload = () => {
    if (old) URL.revokeObjectURL(old);
    img.dataset.seq = String(header.seq);
    img.dataset.camera = String(header.camera);
    img.dataset.shown = String(Number(img.dataset.shown) + 1);
  };
  img.src = page.url;
  showStats(header.stats, header.server);
  showTree(header.result, header.seq);
}

function showStats(stats, server) {
  $("fps").textContent = stats.fps.toFixed(1);
  $("latency").textContent = stats.latency_ms.toFixed(0);
  $("inference").textContent = stats.inference_ms.toFixed(0);
  $("dropped-source").textContent = stats.dropped;
  $("dropped-page").textContent = page.droppedPage;
  $("viewers").textContent = server.viewers;
  $("refused").textContent = server.refused_messages;
  $("source").textContent = stats.source;
}

function labelColour(index) {  // draw.py's label_colour: golden-ratio hue steps
  const h = (index * 0.618033988749895) % 1, s = 0.85, v = 0.95;
  const i = Math.floor(h * 6), f = h * 6 - i, p = v * (1 - s), q = v * (1 - f * s);
  const t = v * (1 - (1 - f) * s);
  const [r, g, b] = [[v, t, p], [q, v, p], [p, v, t], [p, q, v], [t, p, v], [v, p, q]][i % 6];
  return `rgb(${Math.round(r * 255)}, ${Math.round(g * 255)}, ${Math.round(b * 255)})`;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function classificationBars(classification) {
  const box = el("div", "bars");
  const best = Math.max(...classification.scores.map((s) => s.score));
  for (const s of classification.scores) {
    const row = el("div", s.score === best ? "bar best" : "bar");
    row.dataset.label = s.label;
    const track = el("div", "track");
    const fill = el("div", "fill");
    fill.style.width = `${(100 * s.score).toFixed(1)}%`;
    track.append(fill);
    row.append(el("span", "name", s.label), track, el("span", "value", s.score.toFixed(2)));
    box.append(row);
  }
  return box;
}

function showTree(result, seq) {
  const tree = $("tree");
  const children = new Map();
  for (const d of result.detections) {
    if (!children.has(d.parent_id)) children.set(d.parent_id, []);
    children.get(d.parent_id).push(d);
  }
  const build = (parent, depth) => {
    const list = el("ul");
    for (const d of children.get(parent) || []) {
      const item = el("li", "det");
      item.dataset.label = d.label;
      const swatch = el("span", "swatch");
      swatch.style.background = labelColour(d.label_index);
      const box = d.box.map((v) => v.toFixed(0)).join(", ");
      item.append(swatch);
      if (d.track_id) item.append(el("span", "track-id", `#${d.track_id}`));  // --track
      item.append(el("span", "label", d.label), el("span", "score", d.score.toFixed(2)),
        el("span", "box", `[${box}]`));
      for (const c of d.classifications) item.append(classificationBars(c));
      if (depth < 8 && children.has(d.id)) item.append(build(d.id, depth + 1));
      list.append(item);
    }
    return list;
  };
  const root = el("div");
  for (const c of result.image_classifications) {
    const item = el("div", "det image");
    item.append(el("span", "label", "image"), classificationBars(c));
    root.append(item);
  }
  root.append(build(0, 0));
  if (!result.detections.length && !result.image_classifications.length) {
    root.append(el("div", "empty", "nothing above the thresholds"));
  }
  tree.replaceChildren(root);
  tree.dataset.seq = String(seq);
  tree.dataset.prompt = result.prompt;
  const size = result.image_size.join("x");
  $("tree-summary").textContent = `#${seq}, ${result.detections.length} detections, ${size}`;
}

// ----- prompt state ---------------------------------------------------------------------
function onText(message) {
  if (message.type === "state") showState(message.state, true);
  else if (message.type === "prompt") onPromptAnswer(message);
  else if (message.type === "error") showStatus(message.message, false);
  else if (message.type === "cameras") showCameras(message);
}

// ----- cameras (the server sends the list only when there is more than one) -------------
function showCameras(message) {
  const select = $("camera");
  const names = [...select.options].map((o) => o.textContent);
  if (names.join("\n") !== message.cameras.join("\n")) {
    select.replaceChildren(...message.cameras.map((name, i) => {
      const option = el("option", "", name);
      option.value = String(i);
      return option;
    }));
  }
  select.value = String(message.selected);
  $("camera-choice").hidden = message.cameras.length < 2;
  if (page.camera !== message.selected) {
    page.camera = message.selected;
    page.lastSeq = 0;  // each camera numbers its own frames
  }
  const wanted = page.wanted;  // after a reconnect the server starts on its default again
  if (wanted !== null && wanted !== message.selected && wanted < message.cameras.length) {
    send({ cmd: "select_camera", camera: wanted });
  }
}

$("camera").addEventListener("change", () => {
  page.wanted = Number($("camera").value);
  send({ cmd: "select_camera", camera: page.wanted });
});

function showState(state, replaceInput) {
  const input = $("prompt");
  if (replaceInput && (document.activeElement !== input || !input.value)) input.value = state.prompt;
  page.state = state;
  showSliders(state);
  const warnings = state.warnings.length ? ` (warnings: ${state.warnings.join("; ")})` : "";
  showStatus(`in force: ${state.prompt}${warnings}`, true);
}

function onPromptAnswer(answer) {
  const input = $("prompt");
  if (answer.ok) {
    $("prompt-error").hidden = true;
    input.classList.remove("invalid");
    showState(answer.state, false);
    return;
  }
  input.classList.add("invalid");
  $("error-message").textContent = answer.message.split("\n")[0];
  const where = $("error-where");
  if (answer.column !== null && answer.column !== undefined) {
    const text = answer.prompt, col = Math.min(answer.column, text.length);
    const mark = el("mark", "column", text.slice(col, col + 1) || " ");
    mark.title = `column ${col}`;
    where.replaceChildren(text.slice(0, col), mark, text.slice(col + 1),
      `\n${" ".repeat(col)}^ column ${col}`);
    input.focus();
    input.setSelectionRange(col, Math.min(col + 1, text.length));
  } else {
    where.replaceChildren();
  }
  $("prompt-error").hidden = false;
  showStatus(`refused; still in force: ${answer.state.prompt}`, false);
}

function showStatus(text, ok) {
  const status = $("prompt-status");
  status.textContent = text;
  status.className = ok ? "prompt-status ok" : "prompt-status";
}

function showSliders(state) {
  const box = $("sliders");
  box.replaceChildren();
  if (!state.labels.length) box.append(el("div", "empty", "no detect labels in this prompt"));
  for (const item of state.labels) {
    const row = el("div", item.fixed ? "slider fixed" : "slider");
    const name = el("span", "name", item.label);
    const range = el("input");
    Object.assign(range, { type: "range", min: "0", max: "1", step: "0.01" });
    range.value = String(item.threshold);
    range.dataset.label = item.label;
    range.setAttribute("aria-label", `threshold of ${item.label}`);
    const value = el("output", "", item.threshold.toFixed(2));
    if (item.fixed) {
      range.disabled = true;
      row.title = "set by '@' in the prompt, which wins over the slider";
    }
    range.addEventListener("input", () => { value.textContent = Number(range.value).toFixed(2); });
    range.addEventListener("change", () => {
      send({ cmd: "set_threshold", label: item.label, value: Number(range.value) });
    });
    row.append(name, range, value);
    box.append(row);
  }
}

$("prompt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  send({ cmd: "set_prompt", prompt: $("prompt").value });
});
$("prompt").addEventListener("input", () => $("prompt").classList.remove("invalid"));

connect();
