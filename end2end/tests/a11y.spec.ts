import { test, expect, Page } from "@playwright/test";
import { deployViaApi, makeRepo, waitForEnd, removeAllApps } from "./helpers";
import { storageState } from "../playwright.config";

const roles = ["button", "link", "textbox", "searchbox", "spinbutton", "checkbox", "combobox", "log", "progressbar"] as const;

/// Every control on the page has an accessible name; answers how many were checked.
async function everyControlNamed(page: Page): Promise<number> {
  let checked = 0;
  for (const role of roles) {
    for (const control of await page.getByRole(role).all()) {
      await expect(control, `a ${role} without an accessible name`).toHaveAccessibleName(/\S/);
      checked += 1;
    }
  }
  return checked;
}

test("every control on every page has an accessible name; nothing overflows at phone width", async ({ page, request, baseURL }, testInfo) => {
  const id = await deployViaApi(request, `a11y-${Date.now() % 1_000_000}`, makeRepo());
  const done = await waitForEnd(request, id);
  expect(done.status).toBe("success");
  const pages: [string, string][] = [
    ["apps", "/"],
    ["app", `/apps/${done.app_id}`],
    ["monitor", `/deployments/${id}`],
    ["tokens", "/settings/tokens"],
    ["runtime-logs", `/apps/${done.app_id}/logs`],
    ["notifications", "/settings/notifications"],
    ["account", "/settings/account"],
    ["nodes", "/settings/nodes"],
  ];

  // Every request goes to Slipway itself: no CDN, no font or script from elsewhere.
  const foreign: string[] = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.host !== new URL(baseURL ?? "").host || !/^(http|ws)/.test(url.protocol)) foreign.push(r.url());
  });

  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: width > 800 ? 800 : 844 });
    for (const [name, path] of pages) {
      await page.goto(path);
      await page.locator("body[data-hydrated]").waitFor();
      const checked = await everyControlNamed(page);
      // Each page has at least its header links and its own controls.
      expect(checked, `${path}: controls checked`).toBeGreaterThan(3);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      expect(overflow, `${path} at ${width} px overflows sideways`).toBeLessThanOrEqual(1);
      await page.screenshot({ path: testInfo.outputPath(`${name}-${width}.png`), fullPage: true });
    }
  }
  expect(foreign).toEqual([]);

  // The WebAssembly goes out brotli-compressed, within its budget.
  const wasm = await request.fetch("/pkg/slipway_bg.wasm", { headers: { "Accept-Encoding": "br" } });
  expect(wasm.status()).toBe(200);
  expect(wasm.headers()["content-encoding"]).toBe("br");
  const sent = Number(wasm.headers()["content-length"]);
  console.log(`WebAssembly sent: ${sent} bytes (brotli)`);
  // Leptos.toml's bundle-budget-bytes (why it is what it is: there).
  expect(sent).toBeLessThanOrEqual(300_000);
});

test("pages are useful without JavaScript: the monitor's status and last lines, a working Deploy", async ({ browser, request }, testInfo) => {
  const id = await deployViaApi(request, `nojs-${Date.now() % 1_000_000}`, makeRepo());
  const done = await waitForEnd(request, id);
  expect(done.status).toBe("success");
  const context = await browser.newContext({ javaScriptEnabled: false, storageState });
  const page = await context.newPage();

  await page.goto(`/deployments/${id}`);
  await expect(page.getByTestId("status")).toHaveText("success");
  await expect(page.getByRole("log")).toContainText("Deployment successful");
  await expect(page.locator('[data-stage="end"]')).toHaveAttribute("data-state", "done");
  await expect(page.getByRole("link", { name: "Open app" })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("monitor-no-js.png"), fullPage: true });

  // The Deploy button is a form: without the WebAssembly it posts, and the server sends
  // the browser to the new deployment's monitor.
  await page.goto(`/apps/${done.app_id}`);
  await page.getByRole("button", { name: "Deploy", exact: true }).click();
  await expect(page).toHaveURL(/\/deployments\/\d+$/);
  const second = Number(page.url().split("/").pop());
  expect(second).toBeGreaterThan(id);
  await expect(page.getByTestId("status")).toHaveText(/pending|cloning|building|deploying|success/);
  expect((await waitForEnd(request, second)).status).toBe("success");
  await context.close();
});

test.afterAll(async ({ request }) => removeAllApps(request));
