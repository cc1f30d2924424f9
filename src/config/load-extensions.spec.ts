import { resolve } from 'node:path';
import { ConfigError } from './config-error';
import { loadExtensions } from './load-extensions';

/** `mkv --module` files: the fixtures are plain CommonJS, as a team's built module would be. */
const ROOT = resolve(__dirname, '../..');
const FIXTURES = resolve(ROOT, 'test/fixtures');
const fixture = (name: string) => require(resolve(FIXTURES, name));

function loadError(paths: string[]): ConfigError {
  try {
    loadExtensions(paths, ROOT);
  } catch (error) {
    return error as ConfigError;
  }
  throw new Error(`loadExtensions(${JSON.stringify(paths)}) loaded them`);
}

describe(loadExtensions.name, () => {
  it('imports the one Nest module class a file exports', () => {
    expect(loadExtensions(['test/fixtures/hello-module.js'], ROOT)).toEqual({ imports: [fixture('hello-module.js').HelloModule] });
  });

  it('resolves a path from the directory it is given, not from its own', () => {
    expect(loadExtensions(['./hello-module.js'], FIXTURES).imports).toEqual([fixture('hello-module.js').HelloModule]);
  });

  it("takes the default export (TypeScript's export default)", () => {
    expect(loadExtensions(['test/fixtures/default-export.js'], ROOT)).toEqual({ imports: [fixture('hello-module.js').HelloModule] });
  });

  it('takes mkvExtension as the MkvExtension it is, before any module class beside it', () => {
    const { ByeModule, mkvExtension } = fixture('extension-object.js');
    const extension = loadExtensions(['test/fixtures/extension-object.js'], ROOT);
    expect(extension).toEqual({ imports: [ByeModule], placement: mkvExtension.placement });
    expect(extension.placement).toBe(mkvExtension.placement);
  });

  it('merges several: imports in the order given, each replacement from the one file that gives it', () => {
    const extension = loadExtensions(['test/fixtures/extension-object.js', 'test/fixtures/volume-client-a.js', 'test/fixtures/hello-module.js'], ROOT);
    expect(extension.imports).toEqual([fixture('extension-object.js').ByeModule, fixture('hello-module.js').HelloModule]);
    expect(extension.placement).toBe(fixture('extension-object.js').mkvExtension.placement);
    expect(extension.volumeClient).toBe(fixture('volume-client-a.js').mkvExtension.volumeClient);
    expect(extension.index).toBeUndefined();
    expect(loadExtensions([], ROOT)).toEqual({});
  });

  it('refuses two files replacing the same thing, naming both (neither would silently win)', () => {
    const error = loadError(['test/fixtures/volume-client-a.js', 'test/fixtures/hello-module.js', 'test/fixtures/volume-client-b.js']);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(
      'invalid --module: test/fixtures/volume-client-a.js and test/fixtures/volume-client-b.js both replace the volumeClient; only one module may',
    );
  });

  it('refuses a file that is not there, naming it', () => {
    // Node's message, under jest its resolver's: the e2e suite checks the line `mkv` prints.
    const error = loadError(['./test/fixtures/missing.js']);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message.startsWith('cannot load module ./test/fixtures/missing.js: ')).toBe(true);
    expect(error.message).toContain(`Cannot find module '${FIXTURES}/missing.js'`);
    expect(error.message).not.toContain('\n');
  });

  it.each([
    ['test/fixtures/throws-on-load.js', 'this module fails as it loads'],
    ['test/fixtures/exports-nothing.js', 'it exports no default, no mkvExtension and no Nest module'],
    ['test/fixtures/two-modules.js', 'it exports several Nest modules (FirstModule, SecondModule): export the one to load as default or mkvExtension'],
    ['test/fixtures/unknown-key.js', "its MkvExtension has an unknown key 'volumeclient' (it takes imports, index, volumeClient, placement)"],
  ])('refuses %s with one line naming the file and why', (path, reason) => {
    const error = loadError([path]);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error.message).toBe(`cannot load module ${path}: ${reason}`);
  });
});
