import type { VersionRecord } from '../engine/catalog/catalog.js';

/** The text of `<image>/versions.txt`: one line per version, invalid ones marked INVALID. */
export function versionsListing(versions: readonly VersionRecord[]): string {
  const lines = versions.map((v) =>
    [v.uid, new Date(v.createdAt).toISOString(), v.status === 'invalid' ? 'INVALID' : v.status, String(v.size), v.tags.join(',') || '-', v.baseUid ?? '-'].join('\t'),
  );
  return `# uid\tdate\tstatus\tsize\ttags\tbase\n${lines.join('\n')}${lines.length ? '\n' : ''}`;
}
