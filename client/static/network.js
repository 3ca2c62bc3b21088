// The dashboard's network page: each node's status as it says it, and the view this client follows.
"use strict";

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

// A network document's digest as the page shows it: its first 12 hex digits, the whole on hover.
function digest(value) {
  return el("code", { title: value || "none" }, value ? value.slice(0, 12) : "none");
}

// The nodes that signed that they run another network document than this client: named
// above the table, since their builds may differ from the others' for that reason alone.
function foreignNetworks(client) {
  const foreign = Object.entries(client.network.foreign);
  if (!foreign.length) return [];
  const list = el("ul", { class: "plain" });
  for (const [node, value] of foreign) {
    list.append(el("li", { "data-node": node }, "node " + node + " runs network configuration ", digest(value)));
  }
  return [el("div", { id: "foreign-networks", class: "differs" },
    el("p", {}, "Not this client's network configuration (", digest(client.network.digest), "):"), list)];
}

function showNetwork(main) {
  const body = el("tbody");
  const client = el("p", { id: "client-view" });
  const warnings = el("div");
  main.append(el("h1", {}, "Network"), client, warnings,
    el("div", { class: "scroll-x" }, el("table", { id: "network" },
      el("thead", {}, el("tr", {}, ...["Node", "Address", "State", "View", "Primary", "Last executed",
        "Watermarks (h, H]", "Builds running", "Network configuration", "Peer links", "Dropped messages"]
        .map((name) => el("th", {}, name)))),
      body)));
  poll(async () => {
    const answer = await apiJson("/network");
    client.textContent = "This client follows view " + answer.client.view + ", primary node " + answer.client.primary +
      ". Each row is what that node says of itself.";
    warnings.replaceChildren(...foreignNetworks(answer.client));
    body.replaceChildren(...answer.nodes.map((view) => {
      const status = view.status;
      if (!view.reachable || !status) {
        return el("tr", { "data-node": view.node, class: view.reachable ? null : "unreachable" },
          el("td", {}, "node " + view.node), el("td", {}, view.address),
          el("td", { "data-field": "state", class: view.reachable ? null : "unreachable" },
            view.reachable ? "answer unusable" : "unreachable"),
          el("td", { colspan: 8, "data-field": "error" }, view.error || ""));
      }
      return el("tr", { "data-node": view.node },
        el("td", {}, "node " + view.node), el("td", {}, view.address),
        el("td", { "data-field": "state" }, "up"),
        el("td", { "data-field": "view" }, status.view),
        el("td", { "data-field": "primary" }, status.primary),
        el("td", { "data-field": "last_executed" }, status.last_executed),
        el("td", {}, "(" + status.low_watermark + ", " + status.high_watermark + "]"),
        el("td", {}, status.builds_running),
        el("td", { "data-field": "network", class: status.network.digest === answer.client.network.digest ? null : "differs" },
          digest(status.network.digest)),
        el("td", {}, links(status)),
        el("td", {}, drops(status)));
    }));
  });
}
