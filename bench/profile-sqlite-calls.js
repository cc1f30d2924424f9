/**
 * Preloaded into the server bench/profile.js profiles (node --require). V8's
 * profiler charges the time of a native method such as a better-sqlite3
 * statement's get() to the JavaScript function that calls it, so the SQLite
 * work would show as mkv's repository code. This wraps the statement methods
 * (get, run, all, iterate) in functions of this file: in the profile, their
 * self time is better-sqlite3's native work (the wrapper adds one call).
 * Database methods need no wrapper: their JavaScript halves live in
 * better-sqlite3's own lib/ and are charged to it already.
 */
const path = require('node:path');

const Database = require(require.resolve('better-sqlite3', { paths: [path.resolve(__dirname, '..')] }));
const probe = new Database(':memory:');
const Statement = Object.getPrototypeOf(probe.prepare('SELECT 1'));
probe.close();

const native = { get: Statement.get, run: Statement.run, all: Statement.all, iterate: Statement.iterate };
// Literal method names: the profile shows them (a computed name shows as "Object.defineProperty.value").
const wrappers = {
  get(...args) {
    return native.get.apply(this, args);
  },
  run(...args) {
    return native.run.apply(this, args);
  },
  all(...args) {
    return native.all.apply(this, args);
  },
  iterate(...args) {
    return native.iterate.apply(this, args);
  },
};
for (const [method, wrapper] of Object.entries(wrappers)) {
  Object.defineProperty(Statement, method, { ...Object.getOwnPropertyDescriptor(Statement, method), value: wrapper });
}
