import { defineConfig } from "@playwright/test";

// Runs against $SLIPWAY_BIN (default target/release/slipway) on its own port and data directory, with the
// real Docker engine, in Debian's Chromium (`npx playwright install` cannot download).
const port = Number(process.env.SLIPWAY_E2E_PORT ?? 3917);
// The edge (Caddy) of this server: apps answer at http://<name>.localhost:<edgePort>.
export const edgePort = port + 1000;
const bin = process.env.SLIPWAY_BIN ?? "target/release/slipway";
// Set once, in the runner, so the workers (which inherit its environment) find the same
// directory: the setup test reads the one-time setup code from it.
process.env.SLIPWAY_E2E_DATA ??= `/tmp/slipway-e2e-${process.pid}`;
export const dataDir = process.env.SLIPWAY_E2E_DATA;
// Clean-up in afterAll hooks uses the admin token; the browser signs in as a person.
export const adminToken = "e2e-admin-token-0123456789abcdef";
export const adminUser = { username: "admin", password: "e2e password 1234" };
export const storageState = "test-results/.auth/admin.json";

export default defineConfig({
  testDir: "./tests",
  timeout: 180_000,
  expect: { timeout: 120_000 },
  workers: 1,
  reporter: [["list"]],
  projects: [
    // Creates the admin account through the first-visit page and keeps the session.
    { name: "setup", testMatch: /.*\.setup\.ts/ },
    { name: "chromium", dependencies: ["setup"], use: { storageState } },
  ],
  outputDir: "test-results",
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    screenshot: "on",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-dev-shm-usage",
      ],
    },
  },
  webServer: {
    command: `rm -rf ${dataDir} && ${bin}`,
    url: `http://127.0.0.1:${port}/api/health`,
    reuseExistingServer: false,
    timeout: 60_000,
    cwd: "..",
    env: {
      SLIPWAY_ADDR: `127.0.0.1:${port}`,
      SLIPWAY_DATA_DIR: dataDir,
      SLIPWAY_ALLOW_LOCAL_REPOS: "1",
      SLIPWAY_ADMIN_TOKEN: adminToken,
      SLIPWAY_EDGE_HTTP_ADDR: `127.0.0.1:${edgePort}`,
      SLIPWAY_DRAIN_SECS: "2",
      LEPTOS_SITE_ROOT: "target/site",
      RUST_LOG: "info,sqlx=warn",
    },
  },
});
