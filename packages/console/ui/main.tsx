import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { Accounts } from './accounts.tsx';
import { signOut } from './api.ts';
import { Batches } from './batches.tsx';
import { Pools } from './pools.tsx';
import { Spend } from './spend.tsx';
import './style.css';

const TABS = [
  { id: 'overview', label: 'Pools' },
  { id: 'spend', label: 'Spend' },
  { id: 'accounts', label: 'Accounts & keys' },
  { id: 'batches', label: 'Batches' },
] as const;
type Tab = (typeof TABS)[number]['id'];

/** The tab in the URL's fragment (never anything secret there), so reloads and links keep it. */
function tabFromHash(): Tab {
  const h = window.location.hash.replace(/^#\/?/, '');
  return TABS.find((t) => t.id === h)?.id ?? 'overview';
}

function App() {
  const [tab, setTab] = useState<Tab>(tabFromHash);
  useEffect(() => {
    const on = () => setTab(tabFromHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return (
    <>
      <header>
        <h1>Faregate</h1>
        <nav aria-label="Console">
          {TABS.map((t) => (
            <a key={t.id} href={`#/${t.id}`} aria-current={tab === t.id ? 'page' : undefined}>
              {t.label}
            </a>
          ))}
          <a href="/admin/queues">Queues</a>
          <a href="/docs">API</a>
        </nav>
        <button type="button" class="link" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <main>
        {tab === 'overview' && <Pools />}
        {tab === 'spend' && <Spend />}
        {tab === 'accounts' && <Accounts />}
        {tab === 'batches' && <Batches />}
      </main>
    </>
  );
}

const root = document.getElementById('app');
if (root) {
  root.textContent = '';
  render(<App />, root);
}
