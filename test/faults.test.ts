import { describe, it, expect, beforeAll } from 'vitest';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'node:http';
import { uapCli } from './helpers.js';
import { encodeNpy, readNpy, writeNpy } from '../src/io/npy.js';
import { writeAtomic, osError } from '../src/io/atomic.js';
import { serveStudio } from '../src/studio/server.js';
import { EMBEDDED_DIR } from '../src/paths.js';
import { commandLine, provenance } from '../src/run/provenance.js';

/**
 * Bad files and faults, as a user meets them (issue 18): each ends in a correct result or in one
 * error line naming the file, flag or field, with exit code 2 — never a stack trace, a silently wrong
 * result, or lost work. The README's table "Bad input and faults" lists these cases.
 */

const tmp = (p = 'uap-fault-') => mkdtempSync(join(tmpdir(), p));
const VAL = join(EMBEDDED_DIR, 'images', 'val');
/** A short compute run on the embedded model. */
const compute = (out: string, ...extra: string[]) =>
  uapCli(['compute', '--limit', '24', '--val-limit', '24', '--xi', '40', '--max-passes', '2', '-o', out, ...extra]);

/** Exit 2 and exactly one error line matching `pattern`, no stack trace. */
function expectUsage(r: { status: number | null; stderr: string }, pattern: RegExp): void {
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('uap: error') || l.startsWith('error:'));
  expect(r.status, r.stderr).toBe(2);
  expect(errors, r.stderr).toHaveLength(1);
  expect(errors[0]).toMatch(pattern);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

describe('bad images and labels', () => {
  let data: string;
  beforeAll(() => {
    data = tmp();
    const cls = join(data, '00_tshirt_top');
    mkdirSync(cls);
    const src = join(VAL, '00_tshirt_top');
    for (const f of readdirSync(src).slice(0, 6)) copyFileSync(join(src, f), join(cls, f));
    writeFileSync(join(cls, 'corrupt.png'), Buffer.from('\x89PNG\r\n\x1a\n this is not an image'));
    writeFileSync(join(cls, 'empty.jpg'), Buffer.alloc(0));
    const ok = readFileSync(join(src, readdirSync(src)[0]));
    writeFileSync(join(cls, 'truncated.png'), ok.subarray(0, Math.floor(ok.length / 2)));
    // A decompression bomb: a PNG header announcing 60000 x 60000 pixels, with no data behind it.
    const ihdr = Buffer.alloc(25);
    ihdr.writeUInt32BE(13, 0);
    ihdr.write('IHDR', 4);
    ihdr.writeUInt32BE(60000, 8);
    ihdr.writeUInt32BE(60000, 12);
    ihdr[16] = 8;
    ihdr[17] = 2;
    writeFileSync(join(cls, 'bomb.png'), Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), ihdr]));
  });

  it('corrupt, zero-byte, truncated and bomb images are skipped with a count; --strict stops on the first, naming it', async () => {
    const r = await uapCli(['evaluate', '--perturbation', join(data, 'none.npy'), '-d', data]);
    expectUsage(r, /none\.npy/); // the perturbation is checked first
    const v = join(data, 'zero.npy');
    writeNpy(v, { data: new Float32Array(28 * 28), shape: [28, 28, 1] });
    const ok = await uapCli(['evaluate', '--perturbation', v, '-d', data]);
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/skipped 4 of 10 files that could not be decoded/);
    expect(ok.stdout).toMatch(/6 images|fooling rate/);
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '-d', data, '--strict']),
      /image .*(bomb|corrupt|empty|truncated)\.(png|jpg): cannot be decoded/,
    );
  });

  it('a labels file: a malformed line is named; listed files that do not exist and unlisted images are counted', async () => {
    const bad = join(data, 'bad.txt');
    writeFileSync(bad, 'a.png, 1\nthis line has no label\n');
    const v = join(data, 'zero.npy');
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '-d', data, '--labels', bad]),
      /labels file .*bad\.txt: line 2 is not "path, index"/,
    );
    const some = join(data, 'some.txt');
    const files = readdirSync(join(data, '00_tshirt_top'))
      .filter((f) => f.endsWith('.png') && !/corrupt|truncated|bomb/.test(f))
      .slice(0, 3);
    writeFileSync(some, [...files.map((f) => `00_tshirt_top/${f}, 0`), 'missing/nowhere.png, 0'].join('\n'));
    const r = await uapCli(['evaluate', '--perturbation', v, '-d', data, '--labels', some]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/1 of 4 listed images do not exist and are left out .*paths are relative to the labels file's folder/);
    expect(r.stderr).toMatch(/image files are not in the labels file/);
    const twice = join(data, 'twice.txt');
    writeFileSync(twice, `00_tshirt_top/${files[0]}, 0\n00_tshirt_top/${files[1]}, 0\n00_tshirt_top/${files[0]}, 3\n`);
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '-d', data, '--labels', twice]),
      /twice\.txt: line 3 lists 00_tshirt_top\/\S+ again \(first on line 1\); each image once/,
    );
  });

  it('--sample draws a seeded sample across class folders; --limit takes the first files', async () => {
    const out = tmp();
    const r = await uapCli(['compute', '--sample', '20', '--val-limit', '10', '--max-passes', '1', '--xi', '40', '-o', out]);
    expect(r.status, r.stderr).toBe(0);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { images: number };
    expect(config.images).toBe(20);
  });
});

describe('reads are bounded: regular files only, sizes checked before anything is allocated', () => {
  const classDir = () => {
    const data = tmp();
    const cls = join(data, '00_tshirt_top');
    mkdirSync(cls);
    const src = join(VAL, '00_tshirt_top');
    for (const f of readdirSync(src).slice(0, 4)) copyFileSync(join(src, f), join(cls, f));
    return { data, cls };
  };
  const v = join(tmp(), 'v.npy');
  beforeAll(() => writeNpy(v, { data: new Float32Array(784).fill(20), shape: [28, 28, 1] }));

  it('an image that is /dev/zero behind a symlink, or a FIFO, is skipped with its reason (it filled memory, or hung the run); --strict names it', async () => {
    const { data, cls } = classDir();
    symlinkSync('/dev/zero', join(cls, 'zero.png'));
    expect(spawnSync('mkfifo', [join(cls, 'pipe.png')]).status).toBe(0);
    const r = await uapCli(['evaluate', '--perturbation', v, '--data', data], { timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/skipped 2 of 6 files that could not be decoded/);
    expect(r.stderr).toMatch(/(a device|a named pipe), expected a regular file/);
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '--data', data, '--strict'], { timeout: 120_000 }),
      /(pipe|zero)\.png: a (device|named pipe), expected a regular file/,
    );
  }, 300_000);

  it('a labels file that is a FIFO is one line, not a hang', async () => {
    const { data } = classDir();
    const fifo = join(tmp(), 'labels.txt');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '--data', data, '--labels', fifo], { timeout: 60_000 }),
      /labels file .*labels\.txt: a named pipe, expected a regular file/,
    );
  }, 120_000);

  it('a tar cut short inside a member is refused, saying what is lost; --allow-partial uses its whole members with a warning', async () => {
    const { data } = classDir();
    const shard = join(tmp(), 'shard.tar');
    execFileSync('tar', ['cf', shard, '--format=gnu', '-C', data, '00_tshirt_top']);
    // The 4 images are members 2-5 (after the folder); cut inside the third image.
    const members = execFileSync('tar', ['tvf', shard]).toString().trim().split('\n').length;
    expect(members).toBe(5);
    const bytes = readFileSync(shard);
    const cut = join(tmp(), 'cut.tar');
    // Member offsets: 512-byte header, data padded to 512. The folder: 512; each small PNG: 512 + ceil(size / 512) * 512.
    let at = 512;
    const sizes = readdirSync(join(data, '00_tshirt_top'))
      .sort()
      .map((f) => readFileSync(join(data, '00_tshirt_top', f)).length);
    for (const size of sizes.slice(0, 2)) at += 512 + Math.ceil(size / 512) * 512;
    writeFileSync(cut, bytes.subarray(0, at + 512 + 10));
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '--data', cut]),
      /cut\.tar: the archive is cut short inside member 3 \(00_tshirt_top\/\S+: 10 of its \d+ bytes\), so it and every member after it are lost; fetch the shard again, or pass --allow-partial to use its 2 whole members/,
    );
    const partial = await uapCli(['evaluate', '--perturbation', v, '--data', cut, '--allow-partial']);
    expect(partial.status, partial.stderr).toBe(0);
    expect(partial.stderr).toMatch(/using its 2 whole members \(--allow-partial\)/);
    expect(partial.stdout).toMatch(/on 2 images|2 images/);
  }, 300_000);

  it('a 1 KB tar whose header claims a 1.5 GB member, or a huge extended header, is refused at once (it reached 4.6 GB of memory)', async () => {
    const header = (name: string, size: number, type = '0') => {
      const h = Buffer.alloc(512);
      h.write(name, 0);
      h.write('0000644\0', 100);
      h.write('0000000\0', 108);
      h.write('0000000\0', 116);
      h.write(size.toString(8).padStart(11, '0') + '\0', 124);
      h.write('00000000000\0', 136);
      h.write(type, 156);
      h.write('ustar\0', 257);
      h.write('00', 263);
      h.fill(32, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
      return h;
    };
    const dir = tmp();
    const big = join(dir, 'big.tar');
    writeFileSync(big, Buffer.concat([header('a.png', 1.5e9), Buffer.alloc(512)]));
    expectUsage(
      await uapCli(['evaluate', '--perturbation', v, '--data', big]),
      /big\.tar: the archive is cut short inside member 1 \(a\.png: 512 of its 1500000000 bytes\)/,
    );
    const pax = join(dir, 'pax.tar');
    writeFileSync(pax, Buffer.concat([header('PaxHeader', 1.5e9, 'x'), Buffer.alloc(512)]));
    expectUsage(await uapCli(['evaluate', '--perturbation', v, '--data', pax]), /pax\.tar: an extended header of 1500000000 bytes/);
  }, 120_000);

  it('a .npz that inflates beyond the cap for array files is refused before it is inflated (UAP_MAX_ARRAY_MB)', async () => {
    const { zipSync } = await import('fflate');
    const f = join(tmp(), 'big.npz');
    writeFileSync(f, zipSync({ 'v.npy': [encodeNpy({ data: new Float32Array(784 * 1024), shape: [1024, 28, 28] }), { level: 6 }] }));
    expectUsage(
      await uapCli(['evaluate', '--perturbation', f, '--limit', '8'], { env: { UAP_MAX_ARRAY_MB: '1' } }),
      /big\.npz: its arrays inflate to more than the 1 MiB an array file may have \(at v; raise it with UAP_MAX_ARRAY_MB\)/,
    );
  }, 120_000);

  it('a model file that is a FIFO, and a card that is /dev/zero, are one line each', async () => {
    const dir = tmp();
    expect(spawnSync('mkfifo', [join(dir, 'm.onnx')]).status).toBe(0);
    expectUsage(
      await uapCli(['evaluate', '-m', join(dir, 'm.onnx'), '--perturbation', v], { timeout: 60_000 }),
      /m\.onnx: a named pipe, expected a regular file/,
    );
    symlinkSync('/dev/zero', join(dir, 'card.json'));
    expectUsage(
      await uapCli(['evaluate', '-m', join(dir, 'card.json'), '--perturbation', v], { timeout: 60_000 }),
      /card\.json: a device, expected a regular file/,
    );
  }, 120_000);
});

describe('perturbation files', () => {
  const dir = tmp();
  const npy = (name: string, data: Float32Array, shape = [28, 28, 1]) => {
    const f = join(dir, name);
    writeNpy(f, { data, shape });
    return f;
  };
  it('NaN or infinite values are refused; huge values are warned about', async () => {
    const nan = new Float32Array(784);
    nan[5] = NaN;
    expectUsage(
      await uapCli(['evaluate', '--perturbation', npy('nan.npy', nan), '--limit', '8']),
      /nan\.npy: holds NaN or infinite values/,
    );
    const inf = new Float32Array(784).fill(1);
    inf[0] = Infinity;
    expectUsage(
      await uapCli(['evaluate', '--perturbation', npy('inf.npy', inf), '--limit', '8']),
      /inf\.npy: holds NaN or infinite values/,
    );
    const huge = await uapCli(['evaluate', '--perturbation', npy('huge.npy', new Float32Array(784).fill(1e6)), '--limit', '8']);
    expect(huge.status, huge.stderr).toBe(0);
    expect(huge.stderr).toMatch(/values reach 1\.000e\+6 pixels, beyond anything pixels in \[0, 255\] can take/);
  });
  it('a file of no values (an axis of length 0) is refused, not resized into a perturbation', async () => {
    expectUsage(
      await uapCli(['evaluate', '--perturbation', npy('empty.npy', new Float32Array(0), [0, 28, 1]), '--limit', '8']),
      /empty\.npy: shape \(0, 28, 1\) holds no values/,
    );
  });
  it('uint8 and float16 files are named as unsupported dtypes, not "truncated"', async () => {
    const header = (descr: string) => {
      const bytes = encodeNpy({ data: new Float32Array(784), shape: [28, 28, 1] });
      return Buffer.from(Buffer.from(bytes).toString('latin1').replace("'<f4'", `'${descr}'`), 'latin1').subarray(0, 128 + 784);
    };
    writeFileSync(join(dir, 'u8.npy'), header('|u1'));
    writeFileSync(join(dir, 'f16.npy'), header('<f2'));
    expectUsage(
      await uapCli(['evaluate', '--perturbation', join(dir, 'u8.npy'), '--limit', '8']),
      /u8\.npy: dtype \|u1 is not supported \(expected float32 '<f4' or float64 '<f8'\)/,
    );
    expectUsage(await uapCli(['evaluate', '--perturbation', join(dir, 'f16.npy'), '--limit', '8']), /f16\.npy: dtype <f2 is not supported/);
  });
  it('a format-2 .npy cut inside its header, or claiming a header longer than the file, is one line (it was an internal error)', async () => {
    const v1 = encodeNpy({ data: new Float32Array(784), shape: [28, 28, 1] });
    const cut = Buffer.from(v1.subarray(0, 10));
    cut[6] = 2;
    writeFileSync(join(dir, 'cut2.npy'), cut);
    expectUsage(await uapCli(['evaluate', '--perturbation', join(dir, 'cut2.npy'), '--limit', '8']), /cut2\.npy: truncated \.npy header/);
    const long = Buffer.concat([Buffer.from(v1.subarray(0, 8)), Buffer.from([255, 255, 255, 127]), Buffer.alloc(64)]);
    long[6] = 2;
    writeFileSync(join(dir, 'long2.npy'), long);
    expectUsage(await uapCli(['evaluate', '--perturbation', join(dir, 'long2.npy'), '--limit', '8']), /long2\.npy: truncated \.npy header/);
  });
});

describe('flags that ask for opposite things are refused, not silently ranked', () => {
  it('--resume with --force; --limit with --sample; --val-limit with --val-sample', async () => {
    expectUsage(
      await compute(tmp(), '--resume', '--force'),
      /--resume and --force: one continues the run in --out, the other replaces it; give one/,
    );
    expectUsage(await compute(tmp(), '--sample', '10'), /--limit 24 and --sample 10: both choose the images of X; give one/);
    expectUsage(
      await uapCli(['compute', '--val-limit', '5', '--val-sample', '10', '-o', tmp()]),
      /--val-limit 5 and --val-sample 10: both choose the validation images/,
    );
    expectUsage(await uapCli(['sweep-size', '--limit', '5', '--sample', '10']), /--limit 5 and --sample 10/);
    expectUsage(
      await uapCli(['graph', '--run', tmp(), '--perturbation', 'other.npy']),
      /--run \S+ and --perturbation other\.npy: the run analyses its own perturbation; give one/,
    );
  });
});

describe('numbers beyond the range where they keep their meaning', () => {
  it('--batch-size 1e9, --seed 1e300, --draws 100000, --lock-seconds 1e10: one line each, naming the bound', async () => {
    expectUsage(await compute(tmp(), '--batch-size', '1e9'), /--batch-size 1e9: expected an integer in \[1, 4096\]/);
    expectUsage(await compute(tmp(), '--seed', '1e300'), /--seed 1e300: expected an integer >= 0/);
    expectUsage(await uapCli(['baseline', '--run', tmp(), '--draws', '100000']), /--draws 100000: expected an integer in \[1, 1000\]/);
    expectUsage(
      await uapCli(['worker', '--queue', 'redis://127.0.0.1:1', '--lock-seconds', '1e10']),
      /--lock-seconds 1e10: expected an integer in \[1, 86400\]/,
    );
  }, 120_000);
});

describe('a reader that goes away', () => {
  it('uap compute | head: the run finishes, writes its results and releases its folder (no EPIPE crash, no stale lock)', async () => {
    const out = tmp();
    const child = spawn(process.execPath, [
      resolve('dist/src/cli/main.js'),
      'compute',
      '--limit',
      '16',
      '--val-limit',
      '16',
      '--max-passes',
      '2',
      '--xi',
      '40',
      '-o',
      out,
    ]);
    // Like head -1: read the first chunk, then close both pipes.
    child.stdout.once('data', () => child.stdout.destroy());
    child.stderr.once('data', () => child.stderr.destroy());
    const code = await new Promise<number | null>((done) => child.on('close', done));
    expect(code).toBe(0);
    expect(existsSync(join(out, 'metrics.json'))).toBe(true);
    expect(existsSync(join(out, '.uap.lock'))).toBe(false);
  });
});

describe('analyses asked for more than the data holds', () => {
  it('sweep-size --sizes and normals --dims beyond the images of X: refused when none fits (it was an empty result), else the larger left out with a warning', async () => {
    expectUsage(
      await uapCli(['sweep-size', '--limit', '20', '--sizes', '50,80', '--val-limit', '20', '-o', tmp()]),
      /--sizes 50,80: all exceed the 20 images of X/,
    );
    expectUsage(
      await uapCli(['normals', '--limit', '20', '--dims', '300,500', '--val-limit', '20', '-o', tmp()]),
      /--dims 300,500: all exceed the 20 normals that 20 images of X give/,
    );
    const r = await uapCli(['sweep-size', '--limit', '20', '--sizes', '10,50', '--val-limit', '20', '--max-passes', '1', '-o', tmp()]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/warning: --sizes 10,50: 50 exceed the 20 images of X and are left out/);
  });
});

describe('checkpoints and run folders', () => {
  let base: string;
  let unbroken: Float32Array;
  beforeAll(async () => {
    base = tmp();
    const r = await compute(join(base, 'unbroken'));
    expect(r.status, r.stderr).toBe(0);
    unbroken = readNpy(join(base, 'unbroken', 'perturbation.npy')).data;
  });

  /** A run folder stopped after pass 1 of 2, with its checkpoint edited by `edit`. */
  async function stoppedRun(name: string, edit?: (dir: string, meta: Record<string, unknown>) => void): Promise<string> {
    const dir = join(base, name);
    const r = await compute(dir, '--max-passes', '1');
    expect(r.status, r.stderr).toBe(0);
    const meta = JSON.parse(readFileSync(join(dir, 'checkpoint.json'), 'utf8')) as Record<string, unknown>;
    if (edit) {
      edit(dir, meta);
      writeFileSync(join(dir, 'checkpoint.json'), JSON.stringify(meta));
    }
    return dir;
  }

  it('kill -9 mid-run, then --resume: the same perturbation as an unbroken run', async () => {
    const dir = join(base, 'killed');
    const child = spawn(
      process.execPath,
      [resolve('dist/src/cli/main.js'), 'compute', '--limit', '24', '--val-limit', '24', '--xi', '40', '--max-passes', '2', '-o', dir],
      { stdio: 'ignore' },
    );
    // Killed as soon as the first pass is checkpointed (or when it ends, should it be that fast).
    await new Promise<void>((done) => {
      const poll = setInterval(() => {
        if (existsSync(join(dir, 'checkpoint.json')) || child.exitCode !== null) {
          clearInterval(poll);
          child.kill('SIGKILL');
          done();
        }
      }, 20);
    });
    await new Promise((r) => child.on('close', r));
    const r = await compute(dir, '--resume');
    expect(r.status, r.stderr).toBe(0);
    expect(Array.from(readNpy(join(dir, 'perturbation.npy')).data)).toEqual(Array.from(unbroken));
  });

  it('a resume says where it starts', async () => {
    const dir = await stoppedRun('resumed');
    const r = await compute(dir, '--resume');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr + r.stdout).toMatch(/resuming from pass 1/);
  });

  it.each([
    [
      'an all-NaN perturbation',
      (dir: string): void => writeNpy(join(dir, 'checkpoint-1.npy'), { data: new Float32Array(784).fill(NaN), shape: [28, 28, 1] }),
      /checkpoint-1\.npy: holds NaN or infinite values/,
    ],
    [
      'a perturbation outside the ball',
      (dir: string): void => writeNpy(join(dir, 'checkpoint-1.npy'), { data: new Float32Array(784).fill(1000), shape: [28, 28, 1] }),
      /\|\|v\|\|_inf = 1000, outside the ball of radius 40/,
    ],
    [
      'a negative pass count',
      (_dir: string, m: Record<string, unknown>): void => {
        m.completed = -3;
      },
      /"completed" must be an integer >= 1, got -3/,
    ],
    [
      'a wrong shape',
      (_dir: string, m: Record<string, unknown>): void => {
        m.shape = [14, 56, 1];
      },
      /holds a 14x56x1 perturbation; model fashion-mnist-cnn takes 28x28x1/,
    ],
    [
      'a vFile outside the run folder',
      (_dir: string, m: Record<string, unknown>): void => {
        m.vFile = '../../etc/passwd';
      },
      /"vFile" must name a checkpoint-N\.npy file in the run folder/,
    ],
    [
      'garbage in its pass history (the report would copy it)',
      (_dir: string, m: Record<string, unknown>): void => {
        (m.history as Record<string, unknown>[])[0].foolingRate = '<script>';
      },
      /"history"\[0\]\.foolingRate must be a rate in \[0, 1\], got "<script>"/,
    ],
    [
      'a pass history out of order',
      (_dir: string, m: Record<string, unknown>): void => {
        (m.history as Record<string, unknown>[])[0].pass = 7;
      },
      /"history"\[0\]\.pass must be 1, got 7/,
    ],
  ] as const)('--resume refuses a checkpoint with %s', async (name, edit, pattern) => {
    const dir = await stoppedRun(`bad-${name.replace(/\W+/g, '-')}`, edit as (dir: string, m: Record<string, unknown>) => void);
    expectUsage(await compute(dir, '--resume'), pattern);
  });

  it('--resume with other images is refused before any image is decoded', async () => {
    const dir = await stoppedRun('limit');
    expectUsage(
      await uapCli(['compute', '--limit', '30', '--val-limit', '24', '--xi', '40', '--max-passes', '2', '-o', dir, '--resume']),
      /crafted on 24 listed images of X, not 30/,
    );
  });

  it('a fresh run into a folder holding an unfinished run is refused without --force, and replaces it with', async () => {
    const dir = await stoppedRun('fresh');
    rmSync(join(dir, 'metrics.json')); // as a run stopped mid-way leaves it: a checkpoint, no metrics
    expectUsage(await compute(dir), /holds an unfinished run; --resume continues it, --force starts afresh/);
    const r = await compute(dir, '--force');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/replacing the unfinished run there/);
  });

  it("two runs into one folder at once: the second is refused, naming the first one's pid", async () => {
    const dir = join(base, 'locked');
    mkdirSync(dir);
    // A live process holds the lock (this test process); a dead one's lock is taken over.
    writeFileSync(join(dir, '.uap.lock'), JSON.stringify({ pid: process.pid, command: 'uap compute' }));
    expectUsage(await compute(dir), new RegExp(`another uap run \\(pid ${process.pid}, uap compute\\) is writing there`));
    writeFileSync(join(dir, '.uap.lock'), JSON.stringify({ pid: 999999, command: 'uap compute' }));
    const r = await compute(dir);
    expect(r.status, r.stderr).toBe(0);
    expect(existsSync(join(dir, '.uap.lock'))).toBe(false); // released at the end
  });

  it('OS errors on output paths: one line naming the path; outputs are written whole or not at all', async () => {
    const file = join(base, 'a-file');
    writeFileSync(file, 'x');
    expectUsage(await compute(join(file, 'run')), /a-file.*(is a file|cannot .*not a folder|ENOTDIR)/);
    expect(() => writeAtomic(join(file, 'out.json'), '{}')).toThrow(
      /a-file: cannot create the folder \(a part of the path is a file, not a folder, ENOTDIR\)|ENOTDIR|EEXIST/,
    );
    const full = osError(Object.assign(new Error('no space'), { code: 'ENOSPC' }), '/data/run/metrics.json', 'write');
    expect(full?.message).toBe('/data/run/metrics.json: cannot write (no space left on the device, ENOSPC)');
    // A failed write leaves the previous file and no temporary beside it.
    const target = join(base, 'whole.json');
    writeAtomic(target, '{"a":1}');
    expect(() => writeAtomic(target, { length: 3 } as unknown as string)).toThrow();
    expect(readFileSync(target, 'utf8')).toBe('{"a":1}');
    expect(readdirSync(base).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a damaged run folder (config.json naming the model with a number, a card that is not an object) is one line for graph, baseline and transfer', async () => {
    const run = tmp();
    expect((await compute(run)).status).toBe(0);
    writeFileSync(join(run, 'config.json'), '{"modelSpec": 5, "model": [1]}');
    expectUsage(await uapCli(['graph', '--run', run, '--limit', '16']), /--run \S+: config\.json does not name the model/);
    writeFileSync(join(run, 'config.json'), '{"modelSpec": "fashion", "modelCard": 5}');
    for (const args of [
      ['baseline', '--run', run, '--limit', '16', '--draws', '1'],
      ['transfer', run, '--models', 'fashion', '--limit', '16'],
    ])
      expectUsage(await uapCli(args), /config\.json's "modelCard" is not an object of card fields/);
  }, 300_000);

  it('a run folder is read back with every field checked: wrong types read as absent, a card that is not an object refused', async () => {
    const { readRunConfig } = await import('../src/run/config.js');
    const run = tmp();
    expect(readRunConfig(run)).toBeUndefined(); // no config.json
    writeFileSync(join(run, 'config.json'), '[1, 2]');
    expect(readRunConfig(run)).toBeUndefined();
    writeFileSync(join(run, 'config.json'), 'not json');
    expect(readRunConfig(run)).toBeUndefined();
    writeFileSync(
      join(run, 'config.json'),
      JSON.stringify({ modelSpec: 'fashion', norm: 3, seed: -1, listed: 1.5, val: 'v', valLimit: 0, valSample: 20, valLabels: 7 }),
    );
    expect(readRunConfig(run)).toEqual({
      modelSpec: 'fashion',
      model: undefined,
      modelCard: undefined,
      norm: undefined,
      seed: undefined,
      listed: undefined,
      val: 'v',
      valLabels: undefined,
      valLimit: undefined,
      valSample: 20,
    });
    writeFileSync(join(run, 'config.json'), JSON.stringify({ modelSpec: 'fashion', modelCard: [1] }));
    expect(() => readRunConfig(run)).toThrow(/config\.json's "modelCard" is not an object of card fields/);
  });

  it("an --out under a kernel folder (/proc/self/x) is one line: Node's recursive mkdir never returned there", async () => {
    expectUsage(await compute('/proc/self/uap-run'), /\/proc\/self\/uap-run: cannot create the folder \(.*ENOENT\)/);
  }, 120_000);
});

describe('secrets in what a run records', () => {
  it('a queue password never reaches config.json or the report (provenance.command)', async () => {
    expect(
      commandLine(['uap', 'evaluate', '--queue', 'redis://:s3cret@127.0.0.1:6379/2', '--queue=rediss://me:pw@h:1', 'redis://h:1']),
    ).toBe('uap evaluate --queue redis://:***@127.0.0.1:6379/2 --queue=rediss://me:***@h:1 redis://h:1');
    const saved = process.argv;
    process.argv = [saved[0], 'uap', 'compute', '--queue', 'redis://:s3cret@127.0.0.1:6379'];
    try {
      expect(JSON.stringify(await provenance({}))).not.toContain('s3cret');
    } finally {
      process.argv = saved;
    }
  });
});

describe('models and cards', () => {
  it('a card whose inputShape disagrees with the model file is refused, naming both', async () => {
    const dir = tmp();
    cpSync(join(EMBEDDED_DIR, 'model'), dir, { recursive: true });
    const card = JSON.parse(readFileSync(join(dir, 'card.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'card.json'), JSON.stringify({ ...card, inputShape: [32, 32, 1] }));
    expectUsage(
      await uapCli(['accuracy', '-m', join(dir, 'card.json'), '--limit', '8']),
      /"inputShape" is 32x32x1, but .*model\.json takes 28x28x1 images/,
    );
  });
  it('a truncated weights file and a truncated model.json are one-line errors', async () => {
    const dir = tmp();
    cpSync(join(EMBEDDED_DIR, 'model'), dir, { recursive: true });
    truncateSync(join(dir, 'weights.bin'), 1000);
    expectUsage(await uapCli(['accuracy', '-m', join(dir, 'card.json'), '--limit', '8']), /could not be loaded|weights|bytes/);
    const dir2 = tmp();
    cpSync(join(EMBEDDED_DIR, 'model'), dir2, { recursive: true });
    truncateSync(join(dir2, 'model.json'), 100);
    expectUsage(await uapCli(['accuracy', '-m', join(dir2, 'card.json'), '--limit', '8']), /model\.json/);
  });
  it('--xi beyond the pixel range is refused, before anything is crafted (1e308 made a perturbation of NaNs)', async () => {
    for (const [norm, xi, shown, most] of [
      ['inf', '300', '300', 'Linf 255'],
      ['inf', '1e308', '1e\\+308', 'Linf 255'],
      ['2', '1e160', '1e\\+160', 'L2 7140'],
    ])
      expectUsage(
        await uapCli(['compute', '--limit', '8', '--val', 'none', '--norm', norm, '--xi', xi, '--max-passes', '1', '-o', tmp()]),
        new RegExp(`--xi ${shown}: beyond what images in \\[0, 255\\] allow \\(${most} is the whole pixel range\\)`),
      );
    // The whole range itself is a radius.
    const r = await uapCli(['compute', '--limit', '8', '--val', 'none', '--xi', '255', '--max-passes', '1', '-o', tmp()]);
    expect(r.status, r.stderr).toBe(0);
  });
});

describe('studio server: only its own files, to its own origin', () => {
  let url: string;
  let close: () => Promise<void>;
  let link: string;
  beforeAll(async () => {
    if (!existsSync(join('dist-studio', 'index.html'))) return;
    // A link inside a served folder that points out of it.
    link = join(EMBEDDED_DIR, 'images', `passwd-link-${process.pid}.txt`);
    symlinkSync('/etc/passwd', link);
    ({ url, close } = await serveStudio({ port: 0 }));
    return async () => {
      await close();
      rmSync(link, { force: true });
    };
  });
  const get = (path: string, opts: { method?: string; host?: string } = {}) =>
    new Promise<{ status: number; body: string; headers: Record<string, unknown> }>((done, fail) => {
      const u = new URL(path, url);
      const req = request(
        { host: u.hostname, port: u.port, path: u.pathname, method: opts.method ?? 'GET', headers: opts.host ? { host: opts.host } : {} },
        (res) => {
          let body = '';
          res.on('data', (d) => (body += d));
          res.on('end', () => done({ status: res.statusCode!, body, headers: res.headers }));
        },
      );
      req.on('error', fail);
      req.end();
    });
  it.skipIf(!existsSync(join('dist-studio', 'index.html')))(
    'refuses symlinks out of its folders, other hosts and other methods; the catalog holds no server paths',
    async () => {
      expect((await get('/files/embedded/images/val/00_tshirt_top/' + readdirSync(join(VAL, '00_tshirt_top'))[0])).status).toBe(200);
      expect((await get(`/files/embedded/images/passwd-link-${process.pid}.txt`)).status).toBe(404);
      expect((await get('/files/embedded/../../../../etc/passwd')).status).toBe(404);
      expect((await get('/', { host: 'evil.example:5175' })).status).toBe(403);
      expect((await get('/api/catalog', { method: 'POST' })).status).toBe(405);
      const catalog = await get('/api/catalog');
      expect(catalog.status).toBe(200);
      expect(catalog.headers['access-control-allow-origin']).toBeUndefined();
      expect(catalog.body).not.toContain(resolve('.'));
      expect(catalog.body).not.toMatch(/"\/(work|home|root|tmp|usr)\//);
    },
  );
  it('bound to every interface (--host 0.0.0.0): answers requests addressed to any address of this machine, still refuses other hosts', async () => {
    const { url: wide, close: closeWide } = await serveStudio({ port: 0, host: '0.0.0.0' });
    try {
      const port = new URL(wide).port;
      const own = Object.values(networkInterfaces())
        .flat()
        .find((i) => i && i.family === 'IPv4' && !i.internal)?.address;
      const status = (host: string) =>
        new Promise<number>((done, fail) =>
          request({ host: '127.0.0.1', port, path: '/api/catalog', headers: { host } }, (res) => {
            res.resume();
            done(res.statusCode ?? 0);
          })
            .on('error', fail)
            .end(),
        );
      expect(await status(`127.0.0.1:${port}`)).toBe(200);
      if (own) expect(await status(`${own}:${port}`)).toBe(200);
      expect(await status(`${hostname()}:${port}`)).toBe(200);
      expect(await status(`evil.example:${port}`)).toBe(403);
    } finally {
      await closeWide();
    }
  });

  it('bad --port and --host values are one-line errors', async () => {
    expectUsage(await uapCli(['studio', '--port', '70000']), /--port 70000: expected an integer in 0\.\.65535/);
    expectUsage(await uapCli(['studio', '--host', 'not-an-address']), /--host not-an-address: expected an IP address/);
    // 192.0.2.1 (TEST-NET-1, documentation only): never an address of this machine; nothing is sent.
    expectUsage(await uapCli(['studio', '--host', '192.0.2.1', '--port', '0']), /--host 192\.0\.2\.1: not an address of this machine/);
  });
});
