// The resource tree: clusters -> hosts -> VMs -> disks -> files -> mounts -> volumes ->
// devices/LUNs -> storage volumes -> storage systems, expanded one level at a time through
// GET /api/v1/graph/children, with search (name globs) and filters (type, state, host,
// cluster, depends on a node, no backup newer than N hours).
//
// Keyboard (WAI-ARIA tree pattern): ArrowDown/ArrowUp move, ArrowRight expands or enters,
// ArrowLeft collapses or goes to the parent, Home/End, Enter opens the node's page.
import { api, type StrataEvent, type TreeNode, type VmFilters } from "./api";
import { clear, errorBox, h, typeLabel } from "./dom";

interface TNode {
  data: TreeNode;
  level: number;
  parent: TNode | null;
  expanded: boolean;
  kids: TNode[] | null; // null: not loaded yet
  li: HTMLLIElement;
  group: HTMLUListElement | null;
}

const SEARCH_TYPES = [
  "vm",
  "host",
  "cluster",
  "virtual_disk",
  "passthrough_disk",
  "file",
  "mount_point",
  "fs_volume",
  "block_device",
  "lun",
  "storage_volume",
  "storage_system",
];

export type OpenNode = (node: TreeNode) => void;

export class ResourceTree {
  private tree: HTMLUListElement;
  private heading: HTMLDivElement;
  private message: HTMLDivElement;
  private roots: TNode[] = [];
  private form!: HTMLFormElement;
  private fields!: {
    name: HTMLInputElement;
    type: HTMLSelectElement;
    state: HTMLInputElement;
    host: HTMLSelectElement;
    cluster: HTMLSelectElement;
    dependsOn: HTMLInputElement;
    noBackupHours: HTMLInputElement;
  };
  private mode: "resources" | "results" = "resources";

  constructor(
    private readonly root: HTMLElement,
    private readonly open: OpenNode,
  ) {
    clear(root);
    this.buildForm();
    this.heading = h("div", { class: "tree-heading", "data-testid": "tree-heading" });
    this.message = h("div", { class: "tree-message" });
    this.tree = h("ul", {
      role: "tree",
      class: "tree",
      "aria-label": "Resources",
      "data-testid": "tree",
    });
    this.tree.addEventListener("keydown", (e) => this.onKey(e));
    root.append(this.heading, this.message, this.tree);
  }

  // The top of the tree: clusters and the hosts outside any cluster.
  async showResources(): Promise<void> {
    this.mode = "resources";
    this.heading.textContent = "All resources";
    await this.setRoots(() => api.children().then((c) => c.children));
  }

  // Fills the form with a 'depends on' filter (the upward view's "filter the tree") and searches.
  async filterDependsOn(nodeId: string): Promise<void> {
    this.form.reset();
    this.fields.type.value = "vm";
    this.fields.dependsOn.value = nodeId;
    (this.form.querySelector("details") as HTMLDetailsElement).open = true;
    await this.search();
  }

  async refreshHostOptions(): Promise<void> {
    const [hosts, clusters] = await Promise.all([api.hosts(), api.clusters()]);
    const fill = (select: HTMLSelectElement, values: string[]) => {
      const keep = select.value;
      clear(select);
      select.append(h("option", { value: "" }, "any"));
      for (const v of values) select.append(h("option", { value: v }, v));
      select.value = values.includes(keep) ? keep : "";
    };
    fill(
      this.fields.host,
      hosts.map((x) => x.id),
    );
    fill(
      this.fields.cluster,
      clusters.map((c) => c.name),
    );
  }

  // A VM appeared, went away or changed on a host: reload that host's children where it is
  // shown, until the change is visible (the server refreshes its graph just after the event).
  onEvent(e: StrataEvent): void {
    if (e.kind === "cluster") {
      void this.refreshHostOptions().catch(() => undefined);
      return;
    }
    const vmName = String(e.detail?.["vm_name"] ?? "");
    const hostNode = this.find((n) => n.data.id === `host:${e.host}`);
    if (hostNode && hostNode.expanded) {
      const done = (kids: TreeNode[]) => {
        const present = kids.some((k) => k.type === "vm" && k.name === vmName);
        if (e.kind === "added") return present;
        if (e.kind === "removed") return !present;
        return true;
      };
      void this.reload(hostNode, done, vmName);
    }
    if (this.mode === "results" && (e.kind === "added" || e.kind === "removed")) {
      window.setTimeout(() => void this.search(), 1000);
    }
  }

  // ---- search ----------------------------------------------------------------------------

  private buildForm(): void {
    const input = (name: string, attrs: Record<string, string> = {}) =>
      h("input", { name, id: `f-${name}`, autocomplete: "off", ...attrs });
    const select = (name: string, options: string[], labels?: Record<string, string>) => {
      const s = h("select", { name, id: `f-${name}` });
      for (const o of options) s.append(h("option", { value: o }, labels?.[o] ?? o));
      return s;
    };
    const typeLabels: Record<string, string> = {};
    for (const t of SEARCH_TYPES) typeLabels[t] = typeLabel(t);
    this.fields = {
      name: input("name", { type: "search", placeholder: "name glob, e.g. web*" }),
      type: select("type", SEARCH_TYPES, typeLabels),
      state: input("state", { placeholder: "e.g. running" }),
      host: select("host", [""], { "": "any" }),
      cluster: select("cluster", [""], { "": "any" }),
      dependsOn: input("depends_on", { placeholder: "node id, e.g. sv:dir:…" }),
      noBackupHours: input("no_backup_hours", {
        type: "number",
        min: "0",
        placeholder: "hours",
      }),
    };
    const label = (el: HTMLElement, text: string) =>
      h("label", { for: el.id }, h("span", {}, text), el);
    const vmOnly = h(
      "details",
      { class: "more-filters" },
      h("summary", {}, "VM filters"),
      label(this.fields.state, "State"),
      label(this.fields.host, "Host"),
      label(this.fields.cluster, "Cluster"),
      label(this.fields.dependsOn, "Depends on"),
      label(this.fields.noBackupHours, "No backup newer than (hours)"),
    );
    this.form = h(
      "form",
      { class: "search", role: "search", "data-testid": "search-form" },
      h(
        "div",
        { class: "search-row" },
        label(this.fields.name, "Name"),
        label(this.fields.type, "Type"),
      ),
      vmOnly,
      h(
        "div",
        { class: "actions" },
        h("button", { type: "submit", class: "primary" }, "Search"),
        h(
          "button",
          {
            type: "button",
            class: "secondary",
            onclick: () => {
              this.form.reset();
              void this.showResources();
            },
          },
          "Show all",
        ),
      ),
    );
    this.fields.type.addEventListener("change", () => this.syncVmOnly());
    this.form.addEventListener("submit", (e) => {
      e.preventDefault();
      void this.search();
    });
    this.root.append(this.form);
    this.syncVmOnly();
  }

  // The VM filters apply to VMs only.
  private syncVmOnly(): void {
    const vm = this.fields.type.value === "vm";
    for (const el of [
      this.fields.state,
      this.fields.host,
      this.fields.cluster,
      this.fields.dependsOn,
      this.fields.noBackupHours,
    ]) {
      el.disabled = !vm;
    }
  }

  async search(): Promise<void> {
    this.syncVmOnly();
    const name = this.fields.name.value.trim();
    const type = this.fields.type.value;
    this.mode = "results";
    const described: string[] = [typeLabel(type)];
    if (name) described.push(`named ${name}`);
    if (type === "vm") {
      const f: VmFilters = {
        name: name || undefined,
        state: this.fields.state.value.trim() || undefined,
        host: this.fields.host.value || undefined,
        cluster: this.fields.cluster.value || undefined,
        depends_on: this.fields.dependsOn.value.trim() || undefined,
      };
      const hours = this.fields.noBackupHours.value.trim();
      if (hours !== "") f.no_backup_since_hours = Number(hours);
      if (f.state) described.push(`state ${f.state}`);
      if (f.host) described.push(`on ${f.host}`);
      if (f.cluster) described.push(`in ${f.cluster}`);
      if (f.depends_on) described.push(`depending on ${f.depends_on}`);
      if (hours !== "") described.push(`no backup in ${hours} h`);
      await this.setRoots(
        () =>
          api.vms(f).then((vms) =>
            vms.map((v) => ({
              id: `vm:${v.uuid}`,
              type: "vm",
              name: v.name,
              attrs: { uuid: v.uuid, state: v.state, host: v.host },
              children: -1,
            })),
          ),
        described.join(", "),
      );
    } else {
      const select = name ? `type=${type} name=${name}` : `type=${type}`;
      await this.setRoots(
        () =>
          api
            .graph(select, "none")
            .then((g) =>
              g.nodes
                .map((n) => ({ ...n, children: -1 }))
                .sort((a, b) => a.name.localeCompare(b.name)),
            ),
        described.join(", "),
      );
    }
  }

  // ---- the tree --------------------------------------------------------------------------

  private async setRoots(load: () => Promise<TreeNode[]>, description?: string): Promise<void> {
    clear(this.message);
    let nodes: TreeNode[];
    try {
      nodes = await load();
    } catch (e) {
      this.message.append(errorBox((e as Error).message));
      nodes = [];
    }
    if (description !== undefined) {
      this.heading.textContent = `${nodes.length} result${nodes.length === 1 ? "" : "s"}: ${description}`;
    }
    clear(this.tree);
    this.roots = nodes.map((n) => this.makeNode(n, 1, null));
    for (const r of this.roots) this.tree.append(r.li);
    if (this.roots.length > 0) this.roots[0].li.tabIndex = 0;
    if (nodes.length === 0 && description === undefined) {
      this.message.append(h("p", {}, "No hosts have registered yet."));
    }
  }

  private makeNode(data: TreeNode, level: number, parent: TNode | null): TNode {
    const li = h("li", {
      role: "treeitem",
      tabindex: -1,
      "aria-level": level,
      "aria-selected": "false",
      "data-id": data.id,
      "data-type": data.type,
      "data-name": data.name,
    });
    const node: TNode = { data, level, parent, expanded: false, kids: null, li, group: null };
    const toggle = h("span", { class: "toggle", "aria-hidden": "true" });
    const meta: string[] = [];
    if (data.attrs?.["state"]) meta.push(data.attrs["state"]);
    if (data.type === "vm" && parent === null && data.attrs?.["host"])
      meta.push(data.attrs["host"]);
    if (data.attrs?.["resolved"] === "false") meta.push("unresolved");
    const row = h(
      "div",
      { class: "row", style: `padding-left: ${(level - 1) * 14 + 4}px` },
      toggle,
      h("span", { class: `type type-${data.type}` }, typeLabel(data.type)),
      h("span", { class: "name", title: data.id }, data.name || data.id),
      meta.length ? h("span", { class: "meta" }, meta.join(" · ")) : null,
    );
    toggle.addEventListener("click", (e) => {
      e.stopPropagation();
      this.focus(node);
      void this.toggle(node);
    });
    row.addEventListener("click", () => {
      this.focus(node);
      this.open(node.data);
    });
    li.append(row);
    this.updateToggle(node);
    return node;
  }

  private expandable(node: TNode): boolean {
    if (node.kids !== null) return node.kids.length > 0;
    return node.data.children !== 0;
  }

  private updateToggle(node: TNode): void {
    const toggle = node.li.querySelector(":scope > .row > .toggle") as HTMLElement;
    if (this.expandable(node)) {
      node.li.setAttribute("aria-expanded", String(node.expanded));
      toggle.textContent = node.expanded ? "▾" : "▸";
    } else {
      node.li.removeAttribute("aria-expanded");
      toggle.textContent = "";
    }
  }

  private async toggle(node: TNode): Promise<void> {
    if (node.expanded) this.collapse(node);
    else await this.expand(node);
  }

  async expand(node: TNode): Promise<void> {
    if (!this.expandable(node) || node.expanded) return;
    if (node.kids === null) {
      node.li.classList.add("loading");
      try {
        const c = await api.children(node.data.id);
        node.kids = c.children.map((k) => this.makeNode(k, node.level + 1, node));
      } catch (e) {
        node.li.classList.remove("loading");
        this.message.replaceChildren(errorBox((e as Error).message));
        return;
      }
      node.li.classList.remove("loading");
    }
    node.expanded = true;
    this.renderGroup(node);
    this.updateToggle(node);
  }

  private collapse(node: TNode): void {
    node.expanded = false;
    node.group?.remove();
    node.group = null;
    this.updateToggle(node);
  }

  private renderGroup(node: TNode): void {
    node.group?.remove();
    node.group = null;
    if (!node.expanded || !node.kids || node.kids.length === 0) return;
    const group = h("ul", { role: "group" });
    for (const k of node.kids) group.append(k.li);
    node.li.append(group);
    node.group = group;
  }

  // Reloads a node's children, keeping what was expanded below it, until `done` holds for the
  // new list (at most ~5 s), and marks the row of `highlight` when it appears.
  private async reload(
    node: TNode,
    done: (kids: TreeNode[]) => boolean,
    highlight: string,
  ): Promise<void> {
    for (let attempt = 0; attempt < 20; attempt++) {
      let kids: TreeNode[];
      try {
        kids = (await api.children(node.data.id)).children;
      } catch {
        return;
      }
      if (done(kids) || attempt === 19) {
        const old = new Map((node.kids ?? []).map((k) => [k.data.id, k]));
        node.kids = kids.map((k) => {
          const existing = old.get(k.id);
          if (existing) {
            existing.data = { ...k };
            return existing;
          }
          const fresh = this.makeNode(k, node.level + 1, node);
          if (k.name === highlight) fresh.li.classList.add("fresh");
          return fresh;
        });
        this.renderGroup(node);
        this.updateToggle(node);
        return;
      }
      await new Promise((r) => window.setTimeout(r, 250));
    }
  }

  private find(pred: (n: TNode) => boolean): TNode | null {
    const stack = [...this.roots];
    while (stack.length) {
      const n = stack.pop()!;
      if (pred(n)) return n;
      if (n.kids) stack.push(...n.kids);
    }
    return null;
  }

  // ---- keyboard --------------------------------------------------------------------------

  private visible(): TNode[] {
    const out: TNode[] = [];
    const walk = (nodes: TNode[]) => {
      for (const n of nodes) {
        out.push(n);
        if (n.expanded && n.kids) walk(n.kids);
      }
    };
    walk(this.roots);
    return out;
  }

  private focus(node: TNode): void {
    for (const li of this.tree.querySelectorAll<HTMLLIElement>('[role="treeitem"]')) {
      li.tabIndex = -1;
      li.setAttribute("aria-selected", "false");
    }
    node.li.tabIndex = 0;
    node.li.setAttribute("aria-selected", "true");
    node.li.focus();
  }

  private onKey(e: KeyboardEvent): void {
    const items = this.visible();
    const current = items.find((n) => n.li === document.activeElement);
    if (!current) return;
    const i = items.indexOf(current);
    switch (e.key) {
      case "ArrowDown":
        if (i + 1 < items.length) this.focus(items[i + 1]);
        break;
      case "ArrowUp":
        if (i > 0) this.focus(items[i - 1]);
        break;
      case "Home":
        this.focus(items[0]);
        break;
      case "End":
        this.focus(items[items.length - 1]);
        break;
      case "ArrowRight":
        if (!current.expanded) void this.expand(current);
        else if (current.kids && current.kids.length) this.focus(current.kids[0]);
        break;
      case "ArrowLeft":
        if (current.expanded) this.collapse(current);
        else if (current.parent) this.focus(current.parent);
        break;
      case "Enter":
      case " ":
        this.open(current.data);
        break;
      default:
        return;
    }
    e.preventDefault();
  }
}
