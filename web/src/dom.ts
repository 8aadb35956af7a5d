// Small DOM helpers shared by the views: element building, times, labels, the confirmation
// dialog.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | EventListener | undefined>;

// h("button", {class: "primary", onclick: fn}, "Start"): attributes starting with "on" are
// listeners; `false`/`undefined` attributes are left out; `true` sets an empty attribute.
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value as EventListener);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, ...children);
  return el;
}

export function append(el: Element, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

export function clear(el: Element): void {
  while (el.firstChild) el.removeChild(el.firstChild);
}

// "2026-11-26 11:40:02" in local time; "" stays "".
export function formatTime(rfc3339: string): string {
  if (!rfc3339) return "";
  const d = new Date(rfc3339);
  if (Number.isNaN(d.getTime())) return rfc3339;
  const pad = (n: number) => String(n).padStart(2, "0");
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

const TYPE_LABELS: Record<string, string> = {
  cluster: "cluster",
  host: "host",
  vm: "VM",
  vm_config: "config",
  virtual_disk: "disk",
  passthrough_disk: "pass-through disk",
  file: "file",
  mount_point: "mount",
  fs_volume: "file system",
  block_device: "block device",
  lun: "LUN",
  storage_volume: "storage volume",
  storage_system: "storage system",
  vm_snapshot: "VM snapshot",
  storage_snapshot: "storage snapshot",
  backup: "backup",
};

export function typeLabel(type: string): string {
  return TYPE_LABELS[type] ?? type;
}

// A state word as a coloured badge (running, succeeded, failed, ...).
export function badge(text: string): HTMLSpanElement {
  return h("span", { class: `badge badge-${text.replace(/[^a-z_-]/gi, "")}` }, text);
}

export function errorBox(message: string): HTMLDivElement {
  return h("div", { class: "error", role: "alert" }, message);
}

// A modal confirmation that names what will happen. Resolves true on confirm; Escape or
// "Cancel" resolve false. The confirm button gets `confirmLabel`, the dialog `testId`.
export function confirmDialog(opts: {
  title: string;
  body: Node[];
  confirmLabel: string;
  danger?: boolean;
}): Promise<boolean> {
  return new Promise((resolve) => {
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const ok = h(
      "button",
      { type: "button", class: opts.danger ? "danger" : "primary", "data-testid": "confirm" },
      opts.confirmLabel,
    );
    const dialog = h(
      "dialog",
      { class: "confirm", "aria-labelledby": "confirm-title", "data-testid": "confirm-dialog" },
      h("h2", { id: "confirm-title" }, opts.title),
      h("div", { class: "confirm-body" }, ...opts.body),
      h("div", { class: "actions" }, cancel, ok),
    );
    const finish = (answer: boolean) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    cancel.addEventListener("click", () => finish(false));
    ok.addEventListener("click", () => finish(true));
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      finish(false);
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}
