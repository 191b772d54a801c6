import { test, expect, BrowserContext } from "@playwright/test";
import { api, deployViaApi, makeRepo, slowLines, waitForEnd, removeAllApps } from "./helpers";
import { adminUser } from "../playwright.config";

/// Every Content-Security-Policy violation in the context's pages: reported by the page's
/// `securitypolicyviolation` event (the init script runs outside the page's policy) and by
/// Chrome on the console.
async function watchCsp(context: BrowserContext): Promise<string[]> {
  const found: string[] = [];
  await context.exposeBinding("__slipwayCsp", (_source, text: string) => {
    found.push(text);
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      (window as any).__slipwayCsp(`${e.violatedDirective}: ${e.blockedURI} (${e.sourceFile}:${e.lineNumber})`);
    });
  });
  context.on("console", (m) => {
    if (/Content Security Policy|Refused to/i.test(m.text())) found.push(`console: ${m.text()}`);
  });
  return found;
}

test("no page breaks its Content-Security-Policy, and every page still runs its scripts", async ({ browser, request }, testInfo) => {
  const done = await deployViaApi(request, `csp-${Date.now() % 100000}`, makeRepo(["RUN for i in $(seq 1 300); do echo \"csp line $i\"; done"]));
  const finished = await waitForEnd(request, done);
  expect(finished.status).toBe("success");
  const running = await deployViaApi(request, `csp-live-${Date.now() % 100000}`, makeRepo([slowLines(600)]));

  const context = await browser.newContext({ storageState: "test-results/.auth/admin.json" });
  const violations = await watchCsp(context);
  const page = await context.newPage();
  const pages = [
    "/",
    `/apps/${finished.app_id}`,
    `/deployments/${done}`,
    `/deployments/${running}`,
    "/settings/tokens",
    "/settings/account",
    "/no/such/page",
  ];
  for (const path of pages) {
    const response = await page.goto(path);
    const headers = response!.headers();
    expect(headers["content-security-policy"], path).toContain("frame-ancestors 'none'");
    expect(headers["content-security-policy"], path).toMatch(/script-src 'self' 'nonce-[A-Za-z0-9_-]+'/);
    expect(headers["x-frame-options"], path).toBe("DENY");
    expect(headers["x-content-type-options"], path).toBe("nosniff");
    expect(headers["referrer-policy"], path).toBe("same-origin");
    // The hydration script (inline, with the nonce) loaded the WebAssembly and ran it.
    await page.locator("body[data-hydrated]").waitFor();
    await page.screenshot({ path: testInfo.outputPath(`csp${path.replaceAll("/", "-")}.png`) });
  }
  // The live monitor's WebSocket is allowed (connect-src 'self'): lines arrive.
  await page.goto(`/deployments/${running}`);
  await expect(page.getByTestId("connection")).toHaveText("live");
  await expect(page.getByRole("log")).toContainText("slow line 3");
  // The monitor's inline scroll script runs (it carries the nonce): with the WebAssembly
  // blocked, the log still opens at its end.
  await page.route("**/*.wasm", (route) => route.abort());
  await page.goto(`/deployments/${done}`);
  const log = page.getByRole("log");
  await expect(log).toContainText("Deployment successful");
  const atEnd = await log.evaluate((el) => el.scrollTop > 0 && el.scrollTop + el.clientHeight >= el.scrollHeight - 2);
  expect(atEnd, "the inline scroll script ran").toBe(true);
  await page.unroute("**/*.wasm");

  // Signed out: the sign-in page.
  const anonymous = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const anonymousViolations = await watchCsp(anonymous);
  const signIn = await anonymous.newPage();
  await signIn.goto("/settings/account");
  await expect(signIn).toHaveURL(/\/login\?next=/);
  await signIn.locator("body[data-hydrated]").waitFor();

  await request.post(`/api/deployments/${running}/cancel`, { headers: api });
  expect(violations).toEqual([]);
  expect(anonymousViolations).toEqual([]);
  await context.close();
  await anonymous.close();
});

test("no page of Slipway can be framed by another site", async ({ page, baseURL }) => {
  const refusals: string[] = [];
  page.on("console", (m) => {
    if (/frame-ancestors|Refused to (display|frame)/.test(m.text())) refusals.push(m.text());
  });
  for (const path of ["/settings/tokens", "/login"]) {
    await page.setContent(`<h1>cute cats</h1><iframe id="bait" src="${baseURL}${path}" width="800" height="600"></iframe>`);
    await expect.poll(() => refusals.length, { message: `${path} was framed` }).toBeGreaterThan(0);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    const inside = frame ? await frame.evaluate(() => document.body?.innerText ?? "").catch(() => "") : "";
    expect(inside).not.toContain("API tokens");
    expect(inside).not.toContain("Sign in");
    refusals.length = 0;
  }
});

test("a sign-in link can neither send the browser elsewhere nor put words in the page", async ({ browser }) => {
  const context = await browser.newContext({ storageState: { cookies: [], origins: [] } });
  const page = await context.newPage();
  await page.goto("/login?next=%2F%09%2Fevil.example&error=Your+session+expired.+Call+%2B1+555+0100+now");
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await expect(page.getByText("555 0100")).toHaveCount(0);
  await expect(page.getByRole("alert")).toHaveCount(0);
  await page.getByLabel("Username").fill(adminUser.username);
  await page.getByLabel("Password").fill(adminUser.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByTestId("user")).toHaveText(adminUser.username);
  expect(new URL(page.url()).host).toBe(new URL(test.info().project.use.baseURL!).host);
  expect(new URL(page.url()).pathname).toBe("/");

  // The account page: its forms say what is wrong, and change nothing then.
  await page.goto("/settings/account");
  await page.getByLabel("Current password").fill("not the password at all");
  await page.getByLabel("New password (10 characters or more)").fill("a new password 1234");
  await page.getByLabel("New password again").fill("a new password 1234");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByRole("alert")).toContainText("not your current password");
  await page.getByLabel("Current password").fill(adminUser.password);
  await page.getByLabel("New password (10 characters or more)").fill("a new password 1234");
  await page.getByLabel("New password again").fill("another password 1234");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByRole("alert")).toContainText("passwords differ");
  await context.close();
});

test.afterAll(async ({ request }) => removeAllApps(request));
