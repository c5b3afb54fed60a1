import { ApiKeyList, type ApiKeyView, BalanceList, CreatedApiKey } from '@faregate/contracts/admin-views';
import { useState } from 'preact/hooks';
import { z } from 'zod';
import { api, errorText } from './api.ts';
import { Head, Problem } from './parts.tsx';
import { usePolled } from './poll.ts';

const REFRESH_MS = 5_000;
const Credited = z.object({ balance_usd: z.string() });
const Created = z.object({ id: z.string() });
const Ok = z.object({ id: z.string() });

/** A form's fields by name (every control has one). */
function fields(e: Event): Record<string, string> {
  const form = e.currentTarget;
  if (!(form instanceof HTMLFormElement)) return {};
  const out: Record<string, string> = {};
  for (const [k, v] of new FormData(form)) if (typeof v === 'string') out[k] = v.trim();
  return out;
}

/** A per-minute limit from a form field: empty is no limit. */
const perMinute = (s: string | undefined) => (s ? Number(s) : null);

/** A form that says what happened to its last submit. */
function useAction() {
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ ok: boolean; text: string }>();
  const run = async (what: () => Promise<string>) => {
    setBusy(true);
    setMessage(undefined);
    try {
      setMessage({ ok: true, text: await what() });
    } catch (e) {
      setMessage({ ok: false, text: errorText(e) });
    } finally {
      setBusy(false);
    }
  };
  const view = message && (
    <p class={message.ok ? 'ok' : 'error'} role={message.ok ? 'status' : 'alert'}>
      {message.text}
    </p>
  );
  return { busy, run, view };
}

function KeyRow({ k, onChange }: { k: ApiKeyView; onChange: () => void }) {
  const [confirming, setConfirming] = useState(false);
  const [editing, setEditing] = useState(false);
  const action = useAction();
  const revoke = () =>
    action.run(async () => {
      await api.post(Ok, `/admin/v1/keys/${encodeURIComponent(k.id)}/revoke`);
      onChange();
      return `Revoked ${k.name}.`;
    });
  const saveLimits = (e: Event) => {
    e.preventDefault();
    const f = fields(e);
    void action.run(async () => {
      await api.patch(Ok, `/admin/v1/keys/${encodeURIComponent(k.id)}`, {
        rpm_limit: perMinute(f.rpm_limit),
        tpm_limit: perMinute(f.tpm_limit),
      });
      setEditing(false);
      onChange();
      return `Limits of ${k.name} saved.`;
    });
  };
  return (
    <tr data-key={k.id} class={k.revoked ? 'revoked' : ''}>
      <th scope="row">{k.name}</th>
      <td>
        <code>{k.prefix}…</code>
      </td>
      <td>{k.account_name}</td>
      <td>${k.spent_usd}</td>
      <td>{k.spend_limit_usd === null ? '—' : `$${k.spend_limit_usd}`}</td>
      <td data-col="limits">
        {editing ? (
          <form class="inline" onSubmit={saveLimits}>
            <label>
              RPM <input name="rpm_limit" type="number" min="1" value={k.rpm_limit ?? ''} />
            </label>
            <label>
              TPM <input name="tpm_limit" type="number" min="1" value={k.tpm_limit ?? ''} />
            </label>
            <button type="submit" disabled={action.busy}>
              Save
            </button>
          </form>
        ) : (
          <>
            {k.rpm_limit ?? '∞'} rpm · {k.tpm_limit ?? '∞'} tpm{' '}
            {!k.revoked && (
              <button type="button" class="link" onClick={() => setEditing(true)}>
                Edit
              </button>
            )}
          </>
        )}
      </td>
      <td data-col="status">
        {k.revoked ? (
          <span class="badge down">revoked</span>
        ) : confirming ? (
          <>
            <button type="button" class="danger" disabled={action.busy} onClick={() => void revoke()}>
              Confirm revoke
            </button>{' '}
            <button type="button" class="link" onClick={() => setConfirming(false)}>
              Cancel
            </button>
          </>
        ) : (
          <button type="button" onClick={() => setConfirming(true)}>
            Revoke
          </button>
        )}
        {action.view}
      </td>
    </tr>
  );
}

/** Accounts with their credit, keys with their limits: create, revoke, limit, credit. */
export function Accounts() {
  const balances = usePolled(() => api.get(BalanceList, '/admin/v1/balances'), REFRESH_MS);
  const keys = usePolled(() => api.get(ApiKeyList, '/admin/v1/keys'), REFRESH_MS);
  const [newKey, setNewKey] = useState<{ name: string; key: string }>();
  const accounts = balances.data?.data ?? [];
  const credit = useAction();
  const createKey = useAction();
  const createAccount = useAction();

  const onCredit = (e: Event) => {
    e.preventDefault();
    const f = fields(e);
    void credit.run(async () => {
      const r = await api.post(Credited, '/admin/v1/credits', {
        account_id: f.account_id,
        amount_usd: f.amount_usd,
        ...(f.reference ? { reference: f.reference } : {}),
        // One credit per submit, even if the request is retried.
        idempotency_key: `console:${crypto.randomUUID()}`,
      });
      balances.reload();
      return `Credited $${f.amount_usd}: the balance is now $${r.balance_usd}.`;
    });
  };
  const onCreateKey = (e: Event) => {
    e.preventDefault();
    const f = fields(e);
    void createKey.run(async () => {
      const k = await api.post(CreatedApiKey, '/admin/v1/keys', {
        account_id: f.account_id,
        name: f.name,
        rpm_limit: perMinute(f.rpm_limit),
        tpm_limit: perMinute(f.tpm_limit),
        ...(f.spend_limit_usd ? { spend_limit_usd: f.spend_limit_usd } : {}),
      });
      setNewKey({ name: f.name ?? '', key: k.key });
      keys.reload();
      return `Created key ${k.prefix}…`;
    });
  };
  const onCreateAccount = (e: Event) => {
    e.preventDefault();
    const f = fields(e);
    void createAccount.run(async () => {
      const a = await api.post(Created, '/admin/v1/accounts', { name: f.name });
      balances.reload();
      return `Created account ${a.id}.`;
    });
  };

  const accountSelect = (
    <label>
      Account
      <select name="account_id" required>
        {accounts.map((a) => (
          <option key={a.account_id} value={a.account_id}>
            {a.name} ({a.account_id})
          </option>
        ))}
      </select>
    </label>
  );

  return (
    <>
      <section aria-labelledby="accounts-h">
        <h2 id="accounts-h">Accounts</h2>
        <Problem text={balances.error} />
        <table class="accounts">
          <Head cols={['Account', 'Id', 'Balance', 'Held', 'Available']} />
          <tbody>
            {accounts.map((a) => (
              <tr key={a.account_id} data-account={a.account_id}>
                <th scope="row">{a.name}</th>
                <td>
                  <code>{a.account_id}</code>
                </td>
                <td data-col="balance">${a.balance_usd}</td>
                <td>${a.held_usd}</td>
                <td>${a.available_usd}</td>
              </tr>
            ))}
          </tbody>
        </table>
        <div class="forms">
          <form aria-label="Add credit" onSubmit={onCredit}>
            <h3>Add credit</h3>
            {accountSelect}
            <label>
              Amount (USD)
              <input
                name="amount_usd"
                required
                inputMode="decimal"
                pattern="\d+(\.\d{1,6})?"
                placeholder="10.00"
              />
            </label>
            <label>
              Reference <input name="reference" maxLength={500} placeholder="invoice 42" />
            </label>
            <button type="submit" disabled={credit.busy}>
              Add credit
            </button>
            {credit.view}
          </form>
          <form aria-label="New account" onSubmit={onCreateAccount}>
            <h3>New account</h3>
            <label>
              Name <input name="name" required maxLength={200} />
            </label>
            <button type="submit" disabled={createAccount.busy}>
              Create account
            </button>
            {createAccount.view}
          </form>
        </div>
      </section>
      <section aria-labelledby="keys-h">
        <h2 id="keys-h">API keys</h2>
        <Problem text={keys.error} />
        {newKey && (
          <div class="new-key" role="status">
            <p>
              The key <strong>{newKey.name}</strong>, shown this once (it is stored only as a hash):
            </p>
            <output name="new-key">{newKey.key}</output>
            <button type="button" class="link" onClick={() => setNewKey(undefined)}>
              I have saved it
            </button>
          </div>
        )}
        <form class="wide" aria-label="New key" onSubmit={onCreateKey}>
          <h3>New key</h3>
          {accountSelect}
          <label>
            Name <input name="name" required maxLength={200} />
          </label>
          <label>
            RPM limit <input name="rpm_limit" type="number" min="1" />
          </label>
          <label>
            TPM limit <input name="tpm_limit" type="number" min="1" />
          </label>
          <label>
            Spend limit (USD) <input name="spend_limit_usd" inputMode="decimal" pattern="\d+(\.\d{1,6})?" />
          </label>
          <button type="submit" disabled={createKey.busy}>
            Create key
          </button>
          {createKey.view}
        </form>
        <table class="keys">
          <Head cols={['Key', 'Prefix', 'Account', 'Spent', 'Spend limit', 'Rate limits', 'Status']} />
          <tbody>
            {(keys.data?.data ?? []).map((k) => (
              <KeyRow key={k.id} k={k} onChange={keys.reload} />
            ))}
          </tbody>
        </table>
      </section>
    </>
  );
}
