/**
 * A small SVG line-chart writer for the soak's plot: stacked panels sharing one time axis, each with
 * its own y scale, gridlines at round numbers and a legend. No dependency; the output is plain SVG 1.1
 * that GitHub renders inline.
 */

export interface Series {
  name: string;
  /** [x, y] points; NaN y values leave a gap. */
  points: Array<[number, number]>;
}

export interface Panel {
  title: string;
  unit: string;
  series: Series[];
}

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#7f7f7f',
];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A round step giving about `n` ticks over [0, max]. */
function niceStep(max: number, n: number): number {
  if (!(max > 0)) return 1;
  const raw = max / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toPrecision(2));

export function chart(opts: { title: string; xLabel: string; panels: Panel[]; width?: number }): string {
  const W = opts.width ?? 900;
  const PH = 170; // panel height
  const GAP = 46;
  const L = 70;
  const R = 190; // legend column
  const TOP = 40;
  const H = TOP + opts.panels.length * (PH + GAP) + 20;
  const xs = opts.panels.flatMap((p) => p.series.flatMap((s) => s.points.map(([x]) => x)));
  const xMax = Math.max(1e-9, ...xs);
  const xStep = niceStep(xMax, 8);
  const plotW = W - L - R;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<title>${esc(opts.title)}</title>`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${L}" y="22" font-size="14" font-weight="bold">${esc(opts.title)}</text>`,
  ];
  opts.panels.forEach((panel, i) => {
    const y0 = TOP + i * (PH + GAP) + 16;
    const ys = panel.series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
    const yMaxRaw = Math.max(0, ...ys);
    const yStep = niceStep(yMaxRaw * 1.05, 4);
    const yMax = Math.max(yStep, Math.ceil((yMaxRaw * 1.05) / yStep) * yStep);
    const px = (x: number) => L + (x / xMax) * plotW;
    const py = (y: number) => y0 + PH - (y / yMax) * PH;
    out.push(
      `<text x="${L}" y="${y0 - 6}" font-weight="bold">${esc(panel.title)} (${esc(panel.unit)})</text>`,
    );
    for (let v = 0; v <= yMax + 1e-9; v += yStep) {
      out.push(
        `<line x1="${L}" x2="${L + plotW}" y1="${py(v).toFixed(1)}" y2="${py(v).toFixed(1)}" stroke="#e5e5e5"/>`,
        `<text x="${L - 6}" y="${(py(v) + 4).toFixed(1)}" text-anchor="end" fill="#555">${fmt(v)}</text>`,
      );
    }
    for (let v = 0; v <= xMax + 1e-9; v += xStep) {
      out.push(
        `<line x1="${px(v).toFixed(1)}" x2="${px(v).toFixed(1)}" y1="${y0}" y2="${y0 + PH}" stroke="#f0f0f0"/>`,
        `<text x="${px(v).toFixed(1)}" y="${y0 + PH + 14}" text-anchor="middle" fill="#555">${fmt(v)}</text>`,
      );
    }
    out.push(`<rect x="${L}" y="${y0}" width="${plotW}" height="${PH}" fill="none" stroke="#999"/>`);
    panel.series.forEach((s, j) => {
      const color = COLORS[j % COLORS.length];
      // One path, broken at NaN values.
      let d = '';
      let pen = false;
      for (const [x, y] of s.points) {
        if (!Number.isFinite(y)) {
          pen = false;
          continue;
        }
        d += `${pen ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`;
        pen = true;
      }
      out.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="1.3"/>`);
      const ly = y0 + 10 + j * 15;
      out.push(
        `<line x1="${L + plotW + 12}" x2="${L + plotW + 30}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`,
        `<text x="${L + plotW + 34}" y="${ly}">${esc(s.name)}</text>`,
      );
    });
  });
  out.push(
    `<text x="${L + plotW / 2}" y="${H - 6}" text-anchor="middle" fill="#333">${esc(opts.xLabel)}</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}
