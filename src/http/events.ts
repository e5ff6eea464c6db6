// EventHub: Server-Sent Events for GET /v1/events (the MIF API's
// announcements of changes). A new subscriber first gets the current state
// as one pvd-announced per PvD, then every change as it happens.

import type http from 'node:http';

/** Event names, as the API documents them. */
export type EventName = 'pvd-announced' | 'pvd-updated' | 'pvd-withdrawn' | 'captive-changed' | 'upstream-changed' | 'pref64-changed';

/** A comment line often enough that proxies and clients keep the stream open. */
const HEARTBEAT_MS = 15_000;
const MAX_SUBSCRIBERS = 64;

export class EventHub {
  private readonly clients = new Set<http.ServerResponse>();
  private readonly heartbeat: NodeJS.Timeout;
  private nextId = 1;

  constructor() {
    this.heartbeat = setInterval(() => {
      for (const res of this.clients) res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** subscribe turns a response into an event stream; false when there are too many already. */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse, initial: Array<[EventName, unknown]>): boolean {
    if (this.clients.size >= MAX_SUBSCRIBERS) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    for (const [event, data] of initial) res.write(this.frame(event, data));
    this.clients.add(res);
    const drop = (): void => {
      this.clients.delete(res);
    };
    req.on('close', drop);
    res.on('error', drop);
    return true;
  }

  publish(event: EventName, data: unknown): void {
    if (this.clients.size === 0) return;
    const text = this.frame(event, data);
    for (const res of this.clients) res.write(text);
  }

  private frame(event: EventName, data: unknown): string {
    return `id: ${this.nextId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  get subscribers(): number {
    return this.clients.size;
  }

  /** close ends every stream. */
  close(): void {
    clearInterval(this.heartbeat);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }
}
