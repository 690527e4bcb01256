// The labelling page: one captcha at a time with the model's reading typed in. Enter accepts the text in the
// box, Ctrl+Enter marks the image unreadable, Escape skips it (it comes back at the end). The next images are
// fetched (and their pictures loaded) ahead, so the next one shows at once; answers go to the server one after
// another, in the background. Plain DOM, no libraries.
"use strict";

const $ = (id) => document.getElementById(id);
const AHEAD = 3;        // images fetched and loaded beyond the one shown
const SHOW_RECENT = 8;  // answers listed
// The server's token, in the page it served: sent with each POST, which no other site's page can do.
const TOKEN = document.querySelector('meta[name="label-token"]').content;

let current = null;            // the image shown: {file, text, confidence, chars, error?}
const ahead = [];              // fetched, not shown yet
const pictures = new Map();    // file -> its preloaded <img>
const answered = new Set();    // files answered on this page: never shown again
const skipping = new Set();    // files skipped whose skip the server has not taken yet
const recent = [];             // this page's last answers, newest first
let chain = Promise.resolve(); // API calls one after another: an answer is in before the next fetch asks
let fetching = false, exhausted = false, retry = null;
let stats = null, firstShown = null, lastAnswer = null, answers = 0;

function percent(p) {
  return (100 * p).toFixed(p >= 0.999 || p < 0.001 ? 0 : 1) + " %";
}

function level(p) {
  return p >= 0.9 ? "good" : p >= 0.6 ? "fair" : "poor";
}

function imageUrl(file) {
  return "/api/label/image?file=" + encodeURIComponent(file);
}

async function api(method, url, body) {
  const init = body === undefined ? { method } :
    { method, headers: { "Content-Type": "application/json", "X-Label-Token": TOKEN }, body: JSON.stringify(body) };
  const response = await fetch(url, init);
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) {
    const error = new Error(answer.error || `HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function inTurn(fn) {  // run fn after every API call queued before it
  const run = chain.then(fn);
  chain = run.catch(() => {});
  return run;
}

function say(text, kind = "") {
  const m = $("message");
  m.textContent = text;
  m.className = kind;
}

function preload(item) {
  const picture = new Image();
  picture.alt = "the captcha to label";
  picture.onerror = () => { picture.alt = `the browser cannot show ${item.file}; mark it unreadable or skip it`; };
  picture.src = imageUrl(item.file);
  pictures.set(item.file, picture);
}

function held(file) {
  return (current !== null && current.file === file) || ahead.some((item) => item.file === file);
}

function refill() {
  if (fetching || exhausted || retry || ahead.length >= AHEAD) return;
  fetching = true;
  const count = AHEAD + 1 + ahead.length + (current ? 1 : 0);  // what is held comes back too
  let failed = false;
  inTurn(async () => {
    const r = await api("GET", `/api/label/next?count=${count}`);
    let added = 0;
    for (const item of r.items) {
      if (held(item.file) || answered.has(item.file) || skipping.has(item.file)) continue;  // a stale answer
      ahead.push(item);
      preload(item);
      added++;
    }
    if (!added) exhausted = true;  // every unanswered image is here already
  }).catch((e) => {
    failed = true;
    say(`could not fetch the next images (${e.message}); trying again`, "error");
    retry = setTimeout(() => { retry = null; refill(); }, 2000);
  }).finally(() => {
    fetching = false;
    if (!current) advance();
    else if (!failed) refill();
  });
}

function advance() {
  current = ahead.shift() || null;
  refill();
  render();
}

function render() {
  const waiting = !current;
  const done = waiting && exhausted && !fetching && !retry;
  if (!waiting || done) {
    if ($("message").textContent === "loading…") say("");
  }
  for (const id of ["frame", "file", "answer", "reading", "actions"]) $(id).hidden = waiting;
  $("done").hidden = !done;
  if (done) {
    showDone();
    return;
  }
  if (waiting) {
    if (!retry) say("loading…");  // else the message says why it waits
    return;
  }
  const item = current;
  firstShown = firstShown || Date.now();
  let picture = pictures.get(item.file);
  if (!picture) {
    preload(item);
    picture = pictures.get(item.file);
  }
  pictures.delete(item.file);
  picture.id = "captcha";
  $("frame").replaceChildren(picture);  // the loaded picture itself: never the previous image under a new label
  $("file").textContent = item.file;
  const input = $("answer");
  input.value = item.text;
  input.focus();
  input.select();
  if (item.confidence === null || item.confidence === undefined) {
    $("suggestion").textContent = item.error ? `the model could not read this file: ${item.error}` :
      item.pending ? "the teacher has not read this image yet (it reads the folder while the page is open): " +
        "type what the image shows" : "no model: type what the image shows";
  } else if (item.disagree) {
    $("suggestion").textContent =
      `the teacher's two models read this image differently; the first reads “${item.text}”`;
  } else {
    $("suggestion").textContent = `model reads “${item.text}”, ${percent(item.confidence)} sure`;
  }
  $("chars").replaceChildren(...item.chars.map((c) => {
    const box = document.createElement("span");
    box.className = "c " + level(c.confidence);
    box.title = `${c.char}: ${percent(c.confidence)}`;
    const ch = document.createElement("b");
    ch.className = "mono";
    ch.textContent = c.char;
    const pct = document.createElement("i");
    pct.textContent = Math.round(100 * c.confidence) + "%";
    box.append(ch, pct);
    return box;
  }));
}

function showDone() {
  $("done-command").textContent = `python train.py --train_dir=${stats ? stats.folder : "FOLDER"}`;
  $("done").querySelector("h2").textContent = !stats || stats.remaining === 0 ? "Every image is answered" :
    `${stats.remaining} images are not answered yet: reload the page to have them offered again`;
}

function showStats(s) {
  stats = s;
  $("folder").textContent = s.folder;
  $("counter").textContent = `${s.labelled} labelled, ${s.unreadable} unreadable: ${s.answered} / ${s.total} ` +
    `in the folder, ${s.remaining} remaining` +
    (s.teacher_reading ? ` (the teacher is still reading ${s.teacher_reading})` : "");
  $("progress-fill").style.width = (s.total ? 100 * s.answered / s.total : 100).toFixed(1) + "%";
  if (!$("done").hidden) showDone();
}

function showRate() {
  if (!answers || !firstShown || !lastAnswer) {
    $("rate").textContent = "– per minute";
    return;
  }
  const minutes = Math.max((lastAnswer - firstShown) / 60000, 1 / 60);
  $("rate").textContent = `${(answers / minutes).toFixed(1)} per minute (${answers} answered on this page)`;
}

function showRecent() {
  $("recent").replaceChildren(...recent.map((entry) => {
    const li = document.createElement("li");
    li.className = entry.state;
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = entry.file;
    const what = document.createElement("span");
    what.className = entry.unreadable ? "what unreadable" : "what mono";
    what.textContent = entry.unreadable ? "unreadable" : entry.label;
    li.append(name, what);
    if (entry.state !== "saved") li.title = entry.state === "saving" ? "saving…" : entry.error;
    return li;
  }));
}

function act(kind) {
  if (!current) return;
  const item = current;
  let body = null;
  if (kind === "accept") {
    const text = $("answer").value.trim();
    if (!text) {
      say("Type what the image shows, mark it unreadable (Ctrl+Enter) or skip it (Esc).", "error");
      return;
    }
    body = { file: item.file, label: text };
  } else if (kind === "unreadable") {
    body = { file: item.file, unreadable: true };
  }
  say("");
  if (body) {
    answered.add(item.file);
    const entry = { file: item.file, label: body.label, unreadable: !!body.unreadable, state: "saving" };
    recent.unshift(entry);
    recent.length = Math.min(recent.length, SHOW_RECENT);
    answers++;
    lastAnswer = Date.now();
    inTurn(() => api("POST", "/api/label/answer", body)).then((r) => {
      entry.state = "saved";
      showStats(r.stats);
      showRecent();
    }, (e) => {
      entry.state = "failed";
      entry.error = e.message;
      answers--;
      if (e.status === 409) {
        say(`${item.file} is answered already, kept as it was: ${e.message}`, "error");
      } else {  // not written: it is offered again
        answered.delete(item.file);
        exhausted = false;
        say(`${item.file} was not saved (${e.message}); it comes back`, "error");
        refill();
      }
      showRecent();
      showRate();
    });
  } else {
    exhausted = false;  // the skipped image comes back at the end of the queue
    skipping.add(item.file);
    inTurn(() => api("POST", "/api/label/skip", { file: item.file }))
      .catch((e) => say(e.message, "error"))
      .finally(() => skipping.delete(item.file));
    say(`skipped ${item.file}: it comes back after the others`);
  }
  showRecent();
  showRate();
  current = null;
  advance();
}

document.addEventListener("keydown", (e) => {
  if (e.isComposing) return;
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    act("unreadable");
  } else if (e.key === "Enter") {
    e.preventDefault();
    act("accept");
  } else if (e.key === "Escape") {
    e.preventDefault();
    act("skip");
  }
});
$("accept").addEventListener("click", () => act("accept"));
$("unreadable").addEventListener("click", () => act("unreadable"));
$("skip").addEventListener("click", () => act("skip"));

async function start() {
  advance();  // the first images are fetched meanwhile
  try {
    const s = await api("GET", "/api/label/stats");
    showStats(s);
    $("model-info").textContent = !s.model ?
      "none: no suggestions, images in file-name order. Start the page with a model trained on these captchas " +
      "to have them read (python app.py --label_dir=FOLDER weights/NAME_best.pt)." :
      (s.model.teacher ? `${s.model.name}, the teacher (until a model is trained on these captchas)` :
        `${s.model.name} (${s.model.checkpoint})`) + ": least confident first";
  } catch (e) {
    say("could not read the progress: " + e.message, "error");
  }
}

start();
