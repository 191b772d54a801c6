import { test, expect } from "@playwright/test";
import { api, makeRepo, watchConsole } from "./helpers";

// The apps list and an app's history follow the event feed: deployments started through
// the API (as a webhook or the CLI would) appear and move on the open page, no reload.
test("the apps list and the history update live from the event feed", async ({ page, request }) => {
  const errors = watchConsole(page);
  const name = `live-${Date.now()}`;
  const created = await request.post("/api/apps", {
    headers: api,
    data: { name, repo_url: makeRepo(), port: 8080 },
  });
  expect(created.status()).toBe(201);
  const app = await created.json();

  await page.goto("/");
  await page.locator("body[data-hydrated]").waitFor();
  const row = page.locator(`li[data-app="${name}"]`);
  await expect(row).toBeVisible();
  await expect(row.getByLabel(/Last deployment/)).toHaveCount(0);

  // Started elsewhere: the row shows it and then its success, without a reload.
  const navigations: string[] = [];
  page.on("framenavigated", (f) => navigations.push(f.url()));
  const started = await request.post("/api/deployments", { headers: api, data: { appId: app.id } });
  expect(started.status()).toBe(201);
  await expect(row.getByLabel("Last deployment: success")).toBeVisible({ timeout: 120_000 });
  await expect(row.getByTestId("age")).toHaveText("just now");

  // A failed one shows its reason.
  const brokenName = `${name}-broken`;
  const broken = await (
    await request.post("/api/apps", { headers: api, data: { name: brokenName, repo_url: "/nonexistent/repo" } })
  ).json();
  const brokenRow = page.locator(`li[data-app="${brokenName}"]`);
  await expect(brokenRow).toBeVisible();
  await request.post("/api/deployments", { headers: api, data: { appId: broken.id } });
  await expect(brokenRow.getByLabel("Last deployment: failed")).toBeVisible({ timeout: 60_000 });
  await expect(brokenRow.getByTestId("failure")).not.toBeEmpty();
  expect(navigations, "no reload").toEqual([]);

  // The app's history: a new deployment appears at the top and reaches success.
  await page.goto(`/apps/${app.id}`);
  await page.locator("body[data-hydrated]").waitFor();
  const second = await (await request.post("/api/deployments", { headers: api, data: { appId: app.id } })).json();
  const entry = page.locator(`tr[data-deployment="${second.id}"]`);
  await expect(entry).toBeVisible({ timeout: 30_000 });
  await expect(entry.getByText("success")).toBeVisible({ timeout: 120_000 });

  // A deleted app leaves the list.
  await page.goto("/");
  await page.locator("body[data-hydrated]").waitFor();
  await expect(brokenRow).toBeVisible();
  expect((await request.delete(`/api/apps/${broken.id}`, { headers: api })).status()).toBe(204);
  await expect(brokenRow).toHaveCount(0);
  await page.screenshot({ path: "test-results/live-apps-list.png" });
  expect(errors).toEqual([]);
});

// The runtime logs tab: the running container's output in the log viewer, live.
test("the runtime logs tab shows what the running app prints", async ({ page, request }) => {
  const errors = watchConsole(page);
  const name = `rt-${Date.now() % 1_000_000}`;
  const app = await (await request.post("/api/apps", { headers: api, data: { name, repo_url: makeRepo(), port: 8080 } })).json();
  const started = await (await request.post("/api/deployments", { headers: api, data: { appId: app.id } })).json();
  await page.goto(`/apps/${app.id}/logs`);
  await page.locator("body[data-hydrated]").waitFor();
  const log = page.getByRole("log", { name: "Runtime log" });
  await expect(log).toContainText(`now serving container`, { timeout: 120_000 });
  await expect(log).toContainText(`of deployment #${started.id}`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  expect(errors).toEqual([]);
});
