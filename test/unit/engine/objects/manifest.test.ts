import { describe, expect, it } from 'vitest';
import { checkManifest, manifestOf, sameManifest, versionOfManifest } from '../../../../src/engine/objects/manifest.js';

const record = {
  uid: 'v1kx3f9qm7wz',
  image: 'vm1',
  createdAt: 1_700_000_000_000,
  size: 100,
  blockSize: 65536,
  protected: false,
  tags: ['b_daily'],
  snapshot: null,
  snapshotId: null,
  baseUid: null,
  source: '/dev/x',
  stats: null,
  kind: 'backup' as const,
};
const segments = [Buffer.alloc(32, 1)];

describe('manifest expiresAt', () => {
  it('manifestOf() records the expiry date and checkManifest() accepts it', () => {
    const m = manifestOf({ ...record, expiresAt: 1_800_000_000_000 }, segments);
    expect(m.expiresAt).toBe(1_800_000_000_000);
    expect(versionOfManifest(checkManifest(JSON.parse(JSON.stringify(m)), record.uid), 'valid').expiresAt).toBe(1_800_000_000_000);
    expect(manifestOf(record, segments).expiresAt).toBeNull();
  });

  it('an older manifest without the field reads as no expiry and equals one with null', () => {
    const { expiresAt: _, ...older } = manifestOf(record, segments);
    expect(versionOfManifest(checkManifest(older, record.uid), 'valid').expiresAt).toBeNull();
    expect(sameManifest(older, manifestOf(record, segments))).toBe(true);
    expect(sameManifest(older, manifestOf({ ...record, expiresAt: 5 }, segments))).toBe(false);
  });

  it.each([-1, 1.5, '2025-01-01', true])('checkManifest() refuses expiresAt %j', (value) => {
    const m = { ...manifestOf(record, segments), expiresAt: value };
    expect(() => checkManifest(m, record.uid)).toThrow(/bad "expiresAt"/);
  });
});
