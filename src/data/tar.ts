import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { checkReadable, readLimit } from '../io/bounded.js';
import { open, type FileHandle } from 'node:fs/promises';
import { UsageError } from '../errors.js';
import type { TarMember } from './source.js';

/*
 * Reads the member index of a tar file (ustar, pax and GNU long names) by walking its 512-byte headers
 * with positioned reads. Written here because the maintained tar libraries (tar, tar-stream) stream
 * every byte of the archive and do not report where a member's bytes lie; an index of offsets lets a
 * dataset of shards be listed without reading the images and read back one member at a time.
 */

const BLOCK = 512;

/** A header field: NUL-terminated text. */
function text(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString('utf8', start, end < 0 || end > start + len ? start + len : end);
}

/** A numeric header field: octal text, or base-256 (GNU) when the first byte has its high bit set. */
function number(b: Buffer, start: number, len: number): number {
  if (b[start] & 0x80) {
    let v = b[start] & 0x7f;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + b[i];
    return v;
  }
  const t = text(b, start, len).trim();
  return t ? parseInt(t, 8) : 0;
}

/** The header's checksum (bytes summed with the checksum field read as spaces) matches its field. */
function checksumOk(b: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : b[i];
  return sum === number(b, 148, 8);
}

/** The `path` record of a pax extended header ("<len> key=value\n" records). */
function paxPath(data: Buffer): string | undefined {
  let at = 0;
  let path: string | undefined;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const len = Number(data.toString('utf8', at, space));
    if (!(len > 0) || space < 0) break;
    const record = data.toString('utf8', space + 1, at + len - 1);
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') path = record.slice(eq + 1);
    at += len;
  }
  return path;
}

/**
 * Reads a file front to back through a window of WINDOW bytes: the index walks 512-byte headers, and a
 * read per header (two system calls each, plus an open per label member) made listing 50,000 samples
 * take a second. Slices it returns stay valid (a refill takes a new buffer).
 */
class WindowReader {
  private window = Buffer.alloc(0);
  private start = 0;
  constructor(private readonly fd: number) {}
  /** Bytes at..at+size, or fewer at the end of the file. */
  bytes(at: number, size: number): Buffer {
    if (at < this.start || at + size > this.start + this.window.length) {
      const buf = Buffer.allocUnsafe(Math.max(size, WINDOW));
      this.window = buf.subarray(0, readSync(this.fd, buf, 0, buf.length, at));
      this.start = at;
    }
    return this.window.subarray(at - this.start, Math.min(this.window.length, at - this.start + size));
  }
}
const WINDOW = 1 << 20;
/** Largest pax or GNU long-name record (a path; real ones are a few hundred bytes). */
const MAX_EXTENDED = 1 << 20;
/** Bytes of a kept member read at listing time. */
const KEEP_MOST = 4096;

/** Where a tar cut short ends: inside member `index` (0-based) of `size` bytes, of which `present` are there. */
export interface TruncatedTar {
  name: string;
  index: number;
  present: number;
  size: number;
}

/** Regular-file members of a tar, in archive order, with where their bytes start. */
export function tarMembers(file: string): TarMember[] {
  return tarIndex(file).members;
}

/**
 * The members of a tar (regular files, in archive order, with where their bytes start) and the
 * first KEEP_MOST bytes of those `keep` picks (small ones, such as labels: read in the same pass as the headers).
 */
export function tarIndex(
  file: string,
  keep?: (name: string) => boolean,
): { members: TarMember[]; kept: Map<TarMember, Buffer>; truncated?: TruncatedTar } {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    checkReadable(file, st, { what: 'tar', maxBytes: Number.MAX_SAFE_INTEGER });
    const members: TarMember[] = [];
    const kept = new Map<TarMember, Buffer>();
    const reader = new WindowReader(fd);
    let offset = 0;
    let longName: string | undefined;
    // Sizes come from the headers: checked against the file before anything is allocated for them.
    const read = (at: number, size: number) => {
      if (at + size > st.size) throw new UsageError(`tar ${file}: truncated at byte ${st.size} (a header says ${size} bytes from ${at})`);
      const buf = reader.bytes(at, size);
      if (buf.length !== size) throw new UsageError(`tar ${file}: truncated at byte ${at} (expected ${size} more bytes)`);
      return buf;
    };
    for (;;) {
      const header = reader.bytes(offset, BLOCK);
      if (header.length === 0) break; // no end-of-archive blocks: accepted, as GNU tar does
      if (header.length < BLOCK) throw new UsageError(`tar ${file}: truncated header at byte ${offset}`);
      if (header.every((x) => x === 0)) break;
      if (!checksumOk(header)) throw new UsageError(`tar ${file}: not a tar archive (bad header checksum at byte ${offset})`);
      const size = number(header, 124, 12);
      const type = String.fromCharCode(header[156] || 48);
      const data = offset + BLOCK;
      if (type === 'x' || type === 'L') {
        if (size > MAX_EXTENDED)
          throw new UsageError(`tar ${file}: an extended header of ${size} bytes at byte ${offset} (not a tar written by tar?)`);
        const ext = read(data, size);
        longName = type === 'L' ? text(ext, 0, size) : (paxPath(ext) ?? longName);
      } else {
        if (type === '0' || type === '7') {
          const prefix = header.toString('latin1', 257, 262) === 'ustar' ? text(header, 345, 155) : '';
          const name = (longName ?? (prefix ? `${prefix}/${text(header, 0, 100)}` : text(header, 0, 100))).replace(/^\.\//, '');
          const member = { name, offset: data, size };
          // Cut inside this member: it and whatever followed it are gone.
          if (data + size > st.size)
            return { members, kept, truncated: { name, index: members.length, present: Math.max(0, st.size - data), size } };
          members.push(member);
          if (keep?.(name)) kept.set(member, read(data, Math.min(size, KEEP_MOST)));
        }
        longName = undefined;
      }
      offset = data + Math.ceil(size / BLOCK) * BLOCK;
    }
    return { members, kept };
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads members of shards, keeping each shard open while in use (an open and a close per image cost
 * more than the read). Close it when the pass is over.
 */
export class ShardReader {
  private readonly open = new Map<string, Promise<{ fh: FileHandle; size: number }>>();

  private handle(file: string): Promise<{ fh: FileHandle; size: number }> {
    let got = this.open.get(file);
    if (!got) {
      got = (async () => {
        const fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
        const st = await fh.stat();
        if (!st.isFile()) {
          await fh.close();
          throw new Error(`${file} is not a regular file`);
        }
        return { fh, size: st.size };
      })();
      got.catch(() => this.open.delete(file));
      this.open.set(file, got);
    }
    return got;
  }

  private async readAt(file: string, start: number, size: number): Promise<Buffer> {
    const { fh, size: fileSize } = await this.handle(file);
    // Offsets and sizes come from headers (or a queued job): nothing is allocated beyond what the file holds.
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(size) || start < 0 || size < 0 || start + size > fileSize)
      throw new Error(`bytes ${start}-${start + size} lie beyond the end of ${file} (${fileSize} bytes)`);
    const buf = Buffer.alloc(size);
    const { bytesRead } = await fh.read(buf, 0, size, start);
    return bytesRead === size ? buf : buf.subarray(0, bytesRead);
  }

  async read(file: string, m: TarMember): Promise<Buffer> {
    if (m.size > readLimit('image')) throw new Error(`member ${m.name}: ${m.size} bytes, more than an image may have (UAP_MAX_IMAGE_MB)`);
    const buf = await this.readAt(file, m.offset, m.size);
    if (buf.length !== m.size) throw new Error(`member ${m.name} is truncated (${buf.length} of ${m.size} bytes)`);
    return buf;
  }

  /** The bytes of several members, read span by span (readSpans): one read per batch of a shard instead of one per image. */
  async readMany(wanted: { file: string; member: TarMember }[]): Promise<Map<TarMember, Buffer>> {
    const out = new Map<TarMember, Buffer>();
    await Promise.all(
      readSpans(wanted).map(async ({ file, start, length, members }) => {
        const span = await this.readAt(file, start, length).catch(() => undefined);
        if (span)
          for (const m of members)
            if (m.offset + m.size <= start + span.length) out.set(m, span.subarray(m.offset - start, m.offset - start + m.size));
      }),
    );
    return out;
  }
  async close(): Promise<void> {
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map(async (h) => (await h.catch(() => undefined))?.fh.close()));
  }
}

/** A stretch of a shard read in one go, and the members lying in it. */
export interface ReadSpan {
  file: string;
  start: number;
  length: number;
  members: TarMember[];
}

/**
 * Where to read members of shards with few reads: one span per shard holding its wanted members when
 * they lie side by side (members listed in archive order do), else one read per member.
 */
export function readSpans(wanted: { file: string; member: TarMember }[]): ReadSpan[] {
  const byFile = new Map<string, TarMember[]>();
  for (const { file, member } of wanted) {
    const ms = byFile.get(file);
    if (ms) ms.push(member);
    else byFile.set(file, [member]);
  }
  return [...byFile].flatMap(([file, ms]) => {
    let [start, end, bytes] = [Infinity, 0, 0];
    for (const m of ms) [start, end, bytes] = [Math.min(start, m.offset), Math.max(end, m.offset + m.size), bytes + m.size];
    if (ms.length > 1 && end - start <= 2 * bytes + (1 << 20)) return [{ file, start, length: end - start, members: ms }];
    return ms.map((m) => ({ file, start: m.offset, length: m.size, members: [m] }));
  });
}

/** The bytes of one member. */
export async function readMember(file: string, m: TarMember): Promise<Buffer> {
  const reader = new ShardReader();
  try {
    return await reader.read(file, m);
  } finally {
    await reader.close();
  }
}
