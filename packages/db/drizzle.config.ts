import { defineConfig } from 'drizzle-kit';

// `pnpm --filter @faregate/db exec drizzle-kit generate` writes migrations into ./drizzle (committed).
export default defineConfig({
  dialect: 'postgresql',
  schema: './src/schema/index.ts',
  out: './drizzle',
});
