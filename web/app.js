// The web app's page: images in (file picker, drag and drop, paste), one POST /api/predict per image,
// a card per image with the text, its computed answer (a model that reads sums), its confidence, an "unsure"
// mark below the server's MIN_CONFIDENCE and a bar per character. With several models served
// (app.py --models_dir), a picker chooses the one to read with. Plain DOM, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const results = $("results");
let done = 0, failed = 0;
let chosen = null;  // the model picked (its name), or null: the server's default
let served = null;  // the names of the models served, as last listed (null: not yet)

function withModel(path) {
  return chosen === null ? path : `${path}?model=${encodeURIComponent(chosen)}`;
}

function percent(p) {
  return (100 * p).toFixed(p >= 0.999 || p < 0.001 ? 0 : 1) + " %";
}

function level(p) {
  return p >= 0.9 ? "good" : p >= 0.6 ? "fair" : "poor";
}

async function showModel() {
  try {
    const response = await fetch(withModel("/api/model"));
    const m = await response.json();
    if (!response.ok) throw new Error(m.error || response.statusText);
    const fmt = (v) => (v === null || v === undefined ? "–" : percent(v));
    $("model-name").textContent = `${m.name} (${m.head} head)`;
    $("model-checkpoint").textContent = m.checkpoint;
    $("model-charset").textContent = m.charset;
    $("model-length").textContent = m.length[0] === m.length[1] ? m.length[0] : `${m.length[0]}–${m.length[1]}`;
    $("model-size").textContent = `${m.image_size.width} × ${m.image_size.height} × ${m.channels}`;
    $("model-accuracy").textContent = fmt(m.accuracy);
    $("model-char-accuracy").textContent = fmt(m.char_accuracy);
    $("model-epoch").textContent = m.epoch ?? "–";
    $("model-parameters").textContent = (m.parameters / 1e6).toFixed(2) + " M";
    $("model-answer").textContent = m.answer === "arith" ? "sums, computed" : "the text";
    $("model-min-confidence").textContent = m.min_confidence ? String(m.min_confidence) : "never";
  } catch (e) {
    $("model-name").textContent = "model info unavailable: " + e.message;
  }
}

// The models served: a picker when there are several; listed again every few seconds, as files come and go.
async function listModels() {
  let listing;
  try {
    const response = await fetch("/api/models");
    listing = await response.json();
    if (!response.ok) throw new Error(listing.error || response.statusText);
  } catch (e) {
    if (served === null) { served = []; showModel(); }  // the panel says what is wrong
    return;  // else it keeps what it shows
  }
  const names = listing.models.map((m) => m.name);
  const picker = $("model-picker");
  const before = chosen;
  if (chosen !== null && !names.includes(chosen)) chosen = null;  // its file was removed
  if (chosen === null && names.length > 1) chosen = listing.default ?? names[0];
  if (names.length <= 1) chosen = null;
  const changed = served === null || names.join("\n") !== served.join("\n");
  served = names;
  if (changed) {
    picker.replaceChildren(...listing.models.map((m) => {
      const option = document.createElement("option");
      option.value = m.name;
      option.textContent = `${m.name} (${m.model}, ${m.runtime})` + (m.name === listing.default ? " · default" : "");
      return option;
    }));
  }
  if (chosen !== null) picker.value = chosen;
  $("picker").hidden = names.length <= 1;
  if (changed || before !== chosen) showModel();
}

function updateSummary() {
  const total = results.children.length;
  $("toolbar").hidden = total === 0;
  $("summary").textContent = `${total} image${total === 1 ? "" : "s"}: ${done} read` +
    (failed ? `, ${failed} refused` : "") + (done + failed < total ? ", reading…" : "");
}

function charColumn(c) {
  const column = document.createElement("div");
  column.className = "char";
  column.title = c.candidates.map((k) => `${k.char}  ${percent(k.p)}`).join("\n");
  const bar = document.createElement("div");
  bar.className = "bar";
  const fill = document.createElement("div");
  fill.className = "fill " + level(c.confidence);
  fill.style.height = (100 * c.confidence).toFixed(1) + "%";
  bar.appendChild(fill);
  const label = document.createElement("div");
  label.className = "mono";
  label.textContent = c.char;
  const pct = document.createElement("div");
  pct.className = "pct";
  pct.textContent = Math.round(100 * c.confidence) + "%";
  column.append(bar, label, pct);
  const second = c.candidates[1];
  if (c.confidence < 0.9 && second) {  // an unsure character: name the runner-up
    const alt = document.createElement("div");
    alt.className = "alt";
    alt.textContent = `or ${second.char} ${Math.round(100 * second.p)}%`;
    column.appendChild(alt);
  }
  return column;
}

function render(card, answer) {
  card.querySelector(".text").textContent = answer.text || "(nothing)";
  const computed = card.querySelector(".answer");
  if ("answer" in answer) {  // a model that reads sums: what to type in
    const value = answer.answer !== null && answer.answer !== undefined;
    computed.textContent = value ? `= ${answer.answer}` : `no answer: ${answer.answer_error || "not a sum"}`;
    computed.classList.toggle("none", !value);
  }
  if (answer.unsure) {  // below the server's (or the request's) MIN_CONFIDENCE: check it by eye
    card.classList.add("unsure");
    card.querySelector(".unsure-mark").hidden = false;
  }
  card.querySelector(".confidence").textContent = "confidence " + percent(answer.confidence);
  card.querySelector(".chars").replaceChildren(...answer.chars.map(charColumn));
  card.dataset.state = "done";
}

async function read(file) {
  const card = $("card").content.firstElementChild.cloneNode(true);
  const url = URL.createObjectURL(file);
  const img = card.querySelector("img");
  img.src = url;
  img.onerror = () => { img.style.visibility = "hidden"; };  // not something the browser can show
  card.querySelector(".name").textContent = `${file.name || "pasted image"} · ${(file.size / 1024).toFixed(1)} KB` +
    (chosen === null ? "" : ` · ${chosen}`);
  results.prepend(card);
  updateSummary();
  const form = new FormData();
  form.append("file", file, file.name || "pasted.png");
  try {
    const response = await fetch(withModel("/api/predict"), { method: "POST", body: form });
    const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
    if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
    render(card, answer);
    done++;
  } catch (e) {
    card.dataset.state = "error";
    card.querySelector(".text").textContent = "";
    card.querySelector(".error").textContent = e.message;
    failed++;
  }
  updateSummary();
}

function readAll(files) {
  for (const file of files) read(file);
}

const drop = $("drop");
$("files").addEventListener("change", (e) => { readAll(e.target.files); e.target.value = ""; });
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  readAll(e.dataTransfer.files);
});
// A drop outside the zone would make the browser navigate away to the image.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());
document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.items || [])].filter((i) => i.kind === "file").map((i) => i.getAsFile());
  if (files.length) { e.preventDefault(); readAll(files); }
});
$("clear").addEventListener("click", () => {
  for (const img of results.querySelectorAll("img")) if (img.src) URL.revokeObjectURL(img.src);
  results.replaceChildren();
  done = failed = 0;
  updateSummary();
});

$("model-picker").addEventListener("change", (e) => { chosen = e.target.value; showModel(); });

listModels();
setInterval(listModels, 5000);
