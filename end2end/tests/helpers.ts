import { expect, Page, APIRequestContext, Locator } from "@playwright/test";
import { adminToken } from "../playwright.config";
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const api = { Authorization: `Bearer ${adminToken}` };

// A git repository with a FROM scratch busybox httpd app, made for this run. `extra` are
// RUN steps added before EXPOSE (for example slow or long output, or a failure).
export function makeRepo(extra: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), "slipway-e2e-repo-"));
  copyFileSync("/bin/busybox", join(dir, "busybox"));
  writeFileSync(
    join(dir, "Dockerfile"),
    [
      "FROM scratch",
      "COPY busybox /bin/busybox",
      `ENV NONCE=${Date.now()}-${Math.random()}`,
      'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
      'RUN mkdir -p /www && echo "hello from the e2e test" > /www/index.html',
      'RUN for i in 1 2 3; do echo "e2e build line $i"; done',
      ...extra,
      "EXPOSE 8080",
      'CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]',
      "",
    ].join("\n"),
  );
  const git = (...args: string[]) =>
    execFileSync("git", ["-c", "user.name=e2e", "-c", "user.email=e2e@slipway.invalid", ...args], { cwd: dir });
  git("init", "-q", "-b", "main");
  git("add", ".");
  git("commit", "-q", "-m", "e2e app");
  return dir;
}

/// `n` lines, one every 100 ms.
export const slowLines = (n: number) =>
  `RUN for i in $(seq 1 ${n}); do echo "slow line $i"; usleep 100000; done`;

export function watchConsole(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") {
      errors.push(m.text());
      console.log(`[browser error] ${m.text()}`);
    }
  });
  page.on("pageerror", (e) => {
    errors.push(String(e));
    console.log(`[page error] ${e.stack ?? e}`);
  });
  return errors;
}

export async function addApp(page: Page, name: string, repo: string) {
  await page.goto("/");
  await page.locator("body[data-hydrated]").waitFor();
  await page.getByLabel("Name", { exact: true }).fill(name);
  await page.getByLabel("Repository URL").fill(repo);
  await page.getByLabel("Port").fill("8080");
  await page.getByRole("button", { name: "Add app" }).click();
  await page.getByRole("link", { name }).click();
  await expect(page.getByRole("heading", { name })).toBeVisible();
}

/// Deletes every app (and so its containers): each spec's clean-up.
export async function removeAllApps(request: APIRequestContext) {
  const apps = await (await request.get("/api/apps", { headers: api })).json();
  for (const app of apps) {
    const answer = await request.delete(`/api/apps/${app.id}`, { headers: api });
    expect(answer.status()).toBe(204);
  }
}

/// Creates an app and queues a deployment through the API; answers the deployment id.
export async function deployViaApi(request: APIRequestContext, name: string, repo: string): Promise<number> {
  const app = await request.post("/api/apps", { headers: api, data: { name, repo_url: repo, port: 8080 } });
  expect(app.status()).toBe(201);
  const deployment = await request.post("/api/deployments", { headers: api, data: { appId: (await app.json()).id } });
  expect(deployment.status()).toBe(201);
  return (await deployment.json()).id;
}

export async function waitForEnd(request: APIRequestContext, id: number, timeoutMs = 240_000): Promise<any> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const d = await (await request.get(`/api/deployments/${id}`, { headers: api })).json();
    if (["success", "failed", "cancelled"].includes(d.status)) return d;
    if (Date.now() > until) throw new Error(`deployment ${id} still ${d.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/// Every row the virtualised log holds, read by scrolling it from top to bottom: a map of
/// seq → text. Fails if the DOM ever holds the same seq twice at once.
export async function collectRows(log: Locator): Promise<Map<number, string>> {
  const rows = new Map<number, string>();
  // Go to the top as a reader does (a key press pauses follow mode), then step down a page
  // at a time.
  await log.focus();
  await log.page().keyboard.press("Home");
  await log.evaluate((el) => (el.scrollTop = 0));
  for (let guard = 0; guard < 10_000; guard++) {
    await log.page().waitForTimeout(50);
    const visible = await log.locator("[data-seq]").evaluateAll((els) =>
      els.map((e) => [Number(e.getAttribute("data-seq")), e.textContent ?? ""] as [number, string]),
    );
    const seqs = visible.map(([s]) => s);
    expect(new Set(seqs).size, "no seq twice in the DOM").toBe(seqs.length);
    for (const [seq, text] of visible) if (!text.startsWith("…")) rows.set(seq, text);
    const done = await log.evaluate((el) => {
      const atBottom = el.scrollTop + el.clientHeight >= el.scrollHeight - 2;
      el.scrollTop += el.clientHeight;
      return atBottom;
    });
    if (done) break;
  }
  return rows;
}

/// Seqs 1..n each exactly once.
export function expectContiguous(rows: Map<number, string>) {
  const seqs = [...rows.keys()].sort((a, b) => a - b);
  expect(seqs.length).toBeGreaterThan(0);
  expect(seqs).toEqual(seqs.map((_, i) => i + 1));
}
