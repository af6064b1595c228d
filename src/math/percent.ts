/** A rate as a percentage with one decimal; `none` when there is none (messages, tables, captions). */
export const pct = (x: unknown, none = '-'): string => (typeof x === 'number' ? `${(x * 100).toFixed(1)}%` : none);
