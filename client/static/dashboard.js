// The pbft-ci dashboard: builds, one build, the network. Read-only.
//
// Everything shown comes from the client's JSON routes. Elements are built
// with createElement and textContent only, never by parsing HTML, so a
// branch name or a build's output is shown as the text it is.
//
// With a bearer token configured on the client, every fetch carries
// `Authorization: Bearer <token>`; the user types the token once, and it is
// kept in this tab's sessionStorage (gone when the tab closes, never in a
// URL or a cookie). Live build output is read with fetch() and parsed here,
// because EventSource cannot send an Authorization header.
"use strict";

const TOKEN_KEY = "pbft-ci.token";
const POLL_MS = 2000;
const SETTLED_POLL_MS = 10000;
const RETRY_MS = 2000;

class Unauthorized extends Error {}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function authHeaders() {
  const value = token();
  return value ? { Authorization: "Bearer " + value } : {};
}

// One element; `children` are nodes or strings (which become text nodes).
function el(tag, attributes, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value !== null && value !== undefined) element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

function notice(text) {
  document.getElementById("notice").textContent = text || "";
}

function askForToken(refused) {
  const form = document.getElementById("token-form");
  form.hidden = false;
  notice(refused
    ? "The client refused the token: enter the right one."
    : "This client needs its bearer token to show builds: enter it once for this tab.");
  document.getElementById("token-input").focus();
}

async function api(path, options) {
  const response = await fetch(path, { headers: authHeaders(), cache: "no-store", ...(options || {}) });
  if (response.status === 401) {
    askForToken(Boolean(token()));
    throw new Unauthorized(path);
  }
  return response;
}

async function apiJson(path) {
  const response = await api(path);
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    body = null;
  }
  if (!response.ok) {
    const reason = body && typeof body.error === "string" ? body.error : "HTTP " + response.status;
    throw new Error(reason);
  }
  return body;
}

// Runs `step` now and again after the milliseconds it returns (POLL_MS if it returns
// nothing), until it returns null; errors are shown, not fatal.
function poll(step) {
  const run = async () => {
    let delay = POLL_MS;
    try {
      const wanted = await step();
      delay = wanted === undefined ? POLL_MS : wanted;
      notice("");
    } catch (error) {
      if (error instanceof Unauthorized) return; // waits for the token form
      notice("Could not update: " + error.message);
    }
    if (delay !== null) setTimeout(run, delay);
  };
  run();
}

function setupToken() {
  const form = document.getElementById("token-form");
  const forget = document.getElementById("token-forget");
  forget.hidden = !token();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById("token-input");
    const value = input.value.trim();
    input.value = "";
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    location.reload();
  });
  forget.addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
}

// --- formatting --------------------------------------------------------------

function short(commit) {
  return typeof commit === "string" ? commit.slice(0, 12) : "";
}

function describeResult(result) {
  if (!result) return "—";
  let text = String(result.status);
  if (result.exit_code !== null && result.exit_code !== undefined) text += " (exit " + result.exit_code + ")";
  if (result.commit) text += " @ " + short(result.commit);
  if (Array.isArray(result.combinations)) text += ", " + result.combinations.length + " builds";
  if (typeof result.artifacts === "string") text += ", artifacts " + shortDigest(result.artifacts);
  return text;
}

// "sha256:" and the first 12 hex digits: enough to tell nodes' digests apart at a glance.
function shortDigest(digest) {
  return typeof digest === "string" ? digest.slice(0, 19) : "none";
}

function sameResult(a, b) {
  return Boolean(a && b) && a.status === b.status && a.exit_code === b.exit_code && a.commit === b.commit &&
    (a.artifacts || null) === (b.artifacts || null);
}

function seconds(ms) {
  return (ms / 1000).toFixed(1) + " s";
}

function elapsed(build) {
  if (typeof build.elapsed_ms === "number") return seconds(build.elapsed_ms);
  const started = Date.parse(build.submitted_at);
  return Number.isNaN(started) ? "" : "running " + seconds(Math.max(0, Date.now() - started));
}

// A pull request's build shows its number next to the branch it targets.
function pullRequest(build) {
  return build.pull_request ? el("span", { class: "muted", "data-field": "pull_request" }, " ← #" + build.pull_request)
    : null;
}

// A matrix combination's build shows its combination next to its branch.
function combination(build) {
  return build.combination ? el("span", { class: "muted", "data-field": "combination" }, " [" + build.combination + "]")
    : null;
}

// A matrix's builds, one line each: the combination, linked, and its verdict so far.
function matrixBuilds(record) {
  if (!Array.isArray(record.matrix_builds) || !record.matrix_builds.length) return null;
  return el("span", {}, ...record.matrix_builds.map((build) => el("div", { "data-build-id": build.build_id },
    buildLink(build.build_id, build.combination), " ",
    el("span", { class: build.status ? "status-" + build.status : "state-" + build.state }, build.status || build.state))));
}

function verdictCell(build) {
  if (build.result) {
    return el("td", { class: "status-" + build.result.status, title: build.result.reason || null },
      describeResult(build.result));
  }
  return el("td", { class: "muted" }, build.state === "timeout" ? "no quorum" : "waiting");
}

function buildLink(buildId, text) {
  return el("a", { href: "/dashboard/builds/" + encodeURIComponent(buildId) }, text);
}

// --- the builds list -----------------------------------------------------------

function showBuilds(main) {
  const body = el("tbody");
  main.append(
    el("h1", {}, "Builds"),
    el("p", { class: "muted" }, "Newest first; updates every few seconds."),
    el("table", { id: "builds" },
      el("thead", {}, el("tr", {}, ...["Build", "Submitted", "Repository", "Branch", "Commit", "State", "Verdict",
        "Elapsed", "Agreeing nodes"].map((name) => el("th", {}, name)))),
      body));
  poll(async () => {
    const answer = await apiJson("/builds?limit=50");
    body.replaceChildren(...answer.builds.map((build) => el("tr", { "data-build-id": build.build_id, "data-state": build.state },
      el("td", {}, buildLink(build.build_id, build.build_id)),
      el("td", {}, new Date(build.submitted_at).toLocaleString()),
      el("td", {}, build.repository),
      el("td", { "data-field": "branch" }, build.branch, pullRequest(build), combination(build)),
      el("td", {}, el("code", { title: (build.result && build.result.commit) || build.commit_requested || null },
        short((build.result && build.result.commit) || build.commit_requested))),
      el("td", { class: "state-" + build.state, "data-field": "state" },
        build.progress ? build.state + " (" + build.progress + ")" : build.state),
      verdictCell(build),
      el("td", {}, elapsed(build)),
      el("td", { "data-field": "agreed_by" }, build.agreed_by.join(", ")))));
    if (!answer.builds.length) body.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "No builds yet.")));
  });
}

// --- one build --------------------------------------------------------------------

function certificateLink(buildId) {
  const href = "/builds/" + encodeURIComponent(buildId) + "/certificate";
  const name = "certificate-" + buildId + ".json";
  const link = el("a", { href: href, download: name, id: "certificate" }, "Download the certificate");
  // A plain link cannot carry the Authorization header: with a token, fetch it and save the answer.
  link.addEventListener("click", async (event) => {
    if (!token()) return;
    event.preventDefault();
    try {
      const response = await api(href);
      if (!response.ok) throw new Error("HTTP " + response.status);
      const url = URL.createObjectURL(await response.blob());
      const save = el("a", { href: url, download: name });
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000);
    } catch (error) {
      if (!(error instanceof Unauthorized)) notice("Could not download the certificate: " + error.message);
    }
  });
  return link;
}

function summary(record) {
  const rows = [
    ["Repository", record.repository],
    ["Branch", record.branch],
    ["Pull request", record.pull_request ? "#" + record.pull_request + ", its head built" : null],
    ["Event", record.event && record.event !== "push" ? record.event : null],
    ["Re-run of", record.rerun_of ? buildLink(record.rerun_of, "build " + record.rerun_of) : null],
    ["Matrix of", record.matrix_of ? buildLink(record.matrix_of, "build " + record.matrix_of) : null],
    ["Combination", record.combination || null],
    ["Matrix builds", matrixBuilds(record)],
    ["Cancels", record.cancels ? buildLink(record.cancels, "build " + record.cancels) : null],
    ["Re-runs", record.reruns && record.reruns.length
      ? el("span", {}, ...record.reruns.flatMap((id, i) => (i ? [", "] : []).concat([buildLink(id, id)]))) : null],
    ["Commit requested", record.commit_requested || "the branch's head"],
    ["Submitted", new Date(record.submitted_at).toLocaleString()],
    ["State", record.progress ? record.state + " (" + record.progress + ", as f+1 nodes say)" : record.state],
    ["Verdict", record.result ? describeResult(record.result) : (record.state === "timeout" ? "no quorum" : "waiting")],
    ["Reason", record.result && record.result.reason ? record.result.reason : null],
    ["Commit built", record.result && record.result.commit ? record.result.commit : null],
    ["Elapsed", elapsed(record)],
    ["Agreed by", record.agreed_by.length ? "nodes " + record.agreed_by.join(", ") : "—"],
    ["Artifacts", record.result && typeof record.result.artifacts === "string" ? record.result.artifacts : null],
    ["Artifacts by node", divergentDigests(record)],
    ["Each node said", disputedSplit(record)],
    ["Actions after the verdict", actionsRun(record)],
  ];
  const list = el("dl", { class: "summary", id: "summary" });
  for (const [name, value] of rows) {
    if (value === null) continue;
    list.append(el("dt", {}, name), el("dd", { "data-field": name.toLowerCase().replace(/ /g, "_") }, value));
  }
  if (record.state === "accepted") list.append(el("dt", {}, "Certificate"), el("dd", {}, certificateLink(record.build_id)));
  return list;
}

// A divergent build's digests, one line per node: the nodes built different bytes, and none is the verdict.
function divergentDigests(record) {
  const byNode = record.state === "divergent" && record.result ? record.result.artifacts_by_node : null;
  if (!byNode || typeof byNode !== "object") return null;
  return Object.keys(byNode).map((node) => "node " + node + ": " + (byNode[node] || "none")).join("\n");
}

// What the action runner reported of the spec's `after:` actions, one line each.
function actionsRun(record) {
  if (!Array.isArray(record.actions) || !record.actions.length) return null;
  return record.actions.map((action) => action.name + ": " + action.state
    + (action.exit_code === null ? "" : " (exit " + action.exit_code + ")")
    + (action.reason ? ", " + action.reason : "")).join("\n");
}

// A disputed build's split, one line per node: no result had 2f+1 nodes behind it.
function disputedSplit(record) {
  const split = record.state === "disputed" && record.result ? record.result.split : null;
  if (!split || typeof split !== "object") return null;
  return Object.keys(split).map((node) => "node " + node + ": " + describeResult(split[node])).join("\n");
}

// The signed reply each node sent this client, by node id (the client verified them as they came).
function repliesByNode(record) {
  const replies = {};
  for (const reply of record.replies || []) {
    if (reply && typeof reply.sender === "number") replies[reply.sender] = reply.result;
  }
  return replies;
}

function nodeTable(record, nodes) {
  const replies = repliesByNode(record);
  const votes = {};
  for (const vote of nodes.votes) votes[vote.node] = vote.results;
  // A divergent build has no agreed result to set the nodes' answers against.
  const accepted = record.state === "accepted" ? record.result : null;
  const cellFor = (result, field) => el("td", { "data-field": field,
    class: accepted && result && !sameResult(result, accepted) ? "differs" : null }, describeResult(result));
  const rows = nodes.nodes.map((view) => {
    const voted = votes[view.node] || [];
    const voteCell = el("td", { "data-field": "vote",
      class: accepted && voted.some((result) => !sameResult(result, accepted)) ? "differs" : null },
    voted.length ? voted.map(describeResult).join(" and also ") : "—");
    if (voted.length > 1) voteCell.append(el("div", {}, "signed two different votes"));
    let ledger = "—";
    if (!view.reachable) ledger = "unreachable";
    else if (view.error) ledger = view.error;
    else if (!view.executed) ledger = "not executed yet";
    else if (view.verdict) ledger = view.verdict.state + (view.verdict.result ? ": " + describeResult(view.verdict.result) : "");
    return el("tr", { "data-node": view.node, class: view.reachable ? null : "unreachable" },
      el("td", {}, "node " + view.node),
      cellFor(replies[view.node], "reply"),
      voteCell,
      view.own_result || !view.build ? cellFor(view.own_result, "own_result")
        : el("td", { "data-field": "own_result", class: "muted" }, view.build),
      el("td", { "data-field": "ledger", class: view.reachable ? null : "unreachable",
        title: view.reachable ? null : view.error }, ledger),
      el("td", {}, view.seq === null ? "—" : String(view.seq)));
  });
  const table = el("table", { id: "nodes" },
    el("thead", {}, el("tr", {}, ...["Node", "Reply to this client (signed)", "Vote (signed)",
      "Its own result (as it says)", "Verdict in its ledger", "Seq"].map((name) => el("th", {}, name)))),
    el("tbody", {}, ...rows));
  const parts = [table];
  for (const refusal of nodes.refused_votes) parts.push(el("p", { class: "differs" }, "Ignored: " + refusal));
  return parts;
}

// Settled: the verdict is in, and every reachable node holds a final one too.
function settled(record, nodes) {
  return record.state !== "pending" && nodes.nodes.every((view) => !view.reachable ||
    (view.verdict && view.verdict.state !== "pending"));
}

// Complete: nothing more can come. Every node answered with its own result, and its vote is in.
// A node's ledger can be final before its own build ends (the others' votes decided it), so a
// settled build is still asked about, less often, until it is complete.
function complete(record, nodes) {
  const voters = new Set(nodes.votes.map((vote) => vote.node));
  return settled(record, nodes) && nodes.nodes.every((view) => view.reachable && view.own_result && voters.has(view.node));
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

// Follows one node's output for the build: streamed while it runs, whole once it ended.
async function followOutput(buildId, nodeId, pre, state, isSettled) {
  const url = "/builds/" + encodeURIComponent(buildId) + "/log?node=" + nodeId + "&follow=1";
  for (;;) {
    let retry = true;
    try {
      const response = await api(url, { headers: { ...authHeaders(), Accept: "text/event-stream" } });
      if (response.status === 404) {
        state.textContent = isSettled() ? "no output from this node" : "no output yet";
        retry = !isSettled();
      } else if (!response.ok) {
        let reason = "HTTP " + response.status;
        try { reason = (await response.json()).error || reason; } catch (error) { /* not JSON */ }
        state.textContent = reason;
        retry = !isSettled(); // e.g. the node is down: tried again only while the build may still change
      } else {
        pre.textContent = ""; // each connection starts from the beginning of the output
        state.textContent = "running";
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        const parser = new EventParser();
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          for (const event of parser.feed(decoder.decode(value, { stream: true }))) {
            if (event.name === "output") {
              const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
              pre.append(document.createTextNode(event.data));
              if (atBottom) pre.scrollTop = pre.scrollHeight;
            } else if (event.name === "reset") {
              pre.textContent = "";
            } else if (event.name === "end") {
              state.textContent = "finished";
              retry = false;
            } else if (event.name === "limit") {
              state.textContent = "stopped following: the stream reached its time limit";
              retry = false;
            } else if (event.name === "error") {
              state.textContent = event.data;
            }
          }
        }
      }
    } catch (error) {
      if (error instanceof Unauthorized) return;
      state.textContent = "stream broke off: " + error.message;
    }
    if (!retry) return;
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

// A button that POSTs to the build's `action` (rerun, cancel) and hands the answer to `then`.
function actionButton(buildId, action, text, failure, then) {
  const button = el("button", { type: "button", id: action }, text);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await api("/builds/" + encodeURIComponent(buildId) + "/" + action, { method: "POST" });
      const body = await response.json();
      if (response.status !== 202) throw new Error(body && body.error ? body.error : "HTTP " + response.status);
      then(body);
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
  const heading = el("h1", {}, "Build " + buildId, " ", rerun, " ", cancel);
  const overview = el("div", { id: "overview" });
  const table = el("div", { id: "node-views" });
  const outputs = el("div", { class: "outputs", id: "outputs" });
  main.append(heading, overview, el("h2", {}, "Every node's vote and result"), table,
    el("h2", {}, "Every node's output"),
    el("p", { class: "muted" }, "Each node's output is what that node says it saw; only the verdict is agreed."),
    outputs);
  let done = false;
  let following = false;
  poll(async () => {
    const path = "/builds/" + encodeURIComponent(buildId);
    const [record, nodes] = await Promise.all([apiJson(path), apiJson(path + "/nodes")]);
    overview.replaceChildren(summary(record));
    cancel.hidden = record.state !== "pending" || Boolean(record.cancels);
    table.replaceChildren(...nodeTable(record, nodes));
    done = settled(record, nodes);
    if (!following) {
      following = true;
      for (const nodeId of Object.keys(record.logs || {}).sort((a, b) => a - b)) {
        const pre = el("pre", { id: "output-" + nodeId, "data-node": nodeId });
        const state = el("span", { class: "muted", id: "output-state-" + nodeId }, "connecting");
        outputs.append(el("section", {}, el("h3", {}, "node " + nodeId + " ", state), pre));
        followOutput(buildId, nodeId, pre, state, () => done);
      }
    }
    if (complete(record, nodes)) return null;
    return done ? SETTLED_POLL_MS : POLL_MS;
  });
}

// --- the network ------------------------------------------------------------------

function links(status) {
  const list = el("ul", { class: "plain" });
  for (const [peer, link] of Object.entries(status.links)) {
    list.append(el("li", {}, "→ node " + peer + ": " + (link.connected ? "connected" : "down") +
      " (reconnects " + (link.reconnects ?? "?") + ", dropped " + (link.dropped ?? "?") +
      ", expired " + (link.expired ?? "?") + ")"));
  }
  return list;
}

function drops(status) {
  const entries = Object.entries(status.dropped);
  if (!entries.length) return "none";
  const list = el("ul", { class: "plain" });
  for (const [reason, count] of entries) list.append(el("li", {}, reason + ": " + count));
  return list;
}

function showNetwork(main) {
  const body = el("tbody");
  const client = el("p", { id: "client-view" });
  main.append(el("h1", {}, "Network"), client,
    el("table", { id: "network" },
      el("thead", {}, el("tr", {}, ...["Node", "Address", "State", "View", "Primary", "Last executed",
        "Watermarks (h, H]", "Builds running", "Peer links", "Dropped messages"].map((name) => el("th", {}, name)))),
      body));
  poll(async () => {
    const answer = await apiJson("/network");
    client.textContent = "This client follows view " + answer.client.view + ", primary node " + answer.client.primary +
      ". Each row is what that node says of itself.";
    body.replaceChildren(...answer.nodes.map((view) => {
      const status = view.status;
      if (!view.reachable || !status) {
        return el("tr", { "data-node": view.node, class: view.reachable ? null : "unreachable" },
          el("td", {}, "node " + view.node), el("td", {}, view.address),
          el("td", { "data-field": "state", class: view.reachable ? null : "unreachable" },
            view.reachable ? "answer unusable" : "unreachable"),
          el("td", { colspan: 7, class: "muted" }, view.error || ""));
      }
      return el("tr", { "data-node": view.node },
        el("td", {}, "node " + view.node), el("td", {}, view.address),
        el("td", { "data-field": "state" }, "up"),
        el("td", { "data-field": "view" }, status.view),
        el("td", { "data-field": "primary" }, status.primary),
        el("td", { "data-field": "last_executed" }, status.last_executed),
        el("td", {}, "(" + status.low_watermark + ", " + status.high_watermark + "]"),
        el("td", {}, status.builds_running),
        el("td", {}, links(status)),
        el("td", {}, drops(status)));
    }));
  });
}

// --- start --------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const main = document.getElementById("main");
  main.replaceChildren();
  const path = location.pathname.replace(/\/+$/, "");
  const build = path.match(/^\/dashboard\/builds\/([0-9]+)$/);
  if (build) {
    document.title = "pbft-ci build " + build[1];
    showBuild(main, build[1]);
  } else if (path === "/dashboard/network") {
    document.title = "pbft-ci network";
    showNetwork(main);
  } else {
    document.title = "pbft-ci builds";
    showBuilds(main);
  }
});
