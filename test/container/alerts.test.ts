// The alert rules proven with Debian's Prometheus (package prometheus, which
// brings promtool; .ci/run installs it): docker/alerts.yml passes
// `promtool check rules`; docker/alerts.test.yml's unit tests pass
// `promtool test rules` and give every alert a series that fires it and one
// that does not; and a real Prometheus, configured as docker/prometheus.yml's
// pvdns job with its target rewritten to loopback, scrapes a live pvdns
// (dist/cli.js serve), which loses its only DNS server and then goes away
// itself: Prometheus's own API shows PvdnsUpstreamDown, then PvdnsDown, go
// pending and then firing. The same Prometheus runs every query of the
// Grafana dashboard, its variables replaced as Grafana replaces them.
//
// The live Prometheus scrapes and evaluates every second, and loads a copy of
// alerts.yml whose `for:` durations (1–5 minutes) are cut to FOR_IN_TEST: the
// expressions, labels and annotations are the file's own; what `for:` does
// over minutes is promtool's part above. Everything listens on 127.0.43.x.

import { readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify } from 'yaml';
import { ask } from '../helpers/client.js';
import { a, answer, FakeUpstream } from '../helpers/fake-upstream.js';
import { Daemon, freePort, run, startPvdnsCli, type PvdnsCli } from '../interop/servers.js';

const DOCKER = join(import.meta.dirname, '..', '..', 'docker');
const PVDNS_HOST = '127.0.43.1';
const UPSTREAM_HOST = '127.0.43.2';
const PROMETHEUS_HOST = '127.0.43.3';
/** The `for:` of every rule in the live Prometheus's copy: a few evaluations of pending. */
const FOR_IN_TEST = '3s';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** debianProgram finds prometheus or promtool, or fails with the one line that says how to get them. */
function debianProgram(name: 'prometheus' | 'promtool'): string {
  for (const dir of [...(process.env.PATH ?? '').split(delimiter), '/usr/bin']) {
    if (!dir) continue;
    try {
      if (statSync(join(dir, name)).isFile()) return join(dir, name);
    } catch {
      // not in this dir
    }
  }
  throw new Error(`${name} not found: these tests need Debian's prometheus package (apt-get install --no-install-recommends prometheus; .ci/run installs it)`);
}

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Rules {
  groups: Array<{ name: string; rules: Rule[] }>;
}
interface UnitTests {
  rule_files: string[];
  tests: Array<{ alert_rule_test?: Array<{ alertname: string; exp_alerts?: unknown[] }> }>;
}

const rulesText = readFileSync(join(DOCKER, 'alerts.yml'), 'utf8');
const rules = parseYaml(rulesText) as Rules;
const alertNames = rules.groups.flatMap((g) => g.rules.map((r) => r.alert));

describe('docker/alerts.yml with promtool', () => {
  it('passes promtool check rules', async () => {
    const r = await run(debianProgram('promtool'), ['check', 'rules', join(DOCKER, 'alerts.yml')]);
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(`SUCCESS: ${alertNames.length} rules found`);
  });

  it('has unit tests in docker/alerts.test.yml that fire every alert and leave it quiet, and pass promtool test rules', async () => {
    const unit = parseYaml(readFileSync(join(DOCKER, 'alerts.test.yml'), 'utf8')) as UnitTests;
    expect(unit.rule_files).toEqual(['alerts.yml']);
    const cases = unit.tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const name of alertNames) {
      const mine = cases.filter((c) => c.alertname === name);
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${name}: no case where it fires`).toBe(true);
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${name}: no case where it does not fire`).toBe(true);
    }
    expect(cases.map((c) => c.alertname).filter((n) => !alertNames.includes(n)), 'unit tests of alerts alerts.yml does not have').toEqual([]);
    const r = await run(debianProgram('promtool'), ['test', 'rules', join(DOCKER, 'alerts.test.yml')], 60_000);
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('SUCCESS');
  });
});

interface ActiveAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
  activeAt: string;
}

describe('a real Prometheus with docker/prometheus.yml\'s job, scraping a live pvdns', () => {
  const upstream = new FakeUpstream((q) => answer(q, [a(q, '192.0.2.43')]));
  let pvdns: PvdnsCli | null = null;
  let prometheus: Daemon | null = null;
  let api = '';
  let server = '';
  /** pvdns's HTTP address, the scrape target. */
  let target = '';

  /** alerts is Prometheus's GET /api/v1/alerts: the alerts pending or firing now. */
  async function alerts(): Promise<ActiveAlert[]> {
    const body = (await (await fetch(`${api}/api/v1/alerts`)).json()) as { status: string; data: { alerts: ActiveAlert[] } };
    expect(body.status).toBe('success');
    return body.data.alerts;
  }

  /** query runs an instant PromQL query through Prometheus's API and returns its samples' values. */
  async function query(expr: string): Promise<Array<{ metric: Record<string, string>; value: number }>> {
    const body = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as {
      data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
    };
    return body.data.result.map((s) => ({ metric: s.metric, value: Number(s.value[1]) }));
  }

  /**
   * watch polls the alerts until `alertname` (and labels) fires, and returns
   * every state it was seen in, in order, and the firing alert.
   */
  async function watch(alertname: string, labels: Record<string, string>, timeoutMs: number): Promise<{ states: string[]; firing: ActiveAlert }> {
    const states: string[] = [];
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const hit = (await alerts()).find((al) => al.labels.alertname === alertname && Object.entries(labels).every(([k, v]) => al.labels[k] === v));
      if (hit && states.at(-1) !== hit.state) states.push(hit.state);
      if (hit?.state === 'firing') return { states, firing: hit };
      await sleep(200);
    }
    throw new Error(`${alertname} did not fire within ${timeoutMs / 1000} s (states seen: ${states.join(', ') || 'none'})${prometheus?.logTails() ?? ''}`);
  }

  beforeAll(async () => {
    const prometheusBin = debianProgram('prometheus');
    await upstream.start(UPSTREAM_HOST);
    server = `${upstream.host}:${upstream.port}`;
    pvdns = await startPvdnsCli(`
listen: ["${PVDNS_HOST}:0"]
http: { listen: "${PVDNS_HOST}:0", token: "prom-test-token-0123456789abcdef" }
log: { level: info }
pvdSources: { host: false }    # no PvD from /etc/resolv.conf
captive: { probeIntervalS: 0 }
upstream: { timeoutMs: 400, attempts: 2 }
pvds:
  - identifier: lab
    dnsServers: ["${server}"]
    default: true
    dns64: "off"
`);
    target = new URL(pvdns.http!).host;

    // docker/prometheus.yml, its one job's target rewritten to this pvdns, every second.
    const config = parseYaml(readFileSync(join(DOCKER, 'prometheus.yml'), 'utf8')) as {
      global: Record<string, string>;
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; metrics_path: string; static_configs: Array<{ targets: string[] }> }>;
    };
    expect(config.scrape_configs.map((j) => j.job_name)).toEqual(['pvdns']);
    expect(config.scrape_configs[0]!.static_configs).toEqual([{ targets: ['pvdns:8053'] }]);
    config.scrape_configs[0]!.static_configs = [{ targets: [target] }];
    config.global = { ...config.global, scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' };
    prometheus = new Daemon(`prometheus-${process.pid}`);
    const testRules: Rules = { groups: rules.groups.map((g) => ({ ...g, rules: g.rules.map((r) => (r.for ? { ...r, for: FOR_IN_TEST } : r)) })) };
    config.rule_files = [prometheus.file('alerts.yml', stringify(testRules))];
    const configFile = prometheus.file('prometheus.yml', stringify(config));

    const port = await freePort(PROMETHEUS_HOST);
    api = `http://${PROMETHEUS_HOST}:${port}`;
    prometheus.start(prometheusBin, [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(prometheus.dir, 'data')}`,
      `--web.listen-address=${PROMETHEUS_HOST}:${port}`,
    ]);
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (prometheus.exit) throw prometheus.fail('exited during start-up');
      if (Date.now() > deadline) throw prometheus.fail('not ready within 15 s');
      const ready = await fetch(`${api}/-/ready`).then((r) => r.ok, () => false);
      if (ready) break;
      await sleep(100);
    }
    // A query answered, and scraped with the server up.
    const ok = await ask({ host: pvdns.host, port: pvdns.port }, 'www.example.com', 'A');
    expect(ok.packet.header.rcode).toBe(0);
    let up: Array<{ metric: Record<string, string>; value: number }> = [];
    while (up.length === 0 && Date.now() < deadline + 10_000) {
      up = await query(`pvdns_upstream_up{job="pvdns", server="${server}"}`);
      if (up.length === 0) await sleep(200);
    }
    expect(up.map((s) => [s.metric.pvd, s.value]), `Prometheus never scraped pvdns_upstream_up${prometheus.logTails()}`).toEqual([['lab', 1]]);
  }, 60_000);

  afterAll(async () => {
    await prometheus?.stop();
    await pvdns?.stop();
    await upstream.stop();
  });

  it('runs every query of the Grafana dashboard, its instance variable listing this pvdns', async () => {
    const dash = JSON.parse(readFileSync(join(DOCKER, 'grafana', 'dashboards', 'pvdns.json'), 'utf8')) as {
      panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
      templating: { list: Array<{ name: string; query: string }> };
    };
    // label_values(pvdns_pvds, instance), as Grafana asks Prometheus for it.
    const variable = /^label_values\((\w+), (\w+)\)$/.exec(dash.templating.list.find((v) => v.name === 'instance')!.query)!;
    const values = (await (await fetch(`${api}/api/v1/label/${variable[2]}/values?match[]=${variable[1]}`)).json()) as { data: string[] };
    expect(values.data).toEqual([target]);
    for (const p of dash.panels) {
      for (const t of p.targets) {
        // What Grafana sends: its variables replaced (a regex of the chosen instance, a rate window of 4 scrapes).
        const expr = t.expr.replaceAll('$instance', target.replaceAll('.', '\\\\.')).replaceAll('$__rate_interval', '4s');
        const r = (await (await fetch(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)).json()) as { status: string; error?: string };
        expect(r, `${p.title}: ${expr}`).toMatchObject({ status: 'success' });
      }
    }
    expect((await query(`pvdns_pvds{instance=~"${target.replaceAll('.', '\\\\.')}"}`)).map((s) => s.value)).toEqual([1]);
  });

  it('sees the upstream server go down (PvdnsUpstreamDown) and then pvdns go away (PvdnsDown): pending, then firing', async () => {
    const started = Date.now();
    // Healthy: scraped with the server up (beforeAll), and a few evaluations with no alert.
    await sleep(2500);
    expect((await alerts()).map((al) => al.labels.alertname)).toEqual([]);

    // The only server stops: the next queries meet a closed port, and pvdns counts it down.
    await upstream.stop();
    for (let i = 0; i < 3; i++) await ask({ host: pvdns!.host, port: pvdns!.port }, `gone${i}.example.com`, 'A', { timeoutMs: 2000 }).catch(() => undefined);
    const down = await watch('PvdnsUpstreamDown', { job: 'pvdns', pvd: 'lab', server }, 15_000);
    expect(down.states).toEqual(['pending', 'firing']);
    expect(down.firing.labels.severity).toBe('warning');
    expect(down.firing.annotations.summary).toBe(`DNS server ${server} of PvD lab is down`);
    // The only server down is also "no usable server".
    expect((await alerts()).map((al) => al.labels.alertname)).toContain('PvdnsNoUsableServer');

    // pvdns stops: its scrapes fail and `up` says so.
    await pvdns!.stop();
    const gone = await watch('PvdnsDown', { job: 'pvdns', instance: target }, 15_000);
    expect(gone.states).toEqual(['pending', 'firing']);
    expect(gone.firing.labels.severity).toBe('critical');
    expect(Date.now() - started).toBeLessThan(60_000);
  }, 60_000);
});
