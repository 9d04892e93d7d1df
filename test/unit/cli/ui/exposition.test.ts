import { describe, expect, it } from 'vitest';
import { renderExposition } from '../../../../src/cli/ui/exposition.js';
import { SAMPLE_LINE } from '../../../helpers/exposition.js';

describe('renderExposition()', () => {
  it('writes HELP, TYPE and samples with escaped labels and Go-style special values', () => {
    const text = renderExposition([
      { name: 'backy2_versions', help: 'Versions by status.', type: 'gauge', samples: [{ labels: { image: 'vm1', status: 'valid' }, value: 3 }] },
      { name: 'backy2_x', help: 'Back\\slash and\nnewline.', type: 'counter', samples: [{ labels: { image: 'a"b\\c\nd' }, value: Infinity }, { labels: {}, value: 0.25 }] },
      { name: 'backy2_empty', help: 'No samples.', type: 'gauge', samples: [] },
    ]);
    expect(text).toBe(
      [
        '# HELP backy2_versions Versions by status.',
        '# TYPE backy2_versions gauge',
        'backy2_versions{image="vm1",status="valid"} 3',
        '# HELP backy2_x Back\\\\slash and\\nnewline.',
        '# TYPE backy2_x counter',
        'backy2_x{image="a\\"b\\\\c\\nd"} +Inf',
        'backy2_x 0.25',
        '# HELP backy2_empty No samples.',
        '# TYPE backy2_empty gauge',
        '',
      ].join('\n'),
    );
    for (const line of text.trim().split('\n')) if (!line.startsWith('#')) expect(line).toMatch(SAMPLE_LINE);
  });
});

