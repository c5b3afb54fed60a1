import { fileURLToPath } from 'node:url';

/** Where the console's built files are (`node packages/console/src/build.ts` writes them). */
export const CONSOLE_DIST = fileURLToPath(new URL('../dist/', import.meta.url));
/** The console's sources (TSX, CSS, the HTML shell). */
export const CONSOLE_UI = fileURLToPath(new URL('../ui/', import.meta.url));
