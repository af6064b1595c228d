/**
 * Wilson score interval of a rate (95% by default): where the true rate lies given `n` trials. It
 * stays inside [0, 1] and is honest at 0% and 100%, where the normal approximation collapses to a
 * point. At n = 256 a rate is known to about +-6 points; at n = 50,000 to +-0.4.
 */
export function wilsonInterval(rate: number, n: number, z = 1.96): [number, number] {
  if (n <= 0) return [0, 1];
  const z2 = z * z;
  const centre = (rate + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((rate * (1 - rate)) / n + z2 / (4 * n * n));
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

/** Whether two rates' 95% intervals are disjoint: a difference their sample sizes cannot explain. */
export function ratesDiffer(a: number, na: number, b: number, nb: number): boolean {
  const [alo, ahi] = wilsonInterval(a, na);
  const [blo, bhi] = wilsonInterval(b, nb);
  return ahi < blo || bhi < alo;
}
