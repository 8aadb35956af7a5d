// The web console in a real browser: Debian's Chromium driven by playwright-core (headless),
// against a real stratad and one real strata-agent per host of the sample site, as the demo
// runs them (scripts/demo.sh), on free loopback ports in a temporary directory.
//
// Run by ctest (test `browser_console`, labels browser and integration) with:
//   STRATAD_BIN, STRATA_AGENT_BIN   the binaries
//   STRATA_WEB_ROOT                 the built console (<build>/share/strata/web)
//   STRATA_WEB_SRC                  web/ (where playwright-core is installed)
//   STRATA_SCREENSHOT_DIR           where the screenshots of the main views go
//   STRATA_CHROMIUM                 default /usr/bin/chromium
// The steps share one browser page and run in order; every process started is stopped at the
// end, also when a step fails (the logs are then kept and their folder printed).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import {
  createWriteStream,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
} from "node:fs";
import os from "node:os";
import path from "node:path";

const env = process.env;
for (const name of [
  "STRATAD_BIN",
  "STRATA_AGENT_BIN",
  "STRATA_WEB_ROOT",
  "STRATA_WEB_SRC",
]) {
  if (!env[name])
    throw new Error(`${name} is not set (run through ctest: browser_console)`);
}
const CHROMIUM = env.STRATA_CHROMIUM || "/usr/bin/chromium";
const SHOTS =
  env.STRATA_SCREENSHOT_DIR ||
  path.join(os.tmpdir(), "strata-browser-screenshots");
const { chromium } = createRequire(
  path.join(env.STRATA_WEB_SRC, "package.json"),
)("playwright-core");

const STEP_MS = 20_000; // a UI condition
const JOB_MS = 120_000; // a backup or a restore on the sample site

const work = mkdtempSync(path.join(os.tmpdir(), "strata-browser-"));
const site = path.join(work, "site");
const children = [];
let failed = false;
let base = ""; // http://127.0.0.1:PORT
let context;
let page;

// Starts a process whose output goes to <work>/<name>.log and resolves with the first line
// that matches `pattern`.
function start(name, argv, pattern, timeoutMs = 20_000) {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), {
      stdio: ["ignore", "pipe", "pipe"],
    });
    children.push(child);
    const log = createWriteStream(path.join(work, `${name}.log`));
    let buffer = "";
    const timer = setTimeout(
      () =>
        reject(
          new Error(
            `${name}: no line matching ${pattern} within ${timeoutMs} ms`,
          ),
        ),
      timeoutMs,
    );
    child.stderr.pipe(log);
    child.stdout.on("data", (chunk) => {
      log.write(chunk);
      buffer += chunk.toString();
      const m = buffer.match(pattern);
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(
        new Error(
          `${name} exited (${code ?? signal}) before it was ready; see ${work}`,
        ),
      );
    });
  });
}

async function api(pathAndQuery, init) {
  const res = await fetch(base + pathAndQuery, init);
  const body = await res.json();
  if (!res.ok)
    throw new Error(`${pathAndQuery}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

async function until(what, condition, timeoutMs = STEP_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await condition()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function shot(name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

const count = (selector) => page.locator(selector).count();
const focusedName = () =>
  page.evaluate(() => document.activeElement?.getAttribute("data-name"));

// Shows the whole tree again (the search form's "Show all").
async function showAll() {
  await page.getByRole("button", { name: "Show all" }).click();
  await page.waitForFunction(
    () =>
      document.querySelector('[data-testid="tree-heading"]')?.textContent ===
      "All resources",
  );
  await page
    .locator('li[data-type="host"]')
    .first()
    .waitFor({ timeout: STEP_MS });
}

async function search(name, type = "vm") {
  await page.fill("#f-name", name);
  await page.selectOption("#f-type", type);
  await page.getByRole("button", { name: "Search" }).click();
  await page.waitForFunction(() =>
    /result/.test(
      document.querySelector('[data-testid="tree-heading"]')?.textContent ?? "",
    ),
  );
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  execFileSync(env.STRATA_AGENT_BIN, ["sample-site", site], {
    stdio: "ignore",
  });
  const m = await start(
    "stratad",
    [
      env.STRATAD_BIN,
      "--db",
      path.join(work, "catalog.db"),
      "--grpc-listen",
      "127.0.0.1:0",
      "--http-listen",
      "127.0.0.1:0",
      "--web-root",
      env.STRATA_WEB_ROOT,
      "--heartbeat-interval-ms",
      "200",
    ],
    /stratad: listening grpc=(\S+) http=(\S+)/,
  );
  const grpc = m[1];
  base = `http://${m[2]}`;
  const configs = readdirSync(path.join(site, "agents")).filter((f) =>
    f.endsWith(".toml"),
  );
  assert.equal(configs.length, 3, "the sample site has three hosts");
  for (const config of configs) {
    await start(
      `agent-${path.basename(config, ".toml")}`,
      [
        env.STRATA_AGENT_BIN,
        "run",
        "--config",
        path.join(site, "agents", config),
        "--listen",
        "127.0.0.1:0",
        "--server",
        grpc,
      ],
      /strata-agent: listening/,
    );
  }
  await until("three reachable hosts with their VMs", async () => {
    const { hosts } = await api("/api/v1/hosts");
    return (
      hosts.length === 3 &&
      hosts.every((h) => h.state === "reachable" && h.vm_count > 0)
    );
  });
  context = await chromium.launchPersistentContext(
    path.join(work, "chromium-profile"),
    {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
      ],
      viewport: { width: 1280, height: 800 },
    },
  );
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(STEP_MS);
  page.on("pageerror", (e) => {
    console.error(`page error: ${e.message}`);
    failed = true;
  });
});

after(async () => {
  await context?.close().catch(() => undefined);
  for (const child of children) child.kill("SIGTERM");
  await Promise.all(
    children.map(
      (child) =>
        new Promise((resolve) => {
          if (child.exitCode !== null || child.signalCode !== null)
            return resolve();
          const force = setTimeout(() => child.kill("SIGKILL"), 5000);
          child.on("exit", () => {
            clearTimeout(force);
            resolve();
          });
        }),
    ),
  );
  if (failed) {
    console.log(`logs kept in ${work}`);
  } else {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`screenshots in ${SHOTS}`);
});

// Marks the run failed (logs kept) when a step throws.
function step(name, fn) {
  test(name, async () => {
    try {
      await fn();
    } catch (e) {
      failed = true;
      await shot(`failed-${name.replace(/\W+/g, "-")}`).catch(() => undefined);
      throw e;
    }
  });
}

step(
  "loads: the hosts at the top of the tree, the live feed, the fleet",
  async () => {
    await page.goto(`${base}/`);
    assert.equal(await page.title(), "Strata console");
    await page.locator('li[data-type="host"]').nth(2).waitFor();
    const hosts = await page
      .locator('li[data-type="host"]')
      .evaluateAll((els) => els.map((e) => e.getAttribute("data-name")));
    assert.deepEqual(hosts, ["host-a", "host-b", "host-c"]);
    await page.waitForFunction(
      () =>
        document.getElementById("host-status")?.textContent ===
        "3/3 hosts reachable",
    );
    await page.waitForFunction(
      () =>
        document.querySelector('[data-testid="feed-status"]')?.textContent ===
        "live",
    );
    const { vms } = await api("/api/v1/vms");
    await page.waitForFunction(
      (n) =>
        document
          .querySelectorAll('[data-testid="home"] .stat')[1]
          ?.textContent.startsWith(`${n} VMs`),
      vms.length,
    );
    await shot("01-tree");
  },
);

step(
  "keyboard: arrows move, expand and collapse the tree, Enter opens",
  async () => {
    await page.locator('li[data-name="host-a"]').focus();
    await page.keyboard.press("ArrowDown");
    assert.equal(await focusedName(), "host-b");
    await page.keyboard.press("ArrowUp");
    assert.equal(await focusedName(), "host-a");
    await page.keyboard.press("ArrowRight");
    await page.waitForSelector(
      'li[data-name="host-a"][aria-expanded="true"] li[data-type="vm"]',
    );
    const { vms } = await api("/api/v1/vms?host=host-a");
    assert.equal(
      await count('li[data-name="host-a"] > ul > li[data-type="vm"]'),
      vms.length,
    );
    await page.keyboard.press("ArrowRight"); // into the first child
    const first = await focusedName();
    assert.equal(
      first,
      [...vms].sort((a, b) => a.name.localeCompare(b.name))[0].name,
    );
    await page.keyboard.press("Enter");
    await page.waitForSelector(`[data-testid="vm-page"][data-vm="${first}"]`);
    assert.match(decodeURIComponent(new URL(page.url()).hash), /^#\/vm\//);
    await page.locator(`li[data-name="${first}"]`).focus();
    await page.keyboard.press("ArrowLeft"); // to the parent
    assert.equal(await focusedName(), "host-a");
    await page.keyboard.press("ArrowLeft"); // collapses it
    await page.waitForSelector('li[data-name="host-a"][aria-expanded="false"]');
    assert.equal(await count('li[data-name="host-a"] li'), 0);
  },
);

step("search: a name glob lists exactly the VMs the API finds", async () => {
  await search("web*");
  const { vms } = await api("/api/v1/vms?name=web*");
  assert.ok(vms.length >= 2, "the sample site has several web VMs");
  const heading = await page
    .locator('[data-testid="tree-heading"]')
    .textContent();
  assert.ok(heading.startsWith(`${vms.length} results`), heading);
  const names = await page
    .locator('[data-testid="tree"] > li')
    .evaluateAll((els) => els.map((e) => e.getAttribute("data-name")));
  assert.deepEqual(names.sort(), vms.map((v) => v.name).sort());
  await shot("02-search");

  // A filter: the running ones only.
  await page.locator(".more-filters summary").click();
  await page.fill("#f-state", "running");
  await page.getByRole("button", { name: "Search" }).click();
  const running = (await api("/api/v1/vms?name=web*&state=running")).vms;
  await page.waitForFunction(
    (n) =>
      document
        .querySelector('[data-testid="tree-heading"]')
        ?.textContent.startsWith(`${n} result`),
    running.length,
  );
  await page.fill("#f-state", "");
});

step(
  "expands a VM down to its storage system, one level at a time",
  async () => {
    await search("web01");
    await page
      .locator('[data-testid="tree"] > li[data-name="web01"]')
      .waitFor();
    for (
      let i = 0;
      i < 30 && (await count('li[data-type="storage_system"]')) === 0;
      i++
    ) {
      const collapsed = page.locator(
        'li[data-name="web01"] li[aria-expanded="false"], li[data-name="web01"][aria-expanded="false"]',
      );
      if ((await collapsed.count()) === 0) break;
      const li = collapsed.last();
      const id = await li.getAttribute("data-id");
      await li.locator(":scope > .row > .toggle").click();
      await page.waitForSelector(
        `li[data-id="${id.replace(/"/g, '\\"')}"][aria-expanded="true"]`,
      );
    }
    const chain = await page
      .locator('li[data-type="storage_system"]')
      .first()
      .evaluate((el) => {
        const types = [];
        for (let n = el; n; n = n.parentElement.closest('li[role="treeitem"]'))
          types.unshift(n.dataset.type);
        return types;
      });
    assert.equal(chain[0], "vm");
    assert.equal(chain[chain.length - 1], "storage_system");
    assert.ok(chain.includes("virtual_disk"), chain.join(" > "));
    assert.ok(chain.includes("file"), chain.join(" > "));
    // Its page beside the expanded tree.
    await page
      .locator('[data-testid="tree"] > li[data-name="web01"] > .row .name')
      .click();
    await page.waitForSelector(
      '[data-testid="vm-page"][data-vm="web01"] [data-testid="vm-graph"] canvas',
    );
    await page
      .locator('li[data-type="storage_system"]')
      .first()
      .scrollIntoViewIfNeeded();
    await shot("03-expanded");
  },
);

step(
  "upward view: a storage volume lists every VM that depends on it",
  async () => {
    await search("gold", "storage_volume");
    const row = page
      .locator(
        '[data-testid="tree"] > li[data-type="storage_volume"][data-name="gold"]',
      )
      .first();
    const id = await row.getAttribute("data-id");
    await row.locator(":scope > .row .name").click();
    await page.waitForSelector(
      '[data-testid="node-page"] [data-testid="upward-vms"]',
    );
    const { vms } = await api(
      `/api/v1/vms?depends_on=${encodeURIComponent(id)}`,
    );
    assert.ok(vms.length > 0, "VMs rest on gold");
    const shown = await page
      .locator('[data-testid="upward-vms"] tbody tr')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute("data-vm")));
    assert.deepEqual(shown.sort(), vms.map((v) => v.name).sort());
    await shot("04-upward");
    // ... and the tree filtered to them.
    await page.getByRole("button", { name: "Show them in the tree" }).click();
    await page.waitForFunction(() =>
      /depending on/.test(
        document.querySelector('[data-testid="tree-heading"]')?.textContent ??
          "",
      ),
    );
    assert.equal(
      await count('[data-testid="tree"] > li[data-type="vm"]'),
      vms.length,
    );
    await showAll();
  },
);

step("VM page: the resource graph, drawn with Cytoscape.js", async () => {
  const vm = await api("/api/v1/vms/web01");
  await page.goto(`${base}/#/vm/web01`);
  await page.waitForSelector('[data-testid="vm-graph"] canvas');
  const text = await page.locator('[data-testid="graph-count"]').textContent();
  assert.equal(
    text,
    `${vm.graph.nodes.length} nodes, ${vm.graph.edges.length} edges`,
  );
  // Its events, from GET /api/v1/events?vm=UUID (the newest 15; more may arrive live while
  // the page is open, none may have been logged yet on a fast start).
  const logged = await api(
    `/api/v1/events?vm=${encodeURIComponent(vm.uuid)}&limit=10000`,
  );
  await page.waitForSelector('[data-testid="vm-events"] li');
  if (logged.events.length === 0) {
    await page.waitForSelector(
      '[data-testid="vm-events"] li:has-text("No events for this VM yet."), ' +
        '[data-testid="vm-events"] li .feed-kind',
    );
  } else {
    assert.ok(
      (await count('[data-testid="vm-events"] li .feed-kind')) >=
        Math.min(logged.events.length, 15),
    );
  }
  for (const e of logged.events) assert.equal(e.vm_uuid, vm.uuid);
});

step(
  "backup: started from the console, followed live to the end, results per VM",
  async () => {
    await page.goto(`${base}/#/backups`);
    await page.fill("#b-vms", "web01 mail01 web03");
    await page.selectOption("#b-consistency", "pause");
    await page.check("#b-verify");
    await page.fill("#b-name", "console-nightly");
    await page.getByRole("button", { name: "Start backup" }).click();
    await page.waitForSelector(
      '[data-testid="backup-job"] .job[data-state="running"], [data-testid="backup-job"] .job[data-state="succeeded"]',
    );
    await page.waitForSelector(
      '[data-testid="backup-job"] .job[data-state="succeeded"]',
      { timeout: JOB_MS },
    );
    const rows = await page
      .locator('[data-testid="backup-job"] [data-testid="job-vms"] tbody tr')
      .evaluateAll((trs) =>
        trs.map((tr) => [
          tr.getAttribute("data-vm"),
          tr.getAttribute("data-state"),
        ]),
      );
    assert.deepEqual(rows.sort(), [
      ["mail01", "succeeded"],
      ["web01", "succeeded"],
      ["web03", "succeeded"],
    ]);
    assert.equal(
      (await api("/api/v1/backups/console-nightly")).state,
      "succeeded",
    );
    await page.waitForSelector(
      '[data-testid="backups-table"] tr[data-backup="console-nightly"]',
    );
    await shot("05-backup");

    // db02's rbd disk: no storage plug-in here can snapshot it, and the job says so.
    await page.fill("#b-vms", "db02");
    await page.fill("#b-name", "console-db02");
    await page.getByRole("button", { name: "Start backup" }).click();
    await page.waitForSelector(
      '[data-testid="backup-job"] .job[data-state="failed"]',
      { timeout: JOB_MS },
    );
    const error = await page
      .locator('[data-testid="backup-job"] tr[data-vm="db02"] td.err')
      .textContent();
    assert.match(error, /no storage plug-in on this host can snapshot it/);
  },
);

step("filters: no backup newer than 24 hours; failed jobs", async () => {
  await page.fill("#f-name", "");
  await page.selectOption("#f-type", "vm");
  await page.locator(".more-filters").evaluate((d) => (d.open = true));
  await page.fill("#f-no_backup_hours", "24");
  await page.getByRole("button", { name: "Search" }).click();
  const { vms } = await api("/api/v1/vms?no_backup_since_hours=24");
  await page.waitForFunction(
    (n) =>
      /no backup in 24 h/.test(
        document.querySelector('[data-testid="tree-heading"]')?.textContent ??
          "",
      ) && document.querySelectorAll('[data-testid="tree"] > li').length === n,
    vms.length,
  );
  const names = await page
    .locator('[data-testid="tree"] > li')
    .evaluateAll((els) => els.map((e) => e.dataset.name));
  assert.deepEqual(names.sort(), vms.map((v) => v.name).sort());
  for (const backedUp of ["web01", "mail01", "web03"])
    assert.ok(!names.includes(backedUp), backedUp);
  assert.ok(names.includes("db02"), "db02's backup failed");
  await page.fill("#f-no_backup_hours", "");

  // The failed jobs: db02's backup only.
  await page.selectOption("#j-state", "failed");
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll(
      '[data-testid="jobs-table"] tbody tr',
    );
    return rows.length === 1 && rows[0].textContent.includes("failed");
  });
});

step(
  "restore as a new VM: confirmed, followed, and the VM appears in the tree by the event feed",
  async () => {
    const web01 = await api("/api/v1/vms/web01");
    await showAll();
    const hostRow = page.locator(
      `li[data-type="host"][data-name="${web01.host}"]`,
    );
    if ((await hostRow.getAttribute("aria-expanded")) !== "true") {
      await hostRow.locator(":scope > .row > .toggle").click();
    }
    await page.waitForSelector(
      `li[data-name="${web01.host}"] li[data-name="web01"]`,
    );
    assert.equal(await count('li[data-name="web01-console"]'), 0);

    await page.goto(`${base}/#/vm/web01`);
    await page.waitForSelector(
      '[data-testid="vm-backups"] tr[data-backup="console-nightly"]',
    );
    // In place: the confirmation names the disks it would overwrite; cancelled here.
    await page.click('[data-testid="restore-in-place"]');
    const inPlace = await page
      .locator('[data-testid="confirm-dialog"]')
      .textContent();
    assert.match(inPlace, /Overwrite VM web01\?/);
    const disk = web01.graph.nodes.find((n) => n.type === "virtual_disk");
    assert.ok(inPlace.includes(disk.name), `${inPlace} names ${disk.name}`);
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.waitForSelector('[data-testid="confirm-dialog"]', {
      state: "detached",
    });
    // One disk: the confirmation names that disk and its file; cancelled too.
    const item = (await api("/api/v1/backups/console-nightly")).items.find(
      (i) => i.vm_name === "web01",
    );
    await page.waitForSelector(
      `#restore-disk option[value="${item.disk_target}"]`,
      { state: "attached" },
    );
    await page.selectOption("#restore-disk", item.disk_target);
    await page.click('[data-testid="restore-disk-button"]');
    const oneDisk = await page
      .locator('[data-testid="confirm-dialog"]')
      .textContent();
    assert.match(
      oneDisk,
      new RegExp(`Overwrite disk ${item.disk_target} of VM web01\\?`),
    );
    assert.ok(
      oneDisk.includes(item.source_path),
      `${oneDisk} names ${item.source_path}`,
    );
    await page.keyboard.press("Escape");
    await page.waitForSelector('[data-testid="confirm-dialog"]', {
      state: "detached",
    });

    await page.fill("#restore-as", "web01-console");
    await page.click('[data-testid="restore-as-new"]');
    const asNew = await page
      .locator('[data-testid="confirm-dialog"]')
      .textContent();
    assert.match(asNew, /new VM 'web01-console'/);
    assert.match(asNew, /Nothing is overwritten/);
    await page.click('[data-testid="confirm"]');
    await page.waitForSelector(
      '[data-testid="restore-job"] .job[data-state="succeeded"]',
      { timeout: JOB_MS },
    );
    await page.waitForSelector('[data-testid="restore-result"]');

    // The agent reports the new domain; the feed shows it and the tree reloads host's VMs.
    await page.waitForFunction(
      () =>
        [
          ...document.querySelectorAll(
            '[data-testid="event-feed"] li[data-kind="added"]',
          ),
        ].some((li) => li.textContent.includes("web01-console")),
      null,
      { timeout: JOB_MS },
    );
    await page.waitForSelector(
      `li[data-name="${web01.host}"] > ul > li[data-type="vm"][data-name="web01-console"]`,
    );
    assert.equal((await api("/api/v1/vms?name=web01-console")).vms.length, 1);
    await page.locator('[data-testid="restore-job"]').scrollIntoViewIfNeeded();
    await shot("06-vm-restore");
  },
);

step("narrow window: 420 px wide, nothing overflows sideways", async () => {
  await page.setViewportSize({ width: 420, height: 800 });
  for (const hash of ["#/", "#/vm/web01", "#/backups"]) {
    await page.goto(`${base}/${hash}`);
    await page.locator('li[data-type="host"]').first().waitFor();
    await page.waitForSelector(
      '[data-testid="home"], [data-testid="vm-page"], [data-testid="backups-page"]',
    );
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - window.innerWidth,
    );
    assert.ok(
      overflow <= 0,
      `${hash}: the page is ${overflow} px wider than the window`,
    );
  }
  await page.goto(`${base}/#/`);
  await page.locator('li[data-type="host"]').first().waitFor();
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot("07-narrow");
  await page.setViewportSize({ width: 1280, height: 800 });
});
