// The client of stratad's public REST API (docs/api.md), with the types of its answers.
// The console talks to the server only through this module.

export interface Host {
  id: string;
  cluster: string;
  endpoint: string;
  state: "reachable" | "unreachable";
  last_heartbeat: string;
  vm_count: number;
  registered: boolean;
}

export interface Cluster {
  name: string;
  hosts: string[];
}

export interface Vm {
  uuid: string;
  name: string;
  host: string;
  state: string;
}

export interface GraphNode {
  id: string;
  type: string;
  name: string;
  attrs: Record<string, string>;
}

export interface GraphEdge {
  from: string;
  to: string;
  type: string;
}

export interface Graph {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface VmDetail extends Vm {
  id: string;
  attrs: Record<string, string>;
  graph: Graph;
}

// A node of the lazily expanded tree: `children` counts its neighbours in the direction asked.
export interface TreeNode extends GraphNode {
  children: number;
  edge?: string;
}

export interface Children {
  node: TreeNode | null;
  direction: "down" | "up";
  children: TreeNode[];
}

export interface StrataEvent {
  seq: number;
  host: string;
  vm_uuid: string;
  kind: "added" | "removed" | "modified" | "cluster";
  time: string;
  detail: Record<string, unknown>;
}

export interface BackupItem {
  vm_uuid: string;
  vm_name: string;
  disk_target: string;
  source_path: string;
  storage_volume: string;
  snapshot_id: string;
  size_bytes: number;
  checksum: string;
}

export interface Backup {
  id: string;
  name: string;
  requester: string;
  consistency: string;
  state: "running" | "succeeded" | "failed";
  started_at: string;
  finished_at: string;
  policy: string;
  metadata: Record<string, unknown>;
  items?: BackupItem[];
}

export interface BackupJobVm {
  uuid: string;
  name: string;
  host: string;
  state: string;
  step: string;
  message: string;
  error: string;
  consistency_achieved: string;
}

export interface Job {
  id: string;
  kind: string;
  state: "queued" | "running" | "succeeded" | "failed";
  progress: number;
  message: string;
  created_at: string;
  updated_at: string;
  detail: {
    // backup jobs
    backup_id?: string;
    backup_name?: string;
    consistency?: string;
    vms?: BackupJobVm[];
    state?: string;
    // restore jobs
    vm_name?: string;
    as_name?: string;
    host?: string;
    step?: string;
    steps?: { step: string; message: string }[];
    result?: { vm_uuid: string; vm_name: string; disk_paths: string[]; verified: boolean };
    error?: string;
  };
}

export interface BackupRequest {
  vms?: string[];
  host?: string;
  cluster?: string;
  select?: string;
  consistency?: string;
  fallback?: string;
  name?: string;
  verify?: boolean;
}

export interface RestoreRequest {
  backup?: string;
  vm: string;
  as?: string;
  disks?: string[];
  verify?: boolean;
  start?: boolean;
}

export interface VmFilters {
  name?: string;
  state?: string;
  host?: string;
  cluster?: string;
  depends_on?: string;
  no_backup_since_hours?: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const BASE = "/api/v1";

function query(params: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === "") continue;
    parts.push(`${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const init: RequestInit = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  let res: Response;
  try {
    res = await fetch(BASE + path, init);
  } catch (e) {
    throw new ApiError(0, `stratad is not reachable: ${(e as Error).message}`);
  }
  const text = await res.text();
  let parsed: unknown = undefined;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: reported below when the status is an error
  }
  if (!res.ok) {
    const message =
      (parsed as { error?: { message?: string } } | undefined)?.error?.message ??
      `${method} ${path}: HTTP ${res.status}`;
    throw new ApiError(res.status, message);
  }
  return parsed as T;
}

export const api = {
  hosts: () => call<{ hosts: Host[] }>("GET", "/hosts").then((r) => r.hosts),
  clusters: () => call<{ clusters: Cluster[] }>("GET", "/clusters").then((r) => r.clusters),
  vms: (f: VmFilters = {}) =>
    call<{ vms: Vm[] }>("GET", `/vms${query({ ...f })}`).then((r) => r.vms),
  vm: (key: string) => call<VmDetail>("GET", `/vms/${encodeURIComponent(key)}`),
  // One level of the tree: the roots without an id.
  children: (id?: string, direction: "down" | "up" = "down") =>
    call<Children>("GET", `/graph/children${query({ id, direction })}`),
  graph: (select: string, direction: "down" | "up" | "none", to?: string) =>
    call<Graph>("GET", `/graph${query({ select, direction, to })}`),
  events: (after = 0, limit = 100, host?: string, vm?: string) =>
    call<{ events: StrataEvent[] }>("GET", `/events${query({ after, limit, host, vm })}`).then(
      (r) => r.events,
    ),
  // The newest events and the newest sequence number (the stream goes on after it).
  recentEvents: (limit = 20) =>
    call<{ events: StrataEvent[]; latest: number }>("GET", `/events/recent${query({ limit })}`),
  backups: (f: { state?: string; vm?: string; limit?: number } = {}) =>
    call<{ backups: Backup[] }>("GET", `/backups${query(f)}`).then((r) => r.backups),
  backup: (idOrName: string) => call<Backup>("GET", `/backups/${encodeURIComponent(idOrName)}`),
  startBackup: (req: BackupRequest) =>
    call<{ job: Job; backup_id: string; backup_name: string }>("POST", "/backups", req),
  startRestore: (req: RestoreRequest) => call<{ job: Job }>("POST", "/restores", req),
  jobs: (f: { state?: string; kind?: string; limit?: number } = {}) =>
    call<{ jobs: Job[] }>("GET", `/jobs${query(f)}`).then((r) => r.jobs),
  job: (id: string) => call<Job>("GET", `/jobs/${encodeURIComponent(id)}`),
};

// The URL of the server-sent event stream (EventSource resumes with Last-Event-ID itself).
export const EVENT_STREAM_URL = `${BASE}/events/stream`;

// The URL of one job's server-sent event stream: a `job` event with the job at once and after
// each change; the server ends it after the job's final state.
export function jobStreamUrl(id: string): string {
  return `${BASE}/jobs/${encodeURIComponent(id)}/stream`;
}
