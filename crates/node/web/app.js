// The shoal web UI: four views over the node's JSON API (/api/v1). Everything shown that came
// from the network (names, URLs, errors) is set as text, never as HTML.
//
// The owner's session: the login answers with a token that this tab keeps in sessionStorage
// and sends as X-Shoal-Session with every request; the node also set an HttpOnly cookie, and
// it wants both (a cookie reaches every port of the host, the token stays with this origin).
// A reload keeps the session; another tab logs in on its own. Every request also carries
// X-Shoal, which no page of another site can add, so that only this page can make the node
// search. Streams are read with fetch, because EventSource cannot send headers.

const $ = (selector) => document.querySelector(selector);
const views = ["files", "search", "downloads", "peers"];
const SOURCE_COLOURS = 6;

const SESSION_KEY = "shoal.session";

let owner = false;
let downloadEvents = null;
let searchEvents = null;
let folder = "";
let filesAfter = null;

// ---- small helpers ---------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value; // through the CSSOM, which the CSP allows
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor((seconds % 3600) / 60)} min`;
}

let noticeTimer = null;

// A line of news at the top; it fades after a while so that it does not outlive its view.
function notice(text) {
  $("#notice").textContent = text;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    $("#notice").textContent = "";
  }, 8000);
}

// The headers of every request to the node.
function headers(extra = {}) {
  const all = { "x-shoal": "1", ...extra };
  const token = sessionStorage.getItem(SESSION_KEY);
  if (token) all["x-shoal-session"] = token;
  return all;
}

// The node said the session is gone (expired, logged out elsewhere, the node restarted).
function sessionLost() {
  sessionStorage.removeItem(SESSION_KEY);
  setOwner(false);
  openLogin();
}

async function api(path, options = {}) {
  const init = { credentials: "same-origin", ...options, headers: headers() };
  if (options.body !== undefined) {
    init.method = options.method || "POST";
    init.headers = headers({ "content-type": "application/json" });
    init.body = JSON.stringify(options.body);
  }
  const response = await fetch(`/api/v1${path}`, init);
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) {
    sessionLost();
    throw new Error("log in as the owner first");
  }
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

// Reads Server-Sent Events from `path` and calls handlers[event](data) for each. `handlers.error`
// gets a failure's message, `handlers.end` is called when the stream ends by itself. Returns an
// AbortController: abort() stops reading and calls neither.
function listen(path, handlers) {
  const controller = new AbortController();
  const read = async () => {
    const response = await fetch(`/api/v1${path}`, { credentials: "same-origin", headers: headers(), signal: controller.signal });
    if (response.status === 401) {
      sessionLost();
      throw new Error("log in as the owner first");
    }
    if (!response.ok) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.error || `HTTP ${response.status}`);
    }
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replaceAll("\r\n", "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length && handlers[event]) handlers[event](data.join("\n"));
      }
    }
  };
  read().then(
    () => {
      if (!controller.signal.aborted && handlers.end) handlers.end();
    },
    (error) => {
      if (!controller.signal.aborted && handlers.error) handlers.error(error.message);
    },
  );
  return controller;
}

// ---- views -----------------------------------------------------------------------------------

function show(view) {
  if (!views.includes(view)) view = "files";
  for (const name of views) {
    $(`#view-${name}`).hidden = name !== view;
    const link = $(`#nav-${name}`);
    if (name === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (view === "files") loadFiles(true);
  if (view === "downloads") followDownloads();
  if (view === "peers") loadPeers();
}

// ---- files -----------------------------------------------------------------------------------

function crumbs() {
  const nav = $("#crumbs");
  nav.replaceChildren();
  const parts = folder ? folder.split("/") : [];
  nav.append(el("button", { type: "button", onclick: () => openFolder("") }, "share"));
  parts.forEach((part, i) => {
    nav.append(" / ", el("button", { type: "button", onclick: () => openFolder(parts.slice(0, i + 1).join("/")) }, part));
  });
}

function openFolder(path) {
  folder = path;
  loadFiles(true);
}

async function loadFiles(fresh) {
  if (fresh) filesAfter = null;
  const query = new URLSearchParams({ limit: "500" });
  if (folder) query.set("folder", folder);
  if (filesAfter) query.set("after", filesAfter);
  let page;
  try {
    page = await api(`/files?${query}`);
  } catch (error) {
    notice(`Could not list the share: ${error.message}`);
    return;
  }
  const body = $("#files-table tbody");
  if (fresh) {
    body.replaceChildren();
    crumbs();
  }
  const prefix = folder ? `${folder}/` : "";
  const folders = new Set([...body.querySelectorAll("tr[data-folder]")].map((r) => r.dataset.folder));
  for (const file of page.files) {
    const rest = file.path.slice(prefix.length);
    const slash = rest.indexOf("/");
    if (slash >= 0) {
      const sub = rest.slice(0, slash);
      if (folders.has(sub)) continue;
      folders.add(sub);
      const row = el("tr", {}, el("td", {}, el("button", { type: "button", class: "folder", onclick: () => openFolder(prefix + sub) }, `${sub}/`)), el("td"), el("td"));
      row.dataset.folder = sub;
      body.append(row);
    } else {
      body.append(el("tr", {}, el("td", {}, rest), el("td", { class: "num" }, bytes(file.size)), el("td", { class: "id", title: file.id }, file.id.slice(0, 16) + "…")));
    }
  }
  // Files being downloaded here (first page only): marked partial, with how much is held.
  for (const file of page.partial || []) {
    const name = file.path.slice(prefix.length);
    const mark = el("span", { class: "partial", title: `${file.held} of ${file.pieces} pieces held; others may fetch them` }, `partial · ${Math.floor((100 * file.held) / file.pieces)}%`);
    body.append(el("tr", { class: "partial" }, el("td", {}, name, " ", mark), el("td", { class: "num" }, bytes(file.size)), el("td", { class: "id", title: file.id }, file.id.slice(0, 16) + "…")));
  }
  filesAfter = page.next;
  $("#files-more").hidden = !page.next;
  if (!body.children.length) body.append(el("tr", {}, el("td", { colspan: "3" }, "Nothing shared here yet.")));
}

// ---- search ----------------------------------------------------------------------------------

function search(pattern) {
  if (searchEvents) searchEvents.abort();
  const body = $("#results-table tbody");
  body.replaceChildren();
  const groups = new Map();
  $("#search-status").textContent = `Searching for “${pattern}”…`;
  const found = () => `${groups.size} file${groups.size === 1 ? "" : "s"}`;
  searchEvents = listen(`/search?${new URLSearchParams({ q: pattern })}`, {
    match: (data) => showMatches(JSON.parse(data), groups, body),
    done: () => {
      $("#search-status").textContent = groups.size ? `${found()} found.` : "Nothing found.";
    },
    failed: (data) => {
      $("#search-status").textContent = `The search failed: ${data}`;
    },
    error: (message) => {
      $("#search-status").textContent = `The search failed: ${message}`;
    },
    end: () => {
      if (!groups.size && $("#search-status").textContent.startsWith("Searching")) {
        $("#search-status").textContent = "The search ended without results.";
      }
    },
  });
}

// Adds a batch of matches to the results, one row per content id.
function showMatches(matches, groups, body) {
  for (const found of matches) {
    let group = groups.get(found.id);
    if (!group) {
      group = { names: new Set(), holders: new Set(), partial: new Set(), size: found.size, row: el("tr") };
      group.row.dataset.id = found.id;
      groups.set(found.id, group);
      body.append(group.row);
    }
    group.names.add(found.name);
    for (const holder of found.holders) group.holders.add(holder);
    for (const part of found.partial || []) group.partial.add(part.url);
    renderResult(found.id, group);
  }
  $("#search-status").textContent = `${groups.size} file${groups.size === 1 ? "" : "s"} found so far…`;
}

function renderResult(id, group) {
  const name = [...group.names][0];
  const holders = [...group.holders];
  const button = el("button", { type: "button", class: "primary", "aria-label": `Download ${name}`, onclick: () => startDownload(name, id, button) }, "Download");
  group.row.replaceChildren(
    el("td", {}, [...group.names].join(", ")),
    el("td", { class: "num" }, bytes(group.size)),
    el("td", { title: holders.join("\n") }, `${holders.length} holder${holders.length === 1 ? "" : "s"}${group.partial.size ? ` (${group.partial.size} partial)` : ""}`),
    el("td", { class: "id", title: id }, id.slice(0, 16) + "…"),
    el("td", {}, button),
  );
}

async function startDownload(name, id, button) {
  if (!owner) {
    openLogin(() => startDownload(name, id, button));
    return;
  }
  button.disabled = true;
  try {
    const body = { targets: [name], hash: id };
    if ($("#save-to").value) body.output = $("#save-to").value;
    const started = await api("/downloads", { body });
    notice(`Downloading ${started.name} to ${started.target}`);
    location.hash = "#downloads";
  } catch (error) {
    notice(`Could not start the download of ${name}: ${error.message}`);
    button.disabled = false;
  }
}

// ---- downloads -------------------------------------------------------------------------------

function followDownloads() {
  if (!owner) {
    openLogin(followDownloads);
    return;
  }
  if (downloadEvents) return;
  const stopped = () => {
    downloadEvents = null;
  };
  downloadEvents = listen("/downloads/events", {
    downloads: (data) => renderDownloads(JSON.parse(data)),
    end: stopped,
    error: stopped,
  });
}

function renderDownloads(rows) {
  const list = $("#downloads-list");
  $("#downloads-empty").hidden = rows.length > 0;
  const seen = new Set();
  for (const row of rows) {
    seen.add(row.target);
    let item = [...list.children].find((li) => li.dataset.target === row.target);
    if (!item) {
      item = el("li");
      item.dataset.target = row.target;
      list.append(item);
    }
    renderDownload(item, row);
  }
  for (const item of [...list.children]) if (!seen.has(item.dataset.target)) item.remove();
}

// A download's item is built once and then updated in place, so that a focused button keeps
// its focus (and a test's reference to it) while the numbers change twice a second.
function renderDownload(item, row) {
  if (!item.parts) {
    const parts = {
      name: el("span", { class: "name" }),
      state: el("span"),
      amount: el("span"),
      speed: el("span"),
      actions: el("div", { class: "actions" }),
      bar: el("progress", { max: "100", value: "0" }),
      shares: el("div", { class: "shares", role: "img", "aria-label": "Share of each source" }),
      sources: el("ul", { class: "sources" }),
      shownState: null,
    };
    item.parts = parts;
    item.replaceChildren(
      el("div", { class: "dl-head" }, parts.name, parts.state, parts.amount, parts.speed, parts.actions),
      parts.bar,
      parts.shares,
      parts.sources,
    );
  }
  const parts = item.parts;
  const percent = row.size ? Math.floor((row.done * 100) / row.size) : row.state === "done" ? 100 : 0;
  const eta = row.speed > 0 ? duration((row.size - row.done) / row.speed) : "–";
  parts.name.textContent = row.name;
  parts.state.className = `state-${row.state}`;
  parts.state.textContent = row.state + (row.detail ? `: ${row.detail}` : "");
  parts.amount.textContent = `${bytes(row.done)} of ${bytes(row.size)}`;
  parts.speed.textContent = row.state === "running" ? `${bytes(row.speed)}/s, ETA ${eta}` : "";
  parts.bar.value = percent;
  parts.bar.setAttribute("aria-label", `${row.name}: ${percent}%`);
  if (parts.shownState !== row.state) {
    parts.shownState = row.state;
    const act = (label, path) =>
      el("button", { type: "button", "aria-label": `${label} ${row.name}`, onclick: () => control(path, row.target) }, label);
    parts.actions.replaceChildren();
    if (row.state === "running") parts.actions.append(act("Pause", "pause"), act("Cancel", "cancel"));
    if (row.state === "paused" || row.state === "failed") parts.actions.append(act("Resume", "resume"), act("Cancel", "cancel"));
  }
  const total = row.sources.reduce((sum, s) => sum + s.bytes, 0) || 1;
  parts.shares.replaceChildren();
  parts.sources.replaceChildren();
  row.sources.forEach((source, i) => {
    const colour = `var(--s${(i % SOURCE_COLOURS) + 1})`;
    const width = (source.bytes * 100) / total;
    if (width > 0) parts.shares.append(el("span", { style: `width:${width}%;background:${colour}`, title: source.url }));
    parts.sources.append(
      el(
        "li",
        {},
        el("span", { class: "swatch", style: `background:${colour}` }),
        `${source.kind} ${source.url} — ${source.state}, ${bytes(source.bytes)}`,
        source.speed ? `, ${bytes(source.speed)}/s` : "",
        source.bad_pieces ? `, ${source.bad_pieces} bad pieces` : "",
        source.pieces != null ? `, holds ${source.pieces} pieces (downloading too)` : "",
      ),
    );
  });
  // What this node sent of the same file to other downloaders (the owner's view).
  (row.uploads || []).forEach((upload) => {
    parts.sources.append(el("li", { class: "upload" }, `sent to ${upload.peer}: ${bytes(upload.bytes)}`));
  });
}

async function control(what, target) {
  try {
    await api(`/downloads/${what}`, { body: { target } });
  } catch (error) {
    notice(`Could not ${what}: ${error.message}`);
  }
}

// ---- peers -----------------------------------------------------------------------------------

// The peer table is public; when and how much this node used each peer is the owner's alone.
async function loadPeers() {
  let peers;
  try {
    peers = await api("/peers");
  } catch (error) {
    notice(`Could not list the peers: ${error.message}`);
    return;
  }
  const body = $("#peers-table tbody");
  body.replaceChildren(
    ...peers.map((p) =>
      el(
        "tr",
        {},
        el("td", {}, p.url),
        el("td", {}, p.kind),
        el("td", {}, p.state),
        el("td", {}, !("last_seen_s" in p) ? "–" : p.last_seen_s === null ? "never" : `${duration(p.last_seen_s)} ago`),
        el("td", { class: "num" }, "bytes" in p ? bytes(p.bytes) : "–"),
        el("td", { class: "num" }, p.failures),
        el("td", {}, p.learnt ? "yes" : "no"),
      ),
    ),
  );
  if (!peers.length) body.append(el("tr", {}, el("td", { colspan: "7" }, "No peers yet.")));
  loadDht();
}

// The node on the Mainline DHT (the owner's view: the status holds it).
async function loadDht() {
  const line = $("#dht-state");
  const status = owner ? await api("/status").catch(() => null) : null;
  if (!status || !status.dht) {
    line.hidden = true;
    return;
  }
  const dht = status.dht;
  let text = "Mainline DHT: off.";
  if (dht.running) {
    const reach = dht.reachable ? "reachable" : dht.serving ? "serving, not known to be reachable yet" : "not reachable (client mode)";
    const last = dht.lookups.length ? ` · last lookup ${dht.lookups[0].ms} ms, ${dht.lookups[0].found} found` : "";
    text = `Mainline DHT: ${dht.nodes} nodes · ${reach} · ${dht.announced} ids announced${last}`;
  }
  line.textContent = text;
  line.hidden = false;
}

// ---- owner login -----------------------------------------------------------------------------

let afterLogin = null;

function setOwner(value) {
  const was = owner;
  owner = value;
  $("#login-button").textContent = value ? "Log out" : "Log in";
  if (value) offerDownloadDir();
  if (was !== value && !$("#view-peers").hidden) loadPeers();
}

// When the node has a download directory, a download may go there instead of the share.
async function offerDownloadDir() {
  const status = await api("/status").catch(() => null);
  const select = $("#save-to");
  if (!status || !status.download_dir || select.options.length > 1) return;
  select.append(el("option", { value: status.download_dir }, `the download directory (${status.download_dir})`));
  select.hidden = false;
  $("#save-to-label").hidden = false;
}

function openLogin(then) {
  afterLogin = then || null;
  $("#login-error").textContent = "";
  $("#secret").value = "";
  const dialog = $("#login-dialog");
  if (!dialog.open) dialog.showModal();
  $("#secret").focus();
}

async function login(event) {
  event.preventDefault();
  try {
    const session = await api("/login", { body: { secret: $("#secret").value } });
    sessionStorage.setItem(SESSION_KEY, session.token);
  } catch (error) {
    $("#login-error").textContent = error.message === "Access denied" ? "That secret is not this node's." : error.message;
    return;
  }
  $("#secret").value = "";
  $("#login-dialog").close();
  setOwner(true);
  notice("Logged in as the owner.");
  const then = afterLogin;
  afterLogin = null;
  if (then) then();
}

async function logout() {
  await api("/logout", { body: {} }).catch(() => {});
  sessionStorage.removeItem(SESSION_KEY);
  setOwner(false);
  if (downloadEvents) downloadEvents.abort();
  downloadEvents = null;
  notice("Logged out.");
}

// ---- start -----------------------------------------------------------------------------------

async function start() {
  $("#search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search($("#q").value.trim());
  });
  $("#peer-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/peers", { body: { url: $("#peer-url").value.trim() } });
      $("#peer-url").value = "";
      notice("Peer added.");
      loadPeers();
    } catch (error) {
      notice(`Could not add the peer: ${error.message}`);
    }
  });
  $("#files-more").addEventListener("click", () => loadFiles(false));
  $("#login-form").addEventListener("submit", login);
  $("#login-cancel").addEventListener("click", () => $("#login-dialog").close());
  $("#login-button").addEventListener("click", () => (owner ? logout() : openLogin()));
  $("#copy-url").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(location.origin);
      notice(`Copied ${location.origin}`);
    } catch {
      notice(`This node's address: ${location.origin}`);
    }
  });
  window.addEventListener("hashchange", () => show(location.hash.slice(1)));
  // A reload keeps this tab's session (sessionStorage); the node says whether it still holds.
  const session = sessionStorage.getItem(SESSION_KEY) ? await api("/session").catch(() => ({ owner: false })) : { owner: false };
  if (!session.owner) sessionStorage.removeItem(SESSION_KEY);
  setOwner(session.owner);
  show(location.hash.slice(1));
}

start();
