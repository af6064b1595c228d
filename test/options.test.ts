import { describe, it, expect } from 'vitest';
import { Command } from 'commander';
import {
  OPTIONS,
  OPTION_NAMES,
  accepts,
  checkOptions,
  defaultsOf,
  expected,
  fingerprintOf,
  flagName,
  helpLine,
  parseWord,
  type OptionName,
} from '../src/attacks/options.js';
import { ALGORITHM1_VARIANTS, ALGORITHM1_DEFAULTS } from '../src/attacks/universal.js';
import { SGD_DEFAULTS } from '../src/attacks/sgd.js';
import { DATA_FREE_DEFAULTS } from '../src/attacks/dataFree.js';
import { addAttackFlags, attackOptions, type AttackFlags } from '../src/cli/flags.js';

/** A value each option takes, other than its default: the CLI word and what it parses to. */
const SAMPLE: Record<OptionName, [string, unknown]> = {
  norm: ['l2', 2],
  xi: ['12.5', 12.5],
  delta: ['0', 0],
  maxPasses: ['3', 3],
  overshoot: ['0.1', 0.1],
  candidates: ['4', 4],
  deepfoolSteps: ['50', 50],
  deepfoolNorm: ['match', 'match'],
  inner: ['pgd', 'pgd'],
  innerEps: ['5', 5],
  innerSteps: ['7', 7],
  innerStepSize: ['0.5', 0.5],
  projection: ['each', 'each'],
  steps: ['minimal', 'minimal'],
  stepSize: ['2', 2],
  batchSize: ['64', 64],
  seed: ['9', 9],
  loss: ['margin', 'margin'],
  beta: ['3', 3],
  kappa: ['1', 1],
  optimizer: ['adam', 'adam'],
  lr: ['2', 2],
  lrDecay: ['1', 1],
  gradShard: ['8', 8],
  prior: ['data', 'data'],
  stepsPerPass: ['4', 4],
  layers: ['conv1, conv2', ['conv1', 'conv2']],
};

describe('the option schema', () => {
  it('every default is a value its option takes, and the methods default to the schema', () => {
    for (const name of OPTION_NAMES) {
      const s = OPTIONS[name] as { default?: unknown; defaultFor?: Record<string, unknown> };
      if (s.default !== undefined) expect(accepts(name, s.default), name).toBe(true);
      for (const d of Object.values(s.defaultFor ?? {})) expect(accepts(name, d), name).toBe(true);
    }
    expect(ALGORITHM1_DEFAULTS).toMatchObject({
      ...ALGORITHM1_VARIANTS.accumulated,
      norm: 'inf',
      delta: 0.2,
      maxPasses: 10,
      batchSize: 16,
    });
    expect(SGD_DEFAULTS).toMatchObject({ batchSize: 32, optimizer: 'sign', loss: 'ce', beta: 12, lrDecay: 0.9 });
    expect(DATA_FREE_DEFAULTS).toMatchObject({ batchSize: 16, optimizer: 'adam', prior: 'none', stepsPerPass: 32 });
    // A method's defaults hold its own options and the pass runner's, none of another method's.
    expect(Object.keys(SGD_DEFAULTS)).not.toContain('overshoot');
    expect(Object.keys(ALGORITHM1_DEFAULTS)).not.toContain('loss');
    expect(Object.keys(defaultsOf('gduap')).sort()).toEqual(
      ['batchSize', 'delta', 'lrDecay', 'maxPasses', 'norm', 'optimizer', 'prior', 'seed', 'stepsPerPass'].sort(),
    );
  });

  it('ranges in words, and values in and out of them', () => {
    expect(expected('batchSize')).toBe('an integer in [1, 4096]');
    expect(expected('delta')).toBe('a number in [0, 1)');
    expect(expected('lrDecay')).toBe('a number in (0, 1]');
    expect(expected('xi')).toBe('a positive number');
    expect(expected('kappa')).toBe('a number >= 0');
    expect(expected('seed')).toBe('an integer >= 0');
    expect(expected('norm')).toBe('2 or inf');
    expect(expected('prior')).toBe('one of none, range, data');
    for (const [name, v] of [
      ['delta', 1],
      ['delta', -0.1],
      ['lrDecay', 0],
      ['batchSize', 4097],
      ['batchSize', 1.5],
      ['maxPasses', 0],
      ['xi', Infinity],
      ['xi', NaN],
      ['seed', -1],
      ['norm', 3],
      ['projection', 'both'],
      ['layers', ['']],
    ] as [OptionName, unknown][])
      expect(accepts(name, v), `${name} ${String(v)}`).toBe(false);
    for (const name of OPTION_NAMES) expect(accepts(name, SAMPLE[name][1]), name).toBe(true);
  });

  it('checks name the option as {option}, with what it takes and what it got; a required one missing is refused', () => {
    const ok = { ...ALGORITHM1_DEFAULTS, xi: 10 };
    expect(() => checkOptions(ok, ['passes', 'algorithm1'])).not.toThrow();
    expect(() => checkOptions({ ...ok, candidates: 1 }, ['algorithm1'])).toThrow(
      /^candidates: expected an integer in \[2, 100000\], got 1$/,
    );
    expect(() => checkOptions({ ...ok, xi: undefined }, ['passes'])).toThrow(/^xi: expected a positive number, got undefined$/);
    // Another method's options are not this one's to check.
    expect(() => checkOptions({ ...ok, beta: -1 }, ['passes', 'algorithm1'])).not.toThrow();
    expect(() => checkOptions({ ...SGD_DEFAULTS, xi: 10, beta: -1 }, ['sgd'])).toThrow(/^beta/);
    // Optional ones are checked when given.
    expect(() => checkOptions({ ...ok, innerEps: 0 }, ['algorithm1'])).toThrow(/^innerEps: expected a positive number, got 0$/);
  });

  it('fingerprints as checkpoints made before the schema have them (resume keeps working)', () => {
    // The settings each method recorded before the schema, written out as they were.
    const a1 = { ...ALGORITHM1_DEFAULTS, xi: 10 };
    expect(fingerprintOf(a1, ['passes'])).toEqual({ norm: 'inf', xi: 10, batchSize: 16, seed: 0 });
    expect(fingerprintOf(a1, ['algorithm1'])).toEqual({
      overshoot: 0.02,
      candidates: 10,
      deepfoolSteps: 10,
      deepfoolNorm: 2,
      projection: 'sum',
      steps: 'unit',
      stepSize: 0.5,
    });
    expect(fingerprintOf({ ...a1, inner: 'deepfool' }, ['algorithm1'])).not.toHaveProperty('inner');
    expect(fingerprintOf({ ...a1, inner: 'pgd', innerSteps: 4 }, ['algorithm1'])).toMatchObject({
      inner: 'pgd',
      innerEps: 10,
      innerSteps: 4,
      innerStepSize: null,
    });
    const sgd = { ...SGD_DEFAULTS, xi: 20 };
    expect(fingerprintOf(sgd, ['sgd'])).toEqual({ loss: 'ce', beta: 12, kappa: 0, optimizer: 'sign', lr: 2, lrDecay: 0.9 });
    expect(fingerprintOf({ ...sgd, gradShard: 32 }, ['sgd'])).not.toHaveProperty('gradShard');
    expect(fingerprintOf({ ...sgd, gradShard: 8, lr: 3 }, ['sgd'])).toMatchObject({ gradShard: 8, lr: 3 });
    expect(fingerprintOf({ ...DATA_FREE_DEFAULTS, xi: 10 }, ['gduap'])).toEqual({
      prior: 'none',
      stepsPerPass: 32,
      optimizer: 'adam',
      lr: 1,
      lrDecay: 0.9,
    });
  });

  it('the CLI has one flag per option, parsed by the schema, with its help and default', () => {
    const cmd = addAttackFlags(new Command().exitOverride());
    const argv = OPTION_NAMES.flatMap((n) => [`--${flagName(n)}`, SAMPLE[n][0]]);
    const flags = cmd.parse(argv, { from: 'user' }).opts() as AttackFlags;
    const given = attackOptions(flags);
    for (const n of OPTION_NAMES) expect(given[n], n).toEqual(SAMPLE[n][1]);
    const help = cmd.helpInformation().replace(/\s+/g, ' ');
    for (const n of OPTION_NAMES) expect(help, n).toContain(`--${flagName(n)} ${OPTIONS[n].arg} ${helpLine(n).replace(/\s+/g, ' ')}`);
    // Nothing given, nothing passed: the library fills its defaults per method (sgd's batch of 32).
    expect(attackOptions(addAttackFlags(new Command()).parse([], { from: 'user' }).opts() as AttackFlags)).toEqual({});
  });

  it('a bad word is one line naming the flag and what it takes', () => {
    expect(() => parseWord('maxPasses', '0')).toThrow(/^--max-passes 0: expected an integer in \[1, 100000\]$/);
    expect(() => parseWord('deepfoolNorm', 'inf')).toThrow(/^--deepfool-norm inf: expected 2 or match$/);
    expect(() => parseWord('inner', 'fff')).toThrow(/^--inner fff: expected one of deepfool, fgsm, pgd, newtonfool, cw$/);
    expect(() => parseWord('xi', '')).toThrow(/^--xi : expected a positive number$/);
    expect(parseWord('norm', 'Linf')).toBe('inf');
  });
});
