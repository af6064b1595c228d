import { fileURLToPath } from 'node:url';
import { defineConfig, type Plugin } from 'vite';
import { studioHandler } from '../src/studio/server.js';

/**
 * The studio page: `npm run studio` (dev server) and `npm run build:studio` (static files in
 * dist-studio/, served by `uap studio`). Both serve the catalogue and the model / image files with the
 * same handler as `uap studio` (UAP_ASSETS or ../shared/assets for the ImageNet ones).
 */
function catalogue(): Plugin {
  return {
    name: 'uap-studio-files',
    configureServer(server) {
      server.middlewares.use(studioHandler({ assets: process.env.UAP_ASSETS }));
    },
    configurePreviewServer(server) {
      server.middlewares.use(studioHandler({ assets: process.env.UAP_ASSETS }));
    },
  };
}

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: './',
  plugins: [catalogue()],
  worker: { format: 'es' },
  build: {
    outDir: fileURLToPath(new URL('../dist-studio', import.meta.url)),
    emptyOutDir: true,
    chunkSizeWarningLimit: 8000,
    target: 'es2022',
  },
  server: { port: 5175 },
  logLevel: 'warn',
});
