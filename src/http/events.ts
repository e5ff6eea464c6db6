// EventHub: Server-Sent Events for GET /v1/events (the MIF API's
// announcements of changes). A new subscriber first gets the current state
// as one pvd-announced per PvD, then every change as it happens. A
// subscriber that does not read is dropped once MAX_BUFFERED octets wait for
// it, so it cannot make pvdns buffer without bound.

import type http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CollectedValue } from '../metrics/collected.js';

/** Event names, as the API documents them. */
export type EventName = 'pvd-announced' | 'pvd-updated' | 'pvd-withdrawn' | 'captive-changed' | 'upstream-changed' | 'pref64-changed';

/** A comment line often enough that proxies and clients keep the stream open. */
const HEARTBEAT_MS = 15_000;
const MAX_SUBSCRIBERS = 64;
/** Octets waiting to be sent to one subscriber (res.writableLength) beyond which it is dropped. */
export const MAX_BUFFERED = 256 * 1024;

export class EventHub {
  private readonly clients = new Set<http.ServerResponse>();
  /** Runs only while there are subscribers. */
  private heartbeat: NodeJS.Timeout | null = null;
  private nextId = 1;
  private log: Logger | null = null;
  /** Subscribers dropped for not reading (pvdns_events_subscribers_dropped_total). */
  dropped = 0;

  /** register adds pvdns_events_subscribers_dropped_total to `registry`; drops are logged to `log`. */
  register(registry: Registry, log: Logger): void {
    this.log = log;
    new CollectedValue('pvdns_events_subscribers_dropped_total', 'GET /v1/events subscribers dropped because they did not read their events.', 'counter', () => [
      { labels: {}, value: this.dropped },
    ]).register(registry);
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
    if (this.heartbeat === null) {
      this.heartbeat = setInterval(() => {
        for (const c of this.clients) this.send(c, ': keep-alive\n\n');
      }, HEARTBEAT_MS);
      this.heartbeat.unref();
    }
    const drop = (): void => this.remove(res);
    req.on('close', drop);
    res.on('error', drop);
    return true;
  }

  publish(event: EventName, data: unknown): void {
    if (this.clients.size === 0) return;
    const text = this.frame(event, data);
    for (const res of this.clients) this.send(res, text);
  }

  /** send writes to one subscriber, dropping it when too much is waiting for it already. */
  private send(res: http.ServerResponse, text: string): void {
    res.write(text);
    if (res.writableLength <= MAX_BUFFERED) return;
    this.dropped++;
    this.log?.info({ client: res.socket?.remoteAddress, buffered: res.writableLength }, 'event subscriber dropped: it does not read its events');
    this.remove(res);
    // A reset: the kernel drops what is queued for it too, instead of trying to deliver it.
    res.socket?.resetAndDestroy();
    res.destroy();
  }

  /** closeWhere ends the streams of subscribers whose address `refused` says may no longer listen. */
  closeWhere(refused: (address: string) => boolean): void {
    for (const res of [...this.clients]) {
      if (!refused(res.socket?.remoteAddress ?? '')) continue;
      this.log?.info({ audit: true, client: res.socket?.remoteAddress ?? null }, 'event subscriber closed: the client is no longer allowed (http.allow)');
      this.remove(res);
      res.end();
    }
  }

  private remove(res: http.ServerResponse): void {
    this.clients.delete(res);
    if (this.clients.size === 0 && this.heartbeat !== null) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
  }

  private frame(event: EventName, data: unknown): string {
    return `id: ${this.nextId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  get subscribers(): number {
    return this.clients.size;
  }

  /** close ends every stream. */
  close(): void {
    for (const res of this.clients) res.end();
    this.clients.clear();
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}
