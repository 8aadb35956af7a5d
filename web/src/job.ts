// A job followed live: GET /api/v1/jobs/{id} polled until the job has ended (as `strata`
// does), drawn as a progress bar with the result of each VM (backups) or each step (restores).
import { api, type Job } from "./api";
import { badge, clear, errorBox, formatTime, h } from "./dom";

const POLL_MS = 400;

export function renderJob(job: Job): HTMLElement {
  const box = h(
    "div",
    { class: "job", "data-testid": "job", "data-job": job.id, "data-state": job.state },
    h(
      "div",
      { class: "job-head" },
      h("strong", {}, `${job.kind} ${job.detail.backup_name ?? job.detail.as_name ?? ""}`),
      " ",
      badge(job.state),
      h("span", { class: "muted" }, ` ${job.id} · ${formatTime(job.updated_at)}`),
    ),
    h(
      "progress",
      { max: 100, value: job.progress, "aria-label": `progress of ${job.id}` },
      `${job.progress}%`,
    ),
    h("p", { class: "job-message", "data-testid": "job-message" }, job.message),
  );
  const vms = job.detail.vms ?? [];
  if (vms.length) {
    box.append(
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { "data-testid": "job-vms" },
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", {}, "VM"),
              h("th", {}, "Host"),
              h("th", {}, "State"),
              h("th", {}, "Step"),
              h("th", {}, "Consistency"),
              h("th", {}, "Error"),
            ),
          ),
          h(
            "tbody",
            {},
            ...vms.map((v) =>
              h(
                "tr",
                { "data-vm": v.name, "data-state": v.state },
                h("td", {}, v.name),
                h("td", {}, v.host),
                h("td", {}, badge(v.state)),
                h("td", {}, v.step),
                h("td", {}, v.consistency_achieved),
                h("td", { class: "err" }, v.error),
              ),
            ),
          ),
        ),
      ),
    );
  }
  const steps = job.detail.steps ?? [];
  if (steps.length) {
    box.append(
      h(
        "ol",
        { class: "steps" },
        ...steps.map((s) => h("li", {}, h("strong", {}, s.step), " ", s.message)),
      ),
    );
  }
  if (job.detail.result) {
    const r = job.detail.result;
    box.append(
      h(
        "p",
        { class: "ok", "data-testid": "restore-result" },
        `Restored VM ${r.vm_name} (${r.vm_uuid})${r.verified ? ", verified" : ""}: ${r.disk_paths.join(", ")}`,
      ),
    );
  }
  if (job.detail.error) box.append(errorBox(job.detail.error));
  return box;
}

export function ended(job: Job): boolean {
  return job.state === "succeeded" || job.state === "failed";
}

// Draws the job into `into` and redraws it on every poll until it has ended.
export async function followJob(
  id: string,
  into: HTMLElement,
  onUpdate?: (job: Job) => void,
): Promise<Job | null> {
  for (;;) {
    let job: Job;
    try {
      job = await api.job(id);
    } catch (e) {
      clear(into);
      into.append(errorBox((e as Error).message));
      return null;
    }
    if (!into.isConnected) return job; // the view was left
    clear(into);
    into.append(renderJob(job));
    onUpdate?.(job);
    if (ended(job)) return job;
    await new Promise((r) => window.setTimeout(r, POLL_MS));
  }
}
