import { test, expect } from "@playwright/test";
import { adminUser } from "../playwright.config";

// A fresh browser (no saved session): sign in, make and revoke an API token, sign out.
test.use({ storageState: { cookies: [], origins: [] } });

test("sign in, create and revoke an API token, sign out", async ({ page, request }, testInfo) => {
  await page.goto("/settings/tokens");
  await expect(page).toHaveURL(/\/login\?next=/);
  await page.getByLabel("Username").fill(adminUser.username);
  await page.getByLabel("Password").fill("not the password");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("wrong username or password");
  await page.screenshot({ path: testInfo.outputPath("login-error.png"), fullPage: true });

  await page.getByLabel("Username").fill(adminUser.username);
  await page.getByLabel("Password").fill(adminUser.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  // Back where the visit started.
  await expect(page).toHaveURL(/\/settings\/tokens$/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");

  await page.getByLabel("Name").fill("e2e script");
  await page.getByRole("button", { name: "Create token" }).click();
  const shown = page.getByTestId("new-token");
  await expect(shown).toHaveText(/^slw_[0-9a-f]{64}$/);
  const token = (await shown.textContent()) ?? "";
  await expect(page.getByRole("cell", { name: "e2e script", exact: true })).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("tokens.png"), fullPage: true });

  const headers = { Authorization: `Bearer ${token}` };
  expect((await request.get("/api/apps", { headers })).status()).toBe(200);
  await page.getByRole("button", { name: "Revoke e2e script" }).click();
  await expect(page.getByRole("cell", { name: "e2e script", exact: true })).toHaveCount(0);
  expect((await request.get("/api/apps", { headers })).status()).toBe(401);

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto("/");
  await expect(page).toHaveURL(/\/login\?next=/);
});
