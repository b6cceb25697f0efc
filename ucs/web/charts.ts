/**
 * The page's charts (uPlot): each follows its container's width (a ResizeObserver, so a rotated phone or a
 * resized window redraws at the new size) and draws missing values (`null`) as gaps. Each chart element
 * carries `data-points` (buckets drawn) and `data-missing` (buckets before the newest reading without data)
 * for the household and for tests.
 * @module
 */
import uPlot from 'uplot';

const charts = new Map<HTMLElement, uPlot>();

/** Width and height for a container: the container's inner width, a lower chart on a narrow screen. */
function sizeOf(el: HTMLElement): { width: number; height: number } {
  const style = getComputedStyle(el);
  const width = Math.max(200, Math.floor(el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)));
  return { width, height: width < 600 ? 220 : 300 };
}

const observer = new ResizeObserver((entries) => {
  for (const e of entries) {
    const chart = charts.get(e.target as HTMLElement);
    if (!chart) continue;
    const size = sizeOf(e.target as HTMLElement);
    if (size.width !== chart.width || size.height !== chart.height) chart.setSize(size);
  }
});

/** Bars for energy per bucket. */
export const bars = uPlot.paths.bars!({ size: [0.8, 64] });

/**
 * Draws (or updates) the chart in `el`.
 * @example
 * ```ts
 * drawChart($('today-chart'), { series: [{}, { label: 'Imported (Wh)' }] }, [times, wh], 0);
 * ```
 */
export function drawChart(el: HTMLElement, opts: Omit<uPlot.Options, 'width' | 'height'>, data: uPlot.AlignedData, missing: number): void {
  el.dataset.points = String(data[0].length);
  el.dataset.missing = String(missing);
  const existing = charts.get(el);
  if (existing && existing.series.length === opts.series.length) {
    existing.setData(data);
    return;
  }
  existing?.destroy();
  charts.set(el, new uPlot({ ...opts, ...sizeOf(el) } as uPlot.Options, data, el));
  observer.observe(el);
}

/**
 * Removes every chart (logout).
 * @example
 * ```ts
 * destroyCharts();
 * ```
 */
export function destroyCharts(): void {
  for (const [el, c] of charts) {
    observer.unobserve(el);
    c.destroy();
  }
  charts.clear();
}
