import { test as setup, expect } from "@playwright/test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { adminUser, dataDir, storageState } from "../playwright.config";

// The first visit to a new server: every page leads to /setup, which asks for the
// one-time setup link the server printed at start. The test reads the code where the
// server also writes it, `<data dir>/setup-code` (readable only by the user running the
// server, as this test does); with it, /setup creates the admin account and signs in.
// The session is kept for the other tests.
setup("the first visit creates the admin account", async ({ page }, testInfo) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/setup$/);
  await expect(page.getByRole("heading", { name: "Create the admin account" })).toBeVisible();
  await expect(page.getByTestId("setup-needs-code")).toBeVisible();
  await expect(page.getByLabel("Username")).toHaveCount(0);
  await page.goto("/setup?code=0123456789abcdef0123456789abcdef");
  await expect(page.getByRole("alert")).toContainText("setup code is missing or wrong");
  await expect(page.getByLabel("Username")).toHaveCount(0);

  const codeFile = join(dataDir!, "setup-code");
  const code = readFileSync(codeFile, "utf8").trim();
  await page.goto(`/setup?code=${code}`);
  await expect(page.getByLabel("Username")).toBeVisible();
  await page.screenshot({ path: testInfo.outputPath("setup.png"), fullPage: true });

  // Mismatched passwords are refused with a message naming the field.
  await page.getByLabel("Username").fill(adminUser.username);
  await page.getByLabel("Password (10 characters or more)").fill(adminUser.password);
  await page.getByLabel("Password again").fill("something else 123");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toContainText("confirm");

  await page.getByLabel("Password (10 characters or more)").fill(adminUser.password);
  await page.getByLabel("Password again").fill(adminUser.password);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("user")).toHaveText(adminUser.username);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "slipway_session");
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe("Lax");
  await page.context().storageState({ path: storageState });
  expect(existsSync(codeFile), "the used setup code is removed").toBe(false);

  // Once it exists, /setup leads to sign-in.
  await page.goto("/setup");
  await expect(page).toHaveURL(/\/login$/);
});
