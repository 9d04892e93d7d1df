import type { VersionRecord } from '../engine/catalog/catalog.js';
import type { Partition } from '../engine/live/partition-table.js';

/**
 * The text of `<image>/versions.txt`: one line per version, invalid ones marked INVALID, each
 * with its kind (backup, or cow: writes through a mount or NBD on top of its base).
 */
export function versionsListing(versions: readonly VersionRecord[]): string {
  const lines = versions.map((v) =>
    [v.uid, new Date(v.createdAt).toISOString(), v.status === 'invalid' ? 'INVALID' : v.status, v.kind, String(v.size), v.tags.join(',') || '-', v.baseUid ?? '-'].join('\t'),
  );
  return `# uid\tdate\tstatus\tkind\tsize\ttags\tbase\n${lines.join('\n')}${lines.length ? '\n' : ''}`;
}

/** The extended attributes of a version file, or of one of its partition files. */
export function versionXattrs(v: VersionRecord, partition?: Partition): Record<string, string> {
  return {
    'user.backy2.uid': v.uid,
    'user.backy2.image': v.image,
    'user.backy2.status': v.status,
    'user.backy2.kind': v.kind,
    'user.backy2.date': new Date(v.createdAt).toISOString(),
    'user.backy2.tags': v.tags.join(','),
    'user.backy2.base': v.baseUid ?? '',
    'user.backy2.protected': v.protected ? 'yes' : 'no',
    ...(partition ? { 'user.backy2.partition': String(partition.number), 'user.backy2.offset': String(partition.offset) } : {}),
  };
}
