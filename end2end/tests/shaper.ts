// A user-space TCP shaping proxy, standing in for `tc netem` (which this kernel lacks) so
// that tests can watch the dashboard over a slow phone link. It works on plain TCP, so
// HTTP, keep-alive and WebSocket upgrades pass through untouched.
import * as net from "node:net";

export interface ShaperOptions {
  target: { host: string; port: number };
  bitsPerSecond: number;
  delayMs: number;
  listenHost?: string;
}

export interface Shaper {
  /** The port the shaper listens on (chosen by the OS). */
  port: number;
  /** Bytes delivered server→client and client→server so far. */
  bytesDown: number;
  bytesUp: number;
  resetCounters(): void;
  /** Closes the server and destroys every open connection. */
  close(): Promise<void>;
}

// One packet: small enough that connections interleave on the link the way they would on
// a real radio, large enough not to need a timer per handful of bytes.
const PACKET = 1500;
// Beyond this much data in flight for one connection, the source is paused, so a fast
// server meets TCP flow control (a slow reader) instead of an unbounded buffer here.
const HIGH_WATER = 256 * 1024;

// One direction of the link, shared by every connection of a shaper. Like a bottleneck
// shared by TCP flows, it sends one packet at a time, taking turns between the connections
// that have something to send: a small response (a stylesheet) is not stuck behind a large
// one (the WebAssembly) that happened to arrive first.
class Link {
  private readonly msPerByte: number;
  readonly delayMs: number;
  private readonly waiting: Sender[] = [];
  private freeAt = 0;
  private busy = false;
  constructor(bitsPerSecond: number, delayMs: number) {
    this.msPerByte = (8 * 1000) / bitsPerSecond;
    this.delayMs = delayMs;
  }
  /** `sender` has a packet to send. */
  ready(sender: Sender) {
    if (!this.waiting.includes(sender)) this.waiting.push(sender);
    this.next();
  }
  private next() {
    if (this.busy) return;
    let sender = this.waiting.shift();
    while (sender && !sender.hasMore()) sender = this.waiting.shift(); // a cancelled one
    if (!sender) return;
    const packet = sender.take();
    if (sender.hasMore()) this.waiting.push(sender); // its next turn, after the others
    // A virtual clock: late timers do not slow the link down.
    this.freeAt = Math.max(performance.now(), this.freeAt) + packet.bytes * this.msPerByte;
    this.busy = true;
    setTimeout(() => {
      this.busy = false;
      sender.sent(packet, this.freeAt + this.delayMs);
      this.next();
    }, Math.max(0, this.freeAt - performance.now()));
  }
}

interface Packet {
  bytes: number;
  data: Buffer | null; // null: the source's FIN
}

interface Sender {
  take(): Packet;
  hasMore(): boolean;
  sent(packet: Packet, at: number): void;
}

// Carries one direction of one connection over `link`: packets wait their turn on the link,
// then travel `delayMs`, then are written in order (one timer for the head of the queue;
// arrival times of one connection only grow). Returns a function that cancels whatever is
// still pending.
function carry(src: net.Socket, dst: net.Socket, link: Link, delivered: (n: number) => void): () => void {
  const waiting: Packet[] = []; // not on the link yet
  const travelling: { at: number; data: Buffer | null }[] = [];
  let queued = 0;
  let blocked = false; // dst.write() said its buffer is full
  let timer: ReturnType<typeof setTimeout> | undefined;
  let cancelled = false;

  const flow = () => {
    const stop = blocked || queued > HIGH_WATER;
    if (stop && !src.isPaused()) src.pause();
    else if (!stop && src.isPaused()) src.resume();
  };
  const arm = () => {
    timer = setTimeout(deliver, Math.max(0, travelling[0].at - performance.now()));
  };
  const deliver = () => {
    timer = undefined;
    // Timers have millisecond granularity, so anything due within a millisecond goes now.
    while (travelling.length > 0 && travelling[0].at <= performance.now() + 1) {
      const { data } = travelling.shift()!;
      if (dst.destroyed) return;
      if (data === null) {
        dst.end(); // the half-close travels the link too, after all the data before it
        continue;
      }
      queued -= data.length;
      delivered(data.length);
      if (!dst.write(data)) blocked = true;
    }
    if (travelling.length > 0) arm();
    flow();
  };
  const sender: Sender = {
    take: () => waiting.shift()!,
    hasMore: () => waiting.length > 0,
    sent: (packet, at) => {
      if (cancelled) return;
      travelling.push({ at, data: packet.data });
      if (timer === undefined) arm();
    },
  };
  const send = (data: Buffer | null) => {
    waiting.push({ bytes: data ? data.length : 0, data });
    link.ready(sender);
  };

  src.on("data", (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i += PACKET) {
      const data = chunk.subarray(i, i + PACKET);
      queued += data.length;
      send(data);
    }
    flow();
  });
  src.on("end", () => send(null));
  dst.on("drain", () => {
    blocked = false;
    flow();
  });
  return () => {
    cancelled = true;
    waiting.length = 0;
    clearTimeout(timer);
  };
}

export async function startShaper(opts: ShaperOptions): Promise<Shaper> {
  const down = new Link(opts.bitsPerSecond, opts.delayMs);
  const up = new Link(opts.bitsPerSecond, opts.delayMs);
  const kills = new Set<() => void>();

  // allowHalfOpen everywhere: Node must not end a socket on its own when its peer ends;
  // the FIN is forwarded through the queue instead, once the data ahead of it is delivered.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    const upstream = net.connect({ ...opts.target, allowHalfOpen: true });
    // The shaper decides the timing; Nagle would only add its own delays on top.
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    const cancels = [
      carry(client, upstream, up, (n) => (shaper.bytesUp += n)),
      carry(upstream, client, down, (n) => (shaper.bytesDown += n)),
    ];
    const kill = () => {
      if (!kills.delete(kill)) return;
      cancels.forEach((cancel) => cancel());
      client.destroy();
      upstream.destroy();
    };
    kills.add(kill);
    for (const socket of [client, upstream]) {
      socket.on("error", kill);
      // A socket closing after both its directions finished cleanly leaves only its FIN
      // in flight to the other side, which must still arrive; anything else is an abort.
      socket.on("close", () => {
        if (!(socket.readableEnded && socket.writableFinished)) kill();
        else if (client.destroyed && upstream.destroyed) kills.delete(kill);
      });
    }
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, opts.listenHost ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  // Later server errors (e.g. EMFILE on accept) must not crash the test run.
  server.on("error", () => {});

  const shaper: Shaper = {
    port: (server.address() as net.AddressInfo).port,
    bytesDown: 0,
    bytesUp: 0,
    resetCounters() {
      shaper.bytesDown = 0;
      shaper.bytesUp = 0;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const kill of [...kills]) kill();
      }),
  };
  return shaper;
}
