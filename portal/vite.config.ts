import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The portal builds into static files the vault serves (src/api/serve-portal.ts);
 * there is no second server in production. `vite` (dev) proxies the API to a
 * local `haven up`.
 */
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    // One small bundle; no inline data: URLs for assets (CSP img-src allows them, fonts none).
    assetsInlineLimit: 0,
  },
  server: {
    proxy: { '/api': process.env.HAVEN_URL ?? 'http://127.0.0.1:8440' },
  },
});
