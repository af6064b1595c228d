import type { OpKind } from '../net.js';
import type { OpDef } from './types.js';
import { act } from './act.js';
import { affine } from './affine.js';
import { binary } from './binary.js';
import { concat } from './concat.js';
import { constant } from './constant.js';
import { conv } from './conv.js';
import { dense } from './dense.js';
import { identity } from './identity.js';
import { layerNorm } from './layerNorm.js';
import { lrn } from './lrn.js';
import { matmul } from './matmul.js';
import { pad } from './pad.js';
import { pool } from './pool.js';
import { prelu } from './prelu.js';
import { reduce } from './reduce.js';
import { reshape } from './reshape.js';
import { slice } from './slice.js';
import { softmax } from './softmax.js';
import { transpose } from './transpose.js';

/** Every kind of Net node, by kind: the one list the executors, the exporter, the tests and the self-check read. */
export const OPS: { [K in OpKind]: OpDef<K> } = {
  conv,
  dense,
  affine,
  act,
  prelu,
  pool,
  reduce,
  pad,
  reshape,
  transpose,
  binary,
  concat,
  slice,
  matmul,
  layerNorm,
  lrn,
  softmax,
  const: constant,
  identity,
};

export function opDef<K extends OpKind>(kind: K): OpDef<K> {
  return OPS[kind];
}
