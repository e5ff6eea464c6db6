// The process metrics: prom-client's defaults, with the event loop's delay
// histogram running only between scrapes that saw queries (issue 19: an idle
// pvdns has no 100 Hz timer).

import { describe, expect, it } from 'vitest';
import { Registry } from '../../src/metrics/prom-client.js';
import { LoopDelay, registerProcessMetrics } from '../../src/metrics/process.js';

function sampleLines(text: string, name: string): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
}

describe('process metrics', () => {
  it('registers the default process series under prom-client\'s names', async () => {
    const registry = new Registry();
    const loop = registerProcessMetrics(registry, () => 0);
    try {
      const text = await registry.metrics();
      for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_version_info']) {
        expect(sampleLines(text, name), name).toHaveLength(1);
      }
      expect(text).toMatch(/^# TYPE nodejs_gc_duration_seconds histogram$/m);
    } finally {
      loop.stop();
    }
  });

  it('runs the delay histogram only while scrapes see queries answered', async () => {
    let answered = 0;
    const registry = new Registry();
    const loop = registerProcessMetrics(registry, () => answered);
    try {
      // Idle from the start: no timer, and no summary series.
      let text = await registry.metrics();
      expect(loop.running).toBe(false);
      expect(sampleLines(text, 'nodejs_eventloop_lag_p99_seconds')).toEqual([]);
      // Queries answered: the next scrape starts it, the one after reports what it saw.
      answered += 5;
      await registry.metrics();
      expect(loop.running).toBe(true);
      await new Promise((r) => setTimeout(r, 60));
      answered += 1;
      text = await registry.metrics();
      expect(loop.running).toBe(true);
      const [p99] = sampleLines(text, 'nodejs_eventloop_lag_p99_seconds');
      expect(Number(p99!.split(' ')[1])).toBeGreaterThan(0);
      // A scrape that finds nothing answered since the one before stops it.
      await new Promise((r) => setTimeout(r, 30));
      text = await registry.metrics();
      expect(loop.running).toBe(false);
      expect(sampleLines(text, 'nodejs_eventloop_lag_p99_seconds')).toHaveLength(1);
      text = await registry.metrics();
      expect(sampleLines(text, 'nodejs_eventloop_lag_p99_seconds')).toEqual([]);
    } finally {
      loop.stop();
    }
  });

  it('stops the histogram by itself when no scrape follows (a one-off curl leaves no timer)', async () => {
    let answered = 0;
    const loop = new LoopDelay(() => answered, 80);
    try {
      answered += 3;
      loop.scrape();
      expect(loop.running).toBe(true);
      // A scrape within the time keeps it (queries still answered)...
      await new Promise((r) => setTimeout(r, 50));
      answered += 1;
      loop.scrape();
      await new Promise((r) => setTimeout(r, 50));
      expect(loop.running).toBe(true);
      // ...none for longer stops it.
      await new Promise((r) => setTimeout(r, 60));
      expect(loop.running).toBe(false);
    } finally {
      loop.stop();
    }
  });
});
