import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

// The project was renamed to Faregate (issue #11). The old name is spelled in two halves here, so
// this file does not match its own search.
const OLD_NAME = ['switch', 'yard'].join('');
const root = fileURLToPath(new URL('..', import.meta.url));

describe('the project name', () => {
  it('the old name appears nowhere in the tracked tree, nor in file names', () => {
    let hits = '';
    try {
      // -i: any case; -I: skip binary files; exit status 1 means no match.
      hits = execFileSync('git', ['grep', '-n', '-i', '-I', OLD_NAME], { cwd: root, encoding: 'utf8' });
    } catch (err) {
      if ((err as { status?: number }).status !== 1) throw err;
    }
    const files = execFileSync('git', ['ls-files'], { cwd: root, encoding: 'utf8' })
      .split('\n')
      .filter((f) => f.toLowerCase().includes(OLD_NAME));
    expect(hits).toBe('');
    expect(files).toEqual([]);
  });
});
