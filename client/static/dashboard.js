// The pbft-ci dashboard: builds, one build, the network.
//
// Everything shown comes from the client's JSON routes. Elements are built
// with createElement and textContent only, never by parsing HTML, so a
// branch name or a build's output is shown as the text it is; a build's ANSI
// colours become spans with classes (see SgrStyle), nothing else of its
// output is interpreted.
//
// With a bearer token configured on the client, every fetch carries
// `Authorization: Bearer <token>`; the user types the token once, and it is
// kept in this tab's sessionStorage (gone when the tab closes, never in a
// URL or a cookie). Live build output is read with fetch() and parsed here,
// because EventSource cannot send an Authorization header; downloads are
// fetched and saved from memory for the same reason.
"use strict";

const TOKEN_KEY = "pbft-ci.token";
const POLL_MS = 2000;
const SETTLED_POLL_MS = 10000;
const RETRY_MS = 2000;
const PAGE_SIZE = 50;
// Line times read from a node, at most: its times file is capped (node/build/log.py), its word is not.
const MAX_TIMED_LINES = 1000000;

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
    if (value !== null && value !== undefined && value !== false) element.setAttribute(name, String(value));
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

// Why the client refused: the `error` of its JSON answer, or the HTTP status.
async function failureReason(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch (error) {
    // Not JSON: the status is all there is.
  }
  return "HTTP " + response.status;
}

async function apiJson(path) {
  const response = await api(path);
  if (!response.ok) throw new Error(await failureReason(response));
  return response.json();
}

// Runs `step` now and again after the milliseconds it returns (POLL_MS if it returns nothing),
// until it returns null; errors are shown, not fatal. The function returned runs `step` again at
// once (the list's filters changed); `step` gets a check saying whether its answer is still the
// newest asked for, so a slow older answer never replaces a newer one.
function poll(step) {
  let timer = null;
  let generation = 0;
  const run = async () => {
    clearTimeout(timer);
    const mine = ++generation;
    const current = () => mine === generation;
    let delay = POLL_MS;
    try {
      const wanted = await step(current);
      delay = wanted === undefined ? POLL_MS : wanted;
      if (current()) notice("");
    } catch (error) {
      if (error instanceof Unauthorized) return; // waits for the token form
      if (current()) notice("Could not update: " + error.message);
    }
    if (current() && delay !== null) timer = setTimeout(run, delay);
  };
  run();
  return run;
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

// A link that saves what `href` answers as the file `name`. A plain link cannot carry the
// Authorization header: with a token the answer is fetched here and saved from memory.
function downloadLink(href, name, text, attributes) {
  const link = el("a", { ...(attributes || {}), href: href, download: name }, text);
  link.addEventListener("click", async (event) => {
    if (!token()) return;
    event.preventDefault();
    try {
      const response = await api(href);
      if (!response.ok) throw new Error(await failureReason(response));
      saveBlob(await response.blob(), name);
    } catch (error) {
      if (!(error instanceof Unauthorized)) notice("Could not download " + text + ": " + error.message);
    }
  });
  return link;
}

function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const save = el("a", { href: url, download: name });
  document.body.append(save);
  save.click();
  save.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// --- formatting --------------------------------------------------------------

function short(commit) {
  return typeof commit === "string" ? commit.slice(0, 12) : "";
}

// "failure (exit 1)": how a build ended, as one node or the verdict says.
function statusText(result) {
  const code = result.exit_code;
  return code === null || code === undefined ? String(result.status) : result.status + " (exit " + code + ")";
}

function describeResult(result) {
  if (!result) return "—";
  let text = statusText(result);
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

function bytesText(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / (1024 * 1024)).toFixed(1) + " MiB";
}

function elapsed(build) {
  if (typeof build.elapsed_ms === "number") return seconds(build.elapsed_ms);
  const started = Date.parse(build.submitted_at);
  return Number.isNaN(started) ? "" : "running " + seconds(Math.max(0, Date.now() - started));
}

function firstLine(text) {
  return typeof text === "string" ? text.split("\n", 1)[0] : "";
}

// The forge's page of the commit: the client lets only http(s) links through, and so does the page.
function safeUrl(url) {
  return typeof url === "string" && /^https?:\/\//i.test(url) ? url : null;
}

// "example #42" once the client numbers builds per repository; the build id until then.
function buildName(build) {
  return typeof build.number === "number" ? build.repository + " #" + build.number : "build " + build.build_id;
}

function buildLink(buildId, text) {
  return el("a", { href: "/dashboard/builds/" + encodeURIComponent(buildId) }, text);
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

// --- verdicts ------------------------------------------------------------------

// The colour of each verdict: it says how the build went, not how far the record got
// (an accepted failure is red).
const VERDICT_TONES = {
  success: "good", failure: "bad", error: "bad", timeout: "bad", disputed: "bad", divergent: "bad",
  cancelled: "neutral", skipped: "neutral", matrix: "neutral", pending: "waiting",
};
const VERDICTS = ["success", "failure", "error", "timeout", "cancelled", "skipped", "disputed", "divergent", "pending"];

// The agreed result's status once accepted; otherwise the record's state (pending, timeout, disputed,
// divergent). The client says it as `verdict`; a client from before that is read the same way here.
function verdictOf(build) {
  if (typeof build.verdict === "string") return build.verdict;
  return build.state === "accepted" && build.result ? build.result.status : build.state;
}

function toneClass(verdict) {
  return "tone-" + (VERDICT_TONES[verdict] || "neutral");
}

function verdictText(build) {
  if (build.state === "accepted" && build.result) return statusText(build.result);
  if (build.state === "timeout") return "timeout: no quorum";
  return build.progress ? build.state + " (" + build.progress + ")" : build.state;
}

function dissentLine(entry) {
  if (entry.kind === "silent") return "node " + entry.node + " did not answer";
  return "node " + entry.node + " said " + (entry.said ? statusText(entry.said) : "something else");
}

// A mark on a build that some node disagreed with or never answered; its title says which and how.
function dissentMark(build) {
  if (!Array.isArray(build.dissent) || !build.dissent.length) return null;
  const said = build.dissent.map(dissentLine).join("; ") + (build.dissent_final === false ? " (so far)" : "");
  return el("span", { class: "dissent", "data-field": "dissent", title: said, "aria-label": said },
    "⚠ " + build.dissent.length);
}

// The verdict in its colour, the dissent mark, and for a build that did not succeed the reason.
function verdictCell(build) {
  const verdict = verdictOf(build);
  const reason = verdict !== "success" && build.result && build.result.reason ? build.result.reason : null;
  return el("td", { class: "verdict " + toneClass(verdict), "data-field": "verdict", "data-verdict": verdict },
    el("span", { class: "verdict-word" }, verdictText(build)), " ", dissentMark(build),
    reason ? el("div", { class: "reason", title: reason }, reason) : null);
}

// A matrix's builds, one line each: the combination, linked, and its verdict so far.
function matrixBuilds(record) {
  if (!Array.isArray(record.matrix_builds) || !record.matrix_builds.length) return null;
  return el("span", {}, ...record.matrix_builds.map((build) => el("div", { "data-build-id": build.build_id },
    buildLink(build.build_id, build.combination), " ",
    el("span", { class: toneClass(build.status || build.state) }, build.status || build.state))));
}

// --- commits -----------------------------------------------------------------------

function commitOf(build) {
  return (build.result && build.result.commit) || build.commit_requested || null;
}

// The commit's short sha, linked to the forge's page of it when the client knows one.
function commitRef(build) {
  const sha = commitOf(build);
  if (!sha) return el("span", { class: "muted", "data-field": "commit" }, "branch head");
  const code = el("code", { title: sha }, short(sha));
  const url = safeUrl(build.commit_url);
  return url ? el("a", { href: url, rel: "noopener noreferrer", class: "commit-link", "data-field": "commit" }, code)
    : el("span", { "data-field": "commit" }, code);
}

function commitCell(build) {
  const message = firstLine(build.commit_message);
  return el("td", { class: "commit" }, commitRef(build), " ",
    message ? el("span", { class: "message", "data-field": "message", title: build.commit_message }, message) : null,
    build.author ? el("div", { class: "muted author", "data-field": "author" }, build.author) : null);
}

// --- the builds list -----------------------------------------------------------

const FILTERS = ["repository", "branch", "verdict"];
const LIST_COLUMNS = ["Build", "Verdict", "Commit", "Branch", "State", "Submitted", "Elapsed", "Agreeing nodes"];

// The list's filters, page and page size, from the page's own URL, so that a filtered view can be linked.
function listQuery() {
  const query = new URLSearchParams(location.search);
  const wanted = {};
  for (const name of [...FILTERS, "before", "limit"]) {
    const value = (query.get(name) || "").trim();
    if (value) wanted[name] = value;
  }
  return wanted;
}

function listUrl(wanted) {
  const query = new URLSearchParams(wanted).toString();
  return "/dashboard" + (query ? "?" + query : "");
}

// Shows `wanted` in the page's URL and the list; `paged` marks a step to older builds, which Newer steps back.
function goTo(wanted, paged, refresh) {
  history.pushState({ paged: paged }, "", listUrl(wanted));
  refresh();
}

// A client that does not filter answers without `next`: the page filters what it got.
function matches(build, wanted) {
  return (!wanted.repository || build.repository === wanted.repository) &&
    (!wanted.branch || build.branch === wanted.branch) && (!wanted.verdict || verdictOf(build) === wanted.verdict);
}

function filterForm(refresh) {
  const input = (name) => el("input", { id: "filter-" + name, name: name, autocomplete: "off", spellcheck: "false",
    list: name === "repository" ? "repositories" : null, placeholder: "any" });
  const verdict = el("select", { id: "filter-verdict", name: "verdict" }, el("option", { value: "" }, "any"),
    ...VERDICTS.map((name) => el("option", { value: name }, name)));
  const form = el("form", { id: "filters", class: "filters" },
    el("label", {}, "Repository ", input("repository")), el("datalist", { id: "repositories" }),
    el("label", {}, "Branch ", input("branch")), el("label", {}, "Verdict ", verdict),
    el("button", { type: "submit" }, "Filter"), el("a", { href: "/dashboard", id: "filter-clear" }, "Clear"));
  const apply = () => {
    const { limit } = listQuery();
    const wanted = limit ? { limit: limit } : {};
    for (const name of FILTERS) {
      const value = form.elements[name].value.trim();
      if (value) wanted[name] = value;
    }
    goTo(wanted, false, refresh);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply();
  });
  verdict.addEventListener("change", apply);
  return form;
}

function showFilters(form, wanted) {
  for (const name of FILTERS) form.elements[name].value = wanted[name] || "";
}

// Repositories seen in the list, offered in the repository filter.
function noteRepositories(datalist, builds) {
  const known = new Set(Array.from(datalist.options, (option) => option.value));
  for (const build of builds) {
    if (!known.has(build.repository)) {
      known.add(build.repository);
      datalist.append(el("option", { value: build.repository }));
    }
  }
}

// Newer and Next (older): `before` pages back through the list with the client's `next` cursor.
function pager(refresh) {
  const newer = el("button", { type: "button", id: "page-newer", hidden: true }, "← Newer");
  const next = el("button", { type: "button", id: "page-next", hidden: true }, "Next →");
  let cursor = null;
  newer.addEventListener("click", () => {
    if (history.state && history.state.paged) history.back();
    else {
      const { before, ...wanted } = listQuery();
      goTo(wanted, false, refresh);
    }
  });
  next.addEventListener("click", () => goTo({ ...listQuery(), before: cursor }, true, refresh));
  return {
    element: el("nav", { class: "pager" }, newer, next),
    update(wanted, nextCursor) {
      cursor = nextCursor;
      newer.hidden = !wanted.before;
      next.hidden = !cursor;
    },
  };
}

function buildRow(build) {
  const named = typeof build.number === "number";
  return el("tr", { "data-build-id": build.build_id, "data-state": build.state, "data-verdict": verdictOf(build) },
    el("td", { class: "name", "data-field": "name" },
      el("a", { href: "/dashboard/builds/" + encodeURIComponent(build.build_id), class: "build-link",
        title: "build " + build.build_id }, buildName(build)),
      named ? el("div", { class: "muted build-id" }, "build " + build.build_id) : null),
    verdictCell(build),
    commitCell(build),
    el("td", { "data-field": "branch" }, build.branch, pullRequest(build), combination(build)),
    el("td", { class: "secondary", "data-field": "state" },
      build.progress ? build.state + " (" + build.progress + ")" : build.state),
    el("td", { class: "secondary" }, new Date(build.submitted_at).toLocaleString()),
    el("td", { class: "secondary" }, elapsed(build)),
    el("td", { class: "secondary", "data-field": "agreed_by" }, build.agreed_by.join(", ")));
}

function showBuilds(main) {
  const body = el("tbody");
  let refresh = null;
  const form = filterForm(() => refresh());
  const pages = pager(() => refresh());
  main.append(
    el("h1", {}, "Builds"), form,
    el("p", { class: "muted" }, "Newest first; updates every few seconds."),
    el("table", { id: "builds", class: "builds" },
      el("thead", {}, el("tr", {}, ...LIST_COLUMNS.map((name) => el("th", {}, name)))), body),
    pages.element);
  showFilters(form, listQuery());
  refresh = poll(async (current) => {
    const wanted = listQuery();
    const answer = await apiJson("/builds?" + new URLSearchParams({ limit: PAGE_SIZE, ...wanted }));
    if (!current()) return;
    const builds = "next" in answer ? answer.builds : answer.builds.filter((build) => matches(build, wanted));
    body.replaceChildren(...builds.map(buildRow));
    if (!builds.length) {
      const filtered = FILTERS.some((name) => wanted[name]);
      body.append(el("tr", {}, el("td", { colspan: LIST_COLUMNS.length, class: "muted" },
        filtered ? "No builds match these filters." : "No builds yet.")));
    }
    pages.update(wanted, typeof answer.next === "string" ? answer.next : null);
    noteRepositories(document.getElementById("repositories"), builds);
  });
  window.addEventListener("popstate", () => {
    showFilters(form, listQuery());
    refresh();
  });
}

// --- one build: summary, downloads, artifacts ---------------------------------------

// What can be downloaded of an accepted build, each checkable offline (docs/attestations.md).
function downloads(record) {
  if (record.state !== "accepted") return null;
  const id = record.build_id;
  const base = "/builds/" + encodeURIComponent(id) + "/";
  const links = [
    downloadLink(base + "certificate", "certificate-" + id + ".json", "certificate", { id: "certificate" }),
    downloadLink(base + "attestation", "attestation-" + id + ".json", "attestation", { id: "attestation" }),
    downloadLink(base + "in-toto", "pbft-ci-" + id + "-in-toto.tar", "in-toto bundle", { id: "in-toto" }),
  ];
  if (record.result && typeof record.result.artifacts === "string") {
    links.push(downloadLink(base + "provenance", "provenance-" + id + ".json", "provenance", { id: "provenance" }));
  }
  return el("span", { class: "downloads" }, ...links.flatMap((link, i) => (i ? [" · ", link] : [link])));
}

function commitBuilt(record) {
  const sha = record.result && record.result.commit;
  if (!sha) return null;
  const url = safeUrl(record.commit_url);
  return url ? el("a", { href: url, rel: "noopener noreferrer", class: "commit-link" }, sha) : sha;
}

function summary(record) {
  const rows = [
    ["Repository", record.repository],
    ["Branch", record.branch],
    ["Pull request", record.pull_request ? "#" + record.pull_request + ", its head built" : null],
    ["Event", record.event && record.event !== "push" ? record.event : null],
    ["Message", record.commit_message || null],
    ["Author", record.author || null],
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
    ["Verdict", el("span", { class: "verdict-word " + toneClass(verdictOf(record)) },
      record.result ? describeResult(record.result) : (record.state === "timeout" ? "no quorum" : "waiting"))],
    ["Dissent", Array.isArray(record.dissent) && record.dissent.length
      ? record.dissent.map(dissentLine).join("\n") + (record.dissent_final === false ? "\n(so far)" : "") : null],
    ["Reason", record.result && record.result.reason ? record.result.reason : null],
    ["Commit built", commitBuilt(record)],
    ["Elapsed", elapsed(record)],
    ["Agreed by", record.agreed_by.length ? "nodes " + record.agreed_by.join(", ") : "—"],
    ["Artifacts", record.result && typeof record.result.artifacts === "string" ? record.result.artifacts : null],
    ["Artifacts by node", divergentDigests(record)],
    ["Each node said", disputedSplit(record)],
    ["Actions after the verdict", actionsRun(record)],
    ["Downloads", downloads(record)],
  ];
  const list = el("dl", { class: "summary", id: "summary" });
  for (const [name, value] of rows) {
    if (value === null) continue;
    list.append(el("dt", {}, name), el("dd", { "data-field": name.toLowerCase().replace(/ /g, "_") }, value));
  }
  return list;
}

// A divergent build's digests, one line per node: the nodes built different bytes, and none is the verdict.
function divergentDigests(record) {
  const byNode = record.state === "divergent" && record.result ? record.result.artifacts_by_node : null;
  if (!byNode || typeof byNode !== "object") return null;
  return Object.keys(byNode).map((node) => "node " + node + ": " + (byNode[node] || "none")).join("\n");
}

// What the action runner reported of the spec's `after:` actions, one line each, with the
// runner that signed the report (a report recorded before reports were signed has none).
function actionsRun(record) {
  if (!Array.isArray(record.actions) || !record.actions.length) return null;
  return record.actions.map((action) => action.name + ": " + action.state
    + (action.exit_code === null ? "" : " (exit " + action.exit_code + ")")
    + (action.reason ? ", " + action.reason : "")
    + (action.runner ? " — reported by " + action.runner : " — unsigned, recorded before runners signed reports"))
    .join("\n");
}

// A disputed build's split, one line per node: no result had 2f+1 nodes behind it.
function disputedSplit(record) {
  const split = record.state === "disputed" && record.result ? record.result.split : null;
  if (!split || typeof split !== "object") return null;
  return Object.keys(split).map((node) => "node " + node + ": " + describeResult(split[node])).join("\n");
}

function artifactHref(buildId, path) {
  return "/builds/" + encodeURIComponent(buildId) + "/artifacts/" + path.split("/").map(encodeURIComponent).join("/");
}

// The build's artifacts as the nodes agreed on them (GET /builds/<id>/artifacts): each file's
// link, whose bytes the client checks against the agreed digest before sending them, its digest,
// and its size. The agreed manifest holds no sizes: a size is the one a node's build log gives
// (`== artifact <path> <digest> (<n> bytes)`) for the agreed digest.
function artifactList(buildId) {
  const body = el("tbody");
  const state = el("p", { class: "muted", id: "artifacts-state" });
  const element = el("section", { id: "artifacts", hidden: true }, el("h2", {}, "Artifacts"), state,
    el("div", { class: "scroll-x" }, el("table", { class: "artifacts" },
      el("thead", {}, el("tr", {}, el("th", {}, "File"), el("th", {}, "Size"), el("th", {}, "Digest (agreed)"))), body)));
  const logged = {}; // "<path> <digest>" → {node, bytes}, the first node's log line saying so
  let files = null;
  let asking = false;
  const row = (path) => {
    const digest = files[path];
    const size = logged[path + " " + digest];
    return el("tr", { "data-path": path },
      el("td", {}, downloadLink(artifactHref(buildId, path), path.split("/").pop(), path, { class: "artifact-link" })),
      el("td", { class: "size", "data-bytes": size ? size.bytes : null,
        title: size ? "as node " + size.node + "'s build log gives it for this digest" : "no node's log gave it yet" },
      size ? bytesText(size.bytes) : "—"),
      el("td", {}, el("code", { title: digest, class: "digest" }, shortDigest(digest))));
  };
  const render = () => body.replaceChildren(...Object.keys(files).sort().map(row));
  return {
    element,
    // Asks for the manifest once the build is accepted with artifacts; again on the next poll if that failed.
    async load(record) {
      const agreed = record.state === "accepted" && record.result && typeof record.result.artifacts === "string";
      if (files !== null || asking || !agreed) return;
      element.hidden = false;
      asking = true;
      try {
        files = (await apiJson("/builds/" + encodeURIComponent(buildId) + "/artifacts")).artifacts;
        state.textContent = "Each file is checked by the client against the digest the nodes agreed on before it is sent.";
        render();
      } catch (error) {
        if (!(error instanceof Unauthorized)) state.textContent = "Could not read the agreed manifest: " + error.message;
      } finally {
        asking = false;
      }
    },
    nodeLine(nodeId, text) {
      const match = text.match(/^== artifact (\S+) (sha256:[0-9a-f]{64}) \((\d+) bytes\)$/);
      if (!match || logged[match[1] + " " + match[2]]) return;
      logged[match[1] + " " + match[2]] = { node: nodeId, bytes: Number(match[3]) };
      if (files !== null) render();
    },
  };
}

// --- one build: the nodes' votes and results ------------------------------------------

// The signed reply each node sent this client, by node id (the client verified them as they came).
function repliesByNode(record) {
  const replies = {};
  for (const reply of record.replies || []) {
    if (reply && typeof reply.sender === "number") replies[reply.sender] = reply.result;
  }
  return replies;
}

// What a node's ledger says of the build; a node that could not be asked, in the client's words.
function ledgerText(view) {
  if (view.error) return view.error;
  if (!view.reachable) return "unreachable";
  if (!view.executed) return "not executed yet";
  if (view.verdict) return view.verdict.state + (view.verdict.result ? ": " + describeResult(view.verdict.result) : "");
  return "—";
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
    return el("tr", { "data-node": view.node, class: view.reachable ? null : "unreachable" },
      el("td", {}, "node " + view.node),
      cellFor(replies[view.node], "reply"),
      voteCell,
      view.own_result || !view.build ? cellFor(view.own_result, "own_result")
        : el("td", { "data-field": "own_result", class: "muted" }, view.build),
      el("td", { "data-field": "ledger", class: view.reachable ? null : "unreachable" }, ledgerText(view)),
      el("td", {}, view.seq === null ? "—" : String(view.seq)));
  });
  const table = el("table", { id: "nodes" },
    el("thead", {}, el("tr", {}, ...["Node", "Reply to this client (signed)", "Vote (signed)",
      "Its own result (as it says)", "Verdict in its ledger", "Seq"].map((name) => el("th", {}, name)))),
    el("tbody", {}, ...rows));
  const parts = [el("div", { class: "scroll-x" }, table)];
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

// --- one build: the nodes' output --------------------------------------------------------

// SGR ("select graphic rendition") sequences, which set colours. The node passes no control
// character on (node/build/log.py): ESC reaches the page as the four characters `\x1b`, so that
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

// A node's line times (`GET /builds/<id>/log?node=N&times=1`, node/build/log.py LineTimes): one
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
  const name = el("span", { id: "build-name" }, "build " + buildId);
  const secondary = el("span", { class: "muted build-id", id: "build-id" });
  const overview = el("div", { id: "overview" });
  const artifacts = artifactList(buildId);
  const table = el("div", { id: "node-views" });
  const logs = el("section", { id: "logs" }, el("h2", {}, "Every node's output"),
    el("p", { class: "muted" }, "Each node's output is what that node says it saw; only the verdict is agreed."));
  main.append(el("h1", {}, name, " ", secondary, " ", rerun, " ", cancel), overview, artifacts.element,
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
    el("div", { class: "scroll-x" }, el("table", { id: "network" },
      el("thead", {}, el("tr", {}, ...["Node", "Address", "State", "View", "Primary", "Last executed",
        "Watermarks (h, H]", "Builds running", "Peer links", "Dropped messages"].map((name) => el("th", {}, name)))),
      body)));
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
          el("td", { colspan: 7, "data-field": "error" }, view.error || ""));
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
