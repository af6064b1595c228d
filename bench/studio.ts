/**
 * The studio page's main thread (`npm run bench:studio`, needs Debian's chromium and a built studio):
 * the teacher's run in headless Chromium (the page's defaults: the embedded model and its 400 images,
 * SGD-UAP for 5 passes, on the backend the page picks), then opens the large view of one image, and lists every long task (>= 50 ms, Long Tasks API) with what the page
 * was saying when it happened. Target: none of 100 ms or more, on an idle machine (a loaded one
 * stretches every task). Writes bench/results/studio.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { serveStudio } from '../src/studio/server.js';

const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

async function main() {
  const server = await serveStudio({ port: 0 });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  try {
    const page = await browser.newPage();
    await page.addInitScript(() => {
      const w = window as unknown as { tasks: [number, number][]; said: [number, string][] };
      w.tasks = [];
      w.said = [];
      new PerformanceObserver((l) => l.getEntries().forEach((e) => w.tasks.push([e.startTime, e.duration]))).observe({
        type: 'longtask',
        buffered: true,
      });
      document.addEventListener('DOMContentLoaded', () => {
        const status = document.querySelector('#status')!;
        new MutationObserver(() => w.said.push([performance.now(), status.textContent ?? ''])).observe(status, {
          childList: true,
          characterData: true,
          subtree: true,
        });
      });
    });
    await page.goto(server.url);
    await page.waitForSelector('#model option', { state: 'attached' });
    await page.click('#load');
    await page.waitForFunction(() => !(document.querySelector('#start') as HTMLButtonElement).disabled, null, { timeout: 120_000 });
    await page.click('#start');
    await page.waitForFunction(() => /^Done|Error/.test(document.querySelector('#status')!.textContent!), null, { timeout: 240_000 });
    await page.click('#grid .cell >> nth=0');
    await page.waitForSelector('#inspect[open]');
    const r = await page.evaluate(() => {
      const w = window as unknown as { tasks: [number, number][]; said: [number, string][] };
      return { tasks: w.tasks, said: w.said };
    });
    const tasks = r.tasks.map(([at, ms]) => ({
      at: Math.round(at),
      ms: Math.round(ms),
      during:
        [...r.said]
          .reverse()
          .find(([t]) => t <= at)?.[1]
          .slice(0, 60) ?? '(page start)',
    }));
    for (const t of tasks) console.log(`${String(t.ms).padStart(5)} ms at ${t.at} ms, during: ${t.during}`);
    const longest = Math.max(0, ...tasks.map((t) => t.ms));
    console.log(`longest main-thread task: ${longest} ms (target < 100 ms on an idle machine)`);
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/studio.json', JSON.stringify({ date: new Date().toISOString(), longest, tasks }, null, 2) + '\n');
  } finally {
    await browser.close();
    await server.close();
  }
}

await main();
