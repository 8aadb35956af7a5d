// A VM's page: its resource graph drawn with Cytoscape.js, its backups, its events (live), and
// the restore actions (in place, as a new VM, one disk), each behind a confirmation that names
// what will be overwritten.
import cytoscape from "cytoscape";
import { api, type Backup, type BackupItem, type StrataEvent, type VmDetail } from "./api";
import {
  badge,
  clear,
  confirmDialog,
  errorBox,
  formatBytes,
  formatTime,
  h,
  typeLabel,
} from "./dom";
import { describeEvent } from "./events";
import { followJob } from "./job";
import { nodeHref } from "./node";

// Colours by layer, top (VM) to bottom (storage system).
const TYPE_COLOURS: Record<string, string> = {
  host: "#6b7280",
  vm: "#2563eb",
  vm_config: "#93c5fd",
  virtual_disk: "#0891b2",
  passthrough_disk: "#0e7490",
  file: "#16a34a",
  mount_point: "#65a30d",
  fs_volume: "#ca8a04",
  block_device: "#ea580c",
  lun: "#dc2626",
  storage_volume: "#9333ea",
  storage_system: "#4c1d95",
};

function drawGraph(container: HTMLElement, vm: VmDetail): cytoscape.Core {
  const elements: cytoscape.ElementDefinition[] = [];
  for (const n of vm.graph.nodes) {
    elements.push({
      data: {
        id: n.id,
        label: `${n.name || n.id}\n${typeLabel(n.type)}`,
        type: n.type,
        colour: TYPE_COLOURS[n.type] ?? "#64748b",
        unresolved: n.attrs?.["resolved"] === "false" ? "yes" : "no",
      },
    });
  }
  vm.graph.edges.forEach((e, i) =>
    elements.push({ data: { id: `e${i}`, source: e.from, target: e.to, label: e.type } }),
  );
  return cytoscape({
    container,
    elements,
    wheelSensitivity: 0.3,
    style: [
      {
        selector: "node",
        style: {
          "background-color": "data(colour)",
          label: "data(label)",
          "text-wrap": "wrap",
          "text-max-width": "140px",
          "font-size": 10,
          "text-valign": "bottom",
          "text-margin-y": 4,
          color: "#1f2937",
          width: 22,
          height: 22,
        },
      },
      {
        selector: 'node[unresolved = "yes"]',
        style: { "border-width": 3, "border-color": "#dc2626" },
      },
      {
        selector: "edge",
        style: {
          width: 1.5,
          "line-color": "#94a3b8",
          "target-arrow-color": "#94a3b8",
          "target-arrow-shape": "triangle",
          "curve-style": "bezier",
          label: "data(label)",
          "font-size": 8,
          color: "#64748b",
          "text-rotation": "autorotate",
        },
      },
    ],
    layout: {
      name: "breadthfirst",
      directed: true,
      roots: [vm.id],
      spacingFactor: 1.1,
      padding: 12,
    },
  });
}

export interface VmPageContext {
  subscribe: (fn: (e: StrataEvent) => void) => () => void;
  onLeave: (fn: () => void) => void;
}

export async function renderVmPage(
  main: HTMLElement,
  key: string,
  ctx: VmPageContext,
): Promise<void> {
  clear(main);
  main.append(h("p", { class: "muted" }, "Loading…"));
  let vm: VmDetail;
  let backups: Backup[];
  try {
    vm = await api.vm(key);
    backups = await api.backups({ vm: vm.uuid });
  } catch (e) {
    clear(main);
    main.append(errorBox((e as Error).message));
    return;
  }
  clear(main);
  const graphBox = h("div", {
    class: "graph",
    "data-testid": "vm-graph",
    role: "img",
    "aria-label": `resource graph of ${vm.name}`,
  });
  const events = h("ol", { class: "feed-list", "data-testid": "vm-events" });
  const jobArea = h("div", { class: "job-area", "data-testid": "restore-job" });
  const storage = vm.graph.nodes.filter(
    (n) => n.type === "storage_system" || n.type === "storage_volume",
  );
  main.append(
    h(
      "section",
      { class: "page", "data-testid": "vm-page", "data-vm": vm.name },
      h(
        "h1",
        {},
        h("span", { class: "type type-vm" }, "VM"),
        " ",
        vm.name,
        " ",
        badge(vm.state || "unknown"),
      ),
      h(
        "p",
        { class: "muted mono" },
        `${vm.uuid} on `,
        h("a", { href: `#/node/${encodeURIComponent(`host:${vm.host}`)}` }, vm.host),
      ),
      h(
        "div",
        { class: "card wide" },
        h(
          "h2",
          {},
          "Resource graph ",
          h(
            "span",
            { class: "muted", "data-testid": "graph-count" },
            `${vm.graph.nodes.length} nodes, ${vm.graph.edges.length} edges`,
          ),
        ),
        graphBox,
        h(
          "p",
          { class: "muted" },
          "Storage: ",
          ...storage.flatMap((n, i) => [
            i ? ", " : "",
            h("a", { href: nodeHref(n) }, `${typeLabel(n.type)} ${n.name}`),
          ]),
        ),
      ),
      h(
        "div",
        { class: "cards" },
        h(
          "div",
          { class: "card wide" },
          h("h2", {}, `Backups (${backups.length})`),
          restoreSection(vm, backups, jobArea),
          jobArea,
        ),
        h("div", { class: "card" }, h("h2", {}, "Events"), events),
      ),
    ),
  );
  const cy = drawGraph(graphBox, vm);
  cy.on("tap", "node", (evt) => {
    const id = evt.target.id() as string;
    const n = vm.graph.nodes.find((x) => x.id === id);
    if (n && n.id !== vm.id) window.location.hash = nodeHref(n);
  });
  ctx.onLeave(() => cy.destroy());

  const showEvent = (e: StrataEvent) =>
    events.prepend(
      h(
        "li",
        { class: `feed-item feed-${e.kind}` },
        h("span", { class: "feed-kind" }, e.kind),
        h("span", { class: "feed-text" }, describeEvent(e)),
        h("time", {}, formatTime(e.time)),
      ),
    );
  ctx.onLeave(ctx.subscribe((e) => e.vm_uuid === vm.uuid && showEvent(e)));
  try {
    const mine: StrataEvent[] = [];
    let after = 0;
    while (true) {
      const list = await api.events(after, 10000, undefined, vm.uuid);
      mine.push(...list);
      if (list.length < 10000) break;
      after = list[list.length - 1].seq;
    }
    for (const e of mine.slice(-15)) showEvent(e);
    if (mine.length === 0) events.append(h("li", { class: "muted" }, "No events for this VM yet."));
  } catch (e) {
    events.append(h("li", {}, errorBox((e as Error).message)));
  }
}

function restoreSection(vm: VmDetail, backups: Backup[], jobArea: HTMLElement): HTMLElement {
  const usable = backups.filter((b) => b.state === "succeeded");
  const section = h("div", { class: "restore" });
  const table = h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "data-testid": "vm-backups" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, ""),
          h("th", {}, "Backup"),
          h("th", {}, "State"),
          h("th", {}, "Started"),
          h("th", {}, "Consistency"),
        ),
      ),
      h(
        "tbody",
        {},
        ...backups.map((b) =>
          h(
            "tr",
            { "data-backup": b.name },
            h(
              "td",
              {},
              b.state === "succeeded"
                ? h("input", {
                    type: "radio",
                    name: "restore-from",
                    value: b.id,
                    "aria-label": `restore from ${b.name}`,
                    checked: b === usable[0],
                  })
                : "",
            ),
            h("td", {}, b.name),
            h("td", {}, badge(String(b.metadata?.["state"] ?? b.state))),
            h("td", {}, formatTime(b.started_at)),
            h("td", {}, b.consistency),
          ),
        ),
      ),
    ),
  );
  section.append(
    backups.length ? table : h("p", { class: "muted" }, "No backup holds this VM yet."),
  );
  if (usable.length === 0) return section;

  const asName = h("input", {
    id: "restore-as",
    value: `${vm.name}-restored`,
    autocomplete: "off",
  });
  const disk = h("select", { id: "restore-disk" });
  const verify = h("input", { type: "checkbox", id: "restore-verify", checked: true });
  const chosen = (): Backup => {
    const radio = section.querySelector<HTMLInputElement>('input[name="restore-from"]:checked');
    return usable.find((b) => b.id === radio?.value) ?? usable[0];
  };
  let items: BackupItem[] = [];
  const loadItems = async () => {
    const b = await api.backup(chosen().id);
    items = (b.items ?? []).filter((i) => i.vm_uuid === vm.uuid);
    clear(disk);
    for (const i of items)
      disk.append(h("option", { value: i.disk_target }, `${i.disk_target} — ${i.source_path}`));
  };
  const reloadItems = () =>
    loadItems().catch((e) => jobArea.replaceChildren(errorBox((e as Error).message)));
  section.addEventListener("change", (e) => {
    if ((e.target as HTMLElement).matches('input[name="restore-from"]')) void reloadItems();
  });
  void reloadItems();

  const run = async (kind: "in-place" | "as-new" | "disk") => {
    const b = chosen();
    if (items.length === 0) await loadItems();
    const diskItems = kind === "disk" ? items.filter((i) => i.disk_target === disk.value) : items;
    const list = h(
      "ul",
      { class: "plain overwrite" },
      ...diskItems.map((i) =>
        h(
          "li",
          {},
          h("strong", {}, i.disk_target),
          ` ${i.source_path} (${formatBytes(i.size_bytes)})`,
        ),
      ),
    );
    const from = `from backup ${b.name} (${formatTime(b.started_at)})`;
    let ok: boolean;
    const name = asName.value.trim();
    if (kind === "as-new") {
      if (!name) {
        jobArea.replaceChildren(errorBox("Give the new VM a name."));
        return;
      }
      ok = await confirmDialog({
        title: `Restore ${vm.name} as a new VM '${name}'?`,
        body: [
          h(
            "p",
            {},
            `A new VM '${name}' (new UUID, new disk files) is created on ${vm.host} ${from}, with copies of:`,
          ),
          list,
          h("p", { class: "ok" }, `Nothing is overwritten: ${vm.name} stays as it is.`),
        ],
        confirmLabel: `Create ${name}`,
      });
    } else {
      const what = kind === "disk" ? `disk ${disk.value} of VM ${vm.name}` : `VM ${vm.name}`;
      ok = await confirmDialog({
        title: `Overwrite ${what}?`,
        body: [
          h(
            "p",
            {},
            `${vm.name} on ${vm.host} is stopped, and these disks are overwritten ${from}:`,
          ),
          list,
          kind === "in-place"
            ? h(
                "p",
                {},
                "Its configuration is restored too; it is started again if it was running.",
              )
            : null,
          h("p", { class: "warn" }, "What was written to them since the backup is lost."),
        ].filter((x): x is HTMLParagraphElement | HTMLUListElement => x !== null),
        confirmLabel: `Overwrite ${kind === "disk" ? disk.value : vm.name}`,
        danger: true,
      });
    }
    if (!ok) return;
    try {
      const started = await api.startRestore({
        backup: b.id,
        vm: vm.uuid,
        as: kind === "as-new" ? name : undefined,
        disks: kind === "disk" ? [disk.value] : undefined,
        verify: verify.checked,
      });
      await followJob(started.job.id, jobArea);
    } catch (e) {
      jobArea.replaceChildren(errorBox((e as Error).message));
    }
  };
  section.append(
    h(
      "div",
      { class: "restore-actions" },
      h("label", { for: "restore-verify", class: "inline" }, verify, " verify checksums"),
      h(
        "div",
        { class: "actions" },
        h(
          "button",
          {
            type: "button",
            class: "danger",
            "data-testid": "restore-in-place",
            onclick: () => void run("in-place"),
          },
          "Restore in place…",
        ),
      ),
      h(
        "div",
        { class: "actions" },
        h("label", { for: "restore-as" }, h("span", {}, "New VM name"), asName),
        h(
          "button",
          {
            type: "button",
            class: "primary",
            "data-testid": "restore-as-new",
            onclick: () => void run("as-new"),
          },
          "Restore as new VM…",
        ),
      ),
      h(
        "div",
        { class: "actions" },
        h("label", { for: "restore-disk" }, h("span", {}, "Disk"), disk),
        h(
          "button",
          {
            type: "button",
            class: "danger",
            "data-testid": "restore-disk-button",
            onclick: () => void run("disk"),
          },
          "Restore this disk…",
        ),
      ),
    ),
  );
  return section;
}
