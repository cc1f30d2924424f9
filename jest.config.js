/** Unit specs live beside the code; end-to-end suites under test/ run real nginx and SQLite. */
const tsJest = ['ts-jest', { tsconfig: 'tsconfig.json' }];
// The examples import the package by its name, as a team's code would; in tests that is this checkout's source.
const moduleNameMapper = { '^mkv$': '<rootDir>/src/index.ts' };
module.exports = {
  globalSetup: '<rootDir>/test/support/global-setup.ts',
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  // End-to-end steps start nginx and stream hundreds of MB; jest's 5 s default is for unit tests.
  testTimeout: 60000,
  projects: [
    { displayName: 'unit', testMatch: ['<rootDir>/src/**/*.spec.ts'], transform: { '^.+\\.ts$': tsJest }, moduleNameMapper, testEnvironment: 'node' },
    { displayName: 'e2e', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'], transform: { '^.+\\.ts$': tsJest }, moduleNameMapper, testEnvironment: 'node' },
  ],
};
