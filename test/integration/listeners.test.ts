// The UDP implementation in use, and listening on IPv6 as well as IPv4.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { udpBackend } from '../../src/native/udp.js';
import { ask, Packet } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { startPvdns, type Running } from '../helpers/pvdns.js';

const ADDON = join(import.meta.dirname, '../../build/Release/pvdns_udp.node');

describe('UDP backend', () => {
  it('uses the batched addon when it was built, node:dgram when asked to or without it', () => {
    const wanted = process.env.PVDNS_UDP_BACKEND === 'dgram' || !existsSync(ADDON) ? 'dgram' : 'native';
    expect(udpBackend).toBe(wanted);
  });
});

describe('an IPv6 listener', () => {
  const up = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.66')]));
  let pvdns: Running;

  beforeAll(async () => {
    await up.start('127.0.0.45');
    pvdns = await startPvdns({ access: { allow: ['::1/128'] }, pvds: [{ identifier: 'wifi', dnsServers: [up.address] }] }, { host: '::1' });
  });
  afterAll(async () => {
    await pvdns.stop();
    await up.stop();
  });

  it('answers over UDP and TCP on [::1], from cache and from upstream', async () => {
    expect(pvdns.dns.host).toBe('::1');
    for (const tcp of [false, true]) {
      const local = await ask(pvdns.dns, 'localhost', 'AAAA', { tcp });
      expect(local.packet.answers[0]?.address).toBe('::1');
      const fwd = await ask(pvdns.dns, 'v6.example', 'A', { tcp });
      expect(fwd.packet.answers[0]?.address).toBe('192.0.2.66');
      expect(fwd.packet.header.rcode).toBe(Packet.RCODE.NOERROR);
    }
    expect(up.names()).toEqual(['v6.example']); // the second ask was a cache hit
  });
});
