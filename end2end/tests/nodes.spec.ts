import { test, expect } from "@playwright/test";

// One server on SQLite is a cluster of one: the nodes page shows it alive, with the
// address it serves on, and links from the header.
test("the nodes page shows this server alive", async ({ page, baseURL }, testInfo) => {
  await page.goto("/");
  await page.getByRole("link", { name: "Nodes" }).click();
  await expect(page).toHaveURL(/\/settings\/nodes$/);
  await expect(page.getByRole("heading", { name: "Nodes" })).toBeVisible();
  const rows = page.getByTestId("node");
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toContainText(new URL(baseURL!).host);
  await expect(rows.first()).toContainText("alive");
  await page.screenshot({ path: testInfo.outputPath("nodes.png"), fullPage: true });
});
