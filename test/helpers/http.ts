// HTTP helpers for tests of the control API: JSON calls with global fetch,
// the /v1 calls by name, polling, a reader of the Server-Sent Events stream
// (GET /v1/events), and a metric read from /metrics.

import { expect } from 'vitest';
import type { PvdView } from '../../src/pvd/view.js';
import type { TranslateResult } from '../../src/resolve/translate.js';
import { TEST_TOKEN } from './pvdns.js';


export interface Reply<T = unknown> {
  status: number;
  headers: Headers;
  body: T;
}

/** call makes one HTTP request and reads a JSON body (text when it is not JSON). */
export async function call<T = unknown>(base: string, method: string, path: string, opts: { body?: unknown; raw?: string; token?: string; auth?: string } = {}): Promise<Reply<T>> {
  const headers: Record<string, string> = {};
  let body: string | undefined;
  if (opts.raw !== undefined) body = opts.raw;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`;
  if (opts.auth !== undefined) headers.authorization = opts.auth;
  const res = await fetch(`${base}${path}`, { method, headers, body });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) parsed = JSON.parse(text);
  return { status: res.status, headers: res.headers, body: parsed as T };
}

export const put = (base: string, id: string, body: unknown, token: string | undefined = TEST_TOKEN): Promise<Reply<{ result?: string; pvd?: PvdView; error?: string }>> =>
  call(base, 'PUT', `/v1/pvds/${id}`, { body, token });
export const del = (base: string, id: string, token: string | undefined = TEST_TOKEN): Promise<Reply<{ withdrawn?: string; error?: string }>> =>
  call(base, 'DELETE', `/v1/pvds/${id}`, { token });
export const getPvd = (base: string, id: string): Promise<Reply<PvdView & { error?: string }>> => call(base, 'GET', `/v1/pvds/${id}`);
export const listPvds = async (base: string): Promise<PvdView[]> => {
  const r = await call<{ pvds: PvdView[] }>(base, 'GET', '/v1/pvds');
  expect(r.status).toBe(200);
  return r.body.pvds;
};
export const resolve = (base: string, query: string): Promise<Reply<TranslateResult & { error?: string }>> => call(base, 'GET', `/v1/resolve?${query}`);
export const flush = (base: string, query = '', token: string | undefined = TEST_TOKEN): Promise<Reply<{ flushed?: number; pvd?: string | null; error?: string }>> =>
  call(base, 'POST', `/v1/cache/flush${query}`, { token });

/** eventually polls `check` until it returns true, failing after `timeoutMs` (a generous bound) with `context()` (logs, say). */
export async function eventually(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 5000, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${context() ? `\n${context()}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** One Server-Sent Event as a client sees it. */
export interface SseEvent {
  event: string;
  data: unknown;
  id: string | null;
}

/**
 * EventStream reads GET /v1/events with fetch and a small parser of the
 * text/event-stream format: `event:`, `data:` and `id:` fields, events
 * separated by a blank line, comment lines (":") and blocks without data
 * ignored.
 */
export class EventStream {
  private buf = '';
  private readonly queue: SseEvent[] = [];
  private waiter: (() => void) | null = null;
  private ended = false;

  private constructor(
    readonly response: Response,
    private readonly ctl: AbortController,
  ) {}

  /** open reads GET `path` (default /v1/events; /v1/monitor is read the same way). */
  static async open(base: string, headers: Record<string, string> = {}, path = '/v1/events'): Promise<EventStream> {
    const ctl = new AbortController();
    const res = await fetch(`${base}${path}`, { headers, signal: ctl.signal });
    const s = new EventStream(res, ctl);
    // A refusal's body is JSON, left for the caller to read.
    if (res.status === 200) void s.pump();
    else s.ended = true;
    return s;
  }

  private async pump(): Promise<void> {
    const reader = this.response.body!.getReader();
    const dec = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        this.buf += dec.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
        let end: number;
        while ((end = this.buf.indexOf('\n\n')) >= 0) {
          const block = this.buf.slice(0, end);
          this.buf = this.buf.slice(end + 2);
          this.parse(block);
        }
      }
    } catch {
      // aborted by close()
    } finally {
      this.ended = true;
      this.waiter?.();
    }
  }

  private parse(block: string): void {
    let event = 'message';
    let id: string | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (data.length === 0) return;
    this.queue.push({ event, id, data: JSON.parse(data.join('\n')) });
    this.waiter?.();
  }

  /** next returns the next event, failing when none comes within `timeoutMs`. */
  async next(timeoutMs = 5000): Promise<SseEvent> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.ended) throw new Error('event stream ended');
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('no event within the time allowed');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = null;
    }
    return this.queue.shift()!;
  }

  /** pending is the number of events received and not read yet. */
  get pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.ctl.abort();
  }
}

/** metricSum scrapes `base`/metrics and sums every sample of one metric, whatever its labels; NaN when it has none. */
export async function metricSum(base: string, name: string): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  let sum = NaN;
  for (const line of text.split('\n')) {
    if (line.startsWith(name) && (line[name.length] === ' ' || line[name.length] === '{')) sum = (Number.isNaN(sum) ? 0 : sum) + Number(line.split(' ').pop());
  }
  return sum;
}
