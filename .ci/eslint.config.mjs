// ESLint for the TypeScript sources (npm run lint; .ci/run runs it before the tests).
// Kept in .ci/ so the project's top level stays as README.md describes it.
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { basePath: '..' },
  { ignores: ['dist/**', 'node_modules/**', 'docs/**'] },
  {
    basePath: '..',
    files: ['**/*.ts'],
    extends: [js.configs.recommended, ...tseslint.configs.recommended],
    rules: {
      // tsc (noUnusedLocals, noUnusedParameters) already reports these, with its own rules for `_` names
      '@typescript-eslint/no-unused-vars': 'off',
      // Node's own `this` aliasing in callbacks that must not be closures per connection
      '@typescript-eslint/no-this-alias': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always', { null: 'ignore' }], // `x != null`: null or undefined, on purpose
      'no-var': 'error',
      'prefer-const': 'error',
    },
  },
)
