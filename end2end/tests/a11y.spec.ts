import { test, expect, Page } from "@playwright/test";
import { api, deployViaApi, makeRepo, waitForEnd } from "./helpers";

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

test("every control on every page has an accessible name; nothing overflows at phone width", async ({ page, request }, testInfo) => {
  const id = await deployViaApi(request, `a11y-${Date.now() % 1_000_000}`, makeRepo());
  const done = await waitForEnd(request, id);
  expect(done.status).toBe("success");
  const pages: [string, string][] = [
    ["apps", "/"],
    ["app", `/apps/${done.app_id}`],
    ["monitor", `/deployments/${id}`],
    ["tokens", "/settings/tokens"],
  ];

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
});

test.afterAll(async ({ request }) => {
  const apps = await (await request.get("/api/apps", { headers: api })).json();
  for (const app of apps) {
    const answer = await request.delete(`/api/apps/${app.id}`, { headers: api });
    expect(answer.status()).toBe(204);
  }
});
