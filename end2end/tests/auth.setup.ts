import { test as setup, expect } from "@playwright/test";
import { adminUser, storageState } from "../playwright.config";

// The first visit to a new server: every page leads to /setup, which creates the admin
// account and signs in. The session is kept for the other tests.
setup("the first visit creates the admin account", async ({ page }, testInfo) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/setup$/);
  await expect(page.getByRole("heading", { name: "Create the admin account" })).toBeVisible();
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

  // Once it exists, /setup leads to sign-in.
  await page.goto("/setup");
  await expect(page).toHaveURL(/\/login$/);
});
