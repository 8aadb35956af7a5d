// Backups and jobs: start a backup (VMs, host, cluster, consistency mode) and watch it live,
// the jobs (filtered by state and kind) and the catalog's backups (by state and VM).
import { api, type BackupRequest, type Job } from "./api";
import { badge, clear, errorBox, formatTime, h } from "./dom";
import { followJob, renderJob } from "./job";

export async function renderBackupsPage(
  main: HTMLElement,
  onLeave: (fn: () => void) => void,
): Promise<void> {
  clear(main);
  const [hosts, clusters, vms] = await Promise.all([api.hosts(), api.clusters(), api.vms()]).catch(
    (e) => {
      main.append(errorBox((e as Error).message));
      return [[], [], []] as [never[], never[], never[]];
    },
  );
  const options = (values: string[], anyLabel: string) => [
    h("option", { value: "" }, anyLabel),
    ...values.map((v) => h("option", { value: v }, v)),
  ];
  const vmList = h(
    "datalist",
    { id: "vm-names" },
    ...vms.map((v) => h("option", { value: v.name })),
  );
  const f = {
    vms: h("input", {
      id: "b-vms",
      list: "vm-names",
      placeholder: "web01 mail01",
      autocomplete: "off",
    }),
    host: h(
      "select",
      { id: "b-host" },
      ...options(
        hosts.map((x) => x.id),
        "none",
      ),
    ),
    cluster: h(
      "select",
      { id: "b-cluster" },
      ...options(
        clusters.map((c) => c.name),
        "none",
      ),
    ),
    consistency: h(
      "select",
      { id: "b-consistency" },
      ...["crash", "pause", "quiesce"].map((c) => h("option", { value: c }, c)),
    ),
    fallback: h(
      "select",
      { id: "b-fallback" },
      h("option", { value: "" }, "none (the VM fails)"),
      h("option", { value: "pause" }, "pause"),
      h("option", { value: "crash" }, "crash"),
    ),
    name: h("input", {
      id: "b-name",
      placeholder: "default: backup-YYYYMMDD-HHMMSS",
      autocomplete: "off",
    }),
    verify: h("input", { id: "b-verify", type: "checkbox" }),
  };
  const label = (el: HTMLElement, text: string) =>
    h("label", { for: el.id }, h("span", {}, text), el);
  const jobArea = h("div", { class: "job-area", "data-testid": "backup-job" });
  const form = h(
    "form",
    { class: "backup-form", "data-testid": "backup-form" },
    label(f.vms, "VMs (names, space separated)"),
    label(f.host, "Every VM of host"),
    label(f.cluster, "Every VM of cluster"),
    label(f.consistency, "Consistency"),
    label(f.fallback, "Fallback"),
    label(f.name, "Name"),
    h("label", { for: "b-verify", class: "inline" }, f.verify, " verify checksums"),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, "Start backup"),
    ),
  );
  const jobsBox = h("div", { "data-testid": "jobs" });
  const backupsBox = h("div", { "data-testid": "backups" });
  const jobState = h(
    "select",
    { id: "j-state" },
    ...options(["queued", "running", "succeeded", "failed"], "any state"),
  );
  const jobKind = h("select", { id: "j-kind" }, ...options(["backup", "restore"], "any kind"));
  const backupState = h(
    "select",
    { id: "bk-state" },
    ...options(["running", "succeeded", "failed"], "any state"),
  );
  const backupVm = h(
    "select",
    { id: "bk-vm" },
    h("option", { value: "" }, "any VM"),
    ...vms.map((v) => h("option", { value: v.uuid }, `${v.name} (${v.host})`)),
  );

  main.append(
    h(
      "section",
      { class: "page", "data-testid": "backups-page" },
      h("h1", {}, "Backups & jobs"),
      h(
        "div",
        { class: "cards" },
        h("div", { class: "card" }, h("h2", {}, "Start a backup"), form, vmList),
        h("div", { class: "card wide" }, h("h2", {}, "Progress"), jobArea),
      ),
      h(
        "div",
        { class: "card wide" },
        h("h2", {}, "Jobs"),
        h("div", { class: "filters" }, label(jobState, "State"), label(jobKind, "Kind")),
        jobsBox,
      ),
      h(
        "div",
        { class: "card wide" },
        h("h2", {}, "Backups"),
        h("div", { class: "filters" }, label(backupState, "State"), label(backupVm, "VM")),
        backupsBox,
      ),
    ),
  );

  const showJobs = async () => {
    const jobs = await api.jobs({
      state: jobState.value || undefined,
      kind: jobKind.value || undefined,
      limit: 50,
    });
    clear(jobsBox);
    jobsBox.append(jobsTable(jobs, (j) => void followJob(j.id, jobArea, refresh)));
  };
  const showBackups = async () => {
    const list = await api.backups({
      state: backupState.value || undefined,
      vm: backupVm.value || undefined,
      limit: 50,
    });
    clear(backupsBox);
    if (list.length === 0) {
      backupsBox.append(h("p", { class: "muted" }, "No backups."));
      return;
    }
    backupsBox.append(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { "data-testid": "backups-table" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, "Name"),
              h("th", {}, "State"),
              h("th", {}, "Consistency"),
              h("th", {}, "Started"),
              h("th", {}, "Finished"),
              h("th", {}, "Requester"),
            ),
          ),
          h(
            "tbody",
            {},
            ...list.map((b) =>
              h(
                "tr",
                { "data-backup": b.name },
                h("td", {}, b.name),
                h("td", {}, badge(String(b.metadata?.["state"] ?? b.state))),
                h("td", {}, b.consistency),
                h("td", {}, formatTime(b.started_at)),
                h("td", {}, formatTime(b.finished_at)),
                h("td", {}, b.requester),
              ),
            ),
          ),
        ),
      ),
    );
  };
  const refresh = () => {
    void showJobs().catch((e) => jobsBox.replaceChildren(errorBox((e as Error).message)));
    void showBackups().catch((e) => backupsBox.replaceChildren(errorBox((e as Error).message)));
  };
  for (const s of [jobState, jobKind, backupState, backupVm]) s.addEventListener("change", refresh);
  refresh();
  const timer = window.setInterval(refresh, 3000);
  onLeave(() => window.clearInterval(timer));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const req: BackupRequest = {
      vms: f.vms.value.split(/[\s,]+/).filter(Boolean),
      host: f.host.value || undefined,
      cluster: f.cluster.value || undefined,
      consistency: f.consistency.value,
      fallback: f.fallback.value || undefined,
      name: f.name.value.trim() || undefined,
      verify: f.verify.checked,
    };
    if (req.vms!.length === 0) delete req.vms;
    try {
      const started = await api.startBackup(req);
      refresh();
      await followJob(started.job.id, jobArea, (j) => {
        if (j.state === "succeeded" || j.state === "failed") refresh();
      });
    } catch (err) {
      jobArea.replaceChildren(errorBox((err as Error).message));
    }
  });
}

function jobsTable(jobs: Job[], open: (j: Job) => void): HTMLElement {
  if (jobs.length === 0) return h("p", { class: "muted" }, "No jobs.");
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { "data-testid": "jobs-table" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, "Job"),
          h("th", {}, "Kind"),
          h("th", {}, "State"),
          h("th", {}, "Progress"),
          h("th", {}, "Message"),
          h("th", {}, "Updated"),
        ),
      ),
      h(
        "tbody",
        {},
        ...jobs.map((j) =>
          h(
            "tr",
            { "data-job": j.id },
            h(
              "td",
              {},
              h("button", { type: "button", class: "link", onclick: () => open(j) }, j.id),
            ),
            h("td", {}, j.kind),
            h("td", {}, badge(j.state)),
            h("td", {}, `${j.progress}%`),
            h("td", { class: "msg" }, j.message),
            h("td", {}, formatTime(j.updated_at)),
          ),
        ),
      ),
    ),
  );
}

export { renderJob };
