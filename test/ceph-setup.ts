/**
 * Global setup of the integration tests: a one-node Ceph (mon, osd, radosgw) on 127.0.0.1 from
 * scripts/ceph-dev, on ports of its own, shared by the test files and stopped at the end.
 */
import { execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const dir = `/tmp/backy2-ceph-test-${process.pid}`;
const script = path.resolve(import.meta.dirname, '../scripts/ceph-dev');

/** Three free TCP ports on 127.0.0.1 (two test runs on one machine must not share a cluster). */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, () => new Promise<Server>((resolve) => {
      const server = createServer();
      server.listen(0, '127.0.0.1', () => resolve(server));
    })),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

declare module 'vitest' {
  export interface ProvidedContext {
    ceph: { conf: string; s3Endpoint: string; accessKeyId: string; secretAccessKey: string };
  }
}

export default async function setup(project: TestProject): Promise<() => void> {
  const [v2, v1, rgw] = await freePorts(3);
  const env = { ...process.env, CEPH_DIR: dir, WITH_MGR: '0', MON_V2_PORT: String(v2), MON_V1_PORT: String(v1), RGW_PORT: String(rgw), MEMSTORE_BYTES: String(4 * 1024 ** 3) };
  const out = execFileSync(script, ['up'], { env, encoding: 'utf8' });
  const value = (name: string) => {
    const m = new RegExp(`export ${name}=(\\S+)`).exec(out);
    if (!m?.[1]) throw new Error(`ceph-dev did not print ${name}:\n${out}`);
    return m[1];
  };
  project.provide('ceph', {
    conf: value('CEPH_CONF'),
    s3Endpoint: value('BACKY2_S3_ENDPOINT'),
    accessKeyId: value('AWS_ACCESS_KEY_ID'),
    secretAccessKey: value('AWS_SECRET_ACCESS_KEY'),
  });
  return () => {
    execFileSync(script, ['down'], { env: { ...env, GRACE: '0' } });
  };
}
