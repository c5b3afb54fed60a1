/**
 * Builds the console: `ui/main.tsx` (Preact + Chart.js, with its CSS) bundled by esbuild into
 * `dist/app.js` and `dist/app.css`, beside `dist/index.html`. Everything the page loads is in dist/:
 * no CDN, so it works offline and under a strict Content-Security-Policy (no inline script or style).
 * Run: `pnpm --filter @faregate/console build` (or `node packages/console/src/build.ts`).
 */
import { copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { build, stop } from 'esbuild';
import { CONSOLE_DIST, CONSOLE_UI } from './paths.ts';

export async function buildConsole(out = CONSOLE_DIST): Promise<void> {
  const tmp = `${out.replace(/\/$/, '')}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await build({
    entryPoints: { app: join(CONSOLE_UI, 'main.tsx') },
    outdir: tmp,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    minify: true,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    legalComments: 'linked',
    logLevel: 'warning',
  }).finally(() =>
    // esbuild's service process would otherwise live on as a child of the caller (`pnpm start`).
    stop(),
  );
  await copyFile(join(CONSOLE_UI, 'index.html'), join(tmp, 'index.html'));
  // Whole or not at all: a server starting meanwhile sees the old build or the new one.
  await rm(out, { recursive: true, force: true });
  try {
    await rename(tmp, out);
  } catch (e) {
    // Another build (a parallel test, `pnpm start`) renamed its copy first: the same files.
    await rm(tmp, { recursive: true, force: true });
    if ((e as { code?: string }).code !== 'ENOTEMPTY' && (e as { code?: string }).code !== 'EEXIST') throw e;
  }
}

if (import.meta.main) {
  const t = performance.now();
  await buildConsole();
  console.log(`console built into ${CONSOLE_DIST} in ${Math.round(performance.now() - t)} ms`);
}
