/**
 * Money is integer micro-USD (bigint). Prices are decimal strings per million tokens, so
 * cost = tokens × price_per_M / 1e6 USD = tokens × price(µUSD per M) / 1e6 µUSD.
 * We keep full precision in nano-units internally and round once per call, up (prices.ts).
 */
const SCALE = 1_000_000n;

/** "0.15" USD → 150000 µUSD (exact; up to 6 fractional digits). */
export function usdToMicros(usd: string): bigint {
  const m = /^(\d+)(?:\.(\d{1,6}))?$/.exec(usd.trim());
  if (!m) throw new Error(`invalid USD amount: ${usd}`);
  return BigInt(m[1]!) * SCALE + BigInt((m[2] ?? '').padEnd(6, '0'));
}

export function microsToUsd(micros: bigint): string {
  const neg = micros < 0n;
  const a = neg ? -micros : micros;
  const frac = (a % SCALE).toString().padStart(6, '0');
  return `${neg ? '-' : ''}${a / SCALE}.${frac}`;
}
