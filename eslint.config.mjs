// @ts-check
import tseslint from 'typescript-eslint';
import prettier from 'eslint-config-prettier';
import { builtinModules } from 'node:module';

/** Workflow code runs in Temporal's deterministic sandbox: only @temporalio/workflow and type imports. */
const workflowRestrictions = {
  'no-restricted-imports': [
    'error',
    {
      paths: [...builtinModules, ...builtinModules.map((m) => `node:${m}`)].map((name) => ({
        name,
        message: 'Workflow code must be deterministic: no Node built-ins.',
      })),
      patterns: [
        {
          regex: '^(?!@temporalio/workflow$|\\.{1,2}/)',
          message: 'Workflow code may import only @temporalio/workflow and local workflow modules.',
          allowTypeImports: true,
        },
      ],
    },
  ],
};

export default tseslint.config(
  { ignores: ['node_modules/', 'lib/', 'lib-simulator/', '.cache/', '.data/', 'coverage/'] },
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      'object-shorthand': ['error', 'always'],
    },
  },
  { files: ['workflows/**/*.ts'], ignores: ['workflows/**/*.test.ts'], rules: workflowRestrictions },
  prettier
);
