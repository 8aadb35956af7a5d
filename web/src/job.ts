// A job followed live: its event stream (GET /api/v1/jobs/{id}/stream), or GET /api/v1/jobs/{id}
// polled when the stream fails (as `strata` does), drawn as a progress bar with the result of
// each VM (backups) or each step (restores).
import { api, jobStreamUrl, type Job } from "./api";
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

// Follows the job's stream, calling `draw` with each `job` event until the job has ended or
// `draw` returns false. Resolves with the last job seen: one that has not ended means the stream
// failed first (an EventSource would reconnect by itself; the caller polls instead).
function streamJob(id: string, draw: (job: Job) => boolean): Promise<Job | null> {
  return new Promise((resolve) => {
    let last: Job | null = null;
    const source = new EventSource(jobStreamUrl(id));
    const finish = () => {
      source.close();
      resolve(last);
    };
    source.addEventListener("job", (msg) => {
      try {
        last = JSON.parse((msg as MessageEvent<string>).data) as Job;
      } catch {
        finish();
        return;
      }
      if (!draw(last) || ended(last)) finish();
    });
    source.onerror = finish;
  });
}

// Draws the job into `into` and redraws it on every change until it has ended.
export async function followJob(
  id: string,
  into: HTMLElement,
  onUpdate?: (job: Job) => void,
): Promise<Job | null> {
  const draw = (job: Job): boolean => {
    if (!into.isConnected) return false; // the view was left
    clear(into);
    into.append(renderJob(job));
    onUpdate?.(job);
    return true;
  };
  if (typeof EventSource !== "undefined") {
    const streamed = await streamJob(id, draw);
    if (streamed && (ended(streamed) || !into.isConnected)) return streamed;
  }
  for (;;) {
    let job: Job;
    try {
      job = await api.job(id);
    } catch (e) {
      clear(into);
      into.append(errorBox((e as Error).message));
      return null;
    }
    if (!draw(job)) return job;
    if (ended(job)) return job;
    await new Promise((r) => window.setTimeout(r, POLL_MS));
  }
}
