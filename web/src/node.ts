// A node's page and its upward view: what the node is, what rests on it directly, and every VM
// that depends on it through any number of layers (GET /api/v1/vms?depends_on=ID).
import { api, type TreeNode, type Vm } from "./api";
import { badge, clear, errorBox, h, typeLabel } from "./dom";

export function nodeHref(node: {
  id: string;
  type: string;
  attrs?: Record<string, string>;
}): string {
  if (node.type === "vm") {
    const uuid = node.attrs?.["uuid"] ?? node.id.replace(/^vm:/, "");
    return `#/vm/${encodeURIComponent(uuid)}`;
  }
  return `#/node/${encodeURIComponent(node.id)}`;
}

function attrTable(attrs: Record<string, string>): HTMLElement {
  const keys = Object.keys(attrs);
  if (keys.length === 0) return h("p", { class: "muted" }, "No attributes.");
  return h(
    "table",
    { class: "attrs" },
    h(
      "tbody",
      {},
      ...keys.map((k) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, attrs[k]))),
    ),
  );
}

function neighbourList(nodes: TreeNode[], empty: string): HTMLElement {
  if (nodes.length === 0) return h("p", { class: "muted" }, empty);
  return h(
    "ul",
    { class: "plain" },
    ...nodes.map((n) =>
      h(
        "li",
        {},
        h("span", { class: `type type-${n.type}` }, typeLabel(n.type)),
        " ",
        h("a", { href: nodeHref(n) }, n.name || n.id),
        n.edge ? h("span", { class: "muted" }, ` (${n.edge})`) : null,
      ),
    ),
  );
}

export function vmTable(vms: Vm[], testId: string): HTMLElement {
  if (vms.length === 0) return h("p", { class: "muted", "data-testid": testId }, "None.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "data-testid": testId },
      h("thead", {}, h("tr", {}, h("th", {}, "VM"), h("th", {}, "Host"), h("th", {}, "State"))),
      h(
        "tbody",
        {},
        ...vms.map((v) =>
          h(
            "tr",
            { "data-vm": v.name },
            h("td", {}, h("a", { href: `#/vm/${encodeURIComponent(v.uuid)}` }, v.name)),
            h("td", {}, v.host),
            h("td", {}, badge(v.state || "unknown")),
          ),
        ),
      ),
    ),
  );
}

export async function renderNodePage(
  main: HTMLElement,
  id: string,
  filterTree: (id: string) => void,
): Promise<void> {
  clear(main);
  main.append(h("p", { class: "muted" }, "Loading…"));
  let up, down, vms: Vm[];
  try {
    [up, down, vms] = await Promise.all([
      api.children(id, "up"),
      api.children(id, "down"),
      api.vms({ depends_on: id }),
    ]);
  } catch (e) {
    clear(main);
    main.append(errorBox((e as Error).message));
    return;
  }
  const node = up.node!;
  clear(main);
  main.append(
    h(
      "section",
      { class: "page", "data-testid": "node-page" },
      h(
        "h1",
        {},
        h("span", { class: `type type-${node.type}` }, typeLabel(node.type)),
        " ",
        node.name || node.id,
      ),
      h("p", { class: "muted mono" }, node.id),
      h(
        "div",
        { class: "cards" },
        h(
          "div",
          { class: "card wide" },
          h("h2", {}, `VMs that depend on this ${typeLabel(node.type)} (${vms.length})`),
          vmTable(vms, "upward-vms"),
          h(
            "div",
            { class: "actions" },
            h(
              "button",
              { type: "button", class: "secondary", onclick: () => filterTree(id) },
              "Show them in the tree",
            ),
          ),
        ),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "Rests directly on it"),
          neighbourList(up.children, "Nothing."),
        ),
        h(
          "div",
          { class: "card" },
          h("h2", {}, "It rests on"),
          neighbourList(down.children, "Nothing: the bottom of the graph."),
        ),
        h("div", { class: "card" }, h("h2", {}, "Attributes"), attrTable(node.attrs)),
      ),
    ),
  );
}
