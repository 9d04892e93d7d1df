// Lint rules, including the layering of design.md: front ends → engine → stores.
import js from '@eslint/js';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';
import importX from 'eslint-plugin-import-x';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'native/build/**', 'build/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })] },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-syntax': [
        'error',
        { selector: 'ExportDefaultDeclaration', message: 'Use named exports only.' },
      ],
      'import-x/no-cycle': ['error', { maxDepth: 10 }],
      'import-x/no-restricted-paths': [
        'error',
        {
          zones: [
            { target: './src/engine', from: ['./src/cli', './src/fs', './src/nbd'], message: 'The engine never imports a front end.' },
            {
              target: './src/engine/blockstore',
              from: './src/engine',
              except: ['./blockstore', './sys', './errors.ts', './objects/formats.ts', './objects/object-codec.ts'],
              message: 'Block stores know nothing of the catalog or the operations.',
            },
            {
              target: './src/engine/catalog',
              from: './src/engine',
              except: ['./catalog', './errors.ts', './objects/formats.ts', './support'],
              message: 'The catalog stores metadata; it knows nothing of objects or operations.',
            },
            {
              target: './src/engine/endpoints',
              from: './src/engine',
              except: ['./endpoints', './errors.ts', './sys', './pipeline/buffer-pool.ts', './support'],
              message: 'Sources and targets move image data; they know nothing of the store.',
            },
            {
              target: './src/engine/objects',
              from: ['./src/engine/operations', './src/engine/live', './src/engine/endpoints'],
              message: 'Stored objects are a layer below the operations and the live versions.',
            },
            {
              target: './src/engine/support',
              from: ['./src/engine/operations', './src/engine/live', './src/engine/catalog', './src/engine/store.ts'],
              message: 'Support modules are leaves.',
            },
            { target: './src/fs', from: ['./src/cli', './src/nbd'], message: 'Front ends do not import each other.' },
            { target: './src/nbd', from: ['./src/cli', './src/fs'], message: 'Front ends do not import each other.' },
          ],
        },
      ],
      'no-restricted-properties': ['error', { object: 'process', property: 'exit', message: 'Only bin/ exits the process.' }],
    },
  },
  {
    // Piscina loads workers and vitest its config through a default export; declarations mirror
    // packages that have one.
    files: ['src/engine/pipeline/*-worker.ts', 'vitest.config.ts', 'src/types/*.d.ts', 'test/ceph-setup.ts'],
    rules: { 'no-restricted-syntax': 'off' },
  },
  {
    files: ['test/**/*.ts', 'bench/**'],
    rules: { '@typescript-eslint/no-non-null-assertion': 'off', 'no-restricted-properties': 'off' },
  },
);
