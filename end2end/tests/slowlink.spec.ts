import { test, expect, Page, WebSocket as PageSocket } from "@playwright/test";
import { api, deployViaApi, makeRepo, removeAllApps, waitForEnd, watchConsole } from "./helpers";
import { startShaper, Shaper } from "./shaper";

// A phone on a slow link late-joins a live build with a 100,000-line log: the newest line
// is on screen within 3 s (only a bounded, compressed tail travels first), every line the
// socket brings arrives exactly once, and neither the build nor a fast viewer in the same
// browser waits for the slow one.

const BACKLOG = 100_000;
// After the backlog the build pauses (the late joiner opens the page then), and goes on
// with bursts far faster than 1 Mbit/s carries: the slow viewer falls behind.
const BURSTS = 20;
const PER_BURST = 500;

// Every log event a page's sockets received (a frame may hold several),
// and whether the terminal status came, per socket.
class Wire {
  sockets: { since: number; seqs: number[]; terminal: boolean }[] = [];
  constructor(page: Page) {
    page.on("websocket", (ws: PageSocket) => {
      if (!ws.url().includes("/api/deployments/logs")) return;
      const socket = { since: Number(new URL(ws.url()).searchParams.get("since")), seqs: [] as number[], terminal: false };
      this.sockets.push(socket);
      let events = 0;
      ws.on("framereceived", (frame) => {
        // The dashboard asks for batch=1: every frame is an array of events.
        for (const event of [JSON.parse(String(frame.payload))].flat()) {
          events += 1;
          if (event.type === "log") socket.seqs.push(event.data.seq);
          // The first status is the state at connection; a terminal one later ends it.
          const ended = ["success", "failed", "cancelled"].includes(event.data?.status);
          if (event.type === "status" && ended && events > 1) socket.terminal = true;
        }
      });
    });
  }
  last(): number {
    const s = this.sockets.flatMap((s) => s.seqs);
    return s.length ? s[s.length - 1] : 0;
  }
  done(): boolean {
    return this.sockets.some((s) => s.terminal);
  }
  // Seqs first..=total each exactly once, in order, across reconnections (checked in
  // plain code: one `expect` per line would take minutes).
  expectExactlyOnce(total: number) {
    expect(this.sockets.length).toBeGreaterThan(0);
    let expected = this.sockets[0].since + 1;
    const problems: string[] = [];
    for (const socket of this.sockets) {
      if (socket.since !== expected - 1) problems.push(`a socket resumed after ${socket.since}, not ${expected - 1}`);
      for (const seq of socket.seqs) {
        if (seq !== expected && problems.length < 5) problems.push(`seq ${seq} where ${expected} was due`);
        expected = seq + 1;
      }
    }
    expect(problems, "no gap, no duplicate").toEqual([]);
    expect(expected - 1, "the last line of the log arrived").toBe(total);
  }
}

/// The highest seq among the log's rows that are on screen now.
async function newestOnScreen(page: Page): Promise<number> {
  return page.evaluate(() => {
    const log = document.querySelector("[role=log]");
    if (!log) return 0;
    const box = log.getBoundingClientRect();
    let newest = 0;
    for (const row of log.querySelectorAll("[data-seq]")) {
      const r = row.getBoundingClientRect();
      const inLog = r.bottom > box.top && r.top < box.bottom;
      const inWindow = r.bottom > 0 && r.top < window.innerHeight;
      if (inLog && inWindow && r.height > 0) newest = Math.max(newest, Number(row.getAttribute("data-seq")));
    }
    return newest;
  });
}

let shaper: Shaper | undefined;

test.afterAll(async ({ request }) => {
  await shaper?.close();
  await removeAllApps(request);
});

test("a late joiner at 1 Mbit/s and 150 ms sees the newest line of a 100,000-line live build within 3 s", async ({ page, context, request, baseURL }, testInfo) => {
  test.setTimeout(300_000);
  const errors = watchConsole(page);
  const target = new URL(baseURL!);
  shaper = await startShaper({ target: { host: target.hostname, port: Number(target.port) }, bitsPerSecond: 1_000_000, delayMs: 150 });

  const repo = makeRepo([
    `RUN seq 1 ${BACKLOG} | sed 's/^/backlog line /'; sleep 6; ` +
      `for b in $(seq 1 ${BURSTS}); do seq 1 ${PER_BURST} | sed "s/^/live $b line /"; usleep 100000; done`,
  ]);
  const id = await deployViaApi(request, `slowlink-${Date.now() % 100000}`, repo);
  const total = async () =>
    (await (await request.get(`/api/deployments/${id}/lines?from=1&to=1`, { headers: api })).json()).total as number;
  // The backlog is written; the build pauses before its live bursts.
  await expect.poll(total, { timeout: 180_000, intervals: [250] }).toBeGreaterThanOrEqual(BACKLOG);

  // The slow viewer: a phone behind the shaper. The fast one: another tab, straight in.
  const slowWire = new Wire(page);
  const fast = await context.newPage();
  const fastWire = new Wire(fast);
  const newestAtOpen = await total();
  shaper.resetCounters();
  const opened = Date.now();
  await page.goto(`http://127.0.0.1:${shaper.port}/deployments/${id}`, { waitUntil: "commit" });
  await expect.poll(() => newestOnScreen(page), { timeout: 3_000, intervals: [50] }).toBeGreaterThanOrEqual(newestAtOpen);
  const shownAfter = Date.now() - opened;
  const bytesToNewest = shaper.bytesDown;
  await fast.goto(`/deployments/${id}`);

  // The build ends while the slow viewer is still far behind: nobody waited for it.
  const end = await waitForEnd(request, id);
  expect(end.status).toBe("success");
  const final = await total();
  await expect.poll(() => fastWire.done(), { timeout: 60_000 }).toBe(true);
  const slowBehindBy = final - slowWire.last();
  expect(slowBehindBy, "the slow viewer is still catching up when the fast one has everything").toBeGreaterThan(PER_BURST);
  fastWire.expectExactlyOnce(final);

  // The slow viewer gets there too, every line once, and shows the last one.
  await expect.poll(() => slowWire.done(), { timeout: 180_000, intervals: [500] }).toBe(true);
  slowWire.expectExactlyOnce(final);
  await expect(page.getByRole("log")).toContainText(`live ${BURSTS} line ${PER_BURST}`);
  await expect(page.getByTestId("status")).toHaveText("success");
  const seconds = (Date.now() - opened) / 1000;
  // The page as a client without compression gets it, for comparison.
  const plainPage = (await (await request.get(`/deployments/${id}`, { headers: { ...api, "Accept-Encoding": "identity" } })).body()).length;
  const wholeLog = (await (await request.get(`/api/deployments/${id}/logs`, { headers: { ...api, "Accept-Encoding": "identity" } })).body()).length;
  console.log(`[slow link] the page is ${plainPage} bytes uncompressed; the whole log ${wholeLog} bytes`);
  console.log(
    `[slow link] newest of ${newestAtOpen} lines on screen after ${shownAfter} ms and ${bytesToNewest} bytes; ` +
      `${final - newestAtOpen} live lines, ${shaper.bytesDown} bytes down in all over ${seconds.toFixed(1)} s; ` +
      `the slow viewer was ${slowBehindBy} lines behind when the build ended`,
  );
  await page.screenshot({ path: testInfo.outputPath("slow-link.png"), fullPage: true });
  expect(errors).toEqual([]);
});
