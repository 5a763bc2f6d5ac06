// Builds the page into web/dist (served by the API at /) and copies Swagger UI's files
// from swagger-ui-dist into dist/swagger, so /docs needs nothing from another host.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { defineConfig } from 'vite';

const require = createRequire(import.meta.url);
const SWAGGER_FILES = ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png'];

/** Emit Swagger UI's assets into the build output, under swagger/. */
function swaggerAssets() {
  return {
    name: 'pagelab-swagger-assets',
    apply: 'build',
    generateBundle() {
      const dir = dirname(require.resolve('swagger-ui-dist/package.json'));
      for (const file of SWAGGER_FILES) {
        this.emitFile({ type: 'asset', fileName: `swagger/${file}`, source: readFileSync(join(dir, file)) });
      }
    },
  };
}

// `npm run dev` serves the page with hot reload and passes the API (HTTP and WebSocket)
// to a PageLab server on PAGELAB_API (default: the one `make run` starts).
const api = process.env.PAGELAB_API ?? 'http://127.0.0.1:8000';

export default defineConfig({
  plugins: [swaggerAssets()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    sourcemap: true,
    chunkSizeWarningLimit: 1000,
  },
  server: {
    proxy: {
      '/api': { target: api, ws: true },
      '/openapi.json': api,
      '/docs': api,
      '/problems': api,
    },
  },
});
