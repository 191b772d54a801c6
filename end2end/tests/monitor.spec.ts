import { test, expect } from "@playwright/test";
import { collectRows, deployViaApi, expectContiguous, makeRepo, slowLines, waitForEnd, watchConsole, removeAllApps } from "./helpers";

const unique = (prefix: string) => `${prefix}-${Date.now() % 1_000_000}`;

test("a failing build shows the error panel with the exit code and the last lines", async ({ page, request }, testInfo) => {
  const errors = watchConsole(page);
  const id = await deployViaApi(request, unique("broken"), makeRepo(['RUN echo "about to fail" && exit 7']));
  await page.goto(`/deployments/${id}`);
  const panel = page.getByTestId("error-panel");
  await expect(panel).toBeVisible({ timeout: 120_000 });
  await expect(panel).toContainText("Failed during building");
  await expect(panel).toContainText("exit code 7");
  await expect(panel).toContainText("about to fail");
  await expect(page.getByTestId("status")).toHaveText("failed");
  await expect(page.locator('[data-stage="building"]')).toHaveAttribute("data-state", "failed");
  await expect(page.locator('[data-stage="end"]')).toHaveText("failed");
  await expect(page.getByRole("button", { name: "Cancel deployment" })).toHaveCount(0);
  await page.screenshot({ path: testInfo.outputPath("monitor-failed.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("a reload in the middle of a build shows every line once and keeps going live", async ({ page, request }, testInfo) => {
  const errors = watchConsole(page);
  const id = await deployViaApi(request, unique("reload"), makeRepo([slowLines(60)]));
  await page.goto(`/deployments/${id}`);
  const log = page.getByRole("log");
  await expect(log).toContainText("slow line 10", { timeout: 120_000 });
  await page.reload();
  // The server-rendered page already shows the state before any script runs.
  await expect(page.getByTestId("status")).toHaveText("building");
  await page.locator("body[data-hydrated]").waitFor();
  await expect(page.getByTestId("connection")).toHaveText("live");
  await expect(page.getByTestId("elapsed")).toHaveText(/\d/);
  await page.screenshot({ path: testInfo.outputPath("monitor-building.png"), fullPage: true });
  await expect(log).toContainText("slow line 60", { timeout: 120_000 });
  // Nobody scrolled: follow mode is still on, the newest line in view.
  await expect(log).toHaveAttribute("data-follow", "true");
  await expect(log.locator("[data-seq]").filter({ hasText: /^slow line 60$/ })).toBeInViewport();
  await expect(page.getByTestId("status")).toHaveText("success", { timeout: 120_000 });
  const rows = await collectRows(log);
  expectContiguous(rows);
  for (const n of [1, 30, 60]) {
    expect([...rows.values()].filter((t) => t === `slow line ${n}`).length, `slow line ${n}`).toBe(1);
  }
  expect(errors).toEqual([]);
});

test("cancel from the monitor page", async ({ page, request }, testInfo) => {
  const id = await deployViaApi(request, unique("cancel"), makeRepo([slowLines(300)]));
  await page.goto(`/deployments/${id}`);
  await page.locator("body[data-hydrated]").waitFor();
  await expect(page.getByRole("log")).toContainText("slow line 3", { timeout: 120_000 });
  await page.getByRole("button", { name: "Cancel deployment" }).click();
  await expect(page.getByTestId("status")).toHaveText("cancelled", { timeout: 30_000 });
  await expect(page.getByRole("log")).toContainText("Deployment cancelled during building");
  await expect(page.getByRole("button", { name: "Cancel deployment" })).toHaveCount(0);
  await page.screenshot({ path: testInfo.outputPath("monitor-cancelled.png"), fullPage: true });
});

test("a 100,000-line log: late join, bounded DOM, scroll to the top and back, search", async ({ page, request }, testInfo) => {
  const errors = watchConsole(page);
  const lines = 100_000;
  const id = await deployViaApi(
    request,
    unique("big"),
    makeRepo([
      `RUN seq 1 ${lines} | sed 's/^/big line /'`,
      'RUN printf "\\033[1;32mgreen done\\033[0m\\n"',
      'RUN w=way; printf "fetching\\rhalf %s\\rall the %s\\n" $w $w',
    ]),
  );
  const end = await waitForEnd(request, id);
  expect(end.status).toBe("success");

  // A late join: the newest line is in the server-rendered page; then the whole log streams in.
  const started = Date.now();
  await page.goto(`/deployments/${id}`);
  const log = page.getByRole("log");
  const newest = log.locator("[data-seq]").filter({ hasText: "Deployment successful" });
  await expect(newest).toBeInViewport();
  const lastLineMs = Date.now() - started;
  await expect(page.getByTestId("connection")).toHaveText("closed", { timeout: 120_000 });
  const allLinesMs = Date.now() - started;
  const total = Number(await log.getAttribute("data-total"));
  expect(total).toBeGreaterThan(lines);
  console.log(`100k-line log: last line shown after ${lastLineMs} ms, all ${total} lines live after ${allLinesMs} ms`);
  testInfo.annotations.push({ type: "time to last line", description: `${lastLineMs} ms` });
  testInfo.annotations.push({ type: "time to every line", description: `${allLinesMs} ms` });

  const domRows = async () => log.locator("[data-seq]").count();
  expect(await domRows()).toBeLessThan(200);
  // ANSI colours are rendered, not printed as escapes.
  const green = log.locator("span", { hasText: "green done" }).last();
  await expect(green).toHaveAttribute("style", /color/);
  expect(await log.textContent()).not.toContain("\u001b[");
  // A `\r` progress line shows its last state only (the words are not in the command).
  await expect(log.locator("[data-seq]").filter({ hasText: "all the way" })).toHaveText("all the way");
  expect(await log.textContent()).not.toContain("half way");
  await page.screenshot({ path: testInfo.outputPath("monitor-100k-bottom.png"), fullPage: true });

  // To the top: line 1 is there, the DOM is still small, and follow mode paused.
  await log.evaluate((el) => (el.scrollTop = 0));
  await expect(log.locator('[data-seq="1"]')).toBeVisible();
  expect(await domRows()).toBeLessThan(200);
  await expect(log).toHaveAttribute("data-follow", "false");
  await expect(page.getByRole("button", { name: "Jump to latest" })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("monitor-100k-top.png"), fullPage: true });
  // The middle.
  await log.evaluate((el) => (el.scrollTop = el.scrollHeight / 2));
  await expect(log.locator("[data-seq]").first()).toBeAttached();
  expect(await domRows()).toBeLessThan(200);
  // And back.
  await page.getByRole("button", { name: "Jump to latest" }).click();
  await expect(log.locator(`[data-seq="${total}"]`)).toBeVisible();
  expect(await domRows()).toBeLessThan(200);

  // Before the WebAssembly loads (here: never), the page already shows the log's end.
  const errorsBefore = errors.length;
  await page.route("**/*.wasm", (route) => route.abort());
  await page.reload();
  await expect(newest).toBeInViewport();
  await expect(page.getByTestId("status")).toHaveText("success");
  await page.screenshot({ path: testInfo.outputPath("monitor-100k-before-wasm.png"), fullPage: true });
  await page.unroute("**/*.wasm");
  await page.reload();
  await expect(page.getByTestId("connection")).toHaveText("closed");
  errors.splice(errorsBefore); // the failed WebAssembly load, on purpose

  // Smoothness, reported (not asserted: the machine is shared): scroll up 100 rows per
  // frame for 120 frames and time the frames, rendering included.
  const frames: number[] = await log.evaluate(
    (el) =>
      new Promise<number[]>((resolve) => {
        const times: number[] = [];
        let last = performance.now();
        const step = (now: number) => {
          times.push(now - last);
          last = now;
          el.scrollTop = Math.max(0, el.scrollTop - 2000);
          if (times.length < 121) requestAnimationFrame(step);
          else resolve(times.slice(1));
        };
        requestAnimationFrame(step);
      }),
  );
  frames.sort((a, b) => a - b);
  const pick = (q: number) => frames[Math.min(frames.length - 1, Math.floor(q * frames.length))].toFixed(1);
  console.log(`100k-line log, scrolling 100 rows a frame: median ${pick(0.5)} ms, p95 ${pick(0.95)} ms, longest ${pick(1)} ms per frame`);
  testInfo.annotations.push({ type: "scroll frame p95", description: `${pick(0.95)} ms` });
  expect(await domRows()).toBeLessThan(200);

  // Search finds a line far up and brings it into view, highlighted.
  await page.getByLabel("Search the log").fill("big line 4242");
  await page.getByRole("button", { name: "Find" }).click();
  await expect(page.getByTestId("matches")).toHaveText(/of \d+/);
  await expect(log.locator("mark", { hasText: "big line 4242" }).first()).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("monitor-100k-search.png"), fullPage: true });

  // The full log downloads.
  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: "Download log" }).click();
  const file = await download;
  expect(file.suggestedFilename()).toBe(`deployment-${id}.log`);
  expect(errors).toEqual([]);
});

test("app settings keep env values write-only; redeploy reuses the image", async ({ page, request }, testInfo) => {
  const errors = watchConsole(page);
  const name = unique("settings");
  const first = await deployViaApi(request, name, makeRepo());
  const done = await waitForEnd(request, first);
  expect(done.status).toBe("success");

  await page.goto(`/apps/${done.app_id}`);
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByLabel("Add or change (NAME=value per line)").fill("GREETING=s3cr3t-value");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.getByRole("status")).toContainText("Saved");
  await expect(page.locator('[data-env-key="GREETING"]')).toHaveText("GREETING=••••••");
  await page.reload();
  expect(await page.content()).not.toContain("s3cr3t-value");
  // A bad port is refused next to the field.
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByLabel("Port").fill("99999");
  await page.getByRole("button", { name: "Save settings" }).click();
  await expect(page.locator("#settings-port-error")).toContainText("port");
  await page.screenshot({ path: testInfo.outputPath("app-settings.png"), fullPage: true });

  await page.reload();
  await page.getByRole("button", { name: `Redeploy #${first}` }).click();
  await expect(page).toHaveURL(/\/deployments\/\d+$/);
  expect(page.url()).not.toContain(`/deployments/${first}`);
  await expect(page.getByTestId("status")).toHaveText("success", { timeout: 120_000 });
  const log = page.getByRole("log");
  await expect(log).toContainText("Redeploying image");
  await expect(log).not.toContainText("Step 1/");
  await page.screenshot({ path: testInfo.outputPath("monitor-redeployed.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test.afterAll(async ({ request }) => removeAllApps(request));
