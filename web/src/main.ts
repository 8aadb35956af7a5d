// The Strata web console: the resource tree beside the page of the selected thing, and the live
// event feed. Pages are addressed by the URL's hash:
//   #/                 welcome: the fleet in numbers
//   #/node/ID          a node and its upward view (every VM that depends on it)
//   #/vm/UUID-or-name  a VM: graph, backups, events, restores
//   #/backups          backups and jobs
import "./style.css";
import { api } from "./api";
import { renderBackupsPage } from "./backups";
import { clear, errorBox, h } from "./dom";
import { EventFeed } from "./events";
import { nodeHref, renderNodePage } from "./node";
import { ResourceTree } from "./tree";
import { renderVmPage } from "./vm";

const main = document.getElementById("main")!;
const hostStatus = document.getElementById("host-status")!;
const feed = new EventFeed(document.getElementById("feed")!);
const tree = new ResourceTree(document.getElementById("sidebar")!, (node) => {
  window.location.hash = nodeHref(node);
});

let leaving: (() => void)[] = [];
const onLeave = (fn: () => void) => leaving.push(fn);

async function renderHome(): Promise<void> {
  clear(main);
  const [hosts, vms, jobs] = await Promise.all([api.hosts(), api.vms(), api.jobs({ limit: 5 })]);
  const reachable = hosts.filter((x) => x.state === "reachable").length;
  main.append(
    h(
      "section",
      { class: "page", "data-testid": "home" },
      h("h1", {}, "Fleet"),
      h(
        "div",
        { class: "stats" },
        h(
          "div",
          { class: "stat" },
          h("strong", {}, String(hosts.length)),
          " hosts",
          h("small", {}, `${reachable} reachable`),
        ),
        h(
          "div",
          { class: "stat" },
          h("strong", {}, String(vms.length)),
          " VMs",
          h("small", {}, `${vms.filter((v) => v.state === "running").length} running`),
        ),
        h(
          "div",
          { class: "stat" },
          h("strong", {}, String(jobs.filter((j) => j.state === "running").length)),
          " running jobs",
          h("small", {}, h("a", { href: "#/backups" }, "backups & jobs")),
        ),
      ),
      h(
        "p",
        { class: "muted" },
        "Expand the tree on the left (arrow keys work) from a host down to its storage systems, or search it. " +
          "Open a storage volume or system to see every VM that depends on it.",
      ),
    ),
  );
}

async function route(): Promise<void> {
  for (const fn of leaving) fn();
  leaving = [];
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [, page, ...rest] = hash.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  for (const a of document.querySelectorAll<HTMLAnchorElement>("[data-nav]")) {
    const active = (a.dataset.nav === "backups") === (page === "backups");
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (page === "vm" && arg) {
      await renderVmPage(main, arg, { subscribe: (fn) => feed.subscribe(fn), onLeave });
    } else if (page === "node" && arg) {
      await renderNodePage(main, arg, (id) => void tree.filterDependsOn(id));
    } else if (page === "backups") {
      await renderBackupsPage(main, onLeave);
    } else {
      await renderHome();
    }
  } catch (e) {
    clear(main);
    main.append(errorBox((e as Error).message));
  }
}

async function showHostStatus(): Promise<void> {
  try {
    const hosts = await api.hosts();
    const reachable = hosts.filter((x) => x.state === "reachable").length;
    hostStatus.textContent = `${reachable}/${hosts.length} hosts reachable`;
    hostStatus.className = `host-status ${reachable === hosts.length ? "ok" : "warn"}`;
  } catch (e) {
    hostStatus.textContent = (e as Error).message;
    hostStatus.className = "host-status warn";
  }
}

feed.subscribe((e) => {
  tree.onEvent(e);
  if (e.kind === "cluster") void showHostStatus();
});
window.addEventListener("hashchange", () => void route());

void showHostStatus();
void tree.refreshHostOptions().catch(() => undefined);
void tree.showResources();
void feed.start();
void route();
