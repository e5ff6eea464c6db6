// EventHub: the Server-Sent Events streams of the API. GET /v1/events (the
// MIF API's announcements of changes): a new subscriber first gets the
// current state as one pvd-announced per PvD, then every change as it
// happens. GET /v1/monitor (monitor.ts) writes its query records through the
// same hub. Whatever the stream, a subscriber that does not read is dropped
// once MAX_BUFFERED octets wait for it, so it cannot make pvdns buffer
// without bound.

import type http from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CollectedValue } from '../metrics/collected.js';

/** Event names, as the API documents them. */
export type EventName = 'pvd-announced' | 'pvd-updated' | 'pvd-withdrawn' | 'captive-changed' | 'upstream-changed' | 'pref64-changed';

/** The streams the hub serves: the change events, or the query monitor's records. */
export type StreamName = 'events' | 'monitor';

/** A comment line often enough that proxies and clients keep the stream open. */
const HEARTBEAT_MS = 15_000;
/** Subscribers per stream at most: a monitor subscriber costs work on every query, so fewer. */
const MAX_SUBSCRIBERS: Record<StreamName, number> = { events: 64, monitor: 8 };
/** Octets waiting to be sent to one subscriber (res.writableLength) beyond which it is dropped. */
export const MAX_BUFFERED = 256 * 1024;

interface Subscriber {
  stream: StreamName;
  /** Called once when the subscriber goes, for whatever reason. */
  gone: (() => void) | null;
}

export class EventHub {
  private readonly clients = new Map<http.ServerResponse, Subscriber>();
  /** Runs only while there are subscribers. */
  private heartbeat: NodeJS.Timeout | null = null;
  private nextId = 1;
  private log: Logger | null = null;
  /** Subscribers dropped for not reading, per stream (pvdns_events_subscribers_dropped_total, pvdns_monitor_subscribers_dropped_total). */
  readonly droppedBy: Record<StreamName, number> = { events: 0, monitor: 0 };

  /** register adds the drop counters to `registry`; drops are logged to `log`. */
  register(registry: Registry, log: Logger): void {
    this.log = log;
    new CollectedValue('pvdns_events_subscribers_dropped_total', 'GET /v1/events subscribers dropped because they did not read their events.', 'counter', () => [
      { labels: {}, value: this.droppedBy.events },
    ]).register(registry);
    new CollectedValue('pvdns_monitor_subscribers_dropped_total', 'GET /v1/monitor subscribers cut off because they did not read their records.', 'counter', () => [
      { labels: {}, value: this.droppedBy.monitor },
    ]).register(registry);
  }

  /** Subscribers of /v1/events dropped for not reading. */
  get dropped(): number {
    return this.droppedBy.events;
  }

  /**
   * subscribe turns a response into an event stream of `stream`; false when
   * that stream has too many subscribers already. `gone` is called once
   * when the subscriber leaves, is dropped or is closed.
   */
  subscribe(req: http.IncomingMessage, res: http.ServerResponse, initial: Array<[EventName, unknown]>, stream: StreamName = 'events', gone: (() => void) | null = null): boolean {
    if (this.count(stream) >= MAX_SUBSCRIBERS[stream]) return false;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write('retry: 2000\n\n');
    for (const [event, data] of initial) res.write(this.frame(event, data));
    this.clients.set(res, { stream, gone });
    if (this.heartbeat === null) {
      this.heartbeat = setInterval(() => {
        for (const c of [...this.clients.keys()]) this.send(c, ': keep-alive\n\n');
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
    for (const [res, sub] of [...this.clients]) if (sub.stream === 'events') this.send(res, text);
  }

  /**
   * send writes to one subscriber, dropping it when too much is waiting for
   * it already; false when it was dropped (or had gone).
   */
  send(res: http.ServerResponse, text: string): boolean {
    const sub = this.clients.get(res);
    if (sub === undefined) return false;
    res.write(text);
    if (res.writableLength <= MAX_BUFFERED) return true;
    this.cut(res);
    return false;
  }

  /** cut drops a subscriber that does not read what it is sent, and counts it. */
  cut(res: http.ServerResponse): void {
    const sub = this.clients.get(res);
    if (sub === undefined) return;
    this.droppedBy[sub.stream]++;
    this.log?.info({ client: res.socket?.remoteAddress, stream: sub.stream, buffered: res.writableLength }, `${sub.stream === 'events' ? 'event' : 'monitor'} subscriber dropped: it does not read its ${sub.stream === 'events' ? 'events' : 'records'}`);
    this.remove(res);
    // A reset: the kernel drops what is queued for it too, instead of trying to deliver it.
    res.socket?.resetAndDestroy();
    res.destroy();
  }

  /** closeWhere ends the streams of subscribers whose address `refused` says may no longer listen. */
  closeWhere(refused: (address: string) => boolean): void {
    for (const res of [...this.clients.keys()]) {
      if (!refused(res.socket?.remoteAddress ?? '')) continue;
      this.log?.info({ audit: true, client: res.socket?.remoteAddress ?? null }, 'event subscriber closed: the client is no longer allowed (http.allow)');
      this.remove(res);
      res.end();
    }
  }

  private remove(res: http.ServerResponse): void {
    const sub = this.clients.get(res);
    if (sub === undefined) return;
    this.clients.delete(res);
    if (this.clients.size === 0 && this.heartbeat !== null) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
    sub.gone?.();
  }

  /** frame is one event as the stream carries it, with the hub's next id. */
  frame(event: string, data: unknown): string {
    return `id: ${this.nextId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
  }

  /** Subscribers of /v1/events. */
  get subscribers(): number {
    return this.count('events');
  }

  /** count is the number of subscribers of one stream. */
  count(stream: StreamName): number {
    let n = 0;
    for (const sub of this.clients.values()) if (sub.stream === stream) n++;
    return n;
  }

  /** close ends every stream. */
  close(): void {
    for (const res of [...this.clients.keys()]) {
      this.remove(res);
      res.end();
    }
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }
}
