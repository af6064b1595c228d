// ESLint (flat config): typescript-eslint's recommended rules on the sources, benches, scripts,
// studio and tests. Formatting is prettier's (npm run format), not the linter's.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'dist-studio/',
      'node_modules/',
      'runs/',
      'src/generated/',
      'src/import/tflite/schema.generated.ts',
      'bench/results/',
      'test/fixtures/',
      'docs/api/',
      'scratch/',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      // `_name` marks a parameter or binding kept for its position; a caught error may go unnamed in use.
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  // Plain JavaScript run by Node (TypeScript files get their globals from the compiler).
  { files: ['**/*.js', '**/*.mjs'], languageOptions: { globals: { process: 'readonly', console: 'readonly' } } },
);
