import { test, expect } from "@playwright/test";
import { addApp, collectRows, expectContiguous, makeRepo, slowLines, watchConsole, removeAllApps } from "./helpers";
import { edgePort } from "../playwright.config";

test("add an app, deploy it and watch it succeed live", async ({ page }, testInfo) => {
  const errors = watchConsole(page);
  const repo = makeRepo();
  const name = `web-${Date.now() % 100000}`;

  await page.goto("/");
  await expect(page.getByRole("heading", { name: "Apps" })).toBeVisible();
  // Wait for hydration so the form is handled by the app, not a plain POST.
  await page.locator("body[data-hydrated]").waitFor();
  await page.screenshot({ path: testInfo.outputPath("01-apps-empty.png"), fullPage: true });

  // A bad name is rejected next to the field.
  await page.getByLabel("Name", { exact: true }).fill("Bad Name");
  await page.getByLabel("Repository URL").fill(repo);
  await page.getByRole("button", { name: "Add app" }).click();
  await expect(page.locator("#name-error")).toContainText("name");

  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Port").fill("8080");
  await page.getByRole("button", { name: "Add app" }).click();
  const link = page.getByRole("link", { name });
  await expect(link).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("02-apps-added.png"), fullPage: true });

  await link.click();
  await expect(page.getByRole("heading", { name })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("03-app.png"), fullPage: true });
  await page.getByRole("button", { name: "Deploy" }).click();

  await expect(page).toHaveURL(/\/deployments\/\d+$/);
  const log = page.getByRole("log");
  await expect(log).toContainText("Step 1/", { timeout: 120_000 });
  await expect(page.getByTestId("status")).toHaveText("success", { timeout: 120_000 });
  await expect(page.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
  await expect(log).toContainText("e2e build line 3");
  await expect(log).toContainText("Health check passed");
  await expect(page.getByTestId("connection")).toHaveText("closed");
  // The running app is one click away, also when it went live while watched: at its own
  // address on the edge, another site than the dashboard (no cookie goes along).
  const publicUrl = `http://${name}.localhost:${edgePort}`;
  await expect(page.getByRole("link", { name: "Open app" })).toHaveAttribute("href", publicUrl);

  // The stepper reached its end.
  await expect(page.locator('[data-stage="end"]')).toHaveAttribute("data-state", "done");
  await expect(page.locator('[data-stage="building"]')).toHaveAttribute("data-state", "done");
  // Every line exactly once, in order.
  const rows = await collectRows(log);
  expect(rows.size).toBeGreaterThan(10);
  expectContiguous(rows);
  await page.screenshot({ path: testInfo.outputPath("04-monitor-success.png"), fullPage: true });

  // Light when the system asks for it: the same page with the palette turned over.
  await page.emulateMedia({ colorScheme: "light" });
  const background = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  const channels = (background.match(/[\d.]+/g) ?? []).map(Number);
  console.log("light theme body background:", background);
  expect(background.startsWith("oklch") ? channels[0] > 0.9 : channels.slice(0, 3).every((c) => c > 200)).toBe(true);
  await page.screenshot({ path: testInfo.outputPath("05-monitor-light.png"), fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });

  // Phone width: nothing overflows the page sideways (the log scrolls inside its box).
  await page.setViewportSize({ width: 390, height: 844 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  expect(overflow).toBeLessThanOrEqual(1);
  await page.screenshot({ path: testInfo.outputPath("06-monitor-phone.png"), fullPage: true });
  await page.goto("/");
  // The apps list: the last deployment's status and how long ago it ran, and the running app.
  const row = page.locator(`[data-app="${name}"]`);
  await expect(row.getByRole("link", { name: "Last deployment: success" })).toBeVisible();
  await expect(row.getByTestId("age")).toHaveText(/^(just now|\d+ min ago)$/);
  await expect(row.getByRole("link", { name: publicUrl })).toBeVisible();
  expect(await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)).toBeLessThanOrEqual(1);
  await page.screenshot({ path: testInfo.outputPath("07-apps-phone.png"), fullPage: true });
  await page.goBack();
  await page.setViewportSize({ width: 1280, height: 720 });

  // The page renders on the server too: a reload shows the final state before any script.
  await page.reload();
  await expect(page.getByTestId("status")).toHaveText("success");
  await expect(log).toContainText("Deployment successful");
  expect(errors).toEqual([]);

  // Open app: the browser goes through the edge to the app's container.
  await page.getByRole("link", { name: "Open app" }).click();
  await expect(page).toHaveURL(`${publicUrl}/`);
  await expect(page.locator("body")).toContainText("hello from the e2e test");
  await page.screenshot({ path: testInfo.outputPath("08-open-app.png"), fullPage: true });
});

test("a dropped monitor connection resumes with since= and shows every line once", async ({ page }, testInfo) => {
  const errors = watchConsole(page);
  const urls: string[] = [];
  // Proxy the monitor socket; cut the first connection after 25 events, mid-build.
  await page.routeWebSocket(/\/api\/deployments\/logs/, (ws) => {
    urls.push(ws.url());
    const server = ws.connectToServer();
    if (urls.length === 1) {
      let forwarded = 0;
      server.onMessage((message) => {
        forwarded += 1;
        if (forwarded <= 25) ws.send(message);
        if (forwarded === 25) {
          ws.close({ code: 4000, reason: "cut by the test" });
          server.close();
        }
      });
    }
  });

  await addApp(page, `resume-${Date.now() % 100000}`, makeRepo([slowLines(40)]));
  await page.getByRole("button", { name: "Deploy" }).click();
  await expect(page).toHaveURL(/\/deployments\/\d+$/);
  const log = page.getByRole("log");
  await expect(page.getByTestId("status")).toHaveText("success", { timeout: 120_000 });
  await expect(log).toContainText("slow line 40");

  expect(urls.length).toBeGreaterThanOrEqual(2);
  const since = Number(new URL(urls[1]).searchParams.get("since"));
  expect(since).toBeGreaterThan(0);
  const rows = await collectRows(log);
  expectContiguous(rows);
  expect([...rows.values()].filter((t) => t === "slow line 7").length).toBe(1);
  await page.screenshot({ path: testInfo.outputPath("resumed-monitor.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("a monitor frozen in a background tab catches up at once when it comes back", async ({ page }, testInfo) => {
  const errors = watchConsole(page);
  await addApp(page, `frozen-${Date.now() % 100000}`, makeRepo([slowLines(40)]));
  await page.getByRole("button", { name: "Deploy" }).click();
  await expect(page).toHaveURL(/\/deployments\/\d+$/);
  const log = page.getByRole("log");
  await expect(log).toContainText("slow line 3", { timeout: 120_000 });

  // What Chrome does to a tab in the background for long: freeze it (no task runs, no
  // timer fires), while the build goes on.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Page.setWebLifecycleState", { state: "frozen" });
  await new Promise((r) => setTimeout(r, 6_000));
  await cdp.send("Page.setWebLifecycleState", { state: "active" });
  const back = Date.now();
  await expect(page.getByTestId("status")).toHaveText("success", { timeout: 120_000 });
  await expect(log.locator("[data-seq]").filter({ hasText: "Deployment successful" })).toBeInViewport();
  console.log(`background tab: the newest line shown ${Date.now() - back} ms after the tab came back`);
  const rows = await collectRows(log);
  expectContiguous(rows);
  expect([...rows.values()].filter((t) => /^slow line \d+$/.test(t)).length).toBe(40);
  await page.screenshot({ path: testInfo.outputPath("unfrozen-monitor.png"), fullPage: true });
  expect(errors).toEqual([]);
});

// Remove what the tests deployed: deleting an app stops and removes its container.
test.afterAll(async ({ request }) => removeAllApps(request));
