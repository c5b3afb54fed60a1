import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * "Only billing writes money" (DESIGN.md), checked on the sources: the ingress queues credit
 * commands for billing and never posts to the ledger itself, neither through the db package's
 * ledger-writing functions nor with its own SQL or drizzle writes to the money tables.
 */
const root = fileURLToPath(new URL('..', import.meta.url));

/** Functions that post journal transactions or change balances. */
const LEDGER_WRITERS = [
  'addCredit',
  'postCredit',
  'settleBatch',
  'applyCreditCommand',
  'refuseCreditCommand',
];
const MONEY_TABLES = ['journal_entries', 'journal_transactions', 'ledger_accounts', 'credit_commands'];
const MONEY_SCHEMA = ['journalEntries', 'journalTransactions', 'ledgerAccounts', 'creditCommands'];

/** Every way `source` writes money, as readable findings (empty: clean). */
export function moneyWrites(source: string): string[] {
  const found: string[] = [];
  for (const m of source.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s*from\s*['"]([^'"]+)['"]/g)) {
    const names = m[1]!.split(',').map(
      (n) =>
        n
          .trim()
          .replace(/^type\s+/, '')
          .split(/\s+as\s+/)[0]!,
    );
    for (const n of names) if (LEDGER_WRITERS.includes(n)) found.push(`imports ${n} from ${m[2]}`);
  }
  for (const m of source.matchAll(/(?:import|from)\s*\(?\s*['"]([^'"]+)['"]/g)) {
    const spec = m[1]!;
    if (/(^|\/)billing\/src\/|@faregate\/billing/.test(spec)) found.push(`imports billing: ${spec}`);
    if (
      /db\/(src\/)?schema\/(journal-entries|journal-transactions|ledger-accounts|credit-commands)/.test(spec)
    )
      found.push(`imports a money table's schema: ${spec}`);
  }
  const tables = MONEY_TABLES.join('|');
  for (const m of source.matchAll(
    new RegExp(`\\b(insert\\s+into|update|delete\\s+from)\\s+"?(${tables})\\b`, 'gi'),
  ))
    found.push(`SQL: ${m[0]}`);
  // The database functions that post to the ledger (billing's one-round-trip settlement).
  for (const m of source.matchAll(/\bsy_settle\s*\(/gi)) found.push(`SQL: ${m[0]}`);
  const schema = MONEY_SCHEMA.join('|');
  for (const m of source.matchAll(new RegExp(`\\.(insert|update|delete)\\(\\s*(${schema})\\b`, 'g')))
    found.push(`drizzle: ${m[0]}`);
  return found;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.test.ts'))
    .map((e) => join(e.parentPath, e.name));
}

describe('only billing writes money', () => {
  it('no ingress source file imports a ledger-writing function or writes to the money tables', () => {
    const files = sources(join(root, 'services/ingress/src'));
    expect(files.length).toBeGreaterThan(20);
    const findings = files.flatMap((f) =>
      moneyWrites(readFileSync(f, 'utf8')).map((w) => `${relative(root, f)}: ${w}`),
    );
    expect(findings).toEqual([]);
  });

  it('the check sees each way of writing money (it is not vacuous)', () => {
    expect(moneyWrites(`import {\n  addCredit,\n  createAccount,\n} from '@faregate/db/accounts';`)).toEqual([
      'imports addCredit from @faregate/db/accounts',
    ]);
    expect(moneyWrites(`import { postCredit as p } from '@faregate/db/accounts';`)).toHaveLength(1);
    expect(moneyWrites(`import { settleBatch } from '../../../billing/src/ledger.ts';`)).toHaveLength(2);
    expect(moneyWrites(`import { ledgerAccounts } from '@faregate/db/schema/ledger-accounts';`)).toHaveLength(
      1,
    );
    expect(moneyWrites('await client.query(`UPDATE ledger_accounts SET balance_micros = 0`)')).toHaveLength(
      1,
    );
    expect(moneyWrites(`sql\`INSERT INTO "journal_entries" VALUES (1)\``)).toHaveLength(1);
    expect(moneyWrites('await tx.insert(journalTransactions).values(x)')).toHaveLength(1);
    expect(moneyWrites("await db.$client.query('SELECT sy_settle($1, $2::text[])', a)")).toHaveLength(1);
    // Reading is fine.
    expect(moneyWrites('SELECT balance_micros FROM ledger_accounts WHERE id = $1')).toEqual([]);
    expect(moneyWrites(`import { findCreditOutcome } from '@faregate/db/credit-commands';`)).toEqual([]);
  });
});
