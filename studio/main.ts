/**
 * The studio page: controls, pictures and downloads. It computes nothing itself: the worker runs the
 * library (model import, attacks, fooling rate, fooling graph); the page draws what comes back.
 */
import { visiblePerturbation } from '../src/io/visible.js';
import { encodeNpy } from '../src/io/npyCodec.js';
import { defaultXi } from '../src/math/radius.js';
import { passesToReach } from '../src/attacks/stepSchedule.js';
import type {
  AttackSettings,
  BrowserCard,
  BrowserDataset,
  ControlSpecs,
  FromWorker,
  HeldOutRates,
  Method,
  ModelInfo,
  PassRecord,
  Progress,
  StudioCatalog,
  ToWorker,
} from './protocol.js';
import { GRAPH_MIN_FOOLED } from './protocol.js';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (m: ToWorker) => worker.postMessage(m);

let catalog: StudioCatalog = { models: [], datasets: [], assets: false };
let dropped: { card?: BrowserCard; modelFiles: File[]; images: File[] } = { modelFiles: [], images: [] };
let info: ModelInfo | undefined;
let shown: { pixels: Uint8Array; index: number[]; clean: Int32Array; labels?: Int32Array } | undefined;
let history: { rec: PassRecord; held: HeldOutRates }[] = [];
let v: Float32Array | undefined;
let metrics: Record<string, unknown> | undefined;
let paused = false;

function status(message: string): void {
  $('status').textContent = message;
}

function labelOf(i: number): string {
  return (info?.labels?.[i] ?? `#${i}`).split(',')[0];
}

// ------------------------------------------------------------ catalogue and selection

function selectedCard(): BrowserCard | undefined {
  const id = $<HTMLSelectElement>('model').value;
  return id === '__dropped' ? dropped.card : catalog.models.find((m) => m.name === id);
}

/** Image sets that match the model's label space (ImageNet models with ImageNet images). */
function fillDatasets(): void {
  const card = selectedCard();
  const space = card?.labelSpace ?? 'own';
  const sel = $<HTMLSelectElement>('dataset');
  const sets: { id: string; title: string }[] = catalog.datasets.filter((d) => d.labelSpace === space);
  if (dropped.images.length) sets.unshift({ id: '__dropped', title: `dropped images (${dropped.images.length})` });
  sel.innerHTML = sets.map((d) => `<option value="${d.id}">${d.title}</option>`).join('');
  const count = space === 'imagenet' ? 32 : 400;
  $<HTMLInputElement>('count').value = String(count);
  // Half the images craft v; SGD-UAP steps once per 32 of them, its step shrinking every pass: enough
  // passes for v to be able to reach 90% of xi (16 ImageNet images: 22; the embedded set: the 5 it had).
  $<HTMLInputElement>('passes').value = String(Math.max(5, passesToReach(0.9, Math.ceil(count / 2 / 32)) ?? 5));
  const norm = $<HTMLSelectElement>('norm').value === '2' ? 2 : 'inf';
  if (card)
    $<HTMLInputElement>('xi').value = String(card.name.startsWith('fashion') && norm === 'inf' ? 40 : defaultXi(norm, card.inputShape));
}

function fillModels(): void {
  const sel = $<HTMLSelectElement>('model');
  const opts = catalog.models.map(
    (m) => `<option value="${m.name}">${m.name}${m.format === 'tflite' ? ' (TFLite)' : m.format === 'onnx' ? ' (ONNX)' : ''}</option>`,
  );
  if (dropped.card) opts.unshift(`<option value="__dropped">dropped: ${dropped.card.name}</option>`);
  sel.innerHTML = opts.join('');
  fillDatasets();
}

async function loadCatalog(): Promise<void> {
  const r = await fetch('./api/catalog');
  if (!r.ok) throw new Error(`the catalogue could not be read (${r.status}); is this page served by uap studio or npm run studio?`);
  catalog = (await r.json()) as StudioCatalog;
  fillModels();
  status(
    `Pick a model and images, then Load.${catalog.assets ? '' : ' (No ImageNet assets folder: start with uap studio --assets DIR for the ImageNet models.)'}`,
  );
  $<HTMLButtonElement>('load').disabled = false;
}

function load(): void {
  const card = selectedCard();
  if (!card) return status('No model selected.');
  const setId = $<HTMLSelectElement>('dataset').value;
  const count = Math.max(1, Number($<HTMLInputElement>('count').value) || 1);
  let images: { url?: string; file?: File; label?: number }[];
  if (setId === '__dropped') images = dropped.images.slice(0, count).map((file) => ({ file }));
  else {
    const set: BrowserDataset | undefined = catalog.datasets.find((d) => d.id === setId);
    if (!set) return status('No image set for this model: drop some images.');
    // An even spread over the (class-sorted) folder, so a few images still cover many classes.
    const step = Math.max(1, Math.floor(set.items.length / count));
    images = set.items.filter((_, i) => i % step === 0).slice(0, count);
  }
  const model = $<HTMLSelectElement>('model').value === '__dropped' ? { card, files: dropped.modelFiles } : card;
  setRunning(false);
  $<HTMLButtonElement>('start').disabled = true;
  $<HTMLButtonElement>('load').disabled = true; // until the worker answers (ready or error)
  status(`Loading ${card.name} and ${images.length} images…`);
  send({ type: 'load', model, images, backend: new URLSearchParams(location.search).get('backend') ?? undefined });
}

// ------------------------------------------------------------ drawing

function drawImage(canvas: HTMLCanvasElement, px: Uint8Array | Float32Array, [h, w, c]: [number, number, number]): void {
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(w, h);
  for (let i = 0; i < h * w; i++) {
    for (let k = 0; k < 3; k++) img.data[i * 4 + k] = Math.max(0, Math.min(255, Math.round(px[i * c + (c === 3 ? k : 0)])));
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
}

/** The held-out images shown, clean and with `shownV` (default: v), with their labels before and after. */
function drawGrid(adv?: Int32Array, shownV: Float32Array | undefined = v): void {
  if (!shown || !info) return;
  const [h, w, c] = info.inputShape;
  const per = h * w * c;
  const grid = $('grid');
  grid.innerHTML = '';
  for (let k = 0; k < shown.index.length; k++) {
    const i = shown.index[k];
    const x = shown.pixels.subarray(k * per, (k + 1) * per);
    // Acts as a button (focusable; click, Enter or Space opens the large view of this image). A real
    // <button> clipped its wrapped label text in the narrow layout.
    const cell = document.createElement('div');
    cell.className = 'cell';
    cell.tabIndex = 0;
    cell.setAttribute('role', 'button');
    const open = () => send({ type: 'inspect', shown: k, factor: scaleFactor() });
    cell.addEventListener('click', open);
    cell.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' && e.key !== ' ') return;
      e.preventDefault();
      open();
    });
    const pair = document.createElement('div');
    pair.className = 'pair';
    const clean = document.createElement('canvas');
    drawImage(clean, x, info.inputShape);
    pair.append(clean);
    if (shownV) {
      const pert = document.createElement('canvas');
      drawImage(
        pert,
        Float32Array.from(x, (p, j) => p + shownV[j]),
        info.inputShape,
      );
      pair.append(pert);
    }
    const before = labelOf(shown.clean[i]);
    const after = adv ? labelOf(adv[i]) : undefined;
    const text = document.createElement('div');
    text.innerHTML = adv ? `${before} → <span class="${adv[i] !== shown.clean[i] ? 'changed' : ''}">${after}</span>` : before;
    cell.setAttribute('aria-label', `held-out image ${k + 1}: ${before}${adv ? `; with v: ${after}` : ''}. Open the large view`);
    cell.append(pair, text);
    grid.append(cell);
  }
}

/** The held-out result in plain words, beside noise of the same size. */
function plainResult(held: HeldOutRates, crafting?: number): string {
  const seen = crafting !== undefined ? ` (and of ${pct(crafting)} of the images it was made from)` : '';
  return `v changes the label of ${pct(held.foolingRate)} of the held-out images it has never seen${seen}; random noise of the same size changes ${pct(held.noiseLinf)} (same L∞) and ${pct(held.noiseL2)} (same L2).`;
}

/** The slider's factor (1 until a perturbation exists). */
function scaleFactor(): number {
  return Number($<HTMLInputElement>('scale').value);
}

/** The large view of one held-out image: clean, with factor x v, and their difference amplified; top-5 labels of both. */
function showInspected(m: Extract<FromWorker, { type: 'inspected' }>): void {
  if (!shown || !info) return;
  const [h, w, c] = info.inputShape;
  const per = h * w * c;
  const x = shown.pixels.subarray(m.shown * per, (m.shown + 1) * per);
  drawImage($<HTMLCanvasElement>('big-clean'), x, info.inputShape);
  const adv = m.v ? Float32Array.from(x, (p, j) => Math.max(0, Math.min(255, p + m.v![j]))) : x;
  drawImage($<HTMLCanvasElement>('big-adv'), adv, info.inputShape);
  // What v actually changed in this image (after the clip), stretched to the full range.
  drawImage($<HTMLCanvasElement>('big-diff'), visiblePerturbation(Float32Array.from(adv, (p, j) => p - x[j])), info.inputShape);
  const list = (top: { label: number; p: number }[]) => top.map((t) => `<li>${labelOf(t.label)} <b>${pct(t.p)}</b></li>`).join('');
  $('top-clean').innerHTML = list(m.clean);
  $('top-adv').innerHTML = m.perturbed.length ? list(m.perturbed) : '<li>no perturbation yet</li>';
  $('inspect-title').textContent = `Held-out image ${m.shown + 1}${m.v ? `, with ${m.factor.toFixed(1)} × v` : ''}`;
  const dialog = $<HTMLDialogElement>('inspect');
  if (!dialog.open) dialog.showModal();
}

function drawPerturbation(): void {
  if (!v || !info) return;
  drawImage($<HTMLCanvasElement>('pert'), visiblePerturbation(v), info.inputShape);
}

// ------------------------------------------------------------ run controls

/** Progress drawn at most once per frame, however often the worker reports it. */
let pendingProgress: Progress | undefined;
function showProgress(p: Progress): void {
  if (!pendingProgress)
    requestAnimationFrame(() => {
      const q = pendingProgress!;
      pendingProgress = undefined;
      ($('progress') as HTMLProgressElement).value = q.done / q.total;
      status(`pass ${q.pass}/${q.maxPasses}: ${q.done}/${q.total} images${paused ? ' (paused)' : ''} · ‖v‖∞ ${q.normInf.toFixed(2)}`);
    });
  pendingProgress = p;
}

function setRunning(on: boolean): void {
  paused = false;
  $<HTMLButtonElement>('start').disabled = on || !info;
  $<HTMLButtonElement>('pause').disabled = !on;
  $<HTMLButtonElement>('stop').disabled = !on;
  $<HTMLButtonElement>('pause').textContent = 'Pause';
  $<HTMLButtonElement>('load').disabled = on;
  $<HTMLInputElement>('npy').disabled = on;
}

/** Method titles by name, from the worker's registry. */
let methodTitles = new Map<string, string>([
  ['sgd', 'SGD-UAP'],
  ['algorithm1', 'Algorithm 1'],
]);

/** The method menu from the library's registry, keeping the current choice. */
function fillMethods(methods: { name: string; title: string }[]): void {
  const select = $<HTMLSelectElement>('method');
  const current = select.value;
  select.innerHTML = methods.map((x) => `<option value="${x.name}">${x.title}</option>`).join('');
  select.value = methods.some((x) => x.name === current) ? current : methods[0].name;
}

/** The attack controls' bounds, steps and titles (and the norm's choices), from the library's option schema (sent by the worker). */
function bindControls(controls: ControlSpecs): void {
  const inputs: [keyof ControlSpecs, string][] = [
    ['xi', 'xi'],
    ['maxPasses', 'passes'],
    ['seed', 'seed'],
  ];
  for (const [name, id] of inputs) {
    const c = controls[name];
    const input = $<HTMLInputElement>(id);
    input.title = c.title;
    if (c.min !== undefined) input.min = String(c.min);
    if (c.max !== undefined) input.max = String(c.max);
    if (c.step !== undefined) input.step = String(c.step);
  }
  const norm = controls.norm;
  const select = $<HTMLSelectElement>('norm');
  const current = select.value;
  select.title = norm.title;
  select.innerHTML = (norm.choices ?? []).map((p) => `<option value="${p}">${p === 'inf' ? 'L∞' : `L${p}`}</option>`).join('');
  select.value = (norm.choices ?? []).some((p) => String(p) === current) ? current : String(norm.default);
}

function settings(): AttackSettings {
  const target = $<HTMLSelectElement>('target').value;
  return {
    method: $<HTMLSelectElement>('method').value as Method,
    norm: $<HTMLSelectElement>('norm').value === '2' ? 2 : 'inf',
    xi: Number($<HTMLInputElement>('xi').value),
    maxPasses: Math.max(1, Number($<HTMLInputElement>('passes').value) || 1),
    delta: 0,
    seed: Number($<HTMLInputElement>('seed').value) || 0,
    ...(target !== '' ? { target: Number(target) } : {}),
  };
}

function start(): void {
  const s = settings();
  if (!(s.xi > 0)) return status('ξ must be a positive number of pixels.');
  for (const id of ['xi', 'passes', 'seed']) {
    const input = $<HTMLInputElement>(id);
    if (!input.checkValidity()) return status(`${input.title}: ${input.validationMessage}`);
  }
  history = [];
  metrics = undefined;
  setRunning(true);
  status(
    `Crafting v with ${methodTitles.get(s.method) ?? s.method} on the crafting images, ${s.norm === 2 ? 'L2' : 'L∞'} size ξ = ${s.xi}…`,
  );
  send({ type: 'start', settings: s });
}

function enableDownloads(): void {
  for (const id of ['dl-npy', 'dl-png']) $<HTMLButtonElement>(id).disabled = !v;
  $<HTMLButtonElement>('dl-metrics').disabled = !metrics;
  $<HTMLInputElement>('scale').disabled = !v;
  if (v && $('scaled').textContent?.startsWith('compute')) $('scaled').textContent = 'move the slider: 0 to 2 times v';
}

function download(name: string, blob: Blob): void {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

// ------------------------------------------------------------ worker messages

worker.onmessage = async (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case 'status':
      status(m.message);
      break;
    case 'error':
      status(`Error: ${m.message}`);
      setRunning(false);
      break;
    case 'ready': {
      info = m.model;
      $('backend').textContent = `TF.js ${m.backend}`;
      shown = { pixels: m.pixels, index: m.shown, clean: m.cleanPred, labels: m.labels };
      v = undefined;
      history = [];
      const acc = m.labels ? m.labels.reduce((n, l, i) => n + (l === m.cleanPred[i] ? 1 : 0), 0) / m.labels.length : undefined;
      $('sets').textContent =
        `${m.images.craft} images craft v; ${m.images.heldOut} are held out (never seen while v is made) and shown below`;
      status(
        `${info.name} loaded${acc !== undefined ? ` (it labels ${pct(acc)} of the held-out images correctly)` : ''}. Choose the attack and Start.`,
      );
      methodTitles = new Map(m.methods.map((x) => [x.name, x.title]));
      fillMethods(m.methods);
      bindControls(m.controls);
      $<HTMLSelectElement>('target').innerHTML =
        '<option value="">none (untargeted)</option>' +
        Array.from({ length: info.numClasses }, (_, i) => `<option value="${i}">${i}: ${labelOf(i)}</option>`).join('');
      $('graph').innerHTML = '';
      $('curve').innerHTML = '';
      $('rate').textContent = '–';
      drawGrid();
      setRunning(false);
      enableDownloads();
      break;
    }
    case 'held':
      if (paused) status('Paused between batches (Resume continues).');
      break;
    case 'progress':
      showProgress(m.p);
      break;
    case 'inspected':
      showInspected(m);
      break;
    case 'pass': {
      v = m.v;
      if (m.rec.pass > 0) history.push({ rec: m.rec, held: m.heldOut });
      $('rate').textContent = pct(m.heldOut.foolingRate);
      $('norms').textContent = `‖v‖₂ ${m.rec.normL2.toFixed(1)} · ‖v‖∞ ${m.rec.normInf.toFixed(2)}`;
      drawPerturbation();
      drawGrid(m.advPred);
      $('graph').innerHTML =
        m.graph.svg ||
        `<p class="small">The graph appears once ${GRAPH_MIN_FOOLED} images are fooled (now ${m.graph.fooled}): with fewer it is a few unconnected pairs.</p>`;
      if (m.curveSvg) $('curve').innerHTML = m.curveSvg;
      status(
        m.rec.pass === 0
          ? `Loaded perturbation: ${plainResult(m.heldOut)}`
          : `After pass ${m.rec.pass}: ${plainResult(m.heldOut, m.rec.foolingRate)}`,
      );
      enableDownloads();
      break;
    }
    case 'done':
      v = m.v;
      metrics = m.metrics;
      setRunning(false);
      status(
        `Done after ${history.length} pass(es). ${history.length ? plainResult(history[history.length - 1].held, history[history.length - 1].rec.foolingRate) : ''}`,
      );
      enableDownloads();
      break;
    case 'stopped':
      status(m.message);
      metrics = m.metrics;
      setRunning(false);
      enableDownloads();
      break;
    case 'scaled':
      $('scaled').textContent =
        `${m.factor.toFixed(1)} × v fools ${pct(m.foolingRate)} of the held-out images (‖v‖₂ ${m.normL2.toFixed(1)}, ‖v‖∞ ${m.normInf.toFixed(2)})`;
      drawGrid(m.advPred, m.v);
      break;
  }
};
worker.onerror = (e) => status(`Worker error: ${e.message}`);

// ------------------------------------------------------------ controls

$('load').addEventListener('click', load);
$('model').addEventListener('change', fillDatasets);
$('norm').addEventListener('change', fillDatasets);
$('start').addEventListener('click', start);
$('pause').addEventListener('click', () => {
  paused = !paused;
  send({ type: paused ? 'pause' : 'resume' });
  $('pause').textContent = paused ? 'Resume' : 'Pause';
  if (paused) status('Pausing after the batch under way…');
});
$('stop').addEventListener('click', () => send({ type: 'stop' }));
$('inspect-close').addEventListener('click', () => $<HTMLDialogElement>('inspect').close());
$('dl-npy').addEventListener('click', () => {
  if (v && info) download('perturbation.npy', new Blob([encodeNpy({ data: v, shape: info.inputShape })]));
});
$('dl-png').addEventListener('click', () => $<HTMLCanvasElement>('pert').toBlob((b) => b && download('perturbation.png', b)));
$('dl-metrics').addEventListener(
  'click',
  () => metrics && download('metrics.json', new Blob([JSON.stringify(metrics, null, 2)], { type: 'application/json' })),
);
$('npy').addEventListener('change', async () => {
  const f = $<HTMLInputElement>('npy').files?.[0];
  if (f) send({ type: 'perturbation', bytes: await f.arrayBuffer(), name: f.name });
});
let scaleTimer: ReturnType<typeof setTimeout> | undefined;
$('scale').addEventListener('input', () => {
  clearTimeout(scaleTimer);
  scaleTimer = setTimeout(() => send({ type: 'scale', factor: Number($<HTMLInputElement>('scale').value) }), 150);
});

/** Files the user dropped or picked: model files with their card.json (and labels file), and images. */
async function useFiles(files: File[]): Promise<void> {
  const images = files.filter((f) => /\.(png|jpe?g|webp|bmp|gif)$/i.test(f.name));
  const cardFile = files.find((f) => f.name === 'card.json' || f.name.endsWith('.card.json'));
  const modelFiles = files.filter((f) => /\.(json|bin|tflite|onnx|data)$/i.test(f.name) && f !== cardFile);
  if (modelFiles.length) {
    if (!cardFile) return status('A model needs its card.json (input size, preprocessing, classes): add it to the model files.');
    let card: BrowserCard;
    try {
      card = JSON.parse(await cardFile.text()) as BrowserCard;
    } catch (e) {
      return status(`${cardFile.name}: not valid JSON (${(e as Error).message})`);
    }
    if (typeof card.labels === 'string') {
      // A labels file named by the card is used when it came along; other paths cannot be followed.
      const name = (card.labels as string).split('/').pop();
      const file = files.find((f) => f.name === name);
      card.labels = file
        ? (await file.text())
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean)
        : undefined;
    }
    dropped = { ...dropped, card: { ...card, modelUrl: '' }, modelFiles };
  }
  if (images.length) dropped.images = images;
  fillModels();
  if (modelFiles.length) $<HTMLSelectElement>('model').value = '__dropped';
  fillDatasets();
  if (images.length) $<HTMLSelectElement>('dataset').value = '__dropped';
  const what = [modelFiles.length ? `model ${dropped.card!.name}` : '', images.length ? `${images.length} images` : '']
    .filter(Boolean)
    .join(' and ');
  status(what ? `Added ${what}. Load to use them.` : 'None of those files is a model, card or image.');
}

const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  void useFiles(Array.from(e.dataTransfer?.files ?? []));
});
$('files').addEventListener('change', () => void useFiles(Array.from($<HTMLInputElement>('files').files ?? [])));

loadCatalog().catch((e: Error) => status(e.message));
