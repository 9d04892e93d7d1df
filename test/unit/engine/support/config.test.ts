import { writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../../../src/engine/support/config.js';
import { makeTempDir } from '../../../helpers/temp.js';

function configFile(text: string): string {
  const file = path.join(makeTempDir(), 'backy2.yaml');
  writeFileSync(file, text);
  return file;
}

describe('loadConfig()', () => {
  it('defaults to ~/.local/share/backy2 with 4 MiB blocks', async () => {
    const config = await loadConfig({ env: {}, configFile: configFile('{}') });
    expect(config.store.path).toBe(path.join(homedir(), '.local/share/backy2'));
    expect(config.store.catalogPath).toBe(path.join(homedir(), '.local/share/backy2/catalog.sqlite'));
    expect(config.blockSize).toBe(4 * 1024 * 1024);
    expect(config.minRemoveAgeMs).toBe(6 * 86_400_000);
  });

  it('prefers --store over BACKY2_STORE over the config file', async () => {
    const file = configFile('store: /srv/from-config\n');
    expect((await loadConfig({ env: {}, configFile: file })).store.path).toBe('/srv/from-config');
    expect((await loadConfig({ env: { BACKY2_STORE: '/srv/env' }, configFile: file })).store.path).toBe('/srv/env');
    expect((await loadConfig({ env: { BACKY2_STORE: '/srv/env' }, configFile: file, storePath: '/srv/flag' })).store.path).toBe('/srv/flag');
  });

  it('reads BACKY2_CONFIG and every documented key', async () => {
    const file = configFile(`
store: /srv/b
catalog: { path: /var/lib/b/cat.sqlite }
blockStore: { type: file, path: /mnt/blocks }
backup: { blockSize: 1MiB, readers: 2, writers: 3, hashWorkers: 1, hintSample: 5 }
retention: { minAge: 12h }
`);
    const config = await loadConfig({ env: { BACKY2_CONFIG: file } });
    expect(config).toMatchObject({
      file,
      blockSize: 1024 * 1024,
      readers: 2,
      writers: 3,
      hashWorkers: 1,
      hintSample: 5,
      minRemoveAgeMs: 12 * 3_600_000,
      store: { path: '/srv/b', catalogPath: '/var/lib/b/cat.sqlite', blockStore: { type: 'file', path: '/mnt/blocks' } },
    });
  });

  it('reads retention policies, schedules and the metrics file', async () => {
    const file = configFile(`
retention:
  policies:
    - images: vm-*
      keepDaily: 7
      keepWeekly: 4
      keepMonthly: unlimited
      keepWithin: 1y6mo
      keepTags: [keep, "release,final"]
    - images: [db1, "db[2-9]"]
      keepLast: 3
schedules:
  - images: vm-*
    interval: 1d
    sla: 36h
    source: "rbd:rbd/{image}@nightly"
  - images: db1
    interval: 6h
    tolerance: 30m
metrics:
  file: /var/lib/prometheus/node-exporter/backy2.prom
`);
    const config = await loadConfig({ env: {}, configFile: file });
    expect(config.retentionPolicies).toEqual([
      {
        images: ['vm-*'],
        rules: { keepDaily: 7, keepWeekly: 4, keepMonthly: Infinity, keepWithin: { years: 1, months: 6, days: 0, hours: 0 }, keepTags: [['keep'], ['release', 'final']] },
      },
      { images: ['db1', 'db[2-9]'], rules: { keepLast: 3 } },
    ]);
    expect(config.schedules).toEqual([
      { images: ['vm-*'], intervalMs: 86_400_000, toleranceMs: 8_640_000, slaMs: 36 * 3_600_000, source: 'rbd:rbd/{image}@nightly' },
      { images: ['db1'], intervalMs: 6 * 3_600_000, toleranceMs: 30 * 60_000, slaMs: undefined, source: undefined },
    ]);
    expect(config.metricsFile).toBe('/var/lib/prometheus/node-exporter/backy2.prom');
    const empty = await loadConfig({ env: {}, configFile: configFile('{}') });
    expect(empty).toMatchObject({ retentionPolicies: [], schedules: [], metricsFile: undefined });
  });

  it.each([
    ['an unknown key', 'stroe: /x\n', 'unknown key "stroe"'],
    ['a policy that keeps nothing', 'retention: { policies: [{ images: "*" }] }\n', '"retention.policies.0": keeps nothing'],
    ['a policy with a bad count', 'retention: { policies: [{ images: "*", keepDaily: -1 }] }\n', '"retention.policies.0.keepDaily"'],
    ['a policy with an unknown rule', 'retention: { policies: [{ images: "*", keepDayly: 1 }] }\n', 'unknown key "retention.policies.0.keepDayly"'],
    ['minutes in keepWithin', 'retention: { policies: [{ images: "*", keepWithin: 30m }] }\n', 'months are mo'],
    ['a bad tag in keepTags', 'retention: { policies: [{ images: "*", keepTags: ["a b"] }] }\n', '"retention.policies.0.keepTags"'],
    ['a schedule without interval', 'schedules: [{ images: "*" }]\n', '"schedules.0.interval"'],
    ['an SLA shorter than the interval', 'schedules: [{ images: "*", interval: 1d, sla: 12h }]\n', '"schedules.0.sla": sla must be at least interval'],
    ['a tolerance as long as the interval', 'schedules: [{ images: "*", interval: 1h, tolerance: 1h }]\n', '"schedules.0.tolerance"'],
    ['an unknown metrics key', 'metrics: { path: /x }\n', 'unknown key "metrics.path"'],
    ['an unknown nested key', 'backup: { blocksize: 4M }\n', 'unknown key "backup.blocksize"'],
    ['a block size that is no power of two', 'backup: { blockSize: 3MiB }\n', '"backup.blockSize"'],
    ['a block size that is not a size', 'backup: { blockSize: big }\n', '"backup.blockSize"'],
    ['a bad duration', 'retention: { minAge: soon }\n', '"retention.minAge"'],
    ['a wrong type', 'backup: { readers: many }\n', '"backup.readers"'],
    ['an unknown block store type', 'blockStore: { type: tape, path: /x }\n', '"blockStore.type"'],
    ['invalid YAML', 'store: [unclosed\n', 'not valid YAML'],
  ])('rejects %s, naming it', async (_name, text, fragment) => {
    const file = configFile(text);
    await expect(loadConfig({ env: {}, configFile: file })).rejects.toThrow(
      expect.objectContaining({ code: 'E_USAGE', message: expect.stringContaining(fragment) }),
    );
  });

  it('rejects a missing config file', async () => {
    await expect(loadConfig({ env: {}, configFile: '/nonexistent/backy2.yaml' })).rejects.toThrow(
      expect.objectContaining({ code: 'E_USAGE', message: expect.stringContaining('no such file') }),
    );
  });
});
