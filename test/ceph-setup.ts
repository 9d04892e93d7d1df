/**
 * Global setup of the integration tests: a one-node Ceph (mon, osd, radosgw) on 127.0.0.1 from
 * scripts/ceph-dev, on ports of its own, shared by the test files and stopped at the end.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const dir = `/tmp/backy2-ceph-test-${process.pid}`;
const script = path.resolve(import.meta.dirname, '../scripts/ceph-dev');
const env = { ...process.env, CEPH_DIR: dir, WITH_MGR: '0', MON_V2_PORT: '13300', MON_V1_PORT: '16789', RGW_PORT: '17480', MEMSTORE_BYTES: String(4 * 1024 ** 3) };

declare module 'vitest' {
  export interface ProvidedContext {
    ceph: { conf: string; s3Endpoint: string; accessKeyId: string; secretAccessKey: string };
  }
}

export default function setup(project: TestProject): () => void {
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
