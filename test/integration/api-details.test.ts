// Details of the API a client relies on: the headers its statuses call
// for, HEAD, server state across updates, IPv4-mapped AAAA text, and the
// loop check for PvDs from the API and from files.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ask, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const TOKEN = 'details-token-0123456789';

describe('API details', () => {
  const up = new FakeUpstream((q) =>
    q.questions[0]!.type === Packet.TYPE.AAAA
      ? answer(q, [{ name: q.questions[0]!.name, type: Packet.TYPE.AAAA, class: 1, ttl: 60, address: '::ffff:c000:201' } as ReturnType<typeof a>])
      : answer(q, [a(q, '192.0.2.80')]),
  );
  const dir = mkdtempSync(join(tmpdir(), 'pvdns-details-'));
  let pvdns: Running;
  const put = (id: string, body: unknown): Promise<Response> =>
    fetch(`${pvdns.http}/v1/pvds/${id}`, { method: 'PUT', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });

  beforeAll(async () => {
    await up.start('127.0.0.110');
    pvdns = await startPvdns({
      http: { listen: '127.0.0.1:0', token: TOKEN },
      pvdSources: { host: false, directory: dir },
      pvds: [{ identifier: 'wifi', dnsServers: [up.address] }],
    });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('sends Allow with 405 and WWW-Authenticate with 401 (RFC 9110 §15.5.6, §15.5.2)', async () => {
    const r405 = await fetch(`${pvdns.http}/v1/pvds`, { method: 'POST' });
    expect(r405.status).toBe(405);
    expect(r405.headers.get('allow')).toBe('GET, HEAD');
    const r401 = await fetch(`${pvdns.http}/v1/cache/flush`, { method: 'POST' });
    expect(r401.status).toBe(401);
    expect(r401.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('answers HEAD like GET, without a body', async () => {
    const r = await fetch(`${pvdns.http}/v1/pvds/wifi`, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/json/);
    expect(await r.text()).toBe('');
  });

  it('keeps a server\'s state when an update leaves the servers alone', async () => {
    expect((await put('lab', { dnsServers: [up.address], dnsZones: ['lab.example'], noInternet: true })).status).toBe(201);
    await ask(pvdns.dns, 'x.lab.example', 'A');
    const before = (await (await fetch(`${pvdns.http}/v1/pvds/lab`)).json()) as { servers: Array<{ state: string; since: string }> };
    expect(before.servers[0]?.state).toBe('operational');
    expect((await put('lab', { dnsServers: [up.address], dnsZones: ['lab.example'], noInternet: true, priority: 5 })).status).toBe(200);
    const after = (await (await fetch(`${pvdns.http}/v1/pvds/lab`)).json()) as { priority: number; servers: Array<{ state: string; since: string }> };
    expect(after.priority).toBe(5);
    expect(after.servers[0]).toMatchObject({ state: 'operational', since: before.servers[0]!.since });
  });

  it('writes an IPv4-mapped AAAA with its IPv4 part dotted (RFC 5952 §5)', async () => {
    const r = (await (await fetch(`${pvdns.http}/v1/resolve?name=mapped.example&type=AAAA`)).json()) as { answers: Array<{ data: string }> };
    expect(r.answers.map((x) => x.data)).toEqual(['::ffff:192.0.2.1']);
  });

  it('refuses a PvD whose server is pvdns itself, from the API and from a file', async () => {
    const self = `${pvdns.dns.host}:${pvdns.dns.port}`;
    const r = await put('loop', { dnsServers: ['192.0.2.9', self] });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { error: string }).error).toBe(`dnsServers[1]: ${self} is pvdns's own listener: queries would loop`);
    writeFileSync(join(dir, 'loop.json'), JSON.stringify({ identifier: 'fileloop', dnsServers: [self] }));
    writeFileSync(join(dir, 'marker.json'), JSON.stringify({ identifier: 'marker', dnsServers: ['192.0.2.10'], noInternet: true }));
    const deadline = Date.now() + 3000;
    while (Date.now() < deadline && (await fetch(`${pvdns.http}/v1/pvds/marker`)).status !== 200) await new Promise((res) => setTimeout(res, 50));
    expect((await fetch(`${pvdns.http}/v1/pvds/marker`)).status).toBe(200);
    expect((await fetch(`${pvdns.http}/v1/pvds/fileloop`)).status).toBe(404);
  });
});
