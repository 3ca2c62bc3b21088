// The dashboard's page of one build: its summary, what can be downloaded of it, its agreed
// artifacts, and each node's vote and result (output.js has the nodes' output and the page itself).
"use strict";

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

// A step that passed on some nodes and failed on others, or passed only on a retry, with the nodes.
function flakyLine(entry) {
  const said = [["failed", entry.failed_on], ["passed", entry.passed_on], ["retried", entry.retried_on]]
    .filter(([, nodes]) => nodes.length)
    .map(([what, nodes]) => what + " on node" + (nodes.length > 1 ? "s " : " ") + nodes.join(", "));
  return "step " + entry.step + ": " + said.join(", ");
}

function inputsOf(record) {
  const inputs = record.request && record.request.operation && record.request.operation.inputs;
  return Array.isArray(inputs) && inputs.length ? inputs.map(([name, value]) => name + " = " + value).join("\n") : null;
}

function summary(record) {
  const rows = [
    ["Repository", record.repository],
    ["Branch", record.branch],
    ["Pull request", record.pull_request ? "#" + record.pull_request + ", its head built" : null],
    ["Event", record.event && record.event !== "push" ? record.event : null],
    ["Message", record.commit_message || null],
    ["Author", record.author || null],
    // Who asked for it, as the request the nodes ordered names it.
    ["Asked for by", record.actor ? record.actor.kind + " " + record.actor.name : null],
    // Through which of the network's clients, and for which forge delivery or schedule slot.
    ["Through client", record.client || null],
    ["Delivery", record.delivery || null],
    ["Re-run of", record.rerun_of ? buildLink(record.rerun_of, "build " + record.rerun_of) : null],
    ["Matrix of", record.matrix_of ? buildLink(record.matrix_of, "build " + record.matrix_of) : null],
    ["Combination", record.combination || null],
    // A manual run's inputs, as the signed request names them (text: never markup).
    ["Inputs", inputsOf(record)],
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
    ["Flaky", Array.isArray(record.flaky) && record.flaky.length ? record.flaky.map(flakyLine).join("\n") : null],
    ["Reason", record.result && record.result.reason ? record.result.reason : null],
    ["Commit built", commitBuilt(record)],
    ["Elapsed", elapsed(record)],
    ["Agreed by", record.agreed_by.length ? "nodes " + record.agreed_by.join(", ") : "—"],
    ["Artifacts", record.result && typeof record.result.artifacts === "string" ? record.result.artifacts : null],
    ["Artifacts by node", divergentDigests(record)],
    ["Why the nodes differ", divergenceButton(record)],
    ["Tests", testsButton(record)],
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

// Nodes that signed different artifacts (a divergent build, or a dissenting node's): a button that
// asks the client to compare them (GET /builds/{id}/divergence, diffoscope), its report shown as text.
function divergenceButton(record) {
  const artifacts = (result) => result && typeof result.artifacts === "string" ? result.artifacts : null;
  const agreed = artifacts(record.result);
  const differs = record.state === "divergent" || (Array.isArray(record.dissent) && record.dissent.some(
    (entry) => entry.said && artifacts(entry.said) !== agreed));
  if (!differs) return null;
  const said = el("div", { id: "divergence" });
  const button = el("button", { type: "button", id: "explain-divergence" }, "Compare their artifacts");
  button.addEventListener("click", async () => {
    button.disabled = true;
    said.replaceChildren("comparing with diffoscope…");
    try {
      const response = await api("/builds/" + encodeURIComponent(record.build_id) + "/divergence");
      if (!response.ok) throw new Error(await failureReason(response));
      const explained = await response.json();
      // With the repository's vary: true, each node's variation and what may explain the sides.
      const varied = (side) => side.variations ? Object.keys(side.variations).map((node) => el("div", { class: "muted" },
        "node " + node + " built under TZ=" + side.variations[node].time_zone + ", LC_ALL="
        + side.variations[node].locale + ", umask " + side.variations[node].umask
        + ", clock +" + side.variations[node].clock_days + " days, host " + side.variations[node].hostname
        + ", in " + side.variations[node].build_path)) : [];
      said.replaceChildren(
        ...explained.sides.flatMap((side) => [el("div", { class: "side" },
          "nodes " + side.nodes.join(", ") + ": " + side.digest), ...varied(side)]),
        Array.isArray(explained.suspects) ? el("div", { id: "suspects" }, explained.suspects.length
          ? "what the nodes varied that may explain it: " + explained.suspects.join(", ")
          : "nothing the nodes varied explains it: nodes that agree built under different values of each") : null,
        Array.isArray(explained.causes) && explained.causes.length ? el("div", { id: "causes" },
          "what each side's bytes hold a trace of: " + explained.causes.join(", ")) : null,
        ...explained.files.map((file) => el("div", { class: "divergent-file", "data-path": file.path },
          el("div", {}, file.path + (file.truncated ? " (report cut)" : "")),
          el("pre", { class: "log" }, file.report))),
        explained.more_files ? el("div", { class: "muted" }, explained.more_files + " more files differ") : null);
    } catch (error) {
      button.disabled = false;
      if (!(error instanceof Unauthorized)) said.replaceChildren("Could not compare: " + error.message);
    }
  });
  return el("span", {}, button, said);
}

// Each node's outcomes of the build's JUnit reports (GET /builds/{id}/tests): a row per test and
// a column per node, those whose outcome differs between nodes first. Text only.
function testsButton(record) {
  if (record.state === "pending" || !record.result || record.result.status === "matrix") return null;
  const shown = el("div", { id: "tests" });
  const button = el("button", { type: "button", id: "show-tests" }, "Show each node's tests");
  button.addEventListener("click", async () => {
    button.disabled = true;
    shown.replaceChildren("asking the nodes…");
    try {
      const response = await api("/builds/" + encodeURIComponent(record.build_id) + "/tests");
      if (!response.ok) throw new Error(await failureReason(response));
      const table = await response.json();
      const nodes = Object.keys(table.nodes);
      const notes = nodes.filter((node) => table.nodes[node].skipped || (table.nodes[node].problems || []).length)
        .map((node) => el("div", { class: "muted" }, "node " + node + ": "
          + (table.nodes[node].skipped || table.nodes[node].problems.join("; "))));
      if (!table.tests.length) {
        shown.replaceChildren(el("div", {}, "no node read any test"), ...notes);
        return;
      }
      const head = el("tr", {}, el("th", {}, "test"), ...nodes.map((node) => el("th", {}, "node " + node)));
      const rows = table.tests.map((row) => el("tr", { class: row.differs ? "differs" : "", "data-test": row.test },
        el("td", {}, row.test + (row.flaky === "proven"
          ? " (proven flaky: passed on node " + row.passed_on.join(", ") + ", failed on node "
            + row.failed_on.join(", ") + "; each signed)"
          : row.differs ? " (differs between nodes)" : "")),
        ...nodes.map((node) => el("td", {}, row.outcomes[node] || "—"))));
      shown.replaceChildren(
        el("div", {}, table.differing.length
          ? table.differing.length + " tests differ between nodes: flaky, or made to vary on a node. "
            + "Each node signed its outcomes (pbft-ci tests --evidence keeps them)"
          : "every node that read the reports has the same outcomes"),
        el("table", { class: "tests" }, head, ...rows), ...notes,
        el("a", { id: "flaky-link", href: "/dashboard/repositories/" + encodeURIComponent(record.repository) + "/flaky" },
          record.repository + "'s flaky tests"));
    } catch (error) {
      button.disabled = false;
      if (!(error instanceof Unauthorized)) shown.replaceChildren("Could not ask the nodes: " + error.message);
    }
  });
  return el("span", {}, button, shown);
}

// A divergent build's digests, one line per node: the nodes built different bytes, and none is the verdict.
function divergentDigests(record) {
  const byNode = record.state === "divergent" && record.result ? record.result.artifacts_by_node : null;
  if (!byNode || typeof byNode !== "object") return null;
  return Object.keys(byNode).map((node) => "node " + node + ": " + (byNode[node] || "none")).join("\n");
}

// What the action runner reported of the spec's `after:` actions, one line each, with the
// runner that signed the report (a report recorded before reports were signed has none). A
// deploy that waits for an approval has a button: the client answers 403, naming the role, to
// whoever lacks the environment's.
function actionsRun(record) {
  if (!Array.isArray(record.actions) || !record.actions.length) return null;
  return el("div", {}, ...record.actions.map((action) => el("div", { "data-action": action.name },
    action.name + ": " + (action.state === "waiting" ? "waiting for approval" : action.state)
    + (action.environment ? " (deploys to " + action.environment + ")" : "")
    + (action.exit_code === null ? "" : " (exit " + action.exit_code + ")")
    + (action.reason && action.state !== "waiting" ? ", " + action.reason : "")
    + (action.approver ? ", approved by " + action.approver : "")
    + (action.runner ? " — reported by " + action.runner : " — unsigned, recorded before runners signed reports"),
    action.state === "waiting" && action.environment ? approveButton(record, action) : "")));
}

function approveButton(record, action) {
  const said = el("span", { class: "muted" });
  const button = el("button", { type: "button", class: "approve-deploy" }, "Approve deploy to " + action.environment);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const response = await api("/builds/" + encodeURIComponent(record.build_id) + "/actions/"
        + encodeURIComponent(action.name) + "/approve", { method: "POST" });
      if (!response.ok) throw new Error(await failureReason(response));
      const answer = await response.json();
      said.textContent = " approval " + answer.approval_id + " ordered; the runner deploys once it is certified";
    } catch (error) {
      said.textContent = " could not approve: " + error.message;
      button.disabled = false;
    }
  });
  return el("span", {}, " ", button, said);
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
