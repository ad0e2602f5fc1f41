// Static build of the page into dist/ (relative URLs, so any static server can host it).
import { defineConfig } from 'vite';

export default defineConfig({
  base: './',
  logLevel: 'error',
  worker: { format: 'es' },
  // the image loader starts its decode workers with new URL(..., import.meta.url)
  optimizeDeps: { exclude: ['@cornerstonejs/dicom-image-loader'] },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true, chunkSizeWarningLimit: 10000 },
});
