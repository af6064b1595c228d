/**
 * The browser build's stand-in for node:fs, node:path and node:crypto. Library modules the studio
 * uses import them for checkpoints and card files, which the studio never asks for; reaching one of
 * these is a bug, and says so.
 */
const absent = (name: string) => () => {
  throw new Error(`${name} is not available in the browser studio`);
};
export const existsSync = absent('fs.existsSync');
export const readFileSync = absent('fs.readFileSync');
export const writeFileSync = absent('fs.writeFileSync');
export const renameSync = absent('fs.renameSync');
export const mkdirSync = absent('fs.mkdirSync');
export const rmSync = absent('fs.rmSync');
export const statSync = absent('fs.statSync');
export const readdirSync = absent('fs.readdirSync');
export const join = absent('path.join');
export const dirname = absent('path.dirname');
export const resolve = absent('path.resolve');
export const basename = absent('path.basename');
export const createHash = absent('crypto.createHash');
export default {};
