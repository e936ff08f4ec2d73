/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  modulePathIgnorePatterns: ['<rootDir>/lib', '<rootDir>/lib-simulator', '<rootDir>/.cache', '<rootDir>/.data'],
  setupFiles: ['<rootDir>/test/setup/quiet-runtime.ts'],
  globalSetup: '<rootDir>/test/setup/global-setup.ts',
  globalTeardown: '<rootDir>/test/setup/global-teardown.ts',
  testTimeout: 60_000,
  // One shared Temporal server and Redis on 2 cores: files run one at a time.
  maxWorkers: 1,
};
