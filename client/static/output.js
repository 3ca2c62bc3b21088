// The dashboard's page of one build: each node's output, live or as its log file, with its
// ANSI colours as styles and its lines' times; and the page that puts a build's parts together.
"use strict";

// --- one build: the nodes' output --------------------------------------------------------

// SGR ("select graphic rendition") sequences, which set colours. The node passes no control
// character on (builder/workspace/log.py): ESC reaches the page as the four characters `\x1b`, so that
// is what is matched (a raw ESC too, should a node send one). Only these become styles; every
// other sequence (cursor moves, screen clears, window titles) stays in the page as visible text.
const SGR = /(?:\\x1b|\x1b)\[([0-9;]{0,32})m/g;
const COLOURS = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
// What each of the other codes shown here sets; codes not here and not a colour change nothing
// here (blink, reverse video, fonts).
const SGR_SETS = { 1: { bold: true }, 2: { faint: true }, 3: { italic: true }, 4: { underline: true },
  22: { bold: false, faint: false }, 23: { italic: false }, 24: { underline: false }, 39: { fg: null }, 49: { bg: null } };

// The colours and weight in force, as a terminal keeps them from one sequence to the next.
class SgrStyle {
  constructor() { this.reset(); }

  reset() {
    this.fg = null;
    this.bg = null;
    this.bold = false;
    this.faint = false;
    this.italic = false;
    this.underline = false;
  }

  clone() { return Object.assign(new SgrStyle(), this); }

  classes() {
    return [this.fg && "ansi-" + this.fg, this.bg && "ansi-bg-" + this.bg, this.bold && "ansi-bold",
      this.faint && "ansi-faint", this.italic && "ansi-italic", this.underline && "ansi-underline"]
      .filter(Boolean).join(" ");
  }

  apply(parameters) {
    const codes = parameters.split(";").map((code) => Number(code || 0));
    for (let i = 0; i < codes.length; i++) {
      if (codes[i] === 38 || codes[i] === 48) i += this.extended(codes[i] === 38 ? "fg" : "bg", codes.slice(i + 1));
      else this.basic(codes[i]);
    }
  }

  basic(code) {
    if (code === 0) this.reset();
    else if (code in SGR_SETS) Object.assign(this, SGR_SETS[code]);
    else if (code >= 30 && code <= 37) this.fg = COLOURS[code - 30];
    else if (code >= 40 && code <= 47) this.bg = COLOURS[code - 40];
    else if (code >= 90 && code <= 97) this.fg = "bright-" + COLOURS[code - 90];
    else if (code >= 100 && code <= 107) this.bg = "bright-" + COLOURS[code - 100];
  }

  // `38;5;N` picks one of 256 colours, of which the first 16 are the named ones shown here;
  // `38;2;R;G;B` (true colour) is not shown. Returns how many codes after the 38 (or 48) it used.
  extended(which, rest) {
    if (rest[0] === 5) {
      if (rest[1] < 16) this[which] = (rest[1] >= 8 ? "bright-" : "") + COLOURS[rest[1] % 8];
      return 2;
    }
    return rest[0] === 2 ? 4 : 0;
  }
}

// `text` into `element`, its SGR sequences turned into spans with classes; `style` carries on.
function appendSgr(element, text, style) {
  let last = 0;
  for (const match of text.matchAll(SGR)) {
    appendStyled(element, text.slice(last, match.index), style);
    style.apply(match[1]);
    last = match.index + match[0].length;
  }
  appendStyled(element, text.slice(last), style);
}

function appendStyled(element, text, style) {
  if (!text) return;
  const classes = style.classes();
  element.append(classes ? el("span", { class: classes }, text) : text);
}

function clock(date) {
  return date.toLocaleTimeString([], { hour12: false });
}

const SETTINGS_PREFIX = "== settings ";

// A node's line times (`GET /builds/<id>/log?node=N&times=1`, builder/workspace/log.py LineTimes): one
// entry a write, `<lines> <ms>`, the first ms since the epoch, each later one since the one before.
// The time each line of the log began, in ms since the epoch; a node's word, so bounded.
function parseLineTimes(text) {
  const times = [];
  let at = null;
  for (const entry of text.split("\n")) {
    const fields = entry.split(" ");
    const lines = Number(fields[0]);
    const ms = Number(fields[1]);
    if (fields.length !== 2 || !Number.isSafeInteger(lines) || lines < 0 || !Number.isSafeInteger(ms)) continue;
    at = at === null ? ms : at + ms;
    for (let i = 0; i < lines && times.length < MAX_TIMED_LINES; i++) times.push(at);
  }
  return times;
}

// One node's output, a line at a time: the build's colours, the node's own lines (`== …`) set
// apart and its `== settings` lines folded, and each line's time, shown on demand: when the
// node wrote it, once the node's line times are read (`useNodeTimes`), else when it reached this
// page. Every line is an element of its own and ends with a hidden newline, so the pane's text
// is the log's text.
class LogView {
  constructor(nodeId, onNodeLine) {
    this.nodeId = nodeId;
    this.onNodeLine = onNodeLine;
    this.element = el("div", { class: "log", id: "output-" + nodeId, "data-node": nodeId, tabindex: 0 });
    this.nodeTimes = [];
    this.clear();
  }

  clear() {
    this.element.replaceChildren();
    this.style = new SgrStyle();
    this.partial = ""; // the line still being written
    this.partialLine = null;
    this.partialSince = null;
    this.settings = null; // the <details> of the settings lines, while they go on
    this.lines = 0; // whole lines shown: the index of the next one in the log
  }

  // The node's times for its lines (parseLineTimes), over the arrival times of the lines shown.
  useNodeTimes(times) {
    this.nodeTimes = times;
    this.element.querySelectorAll(".line").forEach((line, index) => {
      if (index < times.length) line.setAttribute("data-time", clock(new Date(times[index])));
    });
  }

  // When line `index` began: the node's time if it said one, else `arrived`.
  timeOf(index, arrived) {
    return index < this.nodeTimes.length ? new Date(this.nodeTimes[index]) : arrived;
  }

  feed(text) {
    const log = this.element;
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    const now = new Date();
    const lines = (this.partial + text).split("\n");
    this.partial = lines.pop();
    if (this.partialLine) this.partialLine.remove();
    for (const line of lines) {
      this.add(line, this.timeOf(this.lines, this.partialSince || now));
      this.lines += 1;
      this.partialSince = null;
    }
    if (this.partial && !this.partialSince) this.partialSince = now;
    // The unfinished line is drawn from a copy of the style: its sequences count once it is whole.
    this.partialLine = this.partial
      ? this.line(this.partial, this.style.clone(), this.timeOf(this.lines, this.partialSince)) : null;
    if (this.partialLine) log.append(this.partialLine);
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  add(text, at) {
    const line = this.line(text, this.style, at);
    line.append(el("span", { class: "eol" }, "\n"));
    if (!text.startsWith("== ")) {
      this.settings = null;
      this.element.append(line);
      return;
    }
    this.onNodeLine(this.nodeId, text);
    if (!text.startsWith(SETTINGS_PREFIX)) {
      this.settings = null;
      this.element.append(line);
    } else if (this.settings) {
      this.settings.append(line);
      const more = this.settings.childElementCount - 1;
      this.settings.firstChild.setAttribute("data-more", " +" + more + (more === 1 ? " line" : " lines"));
    } else {
      this.settings = el("details", { class: "settings" }, el("summary", { title: "what the sandbox ran with" }, line));
      this.element.append(this.settings);
    }
  }

  // The node's own lines are its words about the build, shown as written; the build's own get their colours.
  line(text, style, at) {
    const node = text.startsWith("== ");
    const kind = !node ? "line" : text.startsWith("== step ") ? "line node-line step-line" : "line node-line";
    const line = el("span", { class: kind, "data-time": at ? clock(at) : null });
    if (node) line.append(text);
    else appendSgr(line, text, style);
    return line;
  }
}

// Follows one node's output for the build: streamed while it runs, whole once it ended.
async function followOutput(buildId, nodeId, view, state, isSettled) {
  const url = "/builds/" + encodeURIComponent(buildId) + "/log?node=" + nodeId + "&follow=1";
  for (;;) {
    let retry = true;
    try {
      const response = await api(url, { headers: { ...authHeaders(), Accept: "text/event-stream" } });
      if (response.status === 404) {
        state.textContent = isSettled() ? "no output from this node" : "no output yet";
        retry = !isSettled();
      } else if (!response.ok) {
        state.textContent = await failureReason(response);
        retry = !isSettled(); // e.g. the node is down: tried again only while the build may still change
      } else {
        view.clear(); // each connection starts from the beginning of the output
        state.textContent = "running";
        retry = await readEvents(response, view, state);
      }
    } catch (error) {
      if (error instanceof Unauthorized) return;
      state.textContent = "stream broke off: " + error.message;
    }
    if (!retry) return;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

// Shows a follow stream's events as they come; whether to connect again once it ends.
async function readEvents(response, view, state) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new EventParser();
  let retry = true;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return retry;
    for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
      if (event.name === "output") view.feed(event.data);
      else if (event.name === "reset") view.clear();
      else if (event.name === "error") state.textContent = event.data;
      else if (event.name === "end" || event.name === "limit") {
        state.textContent = event.name === "end" ? "finished" : "stopped following: the stream reached its time limit";
        retry = false;
      }
    }
  }
}

// Parses server-sent events out of text chunks as they come.
class EventParser {
  constructor() { this.buffer = ""; this.name = "message"; this.data = []; }

  feed(text) {
    this.buffer += text;
    const events = [];
    let end;
    while ((end = this.buffer.search(/\r\n|\r|\n/)) >= 0) {
      const line = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + (this.buffer.startsWith("\r\n", end) ? 2 : 1));
      if (line === "") {
        if (this.data.length) events.push({ name: this.name, data: this.data.join("\n") });
        this.name = "message";
        this.data = [];
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") this.name = value;
        else if (field === "data") this.data.push(value);
      }
    }
    return events;
  }
}

// Two columns up to four nodes (a 2×2 grid at n = 4), then three, then four.
function columnsFor(count) {
  if (count <= 1) return 1;
  if (count <= 4) return 2;
  return count <= 9 ? 3 : 4;
}

// Tabs over the panes: all nodes side by side, or one node's output the full width of the page.
function logTabs(grid, nodeIds) {
  const tabs = el("div", { class: "tabs", role: "tablist", id: "log-tabs" });
  const select = (chosen) => {
    grid.classList.toggle("single", chosen !== null);
    for (const pane of grid.children) pane.hidden = chosen !== null && pane.dataset.node !== chosen;
    for (const tab of tabs.children) tab.setAttribute("aria-selected", String(tab.dataset.node === (chosen ?? "all")));
  };
  for (const nodeId of ["all", ...nodeIds]) {
    const tab = el("button", { type: "button", role: "tab", id: "tab-" + nodeId, "data-node": nodeId,
      "aria-selected": String(nodeId === "all") }, nodeId === "all" ? "All nodes" : "node " + nodeId);
    tab.addEventListener("click", () => select(nodeId === "all" ? null : nodeId));
    tabs.append(tab);
  }
  return tabs;
}

// Reads node `nodeId`'s line times for the build into its view; a failure leaves the arrival times.
async function readNodeTimes(buildId, nodeId, view) {
  try {
    const response = await api("/builds/" + encodeURIComponent(buildId) + "/log?node=" + nodeId + "&times=1");
    if (response.ok) view.useNodeTimes(parseLineTimes(await response.text()));
  } catch (error) {
    if (!(error instanceof Unauthorized)) notice("Could not read node " + nodeId + "'s line times: " + error.message);
  }
}

// Shows each line's time: the node's, read when the box is ticked (and again when a running build's
// output ends), or, for a line the node's times do not reach yet, when it reached this page.
function timesToggle(grid, buildId, views) {
  const box = el("input", { type: "checkbox", id: "show-times" });
  box.addEventListener("change", () => {
    grid.classList.toggle("show-times", box.checked);
    if (box.checked) for (const [nodeId, view] of views) readNodeTimes(buildId, nodeId, view);
  });
  const ended = (nodeId) => { if (box.checked) readNodeTimes(buildId, nodeId, views.get(nodeId)); };
  const label = el("label", { title: "When each node wrote each line, as that node says; a line written after the "
    + "times were read shows when it reached this page." }, box, " line times");
  return { label, ended };
}

// Every node's output, one pane each, with a raw download of each; `onNodeLine(node, text)` gets the node's own lines.
function showLogs(container, buildId, nodeIds, isSettled, onNodeLine) {
  const grid = el("div", { class: "outputs cols-" + columnsFor(nodeIds.length), id: "outputs" });
  const views = new Map(nodeIds.map((nodeId) => [nodeId, new LogView(nodeId, onNodeLine)]));
  const times = timesToggle(grid, buildId, views);
  for (const [nodeId, view] of views) {
    const state = el("span", { class: "pane-state", id: "output-state-" + nodeId }, "connecting");
    const raw = downloadLink("/builds/" + encodeURIComponent(buildId) + "/log?node=" + nodeId,
      "build-" + buildId + "-node-" + nodeId + ".log", "raw", { id: "raw-" + nodeId, class: "raw" });
    grid.append(el("section", { class: "pane", "data-node": nodeId, id: "pane-" + nodeId },
      el("h3", {}, "node " + nodeId + " ", state, raw), view.element));
    followOutput(buildId, nodeId, view, state, isSettled).then(() => times.ended(nodeId));
  }
  container.append(el("div", { class: "log-controls" }, logTabs(grid, nodeIds), times.label), grid);
}

// Whether a matrix's combinations all have their verdicts and one of them is no pass: what
// POST /builds/<id>/rerun-failed runs again.
function someFailed(combinations) {
  return combinations.length > 0 && combinations.every((build) => build.state !== "pending")
    && combinations.some((build) => !(build.state === "accepted" && ["success", "skipped"].includes(build.status)));
}

// A button that POSTs to the build's `action` (rerun, cancel) and hands the answer to `then`.
function actionButton(buildId, action, text, failure, then) {
  const button = el("button", { type: "button", id: action }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await api("/builds/" + encodeURIComponent(buildId) + "/" + action, { method: "POST" });
      if (response.status !== 202) throw new Error(await failureReason(response));
      then(await response.json());
    } catch (error) {
      button.disabled = false;
      if (!(error instanceof Unauthorized)) notice(failure + error.message);
    }
  });
  return button;
}

function showBuild(main, buildId) {
  // Run again: the same repository, ref and commit, as a new build, whose page opens.
  const rerun = actionButton(buildId, "rerun", "Run again", "Could not run the build again: ",
    (body) => window.location.assign("/dashboard/builds/" + encodeURIComponent(body.build_id)));
  // Cancel: ordered like any request; the page shows the verdict `cancelled` once it is in.
  const cancel = actionButton(buildId, "cancel", "Cancel", "Could not cancel the build: ", () => {});
  cancel.hidden = true;
  // A matrix's combinations that did not pass, each run again as a build of its own.
  const rerunFailed = actionButton(buildId, "rerun-failed", "Run failed again",
    "Could not run the failed combinations again: ", (body) => notice("Running again: " +
      body.reruns.map((started) => "build " + started.build_id + " (" + started.combination + ")").join(", ")));
  rerunFailed.hidden = true;
  const name = el("span", { id: "build-name" }, "build " + buildId);
  const secondary = el("span", { class: "muted build-id", id: "build-id" });
  const overview = el("div", { id: "overview" });
  const artifacts = artifactList(buildId);
  const table = el("div", { id: "node-views" });
  const logs = el("section", { id: "logs" }, el("h2", {}, "Every node's output"),
    el("p", { class: "muted" }, "Each node's output is what that node says it saw; only the verdict is agreed."));
  main.append(el("h1", {}, name, " ", secondary, " ", rerun, " ", rerunFailed, " ", cancel), overview,
    artifacts.element,
    el("h2", {}, "Every node's vote and result"), table, logs);
  let done = false;
  let following = false;
  poll(async () => {
    const path = "/builds/" + encodeURIComponent(buildId);
    const [record, nodes] = await Promise.all([apiJson(path), apiJson(path + "/nodes")]);
    name.textContent = buildName(record);
    secondary.textContent = typeof record.number === "number" ? "build " + buildId : "";
    document.title = "pbft-ci " + buildName(record);
    overview.replaceChildren(summary(record));
    cancel.hidden = record.state !== "pending" || Boolean(record.cancels);
    rerunFailed.hidden = !someFailed(record.matrix_builds || []);
    table.replaceChildren(...nodeTable(record, nodes));
    done = settled(record, nodes);
    if (!following) {
      following = true;
      const nodeIds = Object.keys(record.logs || {}).sort((a, b) => a - b);
      showLogs(logs, buildId, nodeIds, () => done, (nodeId, text) => artifacts.nodeLine(nodeId, text));
    }
    await artifacts.load(record);
    if (complete(record, nodes)) return null;
    return done ? SETTLED_POLL_MS : POLL_MS;
  });
}
