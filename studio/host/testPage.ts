/**
 * The browser host on a page of its own, for the studio's Chromium test: test/studio.test.ts builds
 * testPage.html apart from the studio (nothing here is in the studio's build) and calls `uapHost`.
 */
import * as tf from '../../src/tf.js';
import { chooseBrowserBackend } from './backend.js';
import { decodeImageBlob } from './images.js';

/** The browser host as the test calls it: plain values in and out (they cross page.evaluate). */
export interface HostOnPage {
  /** chooseBrowserBackend's choice, the backend TF.js has after it, and what it said on the way. */
  chooseBackend(forced?: string): Promise<{ name: string; active: string; said: string[] }>;
  /** decodeImageBlob of an image file's bytes. */
  decode(bytes: number[], shape: [number, number, number]): Promise<number[]>;
}

declare global {
  var uapHost: HostOnPage | undefined;
}

globalThis.uapHost = {
  async chooseBackend(forced) {
    const said: string[] = [];
    const name = await chooseBrowserBackend(forced, (message) => said.push(message));
    return { name, active: tf.getBackend(), said };
  },
  async decode(bytes, shape) {
    return Array.from(await decodeImageBlob(new Blob([Uint8Array.from(bytes)]), shape));
  },
};
