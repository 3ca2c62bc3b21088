// The dashboard's builds list: filters from the page's URL, pages through the client's `next`
// cursor, one row per build (dashboard.js has the helpers every page uses).
"use strict";

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

// Ask for a build of a repository's branch (POST /webHook): its row appears as the list
// updates; the call itself answers once the verdict is in, which is then said here.
function runForm() {
  const field = (name) => el("input", { id: "run-" + name, name: name, autocomplete: "off", spellcheck: "false",
    required: true, list: name === "repository" ? "repositories" : null });
  const said = el("span", { id: "run-said", class: "muted", role: "status" });
  // The spec's `inputs:`, NAME=VALUE one a line; the client and then every node check them.
  const inputs = el("textarea", { id: "run-inputs", name: "inputs", rows: 1, spellcheck: "false",
    placeholder: "inputs: name=value, one a line" });
  const form = el("form", { id: "run", class: "filters" },
    el("label", {}, "Repository ", field("repository")), el("label", {}, "Branch ", field("branch")),
    el("label", {}, "Inputs ", inputs), el("button", { type: "submit" }, "Run a build"), said);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const asked = { repository: form.elements.repository.value.trim(), branch: form.elements.branch.value.trim() };
    const given = inputs.value.split("\n").map((line) => line.trim()).filter((line) => line);
    const unnamed = given.find((line) => line.indexOf("=") < 1);
    if (unnamed !== undefined) {
      said.textContent = "Refused: " + unnamed + " is not name=value.";
      return;
    }
    if (given.length) {
      asked.inputs = Object.fromEntries(given.map((line) => [line.slice(0, line.indexOf("=")).trim(),
        line.slice(line.indexOf("=") + 1)]));
    }
    said.textContent = "Asked for a build of " + asked.repository + " " + asked.branch + ".";
    try {
      const response = await api("/webHook", { method: "POST", body: JSON.stringify(asked),
        headers: { "Content-Type": "application/json" } });
      const answer = await response.json();
      said.textContent = response.ok ? "Build " + answer.build_id + ": " + answer.status + "."
        : "Refused: " + (answer.error || "HTTP " + response.status);
    } catch (error) {
      if (!(error instanceof Unauthorized)) said.textContent = "Could not ask: " + error.message;
    }
  });
  return form;
}

// Fork pull requests that wait for someone with the role approve (GET /approvals), each with
// its button; hidden while none wait or the caller may not see them.
function approvalsSection() {
  const body = el("tbody");
  const section = el("section", { id: "approvals", hidden: true }, el("h2", {}, "Waiting for approval"),
    el("table", { class: "builds" }, el("thead", {}, el("tr", {}, ...["Repository", "Pull request", "Commit", ""]
      .map((name) => el("th", {}, name)))), body));
  const row = (approval) => {
    const button = el("button", { type: "button", class: "approve", "data-approval-id": approval.approval_id },
      "Approve");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const response = await api("/approvals/" + encodeURIComponent(approval.approval_id) + "/approve",
          { method: "POST" });
        if (response.status !== 202) throw new Error(await failureReason(response));
        const started = await response.json();
        window.location.assign("/dashboard/builds/" + encodeURIComponent(started.build_id));
      } catch (error) {
        button.disabled = false;
        if (!(error instanceof Unauthorized)) notice("Could not approve: " + error.message);
      }
    });
    return el("tr", { "data-approval-id": approval.approval_id }, el("td", {}, approval.repository),
      el("td", {}, "#" + approval.pull_request), el("td", {}, el("code", {}, short(approval.commit || ""))),
      el("td", {}, button));
  };
  const update = async () => {
    const response = await api("/approvals");
    if (!response.ok) return;
    const waiting = (await response.json()).approvals;
    body.replaceChildren(...waiting.map(row));
    section.hidden = !waiting.length;
  };
  return { element: section, update: update };
}

function showBuilds(main) {
  const body = el("tbody");
  let refresh = null;
  const form = filterForm(() => refresh());
  const pages = pager(() => refresh());
  const approvals = approvalsSection();
  main.append(
    el("h1", {}, "Builds"), runForm(), approvals.element, form,
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
    await approvals.update();
  });
  window.addEventListener("popstate", () => {
    showFilters(form, listQuery());
    refresh();
  });
}

// --- a repository's flaky tests -------------------------------------------------------

// GET /repositories/{name}/flaky: the tests proven flaky in its branch builds, most often first,
// with how many times each node was on the failing side. Text only.
async function showFlaky(main, repository) {
  const said = el("div", { id: "flaky" }, "asking the client…");
  main.append(el("h1", {}, "Flaky tests of " + repository), said);
  try {
    const answer = await apiJson("/repositories/" + encodeURIComponent(repository) + "/flaky");
    if (!answer.tests.length) {
      said.replaceChildren("no test of " + repository + " has been proven flaky in its branch builds");
      return;
    }
    const head = el("tr", {}, ...["Test", "Builds", "Last build", "Failed on"].map((name) => el("th", {}, name)));
    const rows = answer.tests.map((test) => el("tr", { "data-test": test.test },
      el("td", {}, test.test), el("td", { "data-field": "builds" }, String(test.builds)),
      el("td", {}, buildLink(test.last_build, test.last_build)),
      el("td", { "data-field": "failed_on" }, Object.keys(test.failed_on).sort((a, b) => a - b)
        .map((node) => "node " + node + " ×" + test.failed_on[node]).join(", "))));
    said.replaceChildren(
      el("p", {}, "Each proven by nodes that signed it passed and nodes that signed it failed in the same build."),
      el("table", { class: "tests" }, head, ...rows));
  } catch (error) {
    if (!(error instanceof Unauthorized)) said.replaceChildren("Could not ask the client: " + error.message);
  }
}
