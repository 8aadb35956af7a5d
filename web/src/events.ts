// The live event feed: one EventSource on GET /api/v1/events/stream (server-sent events), the
// panel that shows each consolidated notification as it arrives, and a small publish/subscribe
// so that other views (the tree, a VM page) react to the same events.
import { api, EVENT_STREAM_URL, type StrataEvent } from "./api";
import { clear, formatTime, h } from "./dom";

export type EventListenerFn = (e: StrataEvent) => void;

const MAX_SHOWN = 200;

export function describeEvent(e: StrataEvent): string {
  const d = e.detail ?? {};
  if (e.kind === "cluster") {
    const what = String(d["event"] ?? "cluster event");
    return `${what}: ${e.host}`;
  }
  const vm = String(d["vm_name"] ?? e.vm_uuid);
  return `VM ${vm} ${e.kind} on ${e.host}`;
}

export class EventFeed {
  private listeners = new Set<EventListenerFn>();
  private list: HTMLOListElement;
  private status: HTMLSpanElement;
  private source: EventSource | null = null;
  private lastSeq = 0;

  constructor(root: HTMLElement) {
    this.status = h("span", { class: "feed-status", "data-testid": "feed-status" }, "connecting");
    this.list = h("ol", { class: "feed-list", "data-testid": "event-feed", "aria-live": "polite" });
    clear(root);
    root.append(h("h2", {}, "Live events ", this.status), this.list);
  }

  subscribe(fn: EventListenerFn): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // Shows the newest events already logged, then follows the stream from the newest on.
  async start(): Promise<void> {
    try {
      const recent = await api.recentEvents(20);
      for (const e of recent.events) this.show(e);
      this.lastSeq = Math.max(this.lastSeq, recent.latest);
    } catch {
      // the stream below reports the connection state
    }
    this.connect();
  }

  private connect(): void {
    const url = this.lastSeq > 0 ? `${EVENT_STREAM_URL}?after=${this.lastSeq}` : EVENT_STREAM_URL;
    this.source = new EventSource(url);
    this.source.onopen = () => this.setStatus("live", "ok");
    this.source.onerror = () => this.setStatus("reconnecting", "warn");
    this.source.onmessage = (msg: MessageEvent<string>) => {
      let e: StrataEvent;
      try {
        e = JSON.parse(msg.data) as StrataEvent;
      } catch {
        return;
      }
      this.show(e);
      for (const fn of this.listeners) {
        try {
          fn(e);
        } catch (err) {
          console.error("event listener", err);
        }
      }
    };
  }

  private setStatus(text: string, cls: string): void {
    this.status.textContent = text;
    this.status.className = `feed-status feed-${cls}`;
  }

  private show(e: StrataEvent): void {
    if (e.seq <= this.lastSeq) return;
    this.lastSeq = e.seq;
    const item = h(
      "li",
      { class: `feed-item feed-${e.kind}`, "data-kind": e.kind, "data-seq": e.seq },
      h("span", { class: "feed-kind" }, e.kind),
      h("span", { class: "feed-text" }, describeEvent(e)),
      h("time", { datetime: e.time }, formatTime(e.time)),
    );
    this.list.prepend(item);
    while (this.list.children.length > MAX_SHOWN) this.list.lastElementChild?.remove();
  }
}
