import { runMigrations } from './migrate.ts';

// `pnpm db:migrate`: the only place in this package that reads the environment.
const url = process.env.DATABASE_URL;
if (!url) {
  console.error('DATABASE_URL is not set');
  process.exit(2);
}
await runMigrations(url);
console.log('migrations applied');
